#pragma once
// repshape/regularizers: Kolchinsky–Tracey pairwise bounds on the mutual information between a
// representation T and its input X / labels Y (SPEC §3, Choi et al. §5), with Gaussian noise σ².
//
//   Ĥ_c(T) = −(1/N) Σ_i ln[(1/N) Σ_j exp(−D_ij / (c σ²))],  D_ij = ‖t_i − t_j‖² ≥ 0, j = i included
//   I(T;X) upper = Ĥ_2, lower = Ĥ_8   (KL and Bhattacharyya pairwise distances)
//   I(T;Y) upper/lower = Ĥ_c(T) − Σ_k p_k Ĥ_c(T | Y = k),  p_k = n_k / N, c = 2 / 8
//
// Distributed by rows: each rank owns its shard's rows as the i index. The j sum needs every row,
// so the [N, M] representation (not the N×N matrix) is gathered with Reducer::gatherRows. D is
// formed in row blocks of at most `blockElements` entries, so memory is O(N·M + blockElements).

#include <repshape/regularizers/Regularizers.h>

#include <cstdint>

namespace repshape::reg {

struct MiBounds {
  double xUpper = 0.0;  // nats; mi_x_lower ≤ mi_x_upper ≤ ln N
  double xLower = 0.0;
  double yUpper = 0.0;  // nats; not ordered with yLower in general
  double yLower = 0.0;
  int64_t rows = 0;     // N over all ranks
  int64_t fp64FallbackClasses = 0;  // Σ over ranks of classes the mixed path redid in fp64
  int64_t fp64FallbackRows = 0;     // rows the mixed path redid in fp64 on their error estimate
  double sigma2 = 0.1;

  // mi_x_upper, mi_x_lower, mi_y_upper, mi_y_lower in nats, then the same with a `_bits` suffix.
  MetricList metrics() const;
};

struct InformationBoundsOptions {
  double sigma2 = 0.1;                  // noise variance σ² (> 0)
  int64_t numClasses = 0;               // 0 = global max label + 1
  int64_t blockElements = int64_t{1} << 22;  // entries of one D block ([rows, N] fp64: 32 MiB)
  // false (default): D from fp32 GEMMs on rows re-centred per class, exponentials in fp32, sums in
  // fp64; rows whose estimated error is over 5e-8 nats are redone in fp64, and a sampled fp64
  // check per class redoes a class whose rows disagree (detail/KernelLogSums.h). true: everything
  // in fp64 (the reference).
  bool fp64 = false;
};

// localRows: [n_local, ...] any floating dtype (flattened to [n_local, M]); localLabels: [n_local]
// int64 in [0, numClasses). Equal to the single-process value on the concatenated rows whatever
// the number of ranks (up to summation order, and per-row fp64 fallbacks of the mixed path).
MiBounds informationBounds(const torch::Tensor& localRows, const torch::Tensor& localLabels,
                           const InformationBoundsOptions& options, Reducer& reducer);

// Convenience form of the signature.
inline MiBounds informationBounds(const torch::Tensor& localRows, const torch::Tensor& localLabels,
                                  int64_t numClasses, double sigma2, Reducer& reducer) {
  InformationBoundsOptions options;
  options.numClasses = numClasses;
  options.sigma2 = sigma2;
  return informationBounds(localRows, localLabels, options, reducer);
}

}  // namespace repshape::reg
