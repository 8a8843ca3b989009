// Pairwise KL hinge penalties of Romanov & Rumshisky (SPEC §2): lmulti / lmulti-unsup on gathered
// activations, lsingle on the rows of a weight matrix. Vectorised: the [N, N] KL matrix is one
// matmul of softmax probabilities with log-probabilities.
#include "detail/Penalties.h"

namespace repshape::reg::detail {

using torch::Tensor;

namespace {

// KL(d_i ‖ d_j) for all pairs of rows of logits [R, D] (fp64), [R, R].
Tensor pairwiseKl(const Tensor& logits) {
  const Tensor logP = torch::log_softmax(logits, 1);  // no ε needed (SPEC §2)
  const Tensor p = logP.exp();
  const Tensor negEntropy = (p * logP).sum(1, /*keepdim=*/true);  // [R, 1]
  return negEntropy - p.mm(logP.t());
}

}  // namespace

Tensor pairHingePenalty(const Tensor& z, const Tensor& labels, double margin) {
  const int64_t n = z.size(0);
  if (n == 0) return (z.sum() * 0.0).to(torch::kFloat64);
  const Tensor hinge = torch::relu(margin - pairwiseKl(z.to(torch::kFloat64)));  // [N, N]
  // Σ over ordered pairs (i, j) of h(m − KL(i‖j)) + h(m − KL(j‖i)) = 2 Σ_{i,j} h(m − KL(i‖j)).
  if (!labels.defined()) return 2.0 * hinge.sum() / static_cast<double>(n * n);
  const Tensor same = labels.unsqueeze(1).eq(labels.unsqueeze(0)).to(torch::kFloat64);  // [N, N]
  // Σ_k n_k² = number of same-class ordered pairs, diagonal included.
  return 2.0 * (hinge * same).sum() / same.sum();
}

Tensor lsinglePenalty(const Tensor& weight, double margin) {
  TORCH_CHECK(weight.dim() >= 2, "lsingle: weight of shape ", weight.sizes(), ", expected [out, in]");
  const Tensor w = weight.reshape({weight.size(0), -1}).to(torch::kFloat64);
  const Tensor hinge = torch::relu(margin - pairwiseKl(w));  // [out, out]
  // Σ_{i<j} [h(m − KL_ij) + h(m − KL_ji)] = Σ over off-diagonal entries.
  return hinge.sum() - hinge.diagonal().sum();
}

}  // namespace repshape::reg::detail
