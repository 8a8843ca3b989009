// KMeans (greedy k-means++ seeding + Lloyd) over rows sharded across ranks, and AMI/NMI scoring.
// Labels are bit-identical for any number of ranks; see detail/ClusteringCollectives.h for why the
// sums are exact and assign() for how near-ties are settled.

#include <repshape/regularizers/Clustering.h>

#include "detail/ClusteringCollectives.h"
#include "detail/ClusteringScores.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

namespace repshape::reg {

MiNormalization parseMiNormalization(const std::string& name) {
  if (name == "arithmetic") return MiNormalization::Arithmetic;
  if (name == "max") return MiNormalization::Max;
  if (name == "geometric") return MiNormalization::Geometric;
  if (name == "min") return MiNormalization::Min;
  throw std::invalid_argument("normalization '" + name +
                              "' is not one of arithmetic, max, geometric, min");
}

const char* miNormalizationName(MiNormalization normalization) {
  switch (normalization) {
    case MiNormalization::Arithmetic: return "arithmetic";
    case MiNormalization::Max: return "max";
    case MiNormalization::Geometric: return "geometric";
    case MiNormalization::Min: return "min";
  }
  return "arithmetic";
}

namespace {

using detail::kLimbCount;

// This rank's rows in the frame shared by every rank.
struct Shard {
  torch::Tensor x;           // [n, M] fp64, centred on the exact global mean (distances unchanged)
  torch::Tensor mean;        // [M] that global mean
  torch::Tensor norm2;       // [n] ‖x_i‖², for GEMM distances only
  torch::Tensor limbs;       // [kLimbCount, n, M] exact integer limbs of x
  double limbScale = 0.0;
  int64_t rows = 0;          // n on this rank
  int64_t globalRows = 0;    // N
  int rank = 0;
  std::vector<double> rankRows;  // [W] rows of each rank, rank order
};

Shard makeShard(const torch::Tensor& localRows, Reducer& reducer) {
  TORCH_CHECK(localRows.dim() >= 1, "clustering rows must be [n, ...], got ", localRows.sizes());
  Shard s;
  const auto flat = localRows.dim() == 1 ? localRows.unsqueeze(1) : localRows.flatten(1);
  const auto x = flat.to(torch::kCPU, torch::kFloat64);  // [n, M]
  s.rows = x.size(0);
  s.rank = detail::reducerRank(reducer);
  const int world = reducer.worldSize();
  auto counts = torch::zeros({world}, torch::kFloat64);
  counts[s.rank] = static_cast<double>(s.rows);
  counts = reducer.sum(counts).contiguous();
  s.rankRows.assign(counts.data_ptr<double>(), counts.data_ptr<double>() + world);
  for (double c : s.rankRows) s.globalRows += static_cast<int64_t>(c);
  TORCH_CHECK(s.globalRows > 0, "clustering needs at least one row over all ranks");
  s.mean = detail::exactColumnSums(x, reducer) / static_cast<double>(s.globalRows);
  s.x = (x - s.mean).contiguous();
  s.norm2 = (s.x * s.x).sum(1);
  s.limbScale = detail::globalLimbScale(s.x, reducer);
  // Filled in chunks of rows: splitting all rows at once would need ~3× the limbs' memory.
  const int64_t m = s.x.size(1);
  s.limbs = torch::empty({kLimbCount, s.rows, m}, torch::kFloat64);
  for (int64_t start = 0; start < s.rows; start += 2048) {
    const int64_t len = std::min<int64_t>(2048, s.rows - start);
    s.limbs.narrow(1, start, len).copy_(detail::splitLimbs(s.x.narrow(0, start, len), s.limbScale));
  }
  return s;
}

// Rows drawn with probability ∝ weights (uniform when `weights` is undefined), one per draw u ∈
// [0, 1). Weights are quantised to integers against their global max so prefix sums are exact and
// the same for any split: a row whose weight is below 2^-bits of the max is never drawn. The owner
// of each drawn row writes it into a zero buffer and one sum hands it to every rank ([T, M]).
torch::Tensor drawRows(const Shard& s, const torch::Tensor& weights,
                       const std::vector<double>& draws, Reducer& reducer) {
  const int world = static_cast<int>(s.rankRows.size());
  torch::Tensor cumulative;  // [n] inclusive prefix of integer weights on this rank
  std::vector<double> totals = s.rankRows;
  if (weights.defined()) {
    const double scale = detail::globalLimbScale(weights, reducer);
    if (scale > 0.0) {
      // N·2^bits < 2^52 keeps every prefix and the total exact.
      const int rowBits = static_cast<int>(std::ceil(std::log2(s.globalRows + 1.0)));
      const int bits = std::min(30, 52 - rowBits);
      cumulative = torch::round(weights * (std::ldexp(1.0, bits) / scale)).cumsum(0);
      auto mine = torch::zeros({world}, torch::kFloat64);
      mine[s.rank] = s.rows > 0 ? cumulative[s.rows - 1].item<double>() : 0.0;
      mine = reducer.sum(mine).contiguous();
      totals.assign(mine.data_ptr<double>(), mine.data_ptr<double>() + world);
    }
  }
  double total = 0.0;
  for (double t : totals) total += t;
  if (!cumulative.defined() || total == 0.0) {  // uniform (also when every weight is 0)
    cumulative = torch::arange(1, s.rows + 1, torch::kFloat64);
    totals = s.rankRows;
    total = static_cast<double>(s.globalRows);
  }
  const int64_t m = s.x.size(1);
  auto buffer = torch::zeros({static_cast<int64_t>(draws.size()), m}, torch::kFloat64);
  const double* cum = cumulative.data_ptr<double>();
  for (size_t t = 0; t < draws.size(); ++t) {
    const double target = std::min(std::floor(draws[t] * total), total - 1.0);
    double before = 0.0;
    int owner = 0;
    while (owner < world - 1 && before + totals[owner] <= target) before += totals[owner++];
    if (owner == s.rank) {
      // First local row whose inclusive prefix exceeds the residual target.
      const int64_t local = std::upper_bound(cum, cum + s.rows, target - before) - cum;
      TORCH_CHECK(local < s.rows, "draw ", target, " beyond rank ", s.rank, "'s weights");
      buffer[static_cast<int64_t>(t)] = s.x[local];
    }
  }
  return reducer.sum(buffer);  // x + 0 + … + 0 is exact
}

// Greedy k-means++ (scikit-learn's _kmeans_plusplus): first centre uniform, then per centre
// 2 + ⌊ln k⌋ candidates drawn ∝ D², keeping the one whose potential Σ min(D², d²) is lowest.
torch::Tensor seedPlusPlus(const Shard& s, int64_t k, detail::SeededUniform& rng,
                           Reducer& reducer) {
  const int64_t m = s.x.size(1);
  const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k)));
  auto centroids = torch::empty({k, m}, torch::kFloat64);  // [k, M]
  centroids[0] = drawRows(s, {}, {rng.next()}, reducer)[0];
  auto closest = detail::rowSquaredDistances(s.x, centroids[0].contiguous().data_ptr<double>());
  for (int64_t c = 1; c < k; ++c) {
    std::vector<double> draws(trials);
    for (double& u : draws) u = rng.next();
    const auto candidates = drawRows(s, closest, draws, reducer).contiguous();  // [T, M]
    std::vector<torch::Tensor> columns;
    for (int t = 0; t < trials; ++t) {
      columns.push_back(torch::minimum(
          closest, detail::rowSquaredDistances(s.x, candidates[t].data_ptr<double>())));
    }
    const auto distances = torch::stack(columns, 1);                // [n, T]
    const auto potentials = detail::exactColumnSums(distances, reducer).contiguous();  // [T]
    const double* pot = potentials.data_ptr<double>();
    const int best = static_cast<int>(std::min_element(pot, pot + trials) - pot);  // lowest index
    closest = distances.select(1, best).contiguous();
    centroids[c] = candidates[best];
  }
  return centroids;
}

// Nearest centroid of every row, lowest index on ties. GEMM distances decide where the best and
// second best differ by more than 8× the GEMM error bound (M+8)·ε·(‖x‖+max‖c‖)²; the other rows are
// recomputed in a fixed order, so the labels are the argmin of fixed-order distances for any split.
torch::Tensor assign(const Shard& s, const torch::Tensor& centroids) {
  const int64_t k = centroids.size(0);
  const int64_t m = s.x.size(1);
  if (s.rows == 0 || k == 1) {
    return torch::zeros({s.rows}, torch::kInt64);
  }
  const auto cc = (centroids * centroids).sum(1);  // [k]
  const auto d = s.norm2.unsqueeze(1) - 2.0 * s.x.mm(centroids.t()) + cc.unsqueeze(0);  // [n, k]
  const auto top = d.topk(2, 1, /*largest=*/false, /*sorted=*/true);
  const auto& values = std::get<0>(top);
  const double reachC = std::sqrt(cc.max().item<double>());
  const auto reach = s.norm2.sqrt() + reachC;
  const double eps = std::numeric_limits<double>::epsilon();
  const auto bound = reach * reach * (8.0 * static_cast<double>(m + 8) * eps);
  const auto ambiguous = (values.select(1, 1) - values.select(1, 0)).le(bound).nonzero().squeeze(1);
  auto labels = std::get<1>(top).select(1, 0).contiguous();
  if (ambiguous.numel() > 0) {
    const auto c = centroids.contiguous();
    const double* cp = c.data_ptr<double>();
    const double* xp = s.x.data_ptr<double>();
    int64_t* lp = labels.data_ptr<int64_t>();
    const auto rows = ambiguous.contiguous();
    for (int64_t r = 0; r < rows.numel(); ++r) {
      const int64_t i = rows.data_ptr<int64_t>()[r];
      double bestD = std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < k; ++j) {
        double acc = 0.0;
        for (int64_t q = 0; q < m; ++q) {
          const double diff = xp[i * m + q] - cp[j * m + q];
          acc += diff * diff;
        }
        if (acc < bestD) {
          bestD = acc;
          lp[i] = j;
        }
      }
    }
  }
  return labels;
}

// Σ over every rank of ‖x_i − c_{label_i}‖², exact and order-independent.
double inertiaOf(const Shard& s, const torch::Tensor& centroids, const torch::Tensor& labels,
                 Reducer& reducer) {
  const int64_t m = s.x.size(1);
  auto perRow = torch::empty({s.rows, 1}, torch::kFloat64);
  const auto c = centroids.contiguous();
  const double* cp = c.data_ptr<double>();
  const double* xp = s.x.data_ptr<double>();
  const int64_t* lp = labels.data_ptr<int64_t>();
  double* out = perRow.data_ptr<double>();
  for (int64_t i = 0; i < s.rows; ++i) {
    double acc = 0.0;
    for (int64_t q = 0; q < m; ++q) {
      const double diff = xp[i * m + q] - cp[lp[i] * m + q];
      acc += diff * diff;
    }
    out[i] = acc;
  }
  return detail::exactColumnSums(perRow, reducer).item<double>();
}

// Lloyd iterations as scikit-learn's _kmeans_single_lloyd: stop when no label changes (strict
// convergence) or the squared centre shift ≤ tolAbs; an empty cluster keeps its centroid.
KMeansResult lloyd(const Shard& s, torch::Tensor centroids, int maxIter, double tolAbs,
                   Reducer& reducer) {
  const int64_t k = centroids.size(0);
  const int64_t m = s.x.size(1);
  auto labelsOld = torch::full({s.rows}, -1, torch::kInt64);
  torch::Tensor labels;
  bool strict = false;
  int iteration = 0;
  while (iteration < maxIter) {
    labels = assign(s, centroids);
    ++iteration;
    auto limbSums = torch::zeros({kLimbCount, k, m}, torch::kFloat64);
    limbSums.index_add_(1, labels, s.limbs);  // integer-valued, < 2^53: exact in any order
    auto counts = torch::zeros({k}, torch::kFloat64);
    counts.index_add_(0, labels, torch::ones({s.rows}, torch::kFloat64));
    const auto changed = labels.ne(labelsOld).sum().to(torch::kFloat64).reshape({1});
    const auto global = reducer.sum(torch::cat({limbSums.flatten(), counts, changed}));
    const auto sums = detail::combineLimbs(global.narrow(0, 0, kLimbCount * k * m)
                                               .view({kLimbCount, k, m}), s.limbScale);
    const auto globalCounts = global.narrow(0, kLimbCount * k * m, k);
    const auto updated = torch::where(globalCounts.gt(0).unsqueeze(1),
                                      sums / globalCounts.clamp_min(1.0).unsqueeze(1), centroids)
                             .contiguous();
    // Centre shift summed in a fixed order (same on every rank and every thread count).
    double shift = 0.0;
    const double* up = updated.data_ptr<double>();
    const auto old = centroids.contiguous();
    const double* op = old.data_ptr<double>();
    for (int64_t e = 0; e < k * m; ++e) shift += (up[e] - op[e]) * (up[e] - op[e]);
    centroids = updated;
    if (global[kLimbCount * k * m + k].item<double>() == 0.0) {
      strict = true;
      break;
    }
    if (shift <= tolAbs) break;
    labelsOld = labels;
  }
  if (!strict) {
    labels = assign(s, centroids);  // labels consistent with the final centroids
  }
  KMeansResult result;
  result.inertia = inertiaOf(s, centroids, labels, reducer);
  result.labels = labels;
  result.centroids = centroids;
  result.iterations = iteration;
  return result;
}

}  // namespace

KMeansResult kmeans(const torch::Tensor& localRows, const ClusteringOptions& options,
                    Reducer& reducer) {
  TORCH_CHECK(options.k >= 1, "kmeans needs k >= 1, got ", options.k);
  TORCH_CHECK(options.nInit >= 1, "kmeans needs n_init >= 1, got ", options.nInit);
  TORCH_CHECK(options.maxIter >= 1, "kmeans needs max_iter >= 1, got ", options.maxIter);
  TORCH_CHECK(options.tol >= 0.0, "kmeans needs tol >= 0, got ", options.tol);
  const Shard s = makeShard(localRows, reducer);
  TORCH_CHECK(s.globalRows >= options.k, "kmeans with k = ", options.k,
              " needs at least k rows, got ",
              s.globalRows, " over ", reducer.worldSize(), " ranks");
  // scikit-learn's tolerance: tol × mean over units of the (biased) variance.
  const auto variance = detail::exactColumnSums(s.x * s.x, reducer).contiguous();  // [M] Σx²
  double meanVariance = 0.0;
  for (int64_t q = 0; q < variance.numel(); ++q) meanVariance += variance.data_ptr<double>()[q];
  meanVariance /= static_cast<double>(s.globalRows) * std::max<int64_t>(1, variance.numel());
  const double tolAbs = options.tol * meanVariance;

  detail::SeededUniform rng(options.seed);
  KMeansResult best;
  for (int init = 0; init < options.nInit; ++init) {
    auto run = lloyd(s, seedPlusPlus(s, options.k, rng, reducer), options.maxIter, tolAbs, reducer);
    if (init == 0 || run.inertia < best.inertia) {  // exact inertia: the same choice on any W
      best = std::move(run);
      best.bestInit = init;
    }
  }
  best.centroids = best.centroids + s.mean;  // back to the caller's frame
  return best;
}

ClusterScores scoreContingency(const torch::Tensor& contingency, MiNormalization normalization) {
  return detail::scoreTable(detail::compactTable(contingency), normalization);
}

double expectedMutualInformation(const torch::Tensor& contingency) {
  return detail::expectedMutualInformation(detail::compactTable(contingency));
}

namespace {

// Global contingency table [C, K] (rows: values of `a`, cols: values of `b`), one max + one sum.
torch::Tensor globalContingency(const torch::Tensor& localA, const torch::Tensor& localB,
                                Reducer& reducer) {
  const auto a = localA.reshape({-1}).to(torch::kCPU, torch::kInt64);
  const auto b = localB.reshape({-1}).to(torch::kCPU, torch::kInt64);
  TORCH_CHECK(a.numel() == b.numel(), "labelings differ in length: ", a.numel(), " vs ", b.numel());
  if (a.numel() > 0) {
    TORCH_CHECK(a.min().item<int64_t>() >= 0 && b.min().item<int64_t>() >= 0,
                "labels must be non-negative, got min ", a.min().item<int64_t>(), " and ",
                b.min().item<int64_t>());
  }
  const double localA1 = a.numel() > 0 ? a.max().item<int64_t>() + 1.0 : 0.0;
  const double localB1 = b.numel() > 0 ? b.max().item<int64_t>() + 1.0 : 0.0;
  const auto sizes = reducer.max(torch::tensor({localA1, localB1}, torch::kFloat64));
  const auto rows = static_cast<int64_t>(sizes[0].item<double>());
  const auto cols = static_cast<int64_t>(sizes[1].item<double>());
  auto table = torch::zeros({rows * cols}, torch::kFloat64);
  table.index_add_(0, a * cols + b, torch::ones({a.numel()}, torch::kFloat64));
  return reducer.sum(table).view({rows, cols});
}

}  // namespace

ClusterScores scoreLabelings(const torch::Tensor& localTrue, const torch::Tensor& localPred,
                             MiNormalization normalization, Reducer& reducer) {
  return scoreContingency(globalContingency(localTrue, localPred, reducer), normalization);
}

MetricList ClusteringResult::metrics() const {
  return {{"ami", ami}, {"nmi", nmi}, {"kmeans_inertia", inertia}};
}

ClusteringResult clusterAndScore(const torch::Tensor& localRows, const torch::Tensor& localLabels,
                                 const ClusteringOptions& options, Reducer& reducer) {
  TORCH_CHECK(localLabels.numel() == localRows.size(0), "clusterAndScore: ", localRows.size(0),
              " rows but ", localLabels.numel(), " labels");
  ClusteringOptions resolved = options;
  if (resolved.k == 0) {  // SPEC §3: k = number of true classes present
    const auto classes = globalContingency(localLabels, torch::zeros_like(localLabels), reducer);
    resolved.k = classes.gt(0).sum().item<int64_t>();
  }
  const auto clusters = kmeans(localRows, resolved, reducer);
  const auto scores = scoreLabelings(localLabels, clusters.labels, resolved.normalization, reducer);
  ClusteringResult result;
  result.ami = scores.ami;
  result.nmi = scores.nmi;
  result.inertia = clusters.inertia;
  result.k = resolved.k;
  result.labels = clusters.labels;
  return result;
}

}  // namespace repshape::reg
