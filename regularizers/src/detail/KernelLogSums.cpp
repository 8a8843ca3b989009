// Row log-sums of the MI bounds' pair kernels: fp64 reference and the fp32-GEMM path with
// per-class re-centring and a sampled fp64 check (see KernelLogSums.h).

#include "KernelLogSums.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <tuple>

namespace repshape::reg::detail {
namespace {

// Columns of the per-row result: ln S over all j and over i's class, for c = 2 then c = 8.
enum Column { kUpperAll, kUpperClass, kLowerAll, kLowerClass, kColumns };

constexpr float kFarAway = 1e30f;  // a D whose exponential is exactly 0
constexpr int64_t kTileRows = 256, kTileColumns = 2048;  // fp32 tiles of 2 MiB: stay in cache
constexpr int64_t kSampledRows = 8;                       // per class, for the fp64 check
// Error model of one fp32 D_ij: an independent error of about one fp32 ulp of ‖x̃_i‖² + ‖x̃_j‖²
// (the GEMM's partial sums are bounded by it). The one error every j of row i shares, the fp32
// rounding of ‖x̃_i‖², is removed exactly in fp64 (rowLogSumsMixed), so the rest averages out.
constexpr double kDistanceError = 1.0 / (1 << 23);

// [r, kColumns] fp64: ln S of the rows at `positions` (int64 [r], class k), all in fp64.
torch::Tensor rowLogSumsFp64(const ClassSortedRows& sorted, const torch::Tensor& norms, int64_t k,
                             const torch::Tensor& positions, double sigma2, int64_t blockElements) {
  const auto& rows = sorted.rows;
  const int64_t total = rows.size(0), count = positions.size(0);
  auto out = torch::empty({count, kColumns}, torch::kFloat64);
  const int64_t block = std::max<int64_t>(1, blockElements / total);
  for (int64_t start = 0; start < count; start += block) {
    const int64_t b = std::min(block, count - start);
    const auto at = positions.narrow(0, start, b);
    auto d = (norms.index_select(0, at).unsqueeze(1) + norms.unsqueeze(0))
                 .sub_(rows.index_select(0, at).mm(rows.t()), 2.0)
                 .clamp_min_(0.0);                    // [b, N]
    d.scatter_(1, at.unsqueeze(1), 0.0);              // D_ii = 0 exactly
    auto e = d.mul_(-1.0 / (8.0 * sigma2)).exp_();  // lower (c = 8), reuses d
    auto o = out.narrow(0, start, b);
    o.select(1, kLowerAll).copy_(e.sum(1).log_());
    o.select(1, kLowerClass).copy_(e.narrow(1, sorted.start[k], sorted.count[k]).sum(1).log_());
    e.square_().square_();  // e⁴ = exp(−D/(2σ²)): upper (c = 2)
    o.select(1, kUpperAll).copy_(e.sum(1).log_());
    o.select(1, kUpperClass).copy_(e.narrow(1, sorted.start[k], sorted.count[k]).sum(1).log_());
  }
  return out;
}

// The same from fp32 GEMMs on rows re-centred on class k's mean, for the run [begin, begin +
// count). Augmented operands make the GEMM return D itself:
//   [x̃_i, ‖x̃_i‖², 1] · [−2x̃_j, 1, ‖x̃_j‖²]ᵀ = ‖x̃_i‖² + ‖x̃_j‖² − 2 x̃_i·x̃_j.
// Also returns, per row and column, the estimated error of ln S under the kDistanceError model:
// independent errors δ_ij of D_ij move ln S_i by (1/(cσ²)) sqrt(Σ_j e_ij² δ_ij²) / S_i. Many
// comparable terms average out; one dominant near pair (a duplicate row) does not, and is caught.
std::pair<torch::Tensor, torch::Tensor> rowLogSumsMixed(const ClassSortedRows& sorted, int64_t k,
                                                        int64_t begin, int64_t count,
                                                        double sigma2) {
  const auto& rows = sorted.rows;
  const int64_t total = rows.size(0);
  const auto centre = rows.narrow(0, sorted.start[k], sorted.count[k]).mean(0, true);  // [1, M]
  const auto centred = (rows - centre).to(torch::kFloat32);                           // [N, M]
  // Norms of the rounded fp32 rows, so that D_ii of the GEMM is ~0 (and exactly 0 after the fix).
  const auto norms64 = centred.to(torch::kFloat64).square().sum(1, true);  // [N, 1]
  const auto norms = norms64.to(torch::kFloat32);
  const auto ones = torch::ones({total, 1}, torch::kFloat32);
  const auto right = torch::cat({centred * -2.0, ones, norms}, 1);  // [N, M + 2]; ×(−2) is exact
  const auto left = torch::cat({centred.narrow(0, begin, count), norms.narrow(0, begin, count),
                                ones.narrow(0, begin, count)},
                               1);                                   // [count, M + 2]
  const auto moments = torch::cat({ones, norms, norms * norms}, 1);  // [N, 3]: Σ_j e²·(1, n_j, n_j²)
  const int64_t classBegin = sorted.start[k], classEnd = classBegin + sorted.count[k];
  auto out = torch::empty({count, kColumns}, torch::kFloat64);
  auto error = torch::empty({count, kColumns}, torch::kFloat64);
  const int64_t blocks = (count + kTileRows - 1) / kTileRows;
  // Row blocks are independent: a thread takes whole blocks with its own tiles (ATen ops inside
  // a parallel region run single-threaded), writing disjoint rows of `out` and `error`.
  at::parallel_for(0, blocks, 1, [&](int64_t blockBegin, int64_t blockEnd) {
    auto tile = torch::empty({kTileRows, kTileColumns}, torch::kFloat32);
    auto e = torch::empty_like(tile), e2 = torch::empty_like(tile);
    for (int64_t start = blockBegin * kTileRows; start < std::min(count, blockEnd * kTileRows);
         start += kTileRows) {
      const int64_t b = std::min(kTileRows, count - start);
      const int64_t first = begin + start;
      auto sums = torch::zeros({b, kColumns}, torch::kFloat64);   // S, accumulated in fp64
      auto second = torch::zeros({kColumns, b, 3}, torch::kFloat64);  // Σ_j e²·(1, n_j, n_j²)
      const auto a = left.narrow(0, start, b);
      for (int64_t j0 = 0; j0 < total; j0 += kTileColumns) {
        const int64_t width = std::min(kTileColumns, total - j0);
        auto d = tile.narrow(0, 0, b).narrow(1, 0, width);
        at::mm_out(d, a, right.narrow(0, j0, width).t());  // [b, width] = D
        // j = i is left out here (exp → 0) and added exactly below.
        if (first - j0 > -b && first - j0 < width) d.diagonal(first - j0).fill_(kFarAway);
        const int64_t lo = std::max(j0, classBegin) - j0, hi = std::min(j0 + width, classEnd) - j0;
        const auto m = moments.narrow(0, j0, width);
        auto x = e.narrow(0, 0, b).narrow(1, 0, width);
        auto x2 = e2.narrow(0, 0, b).narrow(1, 0, width);
        for (const auto& [c, all, cls] : {std::tuple{8.0, kLowerAll, kLowerClass},
                                           std::tuple{2.0, kUpperAll, kUpperClass}}) {
          // Unclamped: a D rounded below zero is within the error model (e^{+tiny}), and pairs far
          // enough to underflow contribute nothing next to S ≥ 1.
          at::mul_out(x, d, at::Scalar(-1.0 / (c * sigma2))).exp_();
          at::mul_out(x2, x, x);
          sums.select(1, all).add_(x.sum(1, false, torch::kFloat64));
          second[all].add_(x2.mm(m));
          if (hi > lo) {
            sums.select(1, cls).add_(x.narrow(1, lo, hi - lo).sum(1, false, torch::kFloat64));
            second[cls].add_(x2.narrow(1, lo, hi - lo).mm(m.narrow(0, lo, hi - lo)));
          }
        }
      }
      // The GEMM used ‖x̃_i‖² rounded to fp32, an error shared by every j of row i (so it would not
      // average out): D_ij = D32_ij + (n_i − n32_i) exactly, a factor exp(−(n_i − n32_i)/(cσ²)) on
      // every j ≠ i. Then S_i = 1 (j = i) + that factor · Σ_{j≠i} e32_ij.
      const auto ni = norms64.narrow(0, first, b).squeeze(1);  // [b]
      const auto shift = ni - norms.narrow(0, first, b).squeeze(1).to(torch::kFloat64);  // [b]
      for (const auto& [c, all, cls] : {std::tuple{8.0, kLowerAll, kLowerClass},
                                         std::tuple{2.0, kUpperAll, kUpperClass}}) {
        for (int column : {all, cls}) {
          const auto rest = sums.select(1, column) * torch::exp(shift * (-1.0 / (c * sigma2)));
          // Σ_{j≠i} e²(n_i + n_j)² = n_i² Σe² + 2 n_i Σe² n_j + Σe² n_j².
          const auto q = second[column];  // [b, 3]
          const auto spread =
              (ni * ni * q.select(1, 0) + 2.0 * ni * q.select(1, 1) + q.select(1, 2)).clamp_min(0.0).sqrt();
          error.narrow(0, start, b).select(1, column).copy_(spread * (kDistanceError / (c * sigma2)) /
                                                            (rest + 1.0));
          out.narrow(0, start, b).select(1, column).copy_((rest + 1.0).log_());
        }
      }
    }
  });
  return {out, error};
}

}  // namespace

KernelLogSumsResult kernelLogSums(const ClassSortedRows& sorted,
                                  const std::vector<std::pair<int64_t, int64_t>>& mine,
                                  const KernelLogSumsOptions& options) {
  const double sigma2 = options.sigma2;
  const int64_t blockElements = options.blockElements;
  const int64_t numClasses = static_cast<int64_t>(sorted.count.size());
  KernelLogSumsResult result;
  result.sums.assign(2, std::vector<double>(1 + numClasses, 0.0));
  const auto norms = sorted.rows.square().sum(1);  // [N] fp64 (Fp64 path)
  for (int64_t k = 0; k < numClasses; ++k) {
    const auto [begin, count] = mine[k];
    if (count == 0) continue;
    const auto run = torch::arange(begin, begin + count, torch::kInt64);
    torch::Tensor logs;  // [count, kColumns]
    if (options.precision == KernelPrecision::Mixed) {
      torch::Tensor error;
      std::tie(logs, error) = rowLogSumsMixed(sorted, k, begin, count, sigma2);
      // Rows whose estimated error is over the tolerance are redone in fp64.
      const auto redo = error.amax(1).gt(options.rowTolerance).nonzero().squeeze(1);  // [r] rows
      if (redo.numel() > 0) {
        logs.index_copy_(0, redo, rowLogSumsFp64(sorted, norms, k, run.index_select(0, redo), sigma2,
                                                 blockElements));
        result.fp64Rows += redo.numel();
      }
      // Then the error model itself is checked on rows spread over the run: one row off by more
      // than the model allows sends the whole class to fp64.
      const int64_t samples = std::min(kSampledRows, count);
      const auto sampled = torch::arange(samples, torch::kInt64).mul_(count).div_(samples, "floor");
      const auto exact = rowLogSumsFp64(sorted, norms, k, run.index_select(0, sampled), sigma2,
                                        blockElements);
      const double worst = (exact - logs.index_select(0, sampled)).abs().max().item<double>();
      if (!(worst <= options.sampleTolerance)) {
        logs = torch::Tensor();
        ++result.fallbackClasses;
      }
    }
    if (!logs.defined()) logs = rowLogSumsFp64(sorted, norms, k, run, sigma2, blockElements);
    const auto total = logs.sum(0).contiguous();  // [kColumns]
    const double* t = total.data_ptr<double>();
    result.sums[0][0] += t[kUpperAll];
    result.sums[0][1 + k] += t[kUpperClass];
    result.sums[1][0] += t[kLowerAll];
    result.sums[1][1 + k] += t[kLowerClass];
  }
  return result;
}

}  // namespace repshape::reg::detail
