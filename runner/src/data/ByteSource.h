#pragma once
// Sequential reading of a data file that may be gzip-compressed. Compression is detected from the
// gzip magic bytes (1f 8b), never from the file name, so `x.gz` holding raw bytes also works.

#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace repshape::data {

class ByteSource {
 public:
  // Throws DataError when the file is missing or unreadable.
  explicit ByteSource(std::string path);
  ~ByteSource();
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  // Reads up to `n` bytes; fewer only at the end of the (decompressed) data. A corrupt gzip
  // stream throws DataError; a gzip stream cut short counts as the end of the data.
  size_t read(void* dst, size_t n);
  // Reads exactly `n` bytes or throws DataError naming the file, `expected` (e.g. "16-byte IDX
  // header + 60000 images of 28x28") and the number of bytes actually present.
  void readExact(void* dst, size_t n, const std::string& expected);
  // Throws DataError when bytes remain after `expected` (a file longer than its header says).
  void expectEnd(const std::string& expected);

  const std::string& path() const { return path_; }
  bool gzip() const { return gzip_; }
  uint64_t consumed() const { return consumed_; }  // decompressed bytes read so far
  // Raw files: their length in bytes; gzip files: -1 (the decompressed length is not known).
  int64_t knownSize() const { return knownSize_; }
  // What "found N bytes" counted, for messages: " (decompressed from gzip)" or "".
  std::string unit() const;

 private:
  std::string path_;
  void* file_ = nullptr;  // gzFile (zlib reads raw files transparently too)
  bool gzip_ = false;
  bool truncatedStream_ = false;  // zlib reported an unexpected end of the gzip stream
  uint64_t consumed_ = 0;
  int64_t knownSize_ = -1;
};

// The whole (decompressed) content of `path` as a uint8 tensor [bytes]: one read for raw files.
torch::Tensor readAllBytes(const std::string& path);

// `dir/name` if it exists, else `dir/name.gz`; throws DataError naming both when neither does.
std::string findFile(const std::string& dir, const std::string& name, const std::string& what);

// Throws DataError unless `dir` is an existing directory; `hint` says how to obtain the data.
void requireDirectory(const std::string& dir, const std::string& source, const std::string& hint);

}  // namespace repshape::data
