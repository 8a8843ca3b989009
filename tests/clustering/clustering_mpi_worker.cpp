// Runs clustering and MI bounds on W real ranks (mpirun) through CommReducer and checks, on every
// rank, that they equal the one-process computation on the concatenated rows: labels and
// AMI/NMI/inertia bit for bit, MI bounds to 1e-12. Rank 0 also writes the gathered labels to
// <outdir>/labels_np<W>.txt so a CTest driver can compare the files of W = 1, 2, 3.
//
//   mpirun -np W clustering_mpi_worker <outdir>
//
// Shards are uneven (rank r holds a share ∝ 2^r) and, in a second scenario, the last rank is empty.

#include <repshape/distributed/Communicator.h>
#include <repshape/regularizers/Clustering.h>
#include <repshape/regularizers/InformationBounds.h>

#include "CommReducer.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <random>
#include <vector>

namespace {

using namespace repshape;

int failures = 0;

#define CHECK_OR_FAIL(cond, ...)                                                          \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::cerr << "[rank " << rank << "] FAILED " #cond " " << __VA_ARGS__ << std::endl; \
      ++failures;                                                                         \
    }                                                                                     \
  } while (0)

// 6 anisotropic blobs in 12 dimensions with duplicated rows (exact ties for k-means++ and Lloyd).
void makeData(int64_t n, torch::Tensor& rows, torch::Tensor& labels) {
  std::mt19937_64 rng(4242);
  std::normal_distribution<double> normal;
  const int64_t m = 12, classes = 6;
  std::vector<double> mu(classes * m);
  for (auto& v : mu) v = 4.0 * normal(rng);
  rows = torch::empty({n, m}, torch::kFloat32);
  labels = torch::empty({n}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = (i * 7 + i / 5) % classes;
    labels[i] = c;
    for (int64_t q = 0; q < m; ++q) {
      rows[i][q] = static_cast<float>(mu[c * m + q] + (1.0 + 0.4 * q / m + 0.3 * c) * normal(rng));
    }
    if (i % 17 == 16) rows[i] = rows[i - 1];  // duplicates
  }
}

// [begin, end) of rank r for shares ∝ weights.
std::pair<int64_t, int64_t> shardOf(int64_t n, const std::vector<double>& weights, int r) {
  double total = 0.0, before = 0.0;
  for (double w : weights) total += w;
  for (int q = 0; q < r; ++q) before += weights[q];
  const auto begin = static_cast<int64_t>(std::llround(n * before / total));
  const auto end = static_cast<int64_t>(std::llround(n * (before + weights[r]) / total));
  return {begin, end};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: clustering_mpi_worker <outdir>\n";
    return 2;
  }
  auto comm = dist::makeCommunicator(dist::CommOptions{});
  const int rank = comm->rank();
  const int world = comm->size();
  CommReducer reducer(*comm, "clustering");
  reg::LocalReducer local;

  torch::Tensor rows, labels;
  const int64_t n = 1003;
  makeData(n, rows, labels);
  reg::ClusteringOptions options;  // k = number of classes, 10 restarts
  options.seed = 17;
  options.nInit = 4;
  const auto reference = reg::clusterAndScore(rows, labels, options, local);
  reg::InformationBoundsOptions miOptions;  // the fp64 path: equal across W to summation order
  miOptions.fp64 = true;
  const auto referenceMi = reg::informationBounds(rows, labels, miOptions, local);

  for (int scenario = 0; scenario < 2; ++scenario) {
    std::vector<double> weights;
    for (int r = 0; r < world; ++r) weights.push_back(std::ldexp(1.0, r));  // uneven: 1:2:4
    if (scenario == 1 && world > 1) weights.back() = 0.0;                  // an empty last rank
    const auto [begin, end] = shardOf(n, weights, rank);
    const auto myRows = rows.narrow(0, begin, end - begin);
    const auto myLabels = labels.narrow(0, begin, end - begin);

    const auto result = reg::clusterAndScore(myRows, myLabels, options, reducer);
    CHECK_OR_FAIL(torch::equal(result.labels, reference.labels.narrow(0, begin, end - begin)),
                  "scenario " << scenario << ": labels differ from the one-process run");
    CHECK_OR_FAIL(result.ami == reference.ami, result.ami << " vs " << reference.ami);
    CHECK_OR_FAIL(result.nmi == reference.nmi, result.nmi << " vs " << reference.nmi);
    CHECK_OR_FAIL(result.inertia == reference.inertia,
                  std::setprecision(17) << result.inertia << " vs " << reference.inertia);

    const auto mi = reg::informationBounds(myRows, myLabels, miOptions, reducer);
    const auto mixed = reg::informationBounds(myRows, myLabels, 0, 0.1, reducer);
    const double got[] = {mi.xUpper, mi.xLower, mi.yUpper, mi.yLower};
    const double want[] = {referenceMi.xUpper, referenceMi.xLower, referenceMi.yUpper,
                           referenceMi.yLower};
    // The default fp32-GEMM path on W ranks against the fp64 one-process values, to the issue's
    // 1e-6 relative (its per-class fp64 fallback depends on the sampled rows, hence on the shard).
    const double gotMixed[] = {mixed.xUpper, mixed.xLower, mixed.yUpper, mixed.yLower};
    for (int q = 0; q < 4; ++q) {
      CHECK_OR_FAIL(std::abs(got[q] - want[q]) <= 1e-12 * std::abs(want[q]) + 1e-13,
                    "scenario " << scenario << " MI " << q << ": " << std::setprecision(17)
                                << got[q] << " vs " << want[q]);
      CHECK_OR_FAIL(std::abs(gotMixed[q] - want[q]) <= 1e-6 * std::abs(want[q]),
                    "scenario " << scenario << " mixed MI " << q << ": " << std::setprecision(17)
                                << gotMixed[q] << " vs fp64 " << want[q]);
    }

    const auto all = reducer.gatherRows(result.labels.to(torch::kFloat64).unsqueeze(1));
    if (rank == 0 && scenario == 0) {
      std::ofstream out(std::string(argv[1]) + "/labels_np" + std::to_string(world) + ".txt");
      out << std::setprecision(17) << "ami " << result.ami << "\nnmi " << result.nmi
          << "\ninertia " << result.inertia << "\n";
      for (int64_t i = 0; i < all.size(0); ++i) out << all[i][0].item<double>() << "\n";
    }
  }
  if (rank == 0) {
    std::cout << "W=" << world << " ami " << reference.ami << " nmi " << reference.nmi
              << " inertia " << reference.inertia << " failures " << failures << std::endl;
  }
  return failures == 0 ? 0 : 1;
}
