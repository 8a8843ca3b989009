#pragma once
// An exact one-byte copy of an image training set, for the training step's batch gather.
//
// IDX and CIFAR images are bytes k stored as float(k)/255 (Idx.cpp, Cifar.cpp): four bytes held
// per byte of information. Gathering a batch of random rows from them is bound by memory latency,
// not arithmetic — on the Choi MLP, 100 rows of 3 KiB scattered over Fashion-MNIST's 180 MiB cost
// ~50 µs, 6 % of the step (issue 12). From the bytes the same batch is a quarter of the cache
// lines, all requested before the first is used, and each pixel is converted by the loader's own
// division, so the batch is bit for bit the one index_select returns from the floats.

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace repshape::data {

class ByteImages {
 public:
  // The byte copy of `inputs` (float32 on the CPU, shape [N, ...]) when each of its elements is,
  // bit for bit, float(k) / 255.0f for an integer k in [0, 255]; otherwise std::nullopt (PCA
  // projections, synthetic data, -0.0, NaN, anything between the steps), and the caller gathers
  // the floats. One pass over the data.
  static std::optional<ByteImages> encode(const torch::Tensor& inputs);

  // Rows `index` (int64 [B] on the CPU, each in [0, rows())) as float32 [B, ...sample shape]:
  // equal to inputs.index_select(0, index) bit for bit. Throws on an index out of range.
  torch::Tensor gather(const torch::Tensor& index) const;

  int64_t rows() const { return bytes_.size(0); }

 private:
  ByteImages(torch::Tensor bytes, std::vector<int64_t> shape) : bytes_(std::move(bytes)), shape_(std::move(shape)) {}

  torch::Tensor bytes_;         // uint8 [N, D], D = the product of the sample shape
  std::vector<int64_t> shape_;  // [N, ...sample shape] of the floats; gather() replaces N by B
};

}  // namespace repshape::data
