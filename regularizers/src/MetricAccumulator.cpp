// Representation metrics (SPEC §3) from sums over evaluation batches. Every metric is a function
// of counts, Σz, Σzzᵀ and (ReLU layers) Gram matrices of the activity mask, so one all-reduce in
// finish() makes W ranks equal one process on the concatenated evaluation set.
#include <repshape/regularizers/Regularizers.h>

#include <algorithm>
#include <cstdio>

namespace repshape::reg {

using torch::Tensor;

namespace {

// Variances and eigenvalues at or below this count as zero (SPEC §3: mapc).
constexpr double kTinyVariance = 1e-12;

std::string formatFraction(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

// Smallest number of leading entries of `descending` (non-negative) whose sum reaches x·total.
MetricValue unitsToReach(const Tensor& descending, double x) {
  const double total = descending.sum().item<double>();
  if (total <= 0) return std::nullopt;
  const Tensor cum = descending.cumsum(0);
  // Relative slack so that x = 1 is reached despite rounding in the cumulative sum.
  const int64_t below = cum.lt(x * total * (1.0 - 1e-12)).sum().item<int64_t>();
  return static_cast<double>(std::min(below + 1, descending.size(0)));
}

MetricValue meanOver(const Tensor& values, const Tensor& mask) {
  const double count = mask.sum().item<double>();
  if (count == 0) return std::nullopt;
  return (values * mask).sum().item<double>() / count;
}

}  // namespace

// Packed fp64 sums; offsets in units of doubles.
struct MetricAccumulator::Sums {
  int64_t width = 0;
  bool relu = false;
  Tensor buffer;  // [size], allocated at the first add() on the activations' device
  // Scalars: count, Σ|z|, Σ z·[z>0], #[z>0], #[z==0]; then Σz [M], #[z≠0] per unit [M], Σzzᵀ [M, M],
  // and for ReLU layers the activity-mask Grams AᵀA, (Z∘A)ᵀA, ((Z∘A)²)ᵀA, (Z∘A)ᵀ(Z∘A), each [M, M].
  static constexpr int64_t kScalars = 5;
  int64_t size() const { return kScalars + 2 * width + (relu ? 5 : 1) * width * width; }
  Tensor part(const Tensor& b, int64_t offset, int64_t numel) const { return b.narrow(0, offset, numel); }
  Tensor vec(const Tensor& b, int i) const { return part(b, kScalars + i * width, width); }
  Tensor mat(const Tensor& b, int i) const {
    return part(b, kScalars + 2 * width + i * width * width, width * width).view({width, width});
  }
};

MetricAccumulator::MetricAccumulator(int64_t width, MetricOptions options)
    : sums_(std::make_shared<Sums>()), options_(std::move(options)) {
  TORCH_CHECK(width > 0, "metrics: layer width ", width, " must be positive");
  sums_->width = width;
  sums_->relu = options_.reluLayer;
}

void MetricAccumulator::add(const torch::Tensor& activations) {
  torch::NoGradGuard noGrad;
  Sums& s = *sums_;
  const Tensor z = activations.detach().flatten(1).to(torch::kFloat64);  // [n, M]
  TORCH_CHECK(z.size(1) == s.width, "metrics: activations of width ", z.size(1), ", accumulator width ", s.width);
  if (!s.buffer.defined()) s.buffer = torch::zeros({s.size()}, z.options());
  Tensor& b = s.buffer;
  const Tensor positive = z.gt(0).to(torch::kFloat64);
  const Tensor nonzero = z.ne(0).to(torch::kFloat64);
  b.narrow(0, 0, Sums::kScalars) +=
      torch::stack({torch::scalar_tensor(static_cast<double>(z.size(0)), z.options()), z.abs().sum(),
                    (z * positive).sum(), positive.sum(), static_cast<double>(z.numel()) - nonzero.sum()});
  s.vec(b, 0).add_(z.sum(0));
  s.vec(b, 1).add_(nonzero.sum(0));
  s.mat(b, 0).addmm_(z.t(), z);
  if (s.relu) {
    const Tensor active = z * positive;  // Z∘A
    s.mat(b, 1).addmm_(positive.t(), positive);
    s.mat(b, 2).addmm_(active.t(), positive);
    s.mat(b, 3).addmm_(active.square().t(), positive);
    s.mat(b, 4).addmm_(active.t(), active);
  }
}

MetricList MetricAccumulator::finish(Reducer& reducer) const {
  torch::NoGradGuard noGrad;
  const Sums& s = *sums_;
  const Tensor local = s.buffer.defined() ? s.buffer : torch::zeros({s.size()}, torch::kFloat64);
  const Tensor b = reducer.sum(local).to(torch::kCPU);
  const int64_t M = s.width;
  const double n = b[0].item<double>();
  const double absSum = b[1].item<double>(), positiveSum = b[2].item<double>(), positiveCount = b[3].item<double>();
  const double zeroCount = b[4].item<double>();

  std::vector<std::string> names = {"mapc", "cvr"};
  for (int d : options_.tdvDims) names.push_back("tdv@" + std::to_string(d));
  for (double x : options_.udFractions) names.push_back("ud@" + formatFraction(x));
  for (double x : options_.udFractions) names.push_back("ud_eig@" + formatFraction(x));
  for (const char* name : {"amplitude", "covariance", "correlation", "sparsity", "dead_units", "stable_rank"})
    names.emplace_back(name);
  MetricList out;
  // Non-finite activations (a diverging model) have no meaningful spectrum: every metric is
  // unavailable rather than an eigen-solver failure.
  if (n == 0 || !torch::isfinite(b).all().item<bool>()) {
    for (const auto& name : names) out.emplace_back(name, std::nullopt);
    return out;
  }

  const Tensor mean = s.vec(b, 0) / n;
  const Tensor cov = s.mat(b, 0) / n - torch::outer(mean, mean);  // biased C [M, M]
  const Tensor var = cov.diagonal();
  const double trace = var.sum().item<double>();
  const Tensor valid = var.gt(kTinyVariance);
  const Tensor validPair = valid.unsqueeze(1).logical_and(valid.unsqueeze(0));
  const Tensor offDiagonal = torch::ones({M, M}, torch::kBool).logical_xor(torch::eye(M, torch::kBool));
  const Tensor rho = cov / torch::outer(var, var).clamp_min(kTinyVariance * kTinyVariance).sqrt();

  // mapc: Σ_{i<j} |ρ_ij| over valid pairs, divided by the number of all pairs (SPEC §3).
  const Tensor upper = torch::ones({M, M}, torch::kBool).triu(1).logical_and(validPair);
  if (upper.any().item<bool>()) {
    out.emplace_back("mapc", (rho.abs() * upper).sum().item<double>() / (static_cast<double>(M * (M - 1)) / 2.0));
  } else {
    out.emplace_back("mapc", std::nullopt);
  }
  out.emplace_back("cvr", trace > 0 ? MetricValue(cov.abs().sum().item<double>() / trace) : std::nullopt);
  const Tensor varDescending = std::get<0>(var.clamp_min(0).sort(0, /*descending=*/true));
  for (int d : options_.tdvDims) {
    const int64_t top = std::min<int64_t>(std::max(d, 0), M);
    out.emplace_back("tdv@" + std::to_string(d),
                     trace > 0 ? MetricValue(varDescending.narrow(0, 0, top).sum().item<double>() / trace)
                               : std::nullopt);
  }
  for (double x : options_.udFractions) out.emplace_back("ud@" + formatFraction(x), unitsToReach(varDescending, x));
  const Tensor eig = torch::linalg_eigvalsh(cov).clamp_min(0).flip(0);  // descending
  for (double x : options_.udFractions) out.emplace_back("ud_eig@" + formatFraction(x), unitsToReach(eig, x));

  if (s.relu) {
    // Over the samples where a unit (pair) is active: Choi §2, SPEC §3.
    out.emplace_back("amplitude", positiveCount > 0 ? MetricValue(positiveSum / positiveCount) : std::nullopt);
    const Tensor count = s.mat(b, 1);                          // n_ij
    const Tensor pairMean = s.mat(b, 2) / count.clamp_min(1);  // mean of z_i over joint-active samples
    const Tensor pairSquare = s.mat(b, 3) / count.clamp_min(1);
    const Tensor pairCov = s.mat(b, 4) / count.clamp_min(1) - pairMean * pairMean.t();
    const Tensor pairVar = pairSquare - pairMean.square();     // var of z_i over pair (i, j)
    const Tensor seen = count.gt(0).logical_and(offDiagonal);
    out.emplace_back("covariance", meanOver(pairCov, seen.to(torch::kFloat64)));
    const Tensor varOk = pairVar.gt(kTinyVariance).logical_and(pairVar.t().gt(kTinyVariance));
    const Tensor pairRho = pairCov / (pairVar * pairVar.t()).clamp_min(kTinyVariance * kTinyVariance).sqrt();
    out.emplace_back("correlation", meanOver(pairRho, seen.logical_and(varOk).to(torch::kFloat64)));
  } else {
    out.emplace_back("amplitude", absSum / (n * static_cast<double>(M)));
    out.emplace_back("covariance", meanOver(cov, offDiagonal.to(torch::kFloat64)));
    out.emplace_back("correlation", meanOver(rho, offDiagonal.logical_and(validPair).to(torch::kFloat64)));
  }
  out.emplace_back("sparsity", zeroCount / (n * static_cast<double>(M)));
  out.emplace_back("dead_units", s.vec(b, 1).eq(0).sum().item<double>() / static_cast<double>(M));
  const double top = eig[0].item<double>();
  out.emplace_back("stable_rank",
                   top > 0 ? MetricValue(cov.square().sum().item<double>() / (top * top)) : std::nullopt);
  return out;
}

}  // namespace repshape::reg
