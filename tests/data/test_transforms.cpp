// data.relabel and data.pca_dims (Transforms.cpp) on small IDX files, against NumPy: the labels
// grouped with the originals kept, and every split projected on the top principal components of the
// TRAINING split only (mean and covariance from train, applied to validation and test).

#include "ExpectError.h"
#include "TestFiles.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace repshape::data {
namespace {

using test::TempDir;
using test::expectDataError;

constexpr int64_t kTrain = 90, kTest = 25, kRows = 5, kCols = 6;  // 30 pixels per image

// Writes an IDX directory: random images and labels 0..9 (every class present).
void writeIdx(const TempDir& dir) {
  test::Bytes trainLabels, testLabels;
  for (int64_t i = 0; i < kTrain; ++i) trainLabels.push_back(static_cast<uint8_t>((i * 7) % 10));
  for (int64_t i = 0; i < kTest; ++i) testLabels.push_back(static_cast<uint8_t>((i * 3) % 10));
  test::writeFile(dir / "train-images-idx3-ubyte", test::idxImages(test::randomBytes(kTrain * kRows * kCols, 5), kTrain, kRows, kCols));
  test::writeFile(dir / "train-labels-idx1-ubyte", test::idxLabels(trainLabels));
  test::writeFile(dir / "t10k-images-idx3-ubyte", test::idxImages(test::randomBytes(kTest * kRows * kCols, 6), kTest, kRows, kCols));
  test::writeFile(dir / "t10k-labels-idx1-ubyte", test::idxLabels(testLabels));
}

DataConfig idxConfig(const TempDir& dir) {
  DataConfig config;
  config.source = "idx";
  config.dir = dir.path();
  config.validationSize = 20;
  return config;
}

void writeMatrix(const std::string& path, const torch::Tensor& matrix) {
  const torch::Tensor m = matrix.to(torch::kFloat64).reshape({matrix.size(0), -1}).contiguous();
  std::ofstream out(path);
  out.precision(17);
  for (int64_t i = 0; i < m.size(0); ++i) {
    for (int64_t j = 0; j < m.size(1); ++j) out << m[i][j].item<double>() << (j + 1 < m.size(1) ? " " : "");
    out << "\n";
  }
}

TEST(Transforms, PcaMatchesNumpyFittedOnTrainingSplitOnly) {
  TempDir dir("pca");
  writeIdx(dir);
  DataConfig config = idxConfig(dir);
  const DataSplits raw = loadData(config, 4);
  config.pcaDims = 4;
  const DataSplits projected = loadData(config, 4);
  ASSERT_EQ(projected.sampleShape, (std::vector<int64_t>{4}));
  ASSERT_EQ(projected.train.inputs.sizes(), (std::vector<int64_t>{kTrain - 20, 4}));
  ASSERT_EQ(projected.validation.inputs.sizes(), (std::vector<int64_t>{20, 4}));
  ASSERT_EQ(projected.test.inputs.sizes(), (std::vector<int64_t>{kTest, 4}));
  EXPECT_TRUE(torch::equal(projected.train.labels, raw.train.labels));  // same split, labels untouched

  const char* names[] = {"train", "validation", "test"};
  const Dataset* sets[] = {&raw.train, &raw.validation, &raw.test};
  for (int i = 0; i < 3; ++i) writeMatrix(dir / (std::string(names[i]) + ".txt"), sets[i]->inputs);
  // NumPy: PCA by SVD of the centred training matrix (not eigh of the covariance, as repshape);
  // components ordered by singular value, each signed so that its largest-|entry| is positive.
  const std::string reference = test::runPython(R"(
import numpy as np
d = ")" + dir.path() + R"("
train = np.loadtxt(f"{d}/train.txt")
mean = train.mean(axis=0)
_, s, vt = np.linalg.svd(train - mean, full_matrices=False)
v = vt[:4].T
v *= np.sign(v[np.abs(v).argmax(axis=0), np.arange(4)])
for name in ("train", "validation", "test"):
    x = np.loadtxt(f"{d}/{name}.txt")
    for row in (x - mean) @ v:
        print(" ".join(repr(float(t)) for t in row))
print("gap", float(s[3] / s[4]))
)");
  std::istringstream in(reference);
  const Dataset* outputs[] = {&projected.train, &projected.validation, &projected.test};
  double worst = 0.0, scale = 0.0;
  for (const Dataset* set : outputs) {
    const auto values = set->inputs.to(torch::kFloat64);
    for (int64_t r = 0; r < values.size(0); ++r)
      for (int64_t c = 0; c < 4; ++c) {
        double expected = 0.0;
        ASSERT_TRUE(in >> expected) << "reference ended early:\n" << reference;
        worst = std::max(worst, std::abs(values[r][c].item<double>() - expected));
        scale = std::max(scale, std::abs(expected));
      }
  }
  std::string gapWord;
  double gap = 0.0;
  ASSERT_TRUE(in >> gapWord >> gap);
  EXPECT_GT(gap, 1.01) << "4th and 5th singular values too close: the test would be ill-posed";
  EXPECT_GT(scale, 1.0);
  EXPECT_LT(worst, 1e-5 * scale) << "max |repshape − numpy| " << worst << " (largest value " << scale << ")";
}

TEST(Transforms, RelabelGroupsClassesAndKeepsOriginals) {
  TempDir dir("relabel");
  writeIdx(dir);
  DataConfig config = idxConfig(dir);
  const DataSplits raw = loadData(config, 4);
  config.relabel = {{0, 1, 2, 3, 4}, {9, 5, 6, 7, 8}};
  const DataSplits grouped = loadData(config, 4);
  EXPECT_EQ(grouped.numClasses, 2);
  EXPECT_EQ(grouped.originalClasses, 10);
  for (const auto& [g, r] : {std::pair{&grouped.train, &raw.train}, std::pair{&grouped.validation, &raw.validation},
                             std::pair{&grouped.test, &raw.test}}) {
    ASSERT_TRUE(g->originalLabels.defined());
    EXPECT_TRUE(torch::equal(g->originalLabels, r->labels));
    EXPECT_TRUE(torch::equal(g->labels, r->labels.ge(5).to(torch::kInt64)));
    EXPECT_TRUE(torch::equal(g->inputs, r->inputs));
  }
  EXPECT_FALSE(raw.train.originalLabels.defined());
  EXPECT_TRUE(torch::equal(raw.train.fineLabels(), raw.train.labels));
}

TEST(Transforms, ErrorsNameTheKeyAndTheClasses) {
  TempDir dir("transform-errors");
  writeIdx(dir);
  DataConfig config = idxConfig(dir);
  config.relabel = {{0, 1, 2, 3}, {5, 6, 7, 8, 9}};
  expectDataError([&] { loadData(config, 4); }, {"data.relabel", "class 4", "no group"});
  config.relabel = {{0, 1, 2, 3, 4}, {5, 6, 7, 8, 9, 12}};
  expectDataError([&] { loadData(config, 4); }, {"data.relabel[1]", "class 12", "10 classes"});
  config.relabel.clear();
  config.pcaDims = 31;
  expectDataError([&] { loadData(config, 4); }, {"data.pca_dims = 31", "30 input dimensions"});
}

}  // namespace
}  // namespace repshape::data
