// CIFAR-10 / CIFAR-100 binary loaders on small files written here in the exact record format.

#include "ExpectError.h"
#include "TestFiles.h"
#include "data/ByteImages.h"
#include "data/Sources.h"

#include <gtest/gtest.h>

namespace repshape::data {
namespace {

using test::Bytes;
using test::expectDataError;
using test::TempDir;

constexpr size_t kPixels = 3072;

// `labels.size()` records: label bytes then pseudo-random pixels; returns the pixels separately.
Bytes cifarRecords(const std::vector<Bytes>& labels, uint32_t seed, Bytes& pixels) {
  pixels = test::randomBytes(labels.size() * kPixels, seed);
  Bytes file;
  for (size_t i = 0; i < labels.size(); ++i) {
    file.insert(file.end(), labels[i].begin(), labels[i].end());
    file.insert(file.end(), pixels.begin() + static_cast<long>(i * kPixels),
                pixels.begin() + static_cast<long>((i + 1) * kPixels));
  }
  return file;
}

// Checks image `row` of `inputs` against pixel bytes: byte c·1024 + y·32 + x is channel c, row y, column x.
void expectImage(const torch::Tensor& inputs, int64_t row, const Bytes& pixels, size_t record) {
  const auto image = inputs[row].contiguous();
  ASSERT_EQ(image.sizes(), (std::vector<int64_t>{3, 32, 32}));
  const float* values = image.data_ptr<float>();
  for (size_t c = 0; c < 3; ++c)
    for (size_t y = 0; y < 32; ++y)
      for (size_t x = 0; x < 32; ++x) {
        const float want = pixels[record * kPixels + c * 1024 + y * 32 + x] / 255.0f;
        ASSERT_FLOAT_EQ(values[(c * 32 + y) * 32 + x], want) << "row " << row << " c" << c << " y" << y << " x" << x;
      }
}

TEST(Cifar10, LoadsBatchesInOrder) {
  TempDir dir("cifar10");
  const std::string sub = dir / "cifar-10-batches-bin";  // as extracted from the tarball
  std::vector<Bytes> batchPixels(5);
  const std::vector<std::vector<Bytes>> batchLabels = {{{3}, {9}}, {{0}}, {{1}, {2}, {5}}, {{7}}, {{4}, {8}}};
  for (size_t b = 0; b < 5; ++b)
    test::writeFile(sub + "/data_batch_" + std::to_string(b + 1) + ".bin",
                    cifarRecords(batchLabels[b], 10 + static_cast<uint32_t>(b), batchPixels[b]));
  Bytes testPixels;
  test::writeGzip(sub + "/test_batch.bin", cifarRecords({{6}, {0}}, 20, testPixels));  // gzip works too

  const auto data = loadCifar10(dir.path());
  // Bytes / 255, so the trainer gathers CIFAR batches from the exact byte copy (ByteImages.h).
  EXPECT_TRUE(ByteImages::encode(data.train.inputs).has_value());
  EXPECT_EQ(data.numClasses, 10);
  EXPECT_EQ(data.sampleShape, (std::vector<int64_t>{3, 32, 32}));
  ASSERT_EQ(data.train.size(), 9);
  ASSERT_EQ(data.test.size(), 2);
  const std::vector<int64_t> wantLabels = {3, 9, 0, 1, 2, 5, 7, 4, 8};
  EXPECT_EQ(std::vector<int64_t>(data.train.labels.data_ptr<int64_t>(), data.train.labels.data_ptr<int64_t>() + 9),
            wantLabels);
  int64_t row = 0;
  for (size_t b = 0; b < 5; ++b)
    for (size_t r = 0; r < batchLabels[b].size(); ++r) expectImage(data.train.inputs, row++, batchPixels[b], r);
  expectImage(data.test.inputs, 1, testPixels, 1);
  EXPECT_EQ(data.test.labels[0].item<int64_t>(), 6);
}

TEST(Cifar10, Errors) {
  TempDir dir("cifar10-bad");
  Bytes pixels;
  for (int b = 1; b <= 5; ++b)
    test::writeFile(dir / ("data_batch_" + std::to_string(b) + ".bin"), cifarRecords({{1}}, 1, pixels));
  expectDataError([&] { loadCifar10(dir.path()); }, {dir / "test_batch.bin", "not found"});
  Bytes bad = cifarRecords({{1}, {2}}, 2, pixels);
  bad.pop_back();
  test::writeFile(dir / "test_batch.bin", bad);
  expectDataError([&] { loadCifar10(dir.path()); },
                  {dir / "test_batch.bin", std::to_string(2 * 3073 - 1) + " bytes", "3073-byte CIFAR-10 record"});
  test::writeFile(dir / "test_batch.bin", cifarRecords({{1}, {10}}, 2, pixels));
  expectDataError([&] { loadCifar10(dir.path()); }, {dir / "test_batch.bin", "record 1", "is 10", "expected < 10"});
}

TEST(Cifar100, UsesFineLabels) {
  TempDir dir("cifar100");
  Bytes trainPixels, testPixels;
  // {coarse, fine}
  test::writeFile(dir / "train.bin", cifarRecords({{4, 30}, {19, 99}, {0, 5}, {11, 15}, {2, 16}}, 30, trainPixels));
  test::writeFile(dir / "test.bin", cifarRecords({{1, 63}, {1, 64}, {3, 3}}, 31, testPixels));
  const auto data = loadCifar100(dir.path());
  EXPECT_EQ(data.numClasses, 100);
  ASSERT_EQ(data.train.size(), 5);
  EXPECT_TRUE(torch::equal(data.train.labels, torch::tensor({30, 99, 5, 15, 16}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(data.test.labels, torch::tensor({63, 64, 3}, torch::kInt64)));
  expectImage(data.train.inputs, 3, trainPixels, 3);
  expectImage(data.test.inputs, 2, testPixels, 2);

  // Choi's 16 / 64-class conditions: only the first K fine classes are kept, in file order.
  DataConfig config;
  config.source = "cifar100";
  config.dir = dir.path();
  config.numClasses = 16;
  const auto splits = loadData(config, 1);
  EXPECT_EQ(splits.numClasses, 16);
  ASSERT_EQ(splits.train.size(), 2);  // fine labels 5 and 15
  EXPECT_EQ(std::get<0>(torch::sort(splits.train.labels))[1].item<int64_t>(), 15);
  ASSERT_EQ(splits.test.size(), 1);
  expectImage(splits.test.inputs, 0, testPixels, 2);
  config.numClasses = 64;
  const auto wider = loadData(config, 1);
  EXPECT_EQ(wider.train.size(), 4);  // 30, 5, 15, 16
  EXPECT_EQ(wider.test.size(), 2);   // 63, 3

  test::writeFile(dir / "test.bin", cifarRecords({{20, 1}}, 32, testPixels));
  expectDataError([&] { loadCifar100(dir.path()); }, {dir / "test.bin", "label byte 0", "is 20", "expected < 20"});
  test::writeFile(dir / "test.bin", cifarRecords({{2, 100}}, 32, testPixels));
  expectDataError([&] { loadCifar100(dir.path()); }, {dir / "test.bin", "label byte 1", "is 100"});
}

}  // namespace
}  // namespace repshape::data
