#pragma once
// One autograd node for a whole Linear(+ReLU) chain: the training forward and backward of an MLP
// (Choi, Simon, Kågebäck XOR) without the per-layer autograd bookkeeping.
//
// LibTorch's autograd runs ~4 nodes per layer (AddmmBackward, TBackward, ReluBackward,
// AccumulateGrad × 2) and dispatches each op through the full operator stack; on the Choi MLP at
// batch 100 that is ~0.3 ms of a 1.2 ms step on top of ~0.65 ms of GEMMs (issue 12, target 4), and
// every rank pays it in full whatever its share of the batch (target 2). Here the forward is one
// mm per layer and one raw pass for bias + ReLU, and the backward per layer one raw pass (the
// penalty's gradient added, the ReLU mask, the bias gradient's column sums in fp64) and the two
// products, into fresh contiguous gradients, with no graph walk. (CPU fp32/fp64; other devices
// and dtypes take addmm, relu_, threshold_backward and sum.)
//
// Outputs: [logits, h_1, …, h_{L−1}] — every hidden post-activation output, so penalties can take
// any layer and their gradients flow back into the chain (an unused output's gradient is
// undefined and skipped). The values are the unfused network's to fp32 rounding: the same ATen
// products, except dW = gᵀ·h is computed directly instead of (hᵀ·g)ᵀ and the bias added after the
// product instead of before it (test_models: FusedMlp.*).
#include <torch/torch.h>

#include <vector>

namespace repshape {

struct FusedMlpLayer {
  torch::Tensor weight;  // [out, in], requires grad
  torch::Tensor bias;    // [out], requires grad
  bool relu = true;      // activation after the affine map (false for "out")
};

// x [n, in] (no gradient to x). Returns [logits [n, K], h_1 [n, M_1], …] for the layers before the last.
std::vector<torch::Tensor> fusedMlpForward(const torch::Tensor& x, const std::vector<FusedMlpLayer>& layers);

}  // namespace repshape
