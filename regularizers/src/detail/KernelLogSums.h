#pragma once
// Row log-sums of the Gaussian pair kernels behind the Kolchinsky–Tracey MI bounds (SPEC §3):
//
//   ln Σ_j exp(−D_ij / (c σ²))   over all rows j, and over the rows j of i's class,  c ∈ {8, 2}
//
// with D_ij = ‖z_i − z_j‖² (j = i included, D_ii = 0 exactly). These N² exponentials are the whole
// cost of the bounds; the rest is O(N).
//
// Two ways to get them, both on rows sorted by class (a class is one contiguous column range, so
// a row's class sum is a slice of its row instead of a GEMM with a one-hot matrix):
//  - `Fp64`: D from an fp64 GEMM on globally centred rows, exp and sums in fp64 (the reference).
//  - `Mixed`: D from an fp32 GEMM, exp in fp32, row sums accumulated in fp64. The fp32 GEMM loses
//    accuracy where ‖z‖² ≫ D (cancellation in ‖z_i‖² + ‖z_j‖² − 2 z_i·z_j), which is exactly where
//    the pairs that contribute sit: near each other, far from the mean (tight classes of a ReLU
//    layer). So each class's rows i are handled with every row re-centred on that class's global
//    mean: the near pairs are then short vectors and the GEMM has nothing to cancel. Far pairs keep
//    a large relative error but their exponentials are negligible next to S ≥ 1. Two guards send
//    work back to fp64: a per-row error estimate (a row dominated by one near pair, e.g. a
//    duplicate, is redone in fp64), and a sample of rows of every class recomputed in fp64: if
//    one disagrees by more than the model allows, the whole class is redone.

#include <torch/torch.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace repshape::reg::detail {

enum class KernelPrecision { Mixed, Fp64 };

// Rows whose estimated error of ln S (nats) is over kRowTolerance are redone in fp64; a class
// whose sampled row disagrees with fp64 by more than kSampleTolerance is redone in fp64. The
// estimate is within a factor ~2 of the actual worst row error on every test set (e.g. overlapping
// Gaussian classes, M = 128, σ² = 0.1: estimate 1.0e-8, actual ≤ 1.5e-8), so rows stay within
// ~1e-7 nats of fp64. The bounds are means of ln S over rows (I(T;Y) a difference of two), so
// they move by at most ~2e-7 nats even if every row erred the same way, and far less in practice.
constexpr double kRowTolerance = 5e-8;
constexpr double kSampleTolerance = 2e-7;

// Rows sorted by class: class k is rows [start[k], start[k] + count[k]) of `rows`.
struct ClassSortedRows {
  torch::Tensor rows;  // [N, M] fp64, centred on the global mean
  std::vector<int64_t> start, count;  // [K]
};

struct KernelLogSumsResult {
  // Σ over the given rows i of ln S_i, per estimator (0: c = 2, upper; 1: c = 8, lower):
  // [estimator][0] over all j, [estimator][1 + k] over the j of class k for the rows i of class k.
  std::vector<std::vector<double>> sums;
  int64_t fallbackClasses = 0;  // classes recomputed in fp64 after the sampled check (Mixed only)
  int64_t fp64Rows = 0;         // rows redone in fp64 on their error estimate (Mixed only)
};

struct KernelLogSumsOptions {
  double sigma2 = 0.1;
  KernelPrecision precision = KernelPrecision::Mixed;
  int64_t blockElements = int64_t{1} << 22;  // bounds the [rows, N] fp64 block of the Fp64 path
  double rowTolerance = kRowTolerance;       // Mixed: per-row estimate → fp64 row
  double sampleTolerance = kSampleTolerance;  // Mixed: sampled row vs fp64 → fp64 class
};

// The rows i this rank owns in class k are `sorted.rows[mine[k].first, + mine[k].second)`: a
// contiguous run, since a stable sort by class keeps each rank's contiguous shard contiguous.
// The Mixed path works in cache-sized [256, 2048] fp32 tiles.
KernelLogSumsResult kernelLogSums(const ClassSortedRows& sorted,
                                  const std::vector<std::pair<int64_t, int64_t>>& mine,
                                  const KernelLogSumsOptions& options);

}  // namespace repshape::reg::detail
