// Kolchinsky–Tracey pairwise MI bounds (SPEC §3), by row blocks, distributed by rows.

#include <repshape/regularizers/InformationBounds.h>

#include "detail/ClusteringCollectives.h"
#include "detail/KernelLogSums.h"

#include <algorithm>
#include <cmath>
#include <utility>
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

  // Distances are translation invariant: centring shrinks the GEMM cancellation error. Rows are
  // sorted by class (stably, so this rank's rows of class k stay one contiguous run).
  const auto order = std::get<1>(allLabels.sort(/*stable=*/true, 0, false));
  detail::ClassSortedRows sorted;
  sorted.rows = (all - all.mean(0, /*keepdim=*/true)).index_select(0, order).contiguous();
  const auto classRows = torch::bincount(allLabels, {}, numClasses).to(torch::kFloat64);  // [K]
  const auto before = torch::bincount(allLabels.narrow(0, 0, offset), {}, numClasses);   // [K]
  const auto own = torch::bincount(labels, {}, numClasses);                              // [K]
  std::vector<std::pair<int64_t, int64_t>> mine(numClasses);
  for (int64_t k = 0, start = 0; k < numClasses; ++k) {
    const auto count = static_cast<int64_t>(classRows[k].item<double>());
    sorted.start.push_back(start);
    sorted.count.push_back(count);
    mine[k] = {start + before[k].item<int64_t>(), own[k].item<int64_t>()};
    start += count;
  }
  detail::KernelLogSumsOptions kernel;
  kernel.sigma2 = options.sigma2;
  kernel.precision = options.fp64 ? detail::KernelPrecision::Fp64 : detail::KernelPrecision::Mixed;
  kernel.blockElements = options.blockElements;
  const auto logSums = detail::kernelLogSums(sorted, mine, kernel);
  // One all-reduce: [estimator][all | class k], then the classes and rows redone in fp64.
  std::vector<double> packed = logSums.sums[0];
  packed.insert(packed.end(), logSums.sums[1].begin(), logSums.sums[1].end());
  packed.push_back(static_cast<double>(logSums.fallbackClasses));
  packed.push_back(static_cast<double>(logSums.fp64Rows));
  const auto reduced = reducer.sum(torch::tensor(packed, torch::kFloat64));
  const auto global = reduced.narrow(0, 0, 2 * (1 + numClasses)).view({2, 1 + numClasses}).contiguous();

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
  bounds.fp64FallbackClasses = static_cast<int64_t>(reduced[-2].item<double>());
  bounds.fp64FallbackRows = static_cast<int64_t>(reduced[-1].item<double>());
  bounds.sigma2 = options.sigma2;
  return bounds;
}

}  // namespace repshape::reg
