// CIFAR-10 / CIFAR-100 binary version (https://www.cs.toronto.edu/~kriz/cifar.html): fixed-size
// records, label byte(s) then 3072 pixel bytes = 1024 red, 1024 green, 1024 blue, each row-major
// 32x32, which is already the [3, 32, 32] layout. Files may be raw or gzip.

#include "ByteSource.h"
#include "Data.h"
#include "Sources.h"

#include <filesystem>
#include <vector>

namespace repshape::data {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kPixels = 3 * 32 * 32;  // bytes per image

struct RecordFormat {
  int64_t labelBytes;  // 1 (cifar10: label) or 2 (cifar100: coarse, fine)
  int64_t labelIndex;  // which label byte is used
  std::vector<int64_t> labelRanges;  // exclusive upper bound of each label byte
  std::string name;
};

// Records of one file as {images float [N, 3, 32, 32] in [0, 1], labels int64 [N]}.
Dataset readRecords(const std::string& path, const RecordFormat& format) {
  const int64_t recordBytes = format.labelBytes + kPixels;
  const auto bytes = readAllBytes(path);
  const int64_t size = bytes.numel();
  if (size == 0 || size % recordBytes != 0)
    throw DataError(path + ": " + std::to_string(size) + " bytes is not a positive multiple of the " +
                    std::to_string(recordBytes) + "-byte " + format.name + " record (" +
                    std::to_string(format.labelBytes) + " label byte(s) + 3072 pixel bytes)");
  const auto records = bytes.view({size / recordBytes, recordBytes});
  for (int64_t b = 0; b < format.labelBytes; ++b) {
    const auto column = records.select(1, b).to(torch::kInt64);
    const int64_t maxLabel = column.max().item<int64_t>();
    if (maxLabel >= format.labelRanges[b]) {
      const int64_t row = column.argmax().item<int64_t>();
      throw DataError(path + ": record " + std::to_string(row) + " label byte " + std::to_string(b) +
                      " is " + std::to_string(maxLabel) + ", expected < " +
                      std::to_string(format.labelRanges[b]) + " (" + format.name + ")");
    }
  }
  auto images = records.slice(1, format.labelBytes).reshape({-1, 3, 32, 32}).to(torch::kFloat32).div_(255.0f);
  auto labels = records.select(1, format.labelIndex).to(torch::kInt64);
  return {std::move(images), std::move(labels)};
}

Dataset readFiles(const std::string& dir, const std::vector<std::string>& names,
                  const RecordFormat& format) {
  std::vector<torch::Tensor> images, labels;
  for (const auto& name : names) {
    const auto path = findFile(dir, name, format.name + " binary records");
    auto part = readRecords(path, format);
    images.push_back(std::move(part.inputs));
    labels.push_back(std::move(part.labels));
  }
  return {torch::cat(images), torch::cat(labels)};
}

// `dir` itself, or its extracted-tarball subfolder when that holds `marker`.
std::string resolveDir(const std::string& dir, const std::string& subfolder, const std::string& marker) {
  std::error_code ec;
  const auto direct = fs::path(dir) / marker;
  const auto nested = fs::path(dir) / subfolder / marker;
  if (!fs::exists(direct, ec) && !fs::exists(direct.string() + ".gz", ec) &&
      (fs::exists(nested, ec) || fs::exists(nested.string() + ".gz", ec)))
    return (fs::path(dir) / subfolder).string();
  return dir;
}

SourceData finish(Dataset train, Dataset test, int64_t numClasses, const std::string& dir) {
  SourceData data;
  data.train = std::move(train);
  data.test = std::move(test);
  data.numClasses = numClasses;
  data.sampleShape = {3, 32, 32};
  data.description = dir;
  return data;
}

}  // namespace

SourceData loadCifar10(const std::string& dirIn) {
  const auto dir = resolveDir(dirIn, "cifar-10-batches-bin", "data_batch_1.bin");
  const RecordFormat format{1, 0, {10}, "CIFAR-10"};
  auto train = readFiles(dir, {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                               "data_batch_4.bin", "data_batch_5.bin"},
                         format);
  auto test = readFiles(dir, {"test_batch.bin"}, format);
  return finish(std::move(train), std::move(test), 10, dir);
}

SourceData loadCifar100(const std::string& dirIn) {
  const auto dir = resolveDir(dirIn, "cifar-100-binary", "train.bin");
  const RecordFormat format{2, 1, {20, 100}, "CIFAR-100"};
  auto train = readFiles(dir, {"train.bin"}, format);
  auto test = readFiles(dir, {"test.bin"}, format);
  return finish(std::move(train), std::move(test), 100, dir);
}

}  // namespace repshape::data
