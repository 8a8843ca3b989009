#include "ByteSource.h"

#include "Data.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <system_error>
#include <vector>

namespace repshape::data {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxChunk = size_t{1} << 30;       // bytes per gzread call (it takes an unsigned)
constexpr size_t kGrowChunk = size_t{16} << 20;     // bytes: gzip data of unknown length grows by this
constexpr unsigned kGzipBufferSize = 1u << 20;      // bytes: zlib's input buffer (default 8 KiB)

gzFile asGz(void* file) { return static_cast<gzFile>(file); }

}  // namespace

ByteSource::ByteSource(std::string path) : path_(std::move(path)) {
  std::error_code ec;
  if (!fs::exists(path_, ec)) throw DataError(path_ + ": file not found");
  if (fs::is_directory(path_, ec)) throw DataError(path_ + ": expected a file, found a directory");
  // Gzip is recognised by its magic bytes 1f 8b, not by the ".gz" extension.
  unsigned char magic[2] = {0, 0};
  std::FILE* probe = std::fopen(path_.c_str(), "rb");
  if (!probe) throw DataError(path_ + ": cannot open for reading");
  const size_t probed = std::fread(magic, 1, 2, probe);
  std::fclose(probe);
  gzip_ = probed == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  if (!gzip_) knownSize_ = static_cast<int64_t>(fs::file_size(path_, ec));
  file_ = gzopen(path_.c_str(), "rb");
  if (!file_) throw DataError(path_ + ": cannot open for reading");
  gzbuffer(asGz(file_), kGzipBufferSize);
}

ByteSource::~ByteSource() {
  if (file_) gzclose(asGz(file_));
}

std::string ByteSource::unit() const {
  if (!gzip_) return "";
  return truncatedStream_ ? " (decompressed; the gzip stream itself is cut short)"
                          : " (decompressed from gzip)";
}

size_t ByteSource::read(void* dst, size_t n) {
  auto* out = static_cast<unsigned char*>(dst);
  size_t done = 0;
  while (done < n && !truncatedStream_) {
    const auto want = static_cast<unsigned>(std::min(n - done, kMaxChunk));
    const int got = gzread(asGz(file_), out + done, want);
    if (got > 0) {
      done += static_cast<size_t>(got);
      continue;
    }
    int errnum = Z_OK;
    const char* message = gzerror(asGz(file_), &errnum);
    if (got == 0 && errnum == Z_OK) break;  // clean end of data
    // Z_BUF_ERROR: the compressed stream ended early; report it as a truncated file.
    if (errnum == Z_BUF_ERROR) {
      truncatedStream_ = true;
      break;
    }
    throw DataError(path_ + ": corrupt gzip data after " + std::to_string(consumed_ + done) +
                    " decompressed bytes: " + (message ? message : "unknown zlib error"));
  }
  consumed_ += done;
  return done;
}

void ByteSource::readExact(void* dst, size_t n, const std::string& expected) {
  const uint64_t start = consumed_;
  const size_t got = read(dst, n);
  if (got == n) return;
  std::ostringstream msg;
  msg << path_ << ": truncated file: expected " << start + n << " bytes (" << expected << "), found "
      << start + got << " bytes" << unit();
  throw DataError(msg.str());
}

void ByteSource::expectEnd(const std::string& expected) {
  unsigned char scratch[1 << 16];
  uint64_t extra = 0;
  for (size_t got; (got = read(scratch, sizeof scratch)) > 0;) extra += got;
  if (extra == 0) return;
  std::ostringstream msg;
  msg << path_ << ": file longer than its header says: expected " << consumed_ - extra << " bytes ("
      << expected << "), found " << consumed_ << " bytes" << unit();
  throw DataError(msg.str());
}

torch::Tensor readAllBytes(const std::string& path) {
  ByteSource source(path);
  if (!source.gzip()) {
    auto bytes = torch::empty({source.knownSize()}, torch::kUInt8);
    source.readExact(bytes.data_ptr<uint8_t>(), static_cast<size_t>(source.knownSize()),
                     "the file's size when opened");
    return bytes;
  }
  std::vector<uint8_t> buffer;
  size_t size = 0;
  for (;;) {
    buffer.resize(std::max(buffer.size() * 2, size + kGrowChunk));
    const size_t got = source.read(buffer.data() + size, buffer.size() - size);
    size += got;
    if (size < buffer.size()) break;
  }
  auto bytes = torch::empty({static_cast<int64_t>(size)}, torch::kUInt8);
  std::copy_n(buffer.data(), size, bytes.data_ptr<uint8_t>());
  return bytes;
}

std::string findFile(const std::string& dir, const std::string& name, const std::string& what) {
  const fs::path plain = fs::path(dir) / name;
  const fs::path gz = fs::path(dir) / (name + ".gz");
  std::error_code ec;
  if (fs::is_regular_file(plain, ec)) return plain.string();
  if (fs::is_regular_file(gz, ec)) return gz.string();
  throw DataError(plain.string() + ": file not found (nor " + gz.filename().string() + "); expected " +
                  what);
}

void requireDirectory(const std::string& dir, const std::string& source, const std::string& hint) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return;
  std::string msg = "data.dir: " + dir + ": " +
                    (fs::exists(dir, ec) ? "not a directory" : "directory not found") +
                    " (data.source = \"" + source + "\")";
  if (!hint.empty()) msg += "; " + hint;
  throw DataError(msg);
}

}  // namespace repshape::data
