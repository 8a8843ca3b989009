// SPEC §1 under real processes: the global covariance assembled from every rank's packed sums equals
// a two-pass fp64 covariance of the concatenated batch to 1e-5 relative Frobenius error, even when
// each unit's mean is 1e3 times its standard deviation. Ranks hold different numbers of rows (the
// last rank none at W = 4) drawn from rank-dependent distributions, so a wrong slice or scale
// cannot cancel out. Run under mpirun by CTest; every rank checks the result it holds.
#include "CommReducer.h"
#include "detail/Statistics.h"

#include <repshape/distributed/Communicator.h>

#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

namespace repshape {
namespace {

constexpr int64_t kWidth = 24;

int64_t rowsOf(int rank, int world) { return (world == 4 && rank == 3) ? 0 : 40 + 37 * rank; }

// Rank r's activations [n_r, M], fp32 as a network produces them: unit j has std σ_j ∈ [0.5, 2]
// and mean 1e3·σ_j, plus a rank-dependent shift of 0.3·r·σ_j.
torch::Tensor shardOf(int rank, int world) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + rank);
  const torch::Tensor sigma = torch::linspace(0.5, 2.0, kWidth, torch::kDouble);
  const torch::Tensor noise = at::randn({rowsOf(rank, world), kWidth}, gen, torch::kDouble);
  return (sigma * (1e3 + 0.3 * rank) + noise * sigma).to(torch::kFloat);
}

double relativeError(const torch::Tensor& c, const torch::Tensor& reference) {
  return ((c - reference).norm() / reference.norm()).item<double>();
}

TEST(GlobalCovariance, MatchesTwoPassFp64OnConcatenatedBatch) {
  auto comm = dist::makeCommunicator({});
  const int rank = comm->rank(), world = comm->size();
  CommReducer reducer(*comm, "covariance-test");

  reg::detail::StatsNeeds needs;
  needs.sum = needs.gram = true;
  const reg::detail::StatsLayout layout(needs, kWidth, 1, 0);
  const torch::Tensor z = shardOf(rank, world);
  const auto [sumPart, maxPart] = reg::detail::localStatistics(z, torch::Tensor(), torch::Tensor(), layout);
  const torch::Tensor global = reducer.sum(sumPart);
  const reg::detail::LayerStats stats = reg::detail::unpackStatistics(global, maxPart, layout);
  const torch::Tensor mean = stats.sum / stats.count;
  const torch::Tensor cov = stats.gram / stats.count - torch::outer(mean, mean);  // biased, [M, M]

  // Reference: every rank rebuilds the whole batch and takes the two-pass fp64 covariance.
  std::vector<torch::Tensor> shards;
  for (int r = 0; r < world; ++r) shards.push_back(shardOf(r, world));
  const torch::Tensor all = torch::cat(shards).to(torch::kDouble);
  EXPECT_EQ(stats.count.item<double>(), all.size(0));
  const torch::Tensor centred = all - all.mean(0);
  const torch::Tensor reference = centred.t().mm(centred) / all.size(0);

  const double error = relativeError(cov, reference);
  EXPECT_LT(error, 1e-5) << "W=" << world;
  // Negative control: the textbook fp32 single pass fails badly on this data, so the bound above
  // is a real test of the statistics' precision.
  const torch::Tensor allF = torch::cat(shards);
  const torch::Tensor naiveMean = allF.mean(0);
  const torch::Tensor naive = (allF.t().mm(allF) / allF.size(0) - torch::outer(naiveMean, naiveMean)).to(torch::kDouble);
  EXPECT_GT(relativeError(naive, reference), 1e-2);
  if (rank == 0) std::printf("W=%d: relative Frobenius error %.3g (fp32 single pass: %.3g)\n", world, error,
                             relativeError(naive, reference));
}

}  // namespace
}  // namespace repshape
