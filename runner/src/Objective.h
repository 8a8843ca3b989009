#pragma once
// The training objectives (train.objective): what the output layer "out" produces, the task loss,
// and the error that evaluation reports.
//
//   cross_entropy  out [n, K] logits; loss softmax cross-entropy; error % misclassified.
//   binary         out [n, 1] one logit; loss sigmoid cross-entropy (BCE with logits) on labels
//                  0/1; error % with (logit > 0) != label. Probabilities for xcov: sigmoid [n, 1]
//                  (SPEC §2).
//   mse            out [n, D] reconstructs the flattened input x [n, D] (autoencoders); per-sample
//                  loss (1/D) Σ_j (out_j − x_j)²; reported as `mse` (SPEC §3), not in %.
//
// Every sum is over rows, so a rank's part divided by the GLOBAL batch rows gives the global-batch
// mean after the gradient sum (SPEC §4), and evaluation sums are exact across ranks.

#include "Config.h"

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace repshape {

// Width of "out": K, 1, or the flattened sample size.
int64_t outputWidth(const std::string& objective, const std::vector<int64_t>& sampleShape, int64_t numClasses);

// Σ over rows of the per-sample task loss: a scalar connected to `output` [n, out].
torch::Tensor taskLossSum(const std::string& objective, const torch::Tensor& output, const torch::Tensor& inputs,
                          const torch::Tensor& labels);

// Σ_r −log softmax(logits_r)[labels_r]: F::cross_entropy with reduction sum; on CPU fp32/fp64
// logits one fused autograd node (values and gradients equal to it to rounding).
torch::Tensor crossEntropySum(const torch::Tensor& logits, const torch::Tensor& labels);

// The step's loss from this rank's task-loss sum: taskSum / rows + Σ_i weights[i] · values[i], with
// ATen's arithmetic for `taskSum / rows` followed by `+ values[i].to(T) * weights[i]` term by term
// (T = taskSum's dtype: the quotient, each product and each sum rounded to T), values and gradients
// bit for bit (for an upstream gradient g ≠ 1, the terms' gradients to LibTorch 1.13's rounding of
// g·λ; the trainer's g is 1). On the CPU (0-dim fp32/fp64 tensors) one autograd node: those ATen ops are 2 + 3 per
// term nodes of a few µs each, forward and backward, on every step. Elsewhere ATen's ops.
torch::Tensor stepLoss(const torch::Tensor& taskSum, int64_t rows, const std::vector<torch::Tensor>& values,
                       const std::vector<double>& weights);

// total + weight · value in the loss's arithmetic, as `+ value.to(T) * weight` computes it: for an
// fp32 loss (fp32 true) the product of the factors rounded to float and the sum rounded to float.
// stepLoss adds its terms with it; the trainer sums the reported penalty total with it.
double addWeightedTerm(double total, double value, double weight, bool fp32);

// Σ over rows of the per-sample error: misclassified rows (cross_entropy, binary) or the per-sample
// mean squared error (mse). No gradient.
torch::Tensor errorSum(const std::string& objective, const torch::Tensor& output, const torch::Tensor& inputs,
                       const torch::Tensor& labels);

// The reported error from the global error sum over `samples` rows: % or MSE.
double reportedError(const std::string& objective, double errorSum, int64_t samples);
// The result.json key of that error: "error" (%) or "mse".
const char* errorKey(const std::string& objective);

// Predicted class probabilities [n, C] for xcov: softmax (cross_entropy), sigmoid [n, 1] (binary).
torch::Tensor classProbabilities(const std::string& objective, const torch::Tensor& output);

// Checks that need the data: binary needs at most 2 classes (group them with data.relabel), mse
// cannot feed xcov. Throws ConfigError located at the key (train.objective, regularizer[i]).
void validateObjective(const Config& config, int64_t numClasses, const std::string& dataDescription);

}  // namespace repshape
