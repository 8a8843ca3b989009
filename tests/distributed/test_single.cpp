// The Single backend (rank 0 of 1, no MPI) and the fault-spec parser; plain single process.

#include <gtest/gtest.h>

#include <repshape/distributed/Communicator.h>

namespace repshape::dist {
namespace {

TEST(Single, IsRankZeroOfOneAndCollectivesAreIdentities) {
  CommOptions options;
  options.backend = Backend::Single;
  const std::unique_ptr<Communicator> comm = makeCommunicator(options);
  EXPECT_EQ(comm->backendName(), "single");
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->localRank(), 0);

  torch::Tensor values = torch::tensor({1.5, -2.0, 3.0}, torch::kDouble);
  const torch::Tensor before = values.clone();
  comm->allReduce(values, ReduceOp::Sum, "single.sum");
  comm->allReduce(values, ReduceOp::Max, "single.max");
  comm->broadcast(values, 0, "single.broadcast");
  EXPECT_TRUE(torch::equal(values, before));
  EXPECT_THROW(comm->broadcast(values, 1, "single.badroot"), c10::Error);

  const torch::Tensor rows = torch::arange(6.0).view({3, 2});
  std::vector<std::int64_t> counts;
  EXPECT_TRUE(torch::equal(comm->allGatherRows(rows, "single.gather", &counts), rows));
  EXPECT_EQ(counts, std::vector<std::int64_t>{3});
  comm->barrier("single.barrier");
  EXPECT_EQ(comm->counters().calls, 5);  // the rejected broadcast is not counted
  EXPECT_EQ(comm->counters().bytes, 3 * 3 * 8 + 6 * 4);  // three [3] fp64 + one [3, 2] fp32
}

TEST(Single, DifferentiableCollectivesAreIdentitiesWithGradient) {
  CommOptions options;
  options.backend = Backend::Single;
  const std::unique_ptr<Communicator> comm = makeCommunicator(options);
  const torch::Tensor x = torch::tensor({1.0, 4.0, 2.0}, torch::kDouble).requires_grad_(true);
  const torch::Tensor weights = torch::tensor({1.0, 2.0, 3.0}, torch::kDouble);
  const torch::Tensor loss = (allReduceSum(*comm, x, ReduceBackward::Identity, "s") * weights).sum() +
                             (allReduceSum(*comm, x, ReduceBackward::Sum, "s") * weights).sum() +
                             (allReduceMax(*comm, x, "m") * weights).sum() +
                             (allGatherRows(*comm, x, "g") * weights).sum();
  loss.backward();
  EXPECT_TRUE(torch::allclose(x.grad(), 4 * weights));
}

TEST(Single, AutoIsSingleOutsideMpirun) {
  if (launchedUnderMpi()) GTEST_SKIP() << "running under mpirun";
  EXPECT_EQ(makeCommunicator({})->backendName(), "single");
}

TEST(Single, GradientAllReducerLeavesGradsAndUndefinedGrads) {
  CommOptions options;
  options.backend = Backend::Single;
  const std::unique_ptr<Communicator> comm = makeCommunicator(options);
  torch::Tensor a = torch::zeros({2, 3}).requires_grad_(true);
  torch::Tensor b = torch::zeros({4}).requires_grad_(true);
  a.mutable_grad() = torch::arange(6.0).view({2, 3});
  GradientAllReducerOptions reducerOptions;
  reducerOptions.scale = 0.5;
  GradientAllReducer reducer(*comm, {a, b}, reducerOptions);
  reducer.allReduce();
  EXPECT_TRUE(torch::equal(a.grad(), torch::arange(6.0).view({2, 3}) * 0.5));
  EXPECT_FALSE(b.grad().defined());
}

TEST(Fault, ParsesAndRejects) {
  const FaultSpec crash = parseFault("rank=1,step=5,kind=crash");
  EXPECT_EQ(crash.rank, 1);
  EXPECT_EQ(crash.step, 5);
  EXPECT_EQ(crash.kind, FaultKind::Crash);
  EXPECT_EQ(parseFault("kind=stall,step=0,rank=3").kind, FaultKind::Stall);
  EXPECT_FALSE(parseFault("").enabled());
  for (const char* bad : {"rank=1,step=5", "rank=1,step=5,kind=boom", "rank=x,step=5,kind=crash",
                          "rank=1,step=-2,kind=crash", "rank=1,step=5,kind=crash,color=red",
                          "rank=1;step=5;kind=crash", "rank=1,step=5x,kind=stall"}) {
    EXPECT_THROW(parseFault(bad), std::invalid_argument) << bad;
  }
  try {
    parseFault("rank=1,step=5,kind=boom");
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("kind='boom'"), std::string::npos) << e.what();
  }
}

TEST(Fault, CrashExitsWithCodeThreeOnlyAtItsRankAndStep) {
  const FaultSpec spec = parseFault("rank=1,step=5,kind=crash");
  maybeInjectFault(spec, 0, 5);  // other rank: nothing
  maybeInjectFault(spec, 1, 4);  // other step: nothing
  EXPECT_EXIT(maybeInjectFault(spec, 1, 5), ::testing::ExitedWithCode(3),
              "rank .*injected fault: crash at step 5");
}

}  // namespace
}  // namespace repshape::dist
