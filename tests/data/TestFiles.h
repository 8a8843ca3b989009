#pragma once
// Helpers for the data tests: temporary directories and files written in the exact formats.

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace repshape::data::test {

using Bytes = std::vector<uint8_t>;

// A fresh empty directory under the build tree, removed by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& name);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void writeFile(const std::string& path, const Bytes& bytes);
void writeText(const std::string& path, const std::string& text);
void writeGzip(const std::string& path, const Bytes& bytes);  // gzip-compressed via zlib
Bytes gzipBytes(const Bytes& bytes);

void appendBigEndian(Bytes& bytes, uint32_t value);
// IDX files as bytes: images [count, rows, cols] / labels [count].
Bytes idxImages(const Bytes& pixels, uint32_t count, uint32_t rows, uint32_t cols);
Bytes idxLabels(const Bytes& labels);

// Deterministic pseudo-random bytes (std::mt19937 seeded by `seed`).
Bytes randomBytes(size_t count, uint32_t seed, int maxValue = 255);

// Runs a shell command; returns its exit status and stdout+stderr.
struct CommandResult {
  int status = -1;
  std::string output;
};
CommandResult runCommand(const std::string& command);

// Runs `script` with Debian's python3 (torch, numpy) and returns its stdout; fails the test on
// a non-zero exit.
std::string runPython(const std::string& script);

}  // namespace repshape::data::test
