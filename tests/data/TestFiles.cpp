#include "TestFiles.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

namespace repshape::data::test {

namespace fs = std::filesystem;

TempDir::TempDir(const std::string& name) {
  const fs::path base = fs::path(REPSHAPE_BINARY_DIR) / "tests" / "data" / "tmp";
  path_ = (base / (name + "-" + std::to_string(::getpid()))).string();
  fs::remove_all(path_);
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void writeFile(const std::string& path, const Bytes& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

void writeText(const std::string& path, const std::string& text) {
  writeFile(path, Bytes(text.begin(), text.end()));
}

Bytes gzipBytes(const Bytes& bytes) {
  // deflateInit2 with windowBits 16 + 15 writes a gzip (not zlib) stream.
  z_stream stream{};
  if (deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  Bytes out(deflateBound(&stream, bytes.size()) + 64);
  stream.next_in = const_cast<Bytef*>(bytes.data());
  stream.avail_in = static_cast<uInt>(bytes.size());
  stream.next_out = out.data();
  stream.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&stream, Z_FINISH);
  deflateEnd(&stream);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate failed");
  out.resize(stream.total_out);
  return out;
}

void writeGzip(const std::string& path, const Bytes& bytes) { writeFile(path, gzipBytes(bytes)); }

void appendBigEndian(Bytes& bytes, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(value >> shift));
}

Bytes idxImages(const Bytes& pixels, uint32_t count, uint32_t rows, uint32_t cols) {
  Bytes bytes;
  appendBigEndian(bytes, 0x00000803);
  appendBigEndian(bytes, count);
  appendBigEndian(bytes, rows);
  appendBigEndian(bytes, cols);
  bytes.insert(bytes.end(), pixels.begin(), pixels.end());
  return bytes;
}

Bytes idxLabels(const Bytes& labels) {
  Bytes bytes;
  appendBigEndian(bytes, 0x00000801);
  appendBigEndian(bytes, static_cast<uint32_t>(labels.size()));
  bytes.insert(bytes.end(), labels.begin(), labels.end());
  return bytes;
}

Bytes randomBytes(size_t count, uint32_t seed, int maxValue) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(0, maxValue);
  Bytes bytes(count);
  for (auto& b : bytes) b = static_cast<uint8_t>(dist(rng));
  return bytes;
}

CommandResult runCommand(const std::string& command) {
  CommandResult result;
  std::FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buffer;
  for (size_t got; (got = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0;)
    result.output.append(buffer.data(), got);
  const int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string runPython(const std::string& script) {
  TempDir dir("python");
  writeText(dir / "script.py", script);
  auto result = runCommand(std::string(REPSHAPE_REFERENCE_PYTHON) + " " + (dir / "script.py"));
  EXPECT_EQ(result.status, 0) << result.output;
  return result.output;
}

}  // namespace repshape::data::test
