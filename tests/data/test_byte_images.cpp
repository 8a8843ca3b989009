// ByteImages: the exact byte copy the trainer gathers image batches from (data/ByteImages.h).
// Every gather is compared with index_select on the floats, bit for bit, for both compiled
// conversion loops (cpu::useBaselineKernels); encode() must refuse anything that is not bytes / 255.

#include "TestFiles.h"
#include "data/ByteImages.h"
#include "data/Sources.h"

#include <repshape/regularizers/CpuKernels.h>

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

namespace repshape::data {
namespace {

// Images as the IDX and CIFAR loaders make them: bytes, to float32, divided by 255 in place.
torch::Tensor loaderImages(const std::vector<int64_t>& shape, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 256, shape, torch::kUInt8).to(torch::kFloat32).div_(255.0f);
}

// The same bits, so -0.0 / +0.0 and NaN payloads count as different.
void expectSameBits(const torch::Tensor& got, const torch::Tensor& want) {
  ASSERT_EQ(got.sizes(), want.sizes());
  ASSERT_EQ(got.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(got.contiguous().view(torch::kInt32), want.contiguous().view(torch::kInt32)));
}

class ByteImagesKernels : public ::testing::TestWithParam<bool> {  // true: the baseline loops
 protected:
  void SetUp() override { cpu::useBaselineKernels(GetParam()); }
  void TearDown() override { cpu::useBaselineKernels(false); }
};

TEST_P(ByteImagesKernels, GatherEqualsIndexSelectBitForBit) {
  // 75 values per row (not a multiple of any vector width), every byte value present.
  const torch::Tensor floats = loaderImages({257, 3, 5, 5}, 1);
  const auto bytes = ByteImages::encode(floats);
  ASSERT_TRUE(bytes.has_value());
  EXPECT_EQ(bytes->rows(), 257);
  const torch::Tensor index = torch::tensor(std::vector<int64_t>{0, 256, 5, 5, 100, 0, 17}, torch::kInt64);
  expectSameBits(bytes->gather(index), floats.index_select(0, index));
  const torch::Tensor all = torch::randperm(257, torch::kInt64);
  expectSameBits(bytes->gather(all), floats.index_select(0, all));
  const torch::Tensor none = torch::empty({0}, torch::kInt64);
  EXPECT_EQ(bytes->gather(none).sizes(), (std::vector<int64_t>{0, 3, 5, 5}));
  // A strided index (a narrow of a permutation is contiguous; a step of 2 is not).
  const torch::Tensor strided = all.slice(0, 0, 257, 2);
  expectSameBits(bytes->gather(strided), floats.index_select(0, strided));
}

TEST_P(ByteImagesKernels, BatchLargerThanThePrefetchWindow) {
  // CIFAR-sized rows: 3072 bytes, so 256 KiB ahead is 85 rows and a batch of 300 slides the window.
  const torch::Tensor floats = loaderImages({400, 3, 32, 32}, 2);
  const auto bytes = ByteImages::encode(floats);
  ASSERT_TRUE(bytes.has_value());
  const torch::Tensor index = torch::randint(0, 400, {300}, torch::kInt64);
  expectSameBits(bytes->gather(index), floats.index_select(0, index));
}

INSTANTIATE_TEST_SUITE_P(Cpu, ByteImagesKernels, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "Baseline" : "Native"; });

TEST(ByteImages, RefusesAnythingButBytesOver255) {
  // 1400 × 784 values: more than one encoding span (2^20), and each bad value planted in the last.
  const torch::Tensor good = loaderImages({1400, 784}, 3);
  ASSERT_TRUE(ByteImages::encode(good).has_value());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const float bad : {0.5f / 255.0f, -0.0f, nan, std::nextafter(1.0f, 2.0f), 2.0f, -1.0f / 255.0f,
                          std::nextafter(17.0f / 255.0f, 1.0f), std::numeric_limits<float>::infinity()}) {
    torch::Tensor planted = good.clone();
    planted[1399][783] = bad;
    EXPECT_FALSE(ByteImages::encode(planted).has_value()) << "value " << bad;
  }
  EXPECT_FALSE(ByteImages::encode(good.to(torch::kFloat64)).has_value());  // the floats' dtype only
  EXPECT_FALSE(ByteImages::encode(torch::randn({50, 10})).has_value());   // features, e.g. PCA
  EXPECT_FALSE(ByteImages::encode(torch::empty({0, 784})).has_value());
  EXPECT_FALSE(ByteImages::encode(torch::Tensor()).has_value());
  // A non-contiguous view encodes as its values (the floats' layout is not the bytes').
  const torch::Tensor transposed = loaderImages({20, 30}, 4).t();
  const auto bytes = ByteImages::encode(transposed);
  ASSERT_TRUE(bytes.has_value());
  const torch::Tensor index = torch::arange(30, torch::kInt64).flip(0);
  expectSameBits(bytes->gather(index), transposed.index_select(0, index));
}

TEST(ByteImages, RejectsRowsOutOfRange) {
  const auto bytes = ByteImages::encode(loaderImages({10, 8}, 5));
  ASSERT_TRUE(bytes.has_value());
  for (const int64_t row : {int64_t{10}, int64_t{-1}})
    EXPECT_THROW(bytes->gather(torch::tensor(std::vector<int64_t>{0, row}, torch::kInt64)), c10::Error) << row;
  EXPECT_THROW(bytes->gather(torch::tensor(std::vector<int32_t>{0, 1}, torch::kInt32)), c10::Error);
}

// The quickstart's data takes the byte path: Fashion-MNIST as loadData() gives it encodes, and a
// batch gathered from it is index_select's.
TEST(ByteImages, FashionMnistTrainingSetIsBytes) {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Debian package dataset-fashion-mnist not installed";
  DataConfig config;  // source fashion-mnist, default directory
  config.validationSize = 5000;
  const auto splits = loadData(config, 0);
  const auto bytes = ByteImages::encode(splits.train.inputs);
  ASSERT_TRUE(bytes.has_value());
  EXPECT_EQ(bytes->rows(), splits.train.size());
  const torch::Tensor index = torch::randperm(splits.train.size(), torch::kInt64).narrow(0, 0, 100);
  expectSameBits(bytes->gather(index), splits.train.inputs.index_select(0, index));
}

}  // namespace
}  // namespace repshape::data
