// MNIST pen-stroke sequences (de Jong 2016, github.com/edwin-de-jong/mnist-digits-stroke-sequence-data),
// as used by Romanov et al. §4.1. Expected layout of `dir`:
//   train-labels-idx1-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]   the MNIST label files (IDX)
//   trainimg-{i}-inputdata.txt, i in [0, N_train)               one file per training label
//   testimg-{i}-inputdata.txt,  i in [0, N_test)                one file per test label
// The sequence files may also sit in `dir/sequences/` (as extracted from sequences.tar.gz). Each
// line is `dx dy eos eod` (integers; eos = end of stroke, eod = end of digit); the first row is the
// pen's start position, as in the data set. Exactly the last row has eod = 1.
// Result: inputs float [N, Tmax, 4] padded with zero rows up to the longest sequence of train and
// test; sequenceLengths() recovers the lengths from the eod column.

#include "ByteSource.h"
#include "Data.h"
#include "Idx.h"
#include "Sources.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

namespace repshape::data {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kColumns = 4;  // dx dy eos eod

std::string readText(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) throw DataError(path + ": file not found; expected a pen-stroke sequence `dx dy eos eod` per line");
  std::string text;
  char buffer[1 << 14];
  for (size_t got; (got = std::fread(buffer, 1, sizeof buffer, file)) > 0;) text.append(buffer, got);
  std::fclose(file);
  return text;
}

// Appends the rows of one sequence file to `values` (row-major, 4 per row); returns the row count.
int64_t parseSequence(const std::string& path, std::vector<float>& values) {
  const std::string text = readText(path);
  const char* p = text.c_str();
  const char* end = p + text.size();
  int64_t rows = 0, line = 0;
  bool ended = false;  // an eod = 1 row was seen
  while (p < end) {
    ++line;
    const char* lineEnd = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    if (!lineEnd) lineEnd = end;
    const std::string row(p, lineEnd);
    p = lineEnd + 1;
    if (row.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
    long field[kColumns];
    const char* q = row.c_str();
    int count = 0;
    for (; count < kColumns; ++count) {
      char* next = nullptr;
      errno = 0;
      field[count] = std::strtol(q, &next, 10);
      if (next == q || errno != 0) break;
      q = next;
    }
    const bool trailingJunk = std::string(q).find_first_not_of(" \t\r") != std::string::npos;
    if (count != kColumns || trailingJunk)
      throw DataError(path + ":" + std::to_string(line) + ": expected 4 integers `dx dy eos eod`, found \"" +
                      row + "\"");
    if ((field[2] != 0 && field[2] != 1) || (field[3] != 0 && field[3] != 1))
      throw DataError(path + ":" + std::to_string(line) + ": eos and eod must be 0 or 1, found \"" + row + "\"");
    if (ended)
      throw DataError(path + ":" + std::to_string(line) + ": row after the end-of-digit row (eod = 1)");
    ended = field[3] == 1;
    for (long v : field) values.push_back(static_cast<float>(v));
    ++rows;
  }
  if (rows == 0) throw DataError(path + ": empty sequence; expected rows `dx dy eos eod`");
  if (!ended)
    throw DataError(path + ": last row has eod = 0; expected the sequence to end with eod = 1");
  return rows;
}

struct Sequences {
  std::vector<float> values;     // all rows, 4 floats each
  std::vector<int64_t> lengths;  // rows per sequence
};

Sequences readSequences(const std::string& dir, const std::string& prefix, int64_t count) {
  Sequences result;
  result.lengths.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const auto path = (fs::path(dir) / (prefix + "img-" + std::to_string(i) + "-inputdata.txt")).string();
    result.lengths.push_back(parseSequence(path, result.values));
  }
  return result;
}

torch::Tensor pad(const Sequences& sequences, int64_t maxLength) {
  const auto count = static_cast<int64_t>(sequences.lengths.size());
  auto padded = torch::zeros({count, maxLength, kColumns}, torch::kFloat32);
  float* out = padded.data_ptr<float>();
  const float* in = sequences.values.data();
  for (int64_t i = 0; i < count; ++i) {
    const int64_t n = sequences.lengths[static_cast<size_t>(i)] * kColumns;
    std::copy_n(in, n, out + i * maxLength * kColumns);
    in += n;
  }
  return padded;
}

}  // namespace

SourceData loadStrokes(const std::string& dir) {
  const auto trainLabelsPath = findFile(dir, "train-labels-idx1-ubyte", "the MNIST training labels (IDX)");
  const auto testLabelsPath = findFile(dir, "t10k-labels-idx1-ubyte", "the MNIST test labels (IDX)");
  auto trainLabels = readIdxLabels(trainLabelsPath);
  auto testLabels = readIdxLabels(testLabelsPath);
  for (const auto& [labels, path] : {std::pair{trainLabels, trainLabelsPath}, std::pair{testLabels, testLabelsPath}}) {
    const int64_t maxLabel = labels.max().item<int64_t>();
    if (maxLabel > 9)
      throw DataError(path + ": label " + std::to_string(maxLabel) + " out of range, expected digits 0-9");
  }
  std::error_code ec;
  const auto nested = fs::path(dir) / "sequences";
  const std::string sequenceDir =
      !fs::exists(fs::path(dir) / "trainimg-0-inputdata.txt", ec) && fs::is_directory(nested, ec)
          ? nested.string()
          : dir;
  const auto train = readSequences(sequenceDir, "train", trainLabels.size(0));
  const auto test = readSequences(sequenceDir, "test", testLabels.size(0));
  int64_t maxLength = 0;
  for (const auto* part : {&train, &test})
    for (int64_t n : part->lengths) maxLength = std::max(maxLength, n);

  SourceData data;
  data.train = {pad(train, maxLength), std::move(trainLabels)};
  data.test = {pad(test, maxLength), std::move(testLabels)};
  data.numClasses = 10;
  data.sampleShape = {maxLength, kColumns};
  data.description = sequenceDir;
  return data;
}

torch::Tensor sequenceLengths(const torch::Tensor& strokes) {
  TORCH_CHECK(strokes.dim() == 3 && strokes.size(2) == kColumns, "sequenceLengths: expected strokes [N, T, 4], got ",
              strokes.sizes());
  // Exactly one row per sequence has eod = 1 (its last); padding rows are all zero.
  const auto steps = torch::arange(1, strokes.size(1) + 1, torch::kInt64);  // [T]
  return (strokes.select(2, 3) > 0.5f).to(torch::kInt64).mul(steps).amax(1);
}

}  // namespace repshape::data
