#pragma once
// torch::optim::Adam whose step() updates each CPU fp32 parameter in ONE pass over its elements
// (moments, bias corrections and the update fused) instead of ATen's ~9 element-wise ops and two
// temporaries per parameter. On the Choi MLP that op sequence, not the arithmetic, was a fifth of
// the plain step (issue 12, target 4). Options, state (AdamParamState: step, exp_avg,
// exp_avg_sq) and checkpoints are Adam's: save/load are inherited unchanged. The arithmetic is
// Adam's (PyTorch 1.13 formula, fp32), so values agree with torch::optim::Adam to fp32 rounding
// (a few ulps per step: FMA contraction, one division instead of two);
// amsgrad, non-CPU, non-fp32 or non-contiguous parameters take Adam's own ops. The element loop
// is AVX2+FMA where the CPU has it (bench_optimizer: 43 µs vs Adam's 245 µs on the Choi MLP).
#include <torch/torch.h>

namespace repshape {

class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

// The trainer's check before every optimizer step: true when every element of the defined tensors
// is finite and their global squared L2 norm Σg², computed in fp64, is representable in their
// dtype (≤ FLT_MAX for fp32, i.e. ‖g‖ ≤ 1.8e19: past it any fp32 norm, clipping or update of that
// gradient overflows; SPEC §7 `diverged`, term "gradient"). CPU fp32 contiguous tensors are
// scanned in one vectorised pass over their exponent bits; the max exponent bounds Σg², and only a
// bound past the limit costs an exact fp64 sum. ~10 µs over the Choi MLP's gradients, where
// _foreach_norm + isfinite took ~50 µs.
bool gradientNormFinite(const std::vector<torch::Tensor>& tensors);

}  // namespace repshape
