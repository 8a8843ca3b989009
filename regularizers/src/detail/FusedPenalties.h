#pragma once
// Covariance-family penalties (SPEC §2) as single autograd nodes over the reduced sums.
//
// Written through the autograd graph, one of these is ~40 tiny fp64 ops whose dispatcher and
// autograd bookkeeping costs several times the O(K·M²) arithmetic; here forward and backward are
// plain loops over the [K, M, M] / [K, M] buffers. Same formulas and degenerate-input rules as
// the op-by-op versions in StatisticsPenalties.cpp (which remain the path for non-CPU / non-fp64
// statistics). Inputs must be CPU fp64; counts carry no gradient.

#include <torch/torch.h>

namespace repshape::reg::detail {

// corr (Simon §3.1): ε inside the square root of the unbiased variance (as StatisticsPenalties.cpp).
constexpr double kCorrEpsilon = 1e-8;

enum class FusedCovKind { kLsigma, kCr, kCorr };

// Whether the fused kernels can take these statistics (CPU, fp64).
bool canFuse(const torch::Tensor& counts, const torch::Tensor& sums, const torch::Tensor& second);

// Over K groups (K = counts.numel()): counts [K], sums [K·M], grams [K·M·M] (any shape of that
// size). lsigma and corr need K = 1. Returns scale · Σ_k Ω_k, a 0-dim fp64 tensor, where
//   lsigma: Σ_ij |C_u,ij| · 1/M² folded into scale by the caller
//   cr:     ½ (‖C_k‖_F² − Σ_i C_k,ii²)
//   corr:   Σ_ij ρ_ij², 1/(2M) folded into scale by the caller.
torch::Tensor fusedCovariancePenalty(FusedCovKind kind, const torch::Tensor& counts, const torch::Tensor& sums,
                                     const torch::Tensor& grams, int64_t width, double scale);

// Penalty of one group's covariance cov [M·M] (unbiased factor already applied), as
// fusedCovariancePenalty sums it; sd [M] is scratch (corr).
double covarianceValue(FusedCovKind kind, const double* cov, int64_t M, double* sd);
// dΩ_group/dC into grad [M·M], C the biased covariance (`unbiased` = the factor cov carries).
void covarianceGrad(FusedCovKind kind, const double* cov, double unbiased, int64_t M, double* sd, double* grad);

// The same penalties straight from rows when every row of every group is at hand (one rank, or
// the rows gathered): z [n, M] (any float dtype), labels [n] int64 in [0, K) for K > 1 (cw-cr),
// undefined for K = 1. Each group's rows are centred by their (fp32-rounded) mean s_k before one
// GEMM, so C_k = G̃_k/n_k − δ_k δ_kᵀ with δ_k = μ_k − s_k in fp64: no fp64 uncentred Grams, no
// packing. Backward: dΩ/dz_i = (D_k + D_kᵀ)(z_i − μ_k)/n_k, one batched GEMM (D_k = dΩ/dC_k).
// Returns scale · Σ_k Ω_k as a 0-dim fp64 tensor.
torch::Tensor centredCovariancePenalty(FusedCovKind kind, const torch::Tensor& z, const torch::Tensor& labels,
                                       int64_t classes, double scale);

// vr (K = 1, labels undefined) / cw-vr (labels [n] in [0, K)) from rows z [n, M] (CPU fp32/fp64)
// when every row is at hand: scale · Σ_k (1/n_k) Σ_{rows of k} ‖z − μ_k‖², fp64 throughout
// (RowsPenalties.cpp). 0-dim fp64.
torch::Tensor rowsVariancePenalty(const torch::Tensor& z, const torch::Tensor& labels, int64_t classes, double scale);

// xcov from rows z [n, M] and probabilities [n, C] (CPU) when every row is at hand:
// scale · ½‖(P − p̄)ᵀ(Z − z̄)/n‖_F², fp64 (RowsPenalties.cpp). 0-dim fp64.
torch::Tensor rowsCrossCovariancePenalty(const torch::Tensor& z, const torch::Tensor& probs, double scale);

// rr / cw-rr (method "holder") from rows z [n, M] (CPU fp32/fp64) when every row is at hand:
// scale · Σ_k Σz² / (max column |z|-sum · max row |z|-sum) over the rows of group k, a group's
// term 0 below 1e-30, fp64 (RowsPenalties.cpp); classes = 1 (rr, labels ignored) or K with
// labels [n] in [0, K) (cw-rr). 0-dim fp64.
torch::Tensor rowsHolderRatioPenalty(const torch::Tensor& z, const torch::Tensor& labels, int64_t classes,
                                     double scale);

// Largest eigenvalue of symmetric matrices [..., M, M] → [...] (LargestEigenvalue.cpp): power
// iteration to a residual of 1e-12·λ on CPU fp64, eigh where it does not converge (or elsewhere);
// backward v vᵀ.
torch::Tensor largestEigenvalue(const torch::Tensor& sym);

// scale · Σ_k Σ_i (Q_k,i/n_k − (S_k,i/n_k)²): counts [K], sums [K·M], sqDiags [K·M].
torch::Tensor fusedVariancePenalty(const torch::Tensor& counts, const torch::Tensor& sums,
                                   const torch::Tensor& sqDiags, int64_t width, double scale);

// Σ_w Σ|w| (l1) or Σ_w Σw² (l2) over CPU fp32/fp64 weight tensors as one autograd node
// (WeightNorms.cpp): fp64 accumulation without an fp64 copy of w, the value returned in `out`;
// the backward is one pass per weight in its dtype (sign(w)·g or 2w·g). Returns an undefined
// tensor where it does not apply (no weights, other device/dtype).
torch::Tensor fusedWeightNorms(const std::vector<torch::Tensor>& weights, bool l1, c10::ScalarType out);

}  // namespace repshape::reg::detail
