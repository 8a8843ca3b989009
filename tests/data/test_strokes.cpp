// Pen-stroke sequence loader on small files written here in de Jong's format.

#include "ExpectError.h"
#include "TestFiles.h"
#include "data/Sources.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace repshape::data {
namespace {

using test::expectDataError;
using test::TempDir;

using Rows = std::vector<std::array<int, 4>>;

std::string text(const Rows& rows) {
  std::string out;
  for (const auto& r : rows)
    out += std::to_string(r[0]) + " " + std::to_string(r[1]) + " " + std::to_string(r[2]) + " " +
           std::to_string(r[3]) + "\n";
  return out;
}

const std::vector<Rows> kTrain = {
    {{5, 12, 0, 0}, {1, 0, 0, 0}, {0, -1, 1, 1}},
    {{8, 3, 0, 0}, {-2, 4, 1, 0}, {3, 3, 0, 0}, {1, 1, 0, 0}, {0, 2, 1, 1}},
    {{14, 14, 1, 1}},
};
const std::vector<Rows> kTest = {{{2, 2, 0, 0}, {-1, -1, 1, 1}}, {{0, 0, 0, 0}, {0, 1, 1, 1}}};

void writeStrokes(const std::string& labelsDir, const std::string& sequenceDir) {
  test::writeGzip(labelsDir + "/train-labels-idx1-ubyte.gz", test::idxLabels({7, 2, 9}));
  test::writeFile(labelsDir + "/t10k-labels-idx1-ubyte", test::idxLabels({0, 4}));
  for (size_t i = 0; i < kTrain.size(); ++i)
    test::writeText(sequenceDir + "/trainimg-" + std::to_string(i) + "-inputdata.txt", text(kTrain[i]));
  for (size_t i = 0; i < kTest.size(); ++i)
    test::writeText(sequenceDir + "/testimg-" + std::to_string(i) + "-inputdata.txt", text(kTest[i]));
}

void expectPadded(const torch::Tensor& inputs, const std::vector<Rows>& sequences, int64_t maxLength) {
  ASSERT_EQ(inputs.sizes(), (std::vector<int64_t>{static_cast<int64_t>(sequences.size()), maxLength, 4}));
  for (size_t n = 0; n < sequences.size(); ++n)
    for (int64_t t = 0; t < maxLength; ++t)
      for (int64_t c = 0; c < 4; ++c) {
        const auto row = static_cast<size_t>(t);
        const float want = row < sequences[n].size() ? static_cast<float>(sequences[n][row][static_cast<size_t>(c)]) : 0.0f;
        EXPECT_EQ(inputs[static_cast<int64_t>(n)][t][c].item<float>(), want) << "n " << n << " t " << t << " c " << c;
      }
}

TEST(Strokes, LoadsPaddedSequencesWithMnistLabels) {
  TempDir dir("strokes");
  writeStrokes(dir.path(), dir.path());
  const auto data = loadStrokes(dir.path());
  EXPECT_EQ(data.numClasses, 10);
  EXPECT_EQ(data.sampleShape, (std::vector<int64_t>{5, 4}));  // longest sequence: 5 rows
  expectPadded(data.train.inputs, kTrain, 5);
  expectPadded(data.test.inputs, kTest, 5);
  EXPECT_TRUE(torch::equal(data.train.labels, torch::tensor({7, 2, 9}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(data.test.labels, torch::tensor({0, 4}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(sequenceLengths(data.train.inputs), torch::tensor({3, 5, 1}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(sequenceLengths(data.test.inputs), torch::tensor({2, 2}, torch::kInt64)));
}

TEST(Strokes, SequencesSubfolderAndLoadData) {
  TempDir dir("strokes-nested");
  writeStrokes(dir.path(), dir / "sequences");  // as extracted from sequences.tar.gz
  DataConfig config;
  config.source = "strokes";
  config.dir = dir.path();
  config.validationSize = 1;
  const auto splits = loadData(config, 3);
  EXPECT_EQ(splits.train.size(), 2);
  EXPECT_EQ(splits.validation.size(), 1);
  EXPECT_EQ(splits.sampleShape, (std::vector<int64_t>{5, 4}));
  expectPadded(splits.test.inputs, kTest, 5);
}

TEST(Strokes, Errors) {
  TempDir dir("strokes-bad");
  writeStrokes(dir.path(), dir.path());
  const std::string file = dir / "trainimg-1-inputdata.txt";
  test::writeText(file, "1 2 0 0\n3 4 0\n0 0 1 1\n");
  expectDataError([&] { loadStrokes(dir.path()); }, {file + ":2", "expected 4 integers", "3 4 0"});
  test::writeText(file, "1 2 0 0\n3 4 0 x\n");
  expectDataError([&] { loadStrokes(dir.path()); }, {file + ":2", "3 4 0 x"});
  test::writeText(file, "1 2 0 0\n3 4 1 0\n");
  expectDataError([&] { loadStrokes(dir.path()); }, {file, "last row has eod = 0"});
  test::writeText(file, "1 2 0 2\n");
  expectDataError([&] { loadStrokes(dir.path()); }, {file + ":1", "0 or 1"});
  test::writeText(file, "1 2 0 1\n3 4 0 1\n");
  expectDataError([&] { loadStrokes(dir.path()); }, {file + ":2", "after the end-of-digit"});
  std::filesystem::remove(file);
  expectDataError([&] { loadStrokes(dir.path()); }, {file, "not found"});
  std::filesystem::remove(dir / "t10k-labels-idx1-ubyte");
  expectDataError([&] { loadStrokes(dir.path()); }, {dir / "t10k-labels-idx1-ubyte", "not found"});
}

}  // namespace
}  // namespace repshape::data
