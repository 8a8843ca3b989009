#pragma once
// torch::optim::Adam whose step() updates each CPU fp32 parameter in ONE pass over its elements
// (moments, bias corrections and the update fused) instead of ATen's ~9 element-wise ops and two
// temporaries per parameter. On the Choi MLP that op sequence, not the arithmetic, was a fifth of
// the plain step (issue 12, target 4). Options, state (AdamParamState: step, exp_avg,
// exp_avg_sq) and checkpoints are Adam's: save/load are inherited unchanged. The arithmetic is
// Adam's (PyTorch 1.13 formula, fp32), so values agree with torch::optim::Adam to fp32 rounding;
// amsgrad, non-CPU, non-fp32 or non-contiguous parameters take Adam's own ops.
#include <torch/torch.h>

namespace repshape {

class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace repshape
