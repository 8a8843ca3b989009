// Kolchinsky–Tracey pairwise MI bounds (SPEC §3), by row blocks, distributed by rows.

#include <repshape/regularizers/InformationBounds.h>

#include "detail/ClusteringCollectives.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace repshape::reg {

MetricList MiBounds::metrics() const {
  const double bits = 1.0 / std::log(2.0);
  return {{"mi_x_upper", xUpper},           {"mi_x_lower", xLower},
          {"mi_y_upper", yUpper},           {"mi_y_lower", yLower},
          {"mi_x_upper_bits", xUpper * bits}, {"mi_x_lower_bits", xLower * bits},
          {"mi_y_upper_bits", yUpper * bits}, {"mi_y_lower_bits", yLower * bits}};
}

MiBounds informationBounds(const torch::Tensor& localRows, const torch::Tensor& localLabels,
                           const InformationBoundsOptions& options, Reducer& reducer) {
  TORCH_CHECK(options.sigma2 > 0.0 && std::isfinite(options.sigma2), "sigma2 must be > 0, got ",
              options.sigma2);
  TORCH_CHECK(options.blockElements >= 1, "blockElements must be >= 1, got ",
              options.blockElements);
  TORCH_CHECK(localRows.dim() >= 1, "MI rows must be [n, ...], got ", localRows.sizes());
  const auto flat = localRows.dim() == 1 ? localRows.unsqueeze(1) : localRows.flatten(1);
  const auto x = flat.to(torch::kCPU, torch::kFloat64);  // [n, M]
  const auto labels = localLabels.reshape({-1}).to(torch::kCPU, torch::kInt64);
  const int64_t n = x.size(0);
  TORCH_CHECK(labels.numel() == n, "informationBounds: ", n, " rows but ", labels.numel(),
              " labels");
  TORCH_CHECK(torch::isfinite(x).all().item<bool>(), "non-finite value in MI bound input");

  // The j sum runs over every rank's rows: gather [N, M] (never N×N). Labels travel as fp64.
  const int rank = detail::reducerRank(reducer);
  auto rankRows = torch::zeros({reducer.worldSize()}, torch::kFloat64);
  rankRows[rank] = static_cast<double>(n);
  rankRows = reducer.sum(rankRows);
  const auto offset = static_cast<int64_t>(rankRows.narrow(0, 0, rank).sum().item<double>());
  auto all = reducer.gatherRows(x).to(torch::kFloat64);  // [N, M]
  const auto allLabels =
      reducer.gatherRows(labels.to(torch::kFloat64).unsqueeze(1)).squeeze(1).to(torch::kInt64);
  const int64_t total = all.size(0);
  TORCH_CHECK(total > 0, "MI bounds need at least one row over all ranks");
  TORCH_CHECK(allLabels.min().item<int64_t>() >= 0, "labels must be non-negative, got ",
              allLabels.min().item<int64_t>());
  int64_t numClasses = options.numClasses;
  const int64_t maxLabel = allLabels.max().item<int64_t>();
  if (numClasses <= 0) numClasses = maxLabel + 1;
  TORCH_CHECK(maxLabel < numClasses, "label ", maxLabel, " >= numClasses ", numClasses);

  // Distances are translation invariant: centring shrinks the GEMM cancellation error.
  const auto mean = all.mean(0, /*keepdim=*/true);
  all = (all - mean).contiguous();
  const auto mine = all.narrow(0, offset, n);  // this rank's rows, the i index
  const auto allNorm2 = (all * all).sum(1);    // [N]
  const auto oneHot = torch::zeros({total, numClasses}, torch::kFloat64)
                          .scatter_(1, allLabels.unsqueeze(1), 1.0);  // [N, K]
  const auto classRows = oneHot.sum(0);                                // [K] n_k

  // Per estimator c ∈ {2 (KL, upper), 8 (Bhattacharyya, lower)}: Σ_i ln Σ_j e_ij over this rank's
  // i, and the same per class with j restricted to the class of i.
  // Σ_j includes j = i with D_ii = 0 and every D_ij ≥ 0, so each row's max exponent is exactly 0:
  // the sums lie in [1, N] and log-sum-exp needs no shift.
  auto sums = torch::zeros({2, 1 + numClasses}, torch::kFloat64);  // [estimator, all | class k]
  const int64_t block = std::max<int64_t>(1, options.blockElements / total);
  for (int64_t start = 0; start < n; start += block) {
    const int64_t rows = std::min(block, n - start);
    const auto xi = mine.narrow(0, start, rows);                                  // [b, M]
    auto d = (allNorm2.narrow(0, offset + start, rows).unsqueeze(1) + allNorm2.unsqueeze(0))
                 .sub_(xi.mm(all.t()), 2.0)
                 .clamp_min_(0.0);  // [b, N]
    d.diagonal(offset + start).zero_();  // D_ii = 0 exactly
    const auto blockLabels = labels.narrow(0, start, rows).unsqueeze(1);  // [b, 1]
    // e_ij = exp(−D/(8σ²)) for the lower bound; exp(−D/(2σ²)) = e⁴ for the upper.
    auto lower = d.mul_(-1.0 / (8.0 * options.sigma2)).exp_();  // [b, N], reuses d
    for (int estimator = 1; estimator >= 0; --estimator) {   // 1: lower (c = 8), 0: upper (c = 2)
      if (estimator == 0) {
        lower.mul_(lower).mul_(lower);  // e² then e⁴, in place
      }
      sums[estimator][0] += lower.sum(1).log().sum();
      const auto perClass = lower.mm(oneHot).gather(1, blockLabels).log().squeeze(1);  // [b]
      sums[estimator].narrow(0, 1, numClasses).index_add_(0, blockLabels.squeeze(1), perClass);
    }
  }
  const auto global = reducer.sum(sums.flatten()).view({2, 1 + numClasses}).contiguous();

  // Ĥ = −(1/N) Σ_i [ln Σ_j e_ij − ln N] = ln N − (1/N) Σ_i ln Σ_j e_ij, and per class with n_k.
  const auto counts = classRows.contiguous();
  const double* nk = counts.data_ptr<double>();
  double estimate[2][2];  // [estimator][I(T;X), I(T;Y)]
  for (int e = 0; e < 2; ++e) {
    const double* g = global[e].data_ptr<double>();
    const double hAll = std::log(static_cast<double>(total)) - g[0] / static_cast<double>(total);
    double conditional = 0.0;
    for (int64_t k = 0; k < numClasses; ++k) {
      if (nk[k] == 0.0) continue;
      const double hClass = std::log(nk[k]) - g[1 + k] / nk[k];
      conditional += nk[k] / static_cast<double>(total) * hClass;
    }
    estimate[e][0] = hAll;
    estimate[e][1] = hAll - conditional;
  }
  MiBounds bounds;
  bounds.xUpper = estimate[0][0];
  bounds.yUpper = estimate[0][1];
  bounds.xLower = estimate[1][0];
  bounds.yLower = estimate[1][1];
  bounds.rows = total;
  bounds.sigma2 = options.sigma2;
  return bounds;
}

}  // namespace repshape::reg
