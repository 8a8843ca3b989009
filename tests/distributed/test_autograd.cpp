// Backward of the differentiable collectives: with the SPEC §4 convention (replicated consumer,
// parameter gradients summed by GradientAllReducer) W ranks must reproduce the gradient of one
// process on the concatenated data, computed here in the same test process.

#include <gtest/gtest.h>

#include "CommReducer.h"
#include "TestComm.h"

namespace repshape::dist {
namespace {

using testing::firstRow;
using testing::rowCounts;
using testing::shardOf;
using testing::testComm;

constexpr std::int64_t kInputs = 4;
constexpr std::int64_t kUnits = 3;

// Same inputs and weights on every rank: the whole data set [N, D] and W [D, M] from one seed.
struct Problem {
  std::vector<std::int64_t> counts;
  torch::Tensor inputs;  // [N, kInputs]
  torch::Tensor weight;  // [kInputs, kUnits]
  std::int64_t total() const { return inputs.size(0); }
};

Problem makeProblem(int worldSize, bool withEmpty) {
  Problem p;
  p.counts = rowCounts(worldSize, withEmpty);
  std::int64_t total = 0;
  for (const std::int64_t n : p.counts) total += n;
  torch::manual_seed(20240611);
  p.inputs = torch::randn({total, kInputs}, torch::kDouble);
  p.weight = torch::randn({kInputs, kUnits}, torch::kDouble);
  return p;
}

torch::Tensor leafCopy(const torch::Tensor& t) { return t.detach().clone().requires_grad_(true); }

// Runs `objective(activations [n, M], rowOffset)` on this rank's shard, sums the weight gradient
// over ranks and returns it; `objective(all, 0)` with LocalReducer-like identities on one process
// must give the same gradient.
template <typename Objective>
torch::Tensor distributedGradient(Communicator& comm, const Problem& p, Objective objective) {
  torch::Tensor weight = leafCopy(p.weight);
  const torch::Tensor z = torch::tanh(shardOf(p.inputs, p.counts, comm.rank()).mm(weight));
  objective(z, firstRow(p.counts, comm.rank())).backward();
  GradientAllReducer reducer(comm, {weight});
  reducer.allReduce();
  return weight.grad();
}

torch::Tensor referenceGradient(const Problem& p, const std::function<torch::Tensor(const torch::Tensor&)>& objective) {
  torch::Tensor weight = leafCopy(p.weight);
  objective(torch::tanh(p.inputs.mm(weight))).backward();
  return weight.grad();
}

// Off-diagonal covariance penalty (DeCov-like) from packed sums, plus a task term normalised by
// the global row count.
torch::Tensor covariancePenalty(const torch::Tensor& stats) {
  const torch::Tensor n = stats[0];
  const torch::Tensor mean = stats.narrow(0, 1, kUnits) / n;                                // [M]
  const torch::Tensor cov = stats.narrow(0, 1 + kUnits, kUnits * kUnits).view({kUnits, kUnits}) / n -
                            torch::outer(mean, mean);                                        // [M, M]
  return 0.5 * (cov.pow(2).sum() - cov.diagonal().pow(2).sum());
}

torch::Tensor packStats(const torch::Tensor& z) {
  return torch::cat({torch::full({1}, static_cast<double>(z.size(0)), z.options()), z.sum(0),
                     z.t().mm(z).reshape({-1})});  // [1 + M + M²]
}

class Autograd : public ::testing::TestWithParam<bool> {};  // param: a rank holds no rows

TEST_P(Autograd, AllReduceSumIdentityMatchesOneProcess) {
  Communicator& comm = testComm();
  const Problem p = makeProblem(comm.size(), GetParam());
  const std::int64_t total = p.total();
  const torch::Tensor grad = distributedGradient(comm, p, [&](const torch::Tensor& z, std::int64_t) {
    const torch::Tensor global = allReduceSum(comm, packStats(z), ReduceBackward::Identity, "test.stats");
    EXPECT_NEAR(global[0].item<double>(), total, 0);
    return covariancePenalty(global) + z.pow(2).sum() / total;  // task: global-batch mean
  });
  const torch::Tensor expected = referenceGradient(p, [&](const torch::Tensor& z) {
    return covariancePenalty(packStats(z)) + z.pow(2).sum() / total;
  });
  EXPECT_TRUE(torch::allclose(grad, expected, 1e-10, 1e-12)) << grad << "\nexpected\n" << expected;
}

// Batch norm: every rank normalises its OWN rows with the global mean and variance, so the
// gradient of the statistics must itself be summed (ReduceBackward::Sum).
torch::Tensor normalisedLoss(const torch::Tensor& z, const torch::Tensor& sums, std::int64_t offset,
                             std::int64_t total) {
  const torch::Tensor mean = sums.narrow(0, 0, kUnits) / total;                      // [M]
  const torch::Tensor var = sums.narrow(0, kUnits, kUnits) / total - mean.pow(2);    // [M]
  const torch::Tensor normalised = (z - mean) / torch::sqrt(var + 1e-5);              // [n, M]
  // Row-dependent targets, so each row's gradient differs.
  const torch::Tensor rowWeight =
      torch::arange(offset, offset + z.size(0), z.options()).unsqueeze(1) * 0.1 + 1;  // [n, 1]
  return (normalised.pow(3) * rowWeight).sum() / total;
}

TEST_P(Autograd, AllReduceSumSumBackwardMatchesOneProcessBatchNorm) {
  Communicator& comm = testComm();
  const Problem p = makeProblem(comm.size(), GetParam());
  const std::int64_t total = p.total();
  auto distributed = [&](ReduceBackward mode) {
    return distributedGradient(comm, p, [&](const torch::Tensor& z, std::int64_t offset) {
      const torch::Tensor sums = allReduceSum(comm, torch::cat({z.sum(0), z.pow(2).sum(0)}), mode,
                                              "test.bn");
      return normalisedLoss(z, sums, offset, total);
    });
  };
  const torch::Tensor expected = referenceGradient(p, [&](const torch::Tensor& z) {
    return normalisedLoss(z, torch::cat({z.sum(0), z.pow(2).sum(0)}), 0, total);
  });
  const torch::Tensor grad = distributed(ReduceBackward::Sum);
  EXPECT_TRUE(torch::allclose(grad, expected, 1e-10, 1e-12)) << grad << "\nexpected\n" << expected;
  const int ranksWithRows = comm.size() - (GetParam() && comm.size() > 1 ? 1 : 0);
  if (ranksWithRows > 1) {
    // The wrong convention is detectably wrong here: the test can fail.
    EXPECT_FALSE(torch::allclose(distributed(ReduceBackward::Identity), expected, 1e-6, 1e-8));
  }
}

torch::Tensor maxPenalty(const torch::Tensor& columnMax) {
  const torch::Tensor coefficient = torch::arange(1, kUnits + 1, columnMax.options());  // [M]
  return (columnMax * coefficient).sum() + columnMax.pow(2).sum();
}

TEST_P(Autograd, AllReduceMaxRoutesGradientToTheArgmaxRank) {
  Communicator& comm = testComm();
  const Problem p = makeProblem(comm.size(), GetParam());
  const torch::Tensor grad = distributedGradient(comm, p, [&](const torch::Tensor& z, std::int64_t) {
    // A zero row keeps amax defined on an empty shard (|z| ≥ 0, so it never wins a tie with data).
    const torch::Tensor local = torch::cat({z.abs(), torch::zeros({1, kUnits}, z.options())}).amax(0);
    return maxPenalty(allReduceMax(comm, local, "test.max"));
  });
  const torch::Tensor expected =
      referenceGradient(p, [&](const torch::Tensor& z) { return maxPenalty(z.abs().amax(0)); });
  EXPECT_TRUE(torch::allclose(grad, expected, 1e-10, 1e-12)) << grad << "\nexpected\n" << expected;
}

TEST(AutogradTies, AllReduceMaxCountsACrossRankTieOnce) {
  Communicator& comm = testComm();
  // Every rank holds the same value: the global max is tied on all ranks; only rank 0 gets grad.
  const torch::Tensor local = torch::full({2}, 3.0, torch::kDouble).requires_grad_(true);
  allReduceMax(comm, local, "test.tie").sum().backward();
  EXPECT_TRUE(torch::equal(local.grad(), torch::full({2}, comm.rank() == 0 ? 1.0 : 0.0, torch::kDouble)));
}

// Pairwise term over all rows (lmulti-like): same-label pairs pulled together.
torch::Tensor pairwiseLoss(const torch::Tensor& z, const torch::Tensor& labels) {
  const torch::Tensor distances = torch::cdist(z, z).pow(2);          // [N, N]
  const torch::Tensor same = labels.unsqueeze(0).eq(labels.unsqueeze(1)).to(z.scalar_type());
  return (torch::exp(-distances) * same).sum() / (z.size(0) * z.size(0));
}

TEST_P(Autograd, AllGatherRowsBackwardIsThisRanksSliceUnscaled) {
  Communicator& comm = testComm();
  const Problem p = makeProblem(comm.size(), GetParam());
  const torch::Tensor allLabels = torch::arange(p.total(), torch::kLong).remainder(3);  // [N]
  const torch::Tensor grad = distributedGradient(comm, p, [&](const torch::Tensor& z, std::int64_t offset) {
    const torch::Tensor gathered = allGatherRows(comm, z, "test.gatherZ");
    const torch::Tensor labels =
        allGatherRows(comm, allLabels.narrow(0, offset, z.size(0)), "test.gatherLabels");
    EXPECT_TRUE(torch::equal(labels, allLabels));
    return pairwiseLoss(gathered, labels);
  });
  const torch::Tensor expected =
      referenceGradient(p, [&](const torch::Tensor& z) { return pairwiseLoss(z, allLabels); });
  EXPECT_TRUE(torch::allclose(grad, expected, 1e-10, 1e-12)) << grad << "\nexpected\n" << expected;
}

// Split class-wise shares (SPEC §4 "ranks split the terms"): rank r computes the terms of the
// classes k ≡ r (mod W) over the gathered rows, through sumGradientsToRows, while a replicated
// consumer uses the same gathered rows; one process computes every class and the consumer.
TEST_P(Autograd, SumGradientsToRowsSplitSharesMatchOneProcess) {
  Communicator& comm = testComm();
  const Problem p = makeProblem(comm.size(), GetParam());
  const torch::Tensor allLabels = torch::arange(p.total(), torch::kLong).remainder(3);  // [N]
  const auto classTerm = [](const torch::Tensor& z, const torch::Tensor& labels, std::int64_t k) {
    const torch::Tensor rows = z.index_select(0, labels.eq(k).nonzero().squeeze(1));
    const torch::Tensor centred = rows - rows.mean(0, true);
    return (k + 1.0) * centred.t().mm(centred).pow(2).sum();  // a class-wise covariance term
  };
  const auto replicated = [](const torch::Tensor& z) { return 0.1 * z.pow(3).sum(); };
  const torch::Tensor grad = distributedGradient(comm, p, [&](const torch::Tensor& z, std::int64_t offset) {
    std::vector<std::int64_t> counts;
    const torch::Tensor gathered = allGatherRows(comm, z, "test.gatherZ", &counts);
    EXPECT_EQ(counts, p.counts);
    const torch::Tensor shared = sumGradientsToRows(comm, gathered, z, counts, "test.share");
    EXPECT_TRUE(torch::equal(shared, gathered));
    torch::Tensor share = (shared.sum() * 0.0);  // every rank joins the backward collective
    for (std::int64_t k = comm.rank(); k < 3; k += comm.size()) share = share + classTerm(shared, allLabels, k);
    (void)offset;
    return share + replicated(gathered);
  });
  const torch::Tensor expected = referenceGradient(p, [&](const torch::Tensor& z) {
    return classTerm(z, allLabels, 0) + classTerm(z, allLabels, 1) + classTerm(z, allLabels, 2) + replicated(z);
  });
  EXPECT_TRUE(torch::allclose(grad, expected, 1e-10, 1e-12)) << grad << "\nexpected\n" << expected;
}

INSTANTIATE_TEST_SUITE_P(Shards, Autograd, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "WithEmptyRank" : "Uneven"; });

TEST(GradientAllReducer, SumsBucketsAndKeepsUndefinedGradsConsistent) {
  Communicator& comm = testComm();
  const int rank = comm.rank();
  const int size = comm.size();
  std::vector<torch::Tensor> params = {torch::zeros({3, 4}), torch::zeros({5}), torch::zeros({2, 2}),
                                       torch::zeros({7}, torch::kDouble)};
  for (auto& param : params) param.requires_grad_(true);
  // Rank-dependent grads: g = (r+1)·(index+1). Param 2 has a grad on rank 1 only, param 1 nowhere.
  auto gradOf = [](int r, const torch::Tensor& like) {
    return (r + 1) * (torch::arange(like.numel(), like.options()).view(like.sizes()) + 1);
  };
  params[0].mutable_grad() = gradOf(rank, params[0]);
  params[3].mutable_grad() = gradOf(rank, params[3]);
  if (rank == 1) params[2].mutable_grad() = gradOf(rank, params[2]);

  GradientAllReducerOptions options;
  options.bucketBytes = 40;  // buckets {48 B alone}, {20 B + 16 B}, {fp64: dtype change splits}
  GradientAllReducer reducer(comm, params, options);
  EXPECT_EQ(reducer.numBuckets(), 3);
  EXPECT_EQ(reducer.bytesPerCall(), (12 + 1 + 5 + 1 + 4 + 1) * 4 + (7 + 1) * 8);
  comm.resetCounters();
  reducer.allReduce();
  // One collective per bucket; on one rank the sum is the identity and nothing is sent.
  EXPECT_EQ(comm.counters().bytes, size > 1 ? reducer.bytesPerCall() : 0);
  EXPECT_EQ(comm.counters().calls, size > 1 ? reducer.numBuckets() : 0);

  const double rankSum = size * (size + 1) / 2.0;  // Σ_r (r+1)
  EXPECT_TRUE(torch::allclose(params[0].grad(), gradOf(0, params[0]) * rankSum));
  EXPECT_TRUE(torch::allclose(params[3].grad(), gradOf(0, params[3]) * rankSum));
  EXPECT_FALSE(params[1].grad().defined());
  ASSERT_EQ(params[2].grad().defined(), size > 1);
  if (size > 1) {
    EXPECT_TRUE(torch::allclose(params[2].grad(), gradOf(1, params[2])));
  }
}

// The trainer's pattern: every gradient set to none before each backward, so each step brings
// fresh gradients; they are copied into the bucket and the parameters are bound to their slots,
// the same slot every step. Some steps leave a gradient undefined on some ranks or on all.
TEST(GradientAllReducer, FreshGradientsEveryStepSumIntoTheSameSlots) {
  Communicator& comm = testComm();
  const int rank = comm.rank(), size = comm.size();
  std::vector<torch::Tensor> params = {torch::zeros({4, 3}), torch::zeros({3}), torch::zeros({2, 5})};
  for (auto& param : params) param.requires_grad_(true);
  GradientAllReducer reducer(comm, params);
  std::vector<const void*> slots(params.size(), nullptr);
  for (int step = 1; step <= 4; ++step) {
    for (auto& param : params) param.mutable_grad().reset();
    // g_i = (rank + step)·(i + 1) everywhere; step 2: params[1] only on the last rank; step 3:
    // params[2] nowhere.
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (step == 2 && i == 1 && rank != size - 1) continue;
      if (step == 3 && i == 2) continue;
      params[i].mutable_grad() = torch::full(params[i].sizes(), (rank + step) * (i + 1.0));
    }
    reducer.allReduce();
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (step == 3 && i == 2) {
        EXPECT_FALSE(params[i].grad().defined()) << "step " << step;
        continue;
      }
      ASSERT_TRUE(params[i].grad().defined()) << "step " << step << " param " << i;
      const double ranks = step == 2 && i == 1 ? size - 1 + step : size * step + size * (size - 1) / 2.0;
      EXPECT_TRUE(torch::equal(params[i].grad(), torch::full(params[i].sizes(), ranks * (i + 1.0))))
          << "step " << step << " param " << i << "\n" << params[i].grad();
      if (size > 1) {  // bound to the bucket: the same slot every step
        if (slots[i] == nullptr) slots[i] = params[i].grad().data_ptr();
        EXPECT_EQ(params[i].grad().data_ptr(), slots[i]) << "step " << step << " param " << i;
      }
    }
  }
}

// Gradients live in the bucket buffers after the first call: later backwards accumulate there
// (an optimizer's zero_grad zeroes them in place, detach_ included) and every call still gives
// the plain sum of that step, nothing stale.
TEST(GradientAllReducer, PersistentBuffersSumEveryStep) {
  Communicator& comm = testComm();
  const int rank = comm.rank(), size = comm.size();
  torch::Tensor a = torch::ones({3, 2}).requires_grad_(true), b = torch::ones({4}).requires_grad_(true);
  torch::optim::SGD sgd({a, b}, torch::optim::SGDOptions(0.1));
  GradientAllReducer reducer(comm, {a, b});
  for (int step = 1; step <= 3; ++step) {
    sgd.zero_grad();
    ((a * static_cast<double>(rank + step)).sum() + b.square().sum() * static_cast<double>(step)).backward();
    reducer.allReduce();
    // d/da = rank + step, summed: size·step + size(size−1)/2; d/db = 2·b·step with b = 1, summed.
    EXPECT_TRUE(torch::allclose(a.grad(), torch::full({3, 2}, size * step + size * (size - 1) / 2.0))) << "step " << step;
    EXPECT_TRUE(torch::allclose(b.grad(), torch::full({4}, 2.0 * step * size))) << "step " << step;
  }
  if (size > 1) {
    EXPECT_EQ(a.grad().data_ptr<float>() + a.numel(), b.grad().data_ptr<float>());  // one buffer
  }
}

TEST(CommReducer, AdaptsTheDifferentiableCollectives) {
  Communicator& comm = testComm();
  CommReducer reducer(comm, "test.reducer");
  EXPECT_EQ(reducer.worldSize(), comm.size());
  const torch::Tensor local = torch::full({2}, comm.rank() + 1.0, torch::kDouble).requires_grad_(true);
  const torch::Tensor sum = reducer.sum(local);
  const torch::Tensor max = reducer.max(local);
  EXPECT_TRUE(torch::allclose(sum, torch::full({2}, comm.size() * (comm.size() + 1) / 2.0, torch::kDouble)));
  EXPECT_TRUE(torch::allclose(max, torch::full({2}, static_cast<double>(comm.size()), torch::kDouble)));
  (sum.sum() + 10 * max.sum()).backward();
  // Identity backward of the sum; the max's gradient only on the last rank.
  const double expected = 1.0 + (comm.rank() == comm.size() - 1 ? 10.0 : 0.0);
  EXPECT_TRUE(torch::allclose(local.grad(), torch::full({2}, expected, torch::kDouble)));
  const torch::Tensor mine = torch::full({comm.rank() + 1, 2}, comm.rank() * 1.0).requires_grad_(true);
  std::vector<std::int64_t> counts;
  const torch::Tensor rows = reducer.gatherRows(mine, &counts);
  EXPECT_EQ(rows.size(0), comm.size() * (comm.size() + 1) / 2);
  std::vector<std::int64_t> expectedCounts;
  for (int r = 0; r < comm.size(); ++r) expectedCounts.push_back(r + 1);
  EXPECT_EQ(counts, expectedCounts);
  // Rank r weighs every gathered row by r + 1: this rank's rows get Σ_r (r + 1) = W(W + 1)/2.
  (reducer.sumGradientsToRows(rows, mine, counts) * (comm.rank() + 1.0)).sum().backward();
  EXPECT_TRUE(torch::equal(mine.grad(), torch::full({comm.rank() + 1, 2}, comm.size() * (comm.size() + 1) / 2.0)));
}

}  // namespace
}  // namespace repshape::dist
