#include "Idx.h"

#include "ByteSource.h"
#include "Data.h"
#include "Sources.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <vector>

namespace repshape::data {
namespace {

constexpr uint64_t kMaxIdxBytes = uint64_t{1} << 36;  // 64 GiB: larger means a garbage header

uint32_t bigEndian(const unsigned char* bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
         uint32_t{bytes[3]};
}

std::string hex(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", value);
  return text;
}

// Reads the magic and `dims` big-endian dimensions; checks the magic against `expectedMagic`.
std::vector<uint64_t> readHeader(ByteSource& source, uint32_t expectedMagic, int dims,
                                 const std::string& kind) {
  const std::string headerText = std::to_string(4 + 4 * dims) + "-byte IDX " + kind + " header";
  unsigned char bytes[4];
  source.readExact(bytes, 4, headerText);
  const uint32_t magic = bigEndian(bytes);
  if (magic != expectedMagic) {
    std::string msg = source.path() + ": not an IDX " + kind + " file: magic " + hex(magic) +
                      ", expected " + hex(expectedMagic) + " (ubyte, " + std::to_string(dims) +
                      (dims == 1 ? " dimension)" : " dimensions)");
    if (magic == kIdxImagesMagic) msg += "; this is an IDX image file";
    if (magic == kIdxLabelsMagic) msg += "; this is an IDX label file";
    throw DataError(msg);
  }
  std::vector<uint64_t> shape;
  for (int i = 0; i < dims; ++i) {
    source.readExact(bytes, 4, headerText);
    shape.push_back(bigEndian(bytes));
    if (shape.back() == 0)
      throw DataError(source.path() + ": IDX header dimension " + std::to_string(i) +
                      " is 0, expected > 0");
  }
  return shape;
}

// Bytes the header promises, checked against the file size (raw) or a sanity bound (gzip) before
// anything is allocated.
uint64_t payloadBytes(const ByteSource& source, const std::vector<uint64_t>& shape,
                      const std::string& expected) {
  uint64_t bytes = 1;
  for (uint64_t d : shape) {
    if (bytes > kMaxIdxBytes / d)
      throw DataError(source.path() + ": IDX header promises more than " +
                      std::to_string(kMaxIdxBytes) + " bytes (" + expected + "): a corrupt header");
    bytes *= d;
  }
  const uint64_t total = source.consumed() + bytes;
  if (source.knownSize() >= 0 && static_cast<uint64_t>(source.knownSize()) != total) {
    std::ostringstream msg;
    msg << source.path() << ": "
        << (static_cast<uint64_t>(source.knownSize()) < total ? "truncated file" : "file longer than its header says")
        << ": expected " << total << " bytes (" << expected << "), found " << source.knownSize() << " bytes";
    throw DataError(msg.str());
  }
  return bytes;
}

}  // namespace

torch::Tensor readIdxImages(const std::string& path) {
  ByteSource source(path);
  const auto shape = readHeader(source, kIdxImagesMagic, 3, "image");
  const std::string expected = "16-byte header + " + std::to_string(shape[0]) + " images of " +
                               std::to_string(shape[1]) + "x" + std::to_string(shape[2]);
  const uint64_t bytes = payloadBytes(source, shape, expected);
  // One read straight into the tensor's storage.
  auto images = torch::empty({static_cast<int64_t>(shape[0]), static_cast<int64_t>(shape[1]),
                              static_cast<int64_t>(shape[2])},
                             torch::kUInt8);
  source.readExact(images.data_ptr<uint8_t>(), bytes, expected);
  source.expectEnd(expected);
  return images;
}

torch::Tensor readIdxLabels(const std::string& path) {
  ByteSource source(path);
  const auto shape = readHeader(source, kIdxLabelsMagic, 1, "label");
  const std::string expected = "8-byte header + " + std::to_string(shape[0]) + " labels";
  const uint64_t bytes = payloadBytes(source, shape, expected);
  auto labels = torch::empty({static_cast<int64_t>(shape[0])}, torch::kUInt8);
  source.readExact(labels.data_ptr<uint8_t>(), bytes, expected);
  source.expectEnd(expected);
  return labels.to(torch::kInt64);
}

namespace {

// One split of an IDX directory: images as float [N, 1, rows, cols] in [0, 1].
Dataset loadIdxPair(const std::string& dir, const std::string& prefix, std::string& imagesPath,
                    std::string& labelsPath) {
  imagesPath = findFile(dir, prefix + "-images-idx3-ubyte", "an IDX image file (magic 0x00000803)");
  labelsPath = findFile(dir, prefix + "-labels-idx1-ubyte", "an IDX label file (magic 0x00000801)");
  const auto images = readIdxImages(imagesPath);
  auto labels = readIdxLabels(labelsPath);
  if (images.size(0) != labels.size(0))
    throw DataError(imagesPath + " has " + std::to_string(images.size(0)) + " images but " +
                    labelsPath + " has " + std::to_string(labels.size(0)) +
                    " labels; expected the same count");
  return {images.unsqueeze(1).to(torch::kFloat32).div_(255.0f), std::move(labels)};
}

void checkLabels(const torch::Tensor& labels, int64_t numClasses, const std::string& path) {
  if (labels.numel() == 0) return;
  const int64_t maxLabel = labels.max().item<int64_t>();
  if (maxLabel >= numClasses) {
    const int64_t index = labels.ge(numClasses).nonzero()[0][0].item<int64_t>();
    throw DataError(path + ": label " + std::to_string(labels[index].item<int64_t>()) + " of sample " +
                    std::to_string(index) + " (counting from 0) out of range, expected labels in [0, " +
                    std::to_string(numClasses) + ")");
  }
}

// Inferring the class count from the largest label is only sound when labels are dense: one stray
// label (200 in a 10-class file) would otherwise make 201 classes, 190 of them empty.
int64_t inferClasses(const torch::Tensor& trainLabels, const torch::Tensor& testLabels, const std::string& path) {
  const int64_t classes =
      1 + std::max(trainLabels.numel() ? trainLabels.max().item<int64_t>() : 0,
                   testLabels.numel() ? testLabels.max().item<int64_t>() : 0);
  const torch::Tensor counts = torch::bincount(torch::cat({trainLabels, testLabels}), {}, classes);
  const torch::Tensor absent = counts.eq(0).nonzero();
  if (absent.size(0) > 0)
    throw DataError(path + ": labels go up to " + std::to_string(classes - 1) + " but " +
                    std::to_string(absent.size(0)) + " label value(s) below that never occur (first: " +
                    std::to_string(absent[0][0].item<int64_t>()) +
                    "); a stray or corrupted label?");
  return classes;
}

}  // namespace

SourceData loadIdxDirectory(const std::string& dir, int64_t numClasses) {
  SourceData data;
  std::string trainImages, trainLabels, testImages, testLabels;
  data.train = loadIdxPair(dir, "train", trainImages, trainLabels);
  data.test = loadIdxPair(dir, "t10k", testImages, testLabels);
  const auto trainShape = data.train.inputs.sizes().slice(1).vec();
  const auto testShape = data.test.inputs.sizes().slice(1).vec();
  if (trainShape != testShape)
    throw DataError(testImages + ": images of " + std::to_string(testShape[1]) + "x" +
                    std::to_string(testShape[2]) + ", expected " + std::to_string(trainShape[1]) + "x" +
                    std::to_string(trainShape[2]) + " like " + trainImages);
  if (numClasses <= 0) numClasses = inferClasses(data.train.labels, data.test.labels, trainLabels);
  checkLabels(data.train.labels, numClasses, trainLabels);
  checkLabels(data.test.labels, numClasses, testLabels);
  data.numClasses = numClasses;
  data.sampleShape = trainShape;
  data.description = dir;
  return data;
}

}  // namespace repshape::data
