#pragma once
// IDX files (LeCun's MNIST format, also Fashion-MNIST): big-endian header, then raw ubyte data.
//   images: magic 0x00000803, dims N, rows, cols, then N·rows·cols bytes
//   labels: magic 0x00000801, dim N, then N bytes

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace repshape::data {

constexpr uint32_t kIdxImagesMagic = 0x00000803;  // ubyte, 3 dimensions
constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // ubyte, 1 dimension

// uint8 [N, rows, cols]; raw or gzip. Throws DataError naming the file on a wrong magic, zero
// dimensions or a length that disagrees with the header.
torch::Tensor readIdxImages(const std::string& path);
// int64 [N].
torch::Tensor readIdxLabels(const std::string& path);

}  // namespace repshape::data
