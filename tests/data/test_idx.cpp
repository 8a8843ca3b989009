// IDX reader: good / gzip / truncated / wrong-magic files written here, and Debian's Fashion-MNIST
// checked against a checksum computed independently by python3 (gzip + numpy).

#include "ExpectError.h"
#include "TestFiles.h"
#include "data/ByteSource.h"
#include "data/Idx.h"
#include "data/Sources.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <sstream>

namespace repshape::data {
namespace {

using test::Bytes;
using test::TempDir;
using test::expectDataError;

constexpr const char* kFashionDir = "/usr/share/datasets/fashion-mnist";

TEST(Idx, ReadsImagesAndLabels) {
  TempDir dir("idx-good");
  const Bytes pixels = test::randomBytes(3 * 2 * 5, 1);
  test::writeFile(dir / "images", test::idxImages(pixels, 3, 2, 5));
  test::writeFile(dir / "labels", test::idxLabels({7, 0, 255}));
  const auto images = readIdxImages(dir / "images");
  ASSERT_EQ(images.sizes(), (std::vector<int64_t>{3, 2, 5}));
  ASSERT_EQ(images.dtype(), torch::kUInt8);
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t r = 0; r < 2; ++r)
      for (int64_t c = 0; c < 5; ++c)
        EXPECT_EQ(images[n][r][c].item<int64_t>(), pixels[static_cast<size_t>(n * 10 + r * 5 + c)]);
  const auto labels = readIdxLabels(dir / "labels");
  ASSERT_EQ(labels.dtype(), torch::kInt64);
  EXPECT_EQ(labels[0].item<int64_t>(), 7);
  EXPECT_EQ(labels[1].item<int64_t>(), 0);
  EXPECT_EQ(labels[2].item<int64_t>(), 255);
}

TEST(Idx, GzipEqualsRawAndIsDetectedByMagicNotName) {
  TempDir dir("idx-gzip");
  const Bytes file = test::idxImages(test::randomBytes(4 * 3 * 3, 2), 4, 3, 3);
  test::writeFile(dir / "raw.gz", file);       // raw bytes despite the name
  test::writeGzip(dir / "compressed", file);  // gzip without the extension
  ASSERT_NE(test::gzipBytes(file), file);
  EXPECT_FALSE(ByteSource(dir / "raw.gz").gzip());
  EXPECT_TRUE(ByteSource(dir / "compressed").gzip());
  EXPECT_TRUE(torch::equal(readIdxImages(dir / "raw.gz"), readIdxImages(dir / "compressed")));
}

TEST(Idx, TruncatedRawFileNamesFileExpectedAndFound) {
  TempDir dir("idx-truncated");
  Bytes file = test::idxImages(test::randomBytes(3 * 2 * 4, 3), 3, 2, 4);  // 16 + 24 = 40 bytes
  file.resize(36);
  test::writeFile(dir / "images", file);
  expectDataError([&] { readIdxImages(dir / "images"); },
                  {dir / "images", "truncated", "expected 40 bytes", "3 images of 2x4", "found 36 bytes"});
  Bytes labels = test::idxLabels({1, 2, 3, 4});  // 8 + 4 bytes
  labels.pop_back();
  test::writeFile(dir / "labels", labels);
  expectDataError([&] { readIdxLabels(dir / "labels"); },
                  {dir / "labels", "expected 12 bytes", "found 11 bytes"});
  test::writeFile(dir / "header", Bytes{0, 0, 8, 3, 0, 0});  // cut inside the header
  expectDataError([&] { readIdxImages(dir / "header"); }, {dir / "header", "found 6 bytes"});
}

TEST(Idx, TruncatedGzipFiles) {
  TempDir dir("idx-truncated-gz");
  Bytes file = test::idxImages(test::randomBytes(5 * 4 * 4, 4), 5, 4, 4);  // 16 + 80 = 96 bytes
  Bytes shortFile(file.begin(), file.begin() + 90);
  test::writeGzip(dir / "short.gz", shortFile);  // a complete gzip stream of too few bytes
  expectDataError([&] { readIdxImages(dir / "short.gz"); },
                  {dir / "short.gz", "expected 96 bytes", "found 90 bytes", "gzip"});
  Bytes compressed = test::gzipBytes(file);
  compressed.resize(compressed.size() / 2);  // the gzip stream itself cut
  test::writeFile(dir / "cut.gz", compressed);
  expectDataError([&] { readIdxImages(dir / "cut.gz"); }, {dir / "cut.gz", "expected 96 bytes", "found"});
}

TEST(Idx, LongerFileThanHeader) {
  TempDir dir("idx-long");
  Bytes file = test::idxLabels({1, 2});
  file.push_back(9);
  test::writeFile(dir / "raw", file);
  test::writeGzip(dir / "gz", file);
  expectDataError([&] { readIdxLabels(dir / "raw"); }, {dir / "raw", "expected 10 bytes", "found 11 bytes"});
  expectDataError([&] { readIdxLabels(dir / "gz"); }, {dir / "gz", "expected 10 bytes", "found 11 bytes"});
}

TEST(Idx, WrongMagicAndZeroDimension) {
  TempDir dir("idx-magic");
  test::writeFile(dir / "labels", test::idxLabels({1, 2}));
  expectDataError([&] { readIdxImages(dir / "labels"); },
                  {dir / "labels", "magic 0x00000801", "expected 0x00000803", "label file"});
  test::writeFile(dir / "images", test::idxImages(test::randomBytes(4, 5), 1, 2, 2));
  expectDataError([&] { readIdxLabels(dir / "images"); }, {dir / "images", "magic 0x00000803", "expected 0x00000801"});
  test::writeText(dir / "text", "hello world, not IDX");
  expectDataError([&] { readIdxImages(dir / "text"); }, {dir / "text", "magic 0x68656c6c"});
  test::writeFile(dir / "zero", test::idxImages({}, 0, 28, 28));
  expectDataError([&] { readIdxImages(dir / "zero"); }, {dir / "zero", "dimension 0 is 0"});
  expectDataError([&] { readIdxImages(dir / "missing"); }, {dir / "missing", "not found"});
}

// A directory of the four IDX files with `train` / `test` samples of 3x2 pixels.
void writeIdxDirectory(const TempDir& dir, const Bytes& trainLabels, const Bytes& testLabels, bool gzip) {
  const auto write = gzip ? test::writeGzip : test::writeFile;
  const std::string ext = gzip ? ".gz" : "";
  const auto nTrain = static_cast<uint32_t>(trainLabels.size()), nTest = static_cast<uint32_t>(testLabels.size());
  write(dir / ("train-images-idx3-ubyte" + ext), test::idxImages(test::randomBytes(nTrain * 6, 6), nTrain, 3, 2));
  write(dir / ("train-labels-idx1-ubyte" + ext), test::idxLabels(trainLabels));
  write(dir / ("t10k-images-idx3-ubyte" + ext), test::idxImages(test::randomBytes(nTest * 6, 7), nTest, 3, 2));
  write(dir / ("t10k-labels-idx1-ubyte" + ext), test::idxLabels(testLabels));
}

TEST(IdxDirectory, LoadsScaledImagesAndChecksCounts) {
  TempDir dir("idx-dir");
  writeIdxDirectory(dir, {0, 1, 2, 3}, {4, 5}, /*gzip=*/true);
  const auto data = loadIdxDirectory(dir.path(), 0);
  EXPECT_EQ(data.numClasses, 6);  // max label + 1
  EXPECT_EQ(data.sampleShape, (std::vector<int64_t>{1, 3, 2}));
  ASSERT_EQ(data.train.inputs.sizes(), (std::vector<int64_t>{4, 1, 3, 2}));
  EXPECT_EQ(data.train.inputs.dtype(), torch::kFloat32);
  const Bytes pixels = test::randomBytes(4 * 6, 6);
  EXPECT_FLOAT_EQ(data.train.inputs[2][0][1][0].item<float>(), pixels[2 * 6 + 1 * 2 + 0] / 255.0f);
  EXPECT_EQ(data.test.labels[1].item<int64_t>(), 5);

  expectDataError([&] { loadIdxDirectory(dir.path(), 5); },
                  {dir / "t10k-labels-idx1-ubyte.gz", "label 5", "[0, 5)"});
  test::writeGzip(dir / "t10k-labels-idx1-ubyte.gz", test::idxLabels({1, 2, 3}));
  expectDataError([&] { loadIdxDirectory(dir.path(), 10); },
                  {dir / "t10k-images-idx3-ubyte.gz", "2 images", dir / "t10k-labels-idx1-ubyte.gz", "3 labels"});
  std::filesystem::remove(dir / "train-images-idx3-ubyte.gz");
  expectDataError([&] { loadIdxDirectory(dir.path(), 10); }, {dir / "train-images-idx3-ubyte", "not found"});
}

TEST(IdxDirectory, FashionMnistMatchesIndependentChecksum) {
  if (!std::filesystem::exists(std::string(kFashionDir) + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << kFashionDir << " missing: install the Debian package dataset-fashion-mnist";
  const auto data = loadIdxDirectory(kFashionDir, 10);
  ASSERT_EQ(data.train.inputs.sizes(), (std::vector<int64_t>{60000, 1, 28, 28}));
  ASSERT_EQ(data.test.inputs.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  ASSERT_EQ(data.train.labels.size(0), 60000);
  ASSERT_EQ(data.test.labels.size(0), 10000);

  // Position-weighted sums catch misordered bytes, not just wrong totals.
  std::ostringstream ours;
  for (const auto* set : {&data.train, &data.test}) {
    const auto inputs = set->inputs.contiguous();
    const float* values = inputs.data_ptr<float>();
    int64_t sum = 0, weighted = 0, labelSum = 0;
    for (int64_t i = 0; i < inputs.numel(); ++i) {
      const auto byte = static_cast<int64_t>(std::lround(values[i] * 255.0f));
      sum += byte;
      weighted += byte * (i % 251 + 1);
    }
    const int64_t* labels = set->labels.data_ptr<int64_t>();
    for (int64_t i = 0; i < set->labels.numel(); ++i) labelSum += labels[i] * (i % 7 + 1);
    ours << sum << " " << weighted << " " << labelSum << "\n";
  }
  const std::string reference = test::runPython(R"(
import gzip, numpy as np
d = ")" + std::string(kFashionDir) + R"("
for prefix in ("train", "t10k"):
    img = np.frombuffer(gzip.open(f"{d}/{prefix}-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
    lab = np.frombuffer(gzip.open(f"{d}/{prefix}-labels-idx1-ubyte.gz").read(), np.uint8, offset=8).astype(np.int64)
    # Weights repeat every 251 bytes: fold the image bytes into 251 columns (zero-padded tail).
    padded = np.zeros(-(-img.size // 251) * 251, np.uint8)
    padded[:img.size] = img
    columns = padded.reshape(-1, 251).sum(axis=0, dtype=np.int64)
    lw = np.arange(lab.size, dtype=np.int64) % 7 + 1
    print(int(img.sum(dtype=np.int64)), int((columns * np.arange(1, 252)).sum()), int((lab * lw).sum()))
)");
  EXPECT_EQ(ours.str(), reference);
}

}  // namespace
}  // namespace repshape::data
