#pragma once
// Rows grouped by class, for per-class Grams Σ_{S_k} x xᵀ [K, M, M] and their backward
// (row i times the matrix of its class) without a GEMM per class where classes are balanced.
//
// Balanced classes (K·P ≤ 2n + K, P the largest class): one bmm over a zero-padded [K, P, M]
// block; row i sits at slot label_i·P + (its rank among its class's rows), padding rows are zero
// and add nothing. Unbalanced: rows sorted by class, one GEMM per present class. K = 1: one GEMM.

#include <torch/torch.h>

#include <string>

namespace repshape::reg::detail {

class ClassBlocks {
 public:
  // rows [n, M] (any float dtype, used as is), labels [n] int64 in [0, K) (ignored for K = 1),
  // countsCpu [K] fp64 on the CPU (rows per class, from the same labels).
  ClassBlocks(const torch::Tensor& rows, const torch::Tensor& labels, const torch::Tensor& countsCpu, int64_t K);

  // Σ_{S_k} x xᵀ, [K, M, M] in the rows' dtype.
  torch::Tensor grams() const;
  // [n, M]: row i = x_i · mats_{label_i}, mats [K, M, M] (cast to the rows' dtype). Rows in input
  // order.
  torch::Tensor times(const torch::Tensor& mats) const;

  // Keeps the layout in an autograd context under `prefix` (no copy of the rows) and restores it.
  void save(torch::autograd::AutogradContext* ctx, const std::string& prefix) const;
  static ClassBlocks load(torch::autograd::AutogradContext* ctx, const std::string& prefix);

 private:
  ClassBlocks() = default;
  // The padded layout (balanced classes, K > 1): [K, P, M] with zero padding back to rows [n, M]
  // in input order.
  torch::Tensor unpad(const torch::Tensor& blockRows) const;
  enum Mode : int64_t { kSingle = 0, kPadded = 1, kSorted = 2 };
  int64_t mode_ = kSingle;
  int64_t n_ = 0, classes_ = 1;
  torch::Tensor blocks_;  // kSingle: rows [n, M]; kPadded: [K, P, M]; kSorted: rows sorted by class [n, M]
  torch::Tensor index_;   // kPadded: slot of each row [n]; kSorted: the sort order [n]
  torch::Tensor counts_;  // [K] CPU fp64
};

}  // namespace repshape::reg::detail
