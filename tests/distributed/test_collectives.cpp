// Raw collectives on rank-dependent data, checked against closed forms. Runs at W = 1 (Single
// backend, plain ctest) and under mpirun -np 2/3/4 (MPI backend).

#include <gtest/gtest.h>

#include "TestComm.h"
#include "detail/IallreduceAlgorithm.h"

#include <cstdlib>

namespace repshape::dist {
namespace {

using testing::rowCounts;
using testing::testComm;

TEST(Collectives, AllReduceSumMaxMinOnRankDependentValues) {
  Communicator& comm = testComm();
  const int rank = comm.rank();
  const int size = comm.size();
  const auto index = torch::arange(6, torch::kDouble);  // [6]
  torch::Tensor sum = (rank + 1) * (index + 1);
  comm.allReduce(sum, ReduceOp::Sum, "test.sum");
  // Σ_r (r+1)(i+1) = W(W+1)/2 · (i+1)
  EXPECT_TRUE(torch::allclose(sum, size * (size + 1) / 2.0 * (index + 1), 0, 0)) << sum;

  // (r·7 + 3i) mod 5: the max and min come from different ranks per element.
  auto valueOf = [](int r, const torch::Tensor& i) { return torch::fmod(r * 7 + 3 * i, 5); };
  torch::Tensor max = valueOf(rank, index);
  torch::Tensor min = valueOf(rank, index).to(torch::kFloat);
  comm.allReduce(max, ReduceOp::Max, "test.max");
  comm.allReduce(min, ReduceOp::Min, "test.min");
  torch::Tensor expectedMax = valueOf(0, index);
  torch::Tensor expectedMin = valueOf(0, index);
  for (int r = 1; r < size; ++r) {
    expectedMax = torch::maximum(expectedMax, valueOf(r, index));
    expectedMin = torch::minimum(expectedMin, valueOf(r, index));
  }
  EXPECT_TRUE(torch::equal(max, expectedMax)) << max;
  EXPECT_TRUE(torch::equal(min, expectedMin.to(torch::kFloat))) << min;

  torch::Tensor counts = torch::full({2}, std::int64_t{1} << 40, torch::kLong) * (rank + 1);
  comm.allReduce(counts, ReduceOp::Sum, "test.int64");
  EXPECT_EQ(counts[1].item<std::int64_t>(), (std::int64_t{1} << 40) * size * (size + 1) / 2);

  torch::Tensor empty = torch::empty({0}, torch::kDouble);
  comm.allReduce(empty, ReduceOp::Sum, "test.empty");  // every rank still takes part
  EXPECT_EQ(empty.numel(), 0);
}

// Buffers on both sides of the schedule thresholds (IallreduceAlgorithm: ring at 2 ranks from 1 KiB,
// at more from 64 KiB), fp32 and fp64, SUM and MAX, with values that differ per rank and element.
// Integers below 2^24 keep every fp32 sum exact whatever order a schedule adds in.
TEST(Collectives, AllReduceLargeBuffersExactOnEverySchedule) {
  Communicator& comm = testComm();
  const int rank = comm.rank(), size = comm.size();
  for (const std::int64_t n : {std::int64_t{3}, std::int64_t{255}, std::int64_t{257}, std::int64_t{16385},
                               std::int64_t{130017}}) {
    for (const auto dtype : {torch::kFloat, torch::kDouble}) {
      const auto i = torch::arange(n, torch::TensorOptions().dtype(dtype));
      auto valueOf = [&](int r) { return torch::fmod(i * (r + 3) + 11 * r, 1009); };
      torch::Tensor sum = valueOf(rank), max = valueOf(rank);
      comm.allReduce(sum, ReduceOp::Sum, "test.large.sum");
      comm.allReduce(max, ReduceOp::Max, "test.large.max");
      torch::Tensor expectedSum = valueOf(0), expectedMax = valueOf(0);
      for (int r = 1; r < size; ++r) {
        expectedSum = expectedSum + valueOf(r);
        expectedMax = torch::maximum(expectedMax, valueOf(r));
      }
      EXPECT_TRUE(torch::equal(sum, expectedSum)) << "n=" << n << " dtype " << dtype;
      EXPECT_TRUE(torch::equal(max, expectedMax)) << "n=" << n << " dtype " << dtype;
    }
  }
#ifdef OMPI_MAJOR_VERSION
  // Under Open MPI the control exists (unless the user fixed the algorithm): an upgrade renaming it
  // would silently bring back the binomial schedule, so say so here.
  if (comm.backendName() == "mpi" && std::getenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm") == nullptr) {
    const auto& schedule = detail::IallreduceAlgorithm::instance();
    EXPECT_TRUE(schedule.active());
    const int ring = detail::IallreduceAlgorithm::kRing, libnbc = detail::IallreduceAlgorithm::kLibnbcDefault;
    EXPECT_EQ(schedule.choose(size, 130017, 4), ring);
    EXPECT_EQ(schedule.choose(size, 5, 8), libnbc);
    EXPECT_EQ(schedule.choose(size, 2000, 4), size == 2 ? ring : libnbc);
  }
#endif
}

TEST(Collectives, BroadcastFromLastRank) {
  Communicator& comm = testComm();
  const int root = comm.size() - 1;
  torch::Tensor value = torch::full({3, 2}, comm.rank() * 10.0 + 1.5, torch::kFloat);
  comm.broadcast(value, root, "test.broadcast");
  EXPECT_TRUE(torch::equal(value, torch::full({3, 2}, root * 10.0 + 1.5, torch::kFloat)));
  EXPECT_THROW(comm.broadcast(value, comm.size(), "test.badroot"), c10::Error);
  comm.barrier("test.barrier");
}

TEST(Collectives, AllGatherRowsUnevenAndEmpty) {
  Communicator& comm = testComm();
  for (const bool withEmpty : {false, true}) {
    const std::vector<std::int64_t> counts = rowCounts(comm.size(), withEmpty);
    const std::int64_t mine = counts[static_cast<std::size_t>(comm.rank())];
    // Row i of rank r holds r·100 + i + {0, 0.5}; a wrong offset or order cannot go unnoticed.
    auto rowsOf = [](int r, std::int64_t n) {
      const auto base = r * 100.0 + torch::arange(n, torch::kDouble).unsqueeze(1);  // [n, 1]
      return torch::cat({base, base + 0.5}, 1);                                     // [n, 2]
    };
    std::vector<std::int64_t> gatheredCounts;
    const torch::Tensor gathered =
        comm.allGatherRows(rowsOf(comm.rank(), mine), "test.gather", &gatheredCounts);
    std::vector<torch::Tensor> expected;
    for (int r = 0; r < comm.size(); ++r) expected.push_back(rowsOf(r, counts[r]));
    EXPECT_TRUE(torch::equal(gathered, torch::cat(expected))) << gathered;
    EXPECT_EQ(gatheredCounts, counts);

    // 1-D labels, int64.
    const torch::Tensor labels = torch::full({mine}, comm.rank(), torch::kLong);
    const torch::Tensor allLabels = comm.allGatherRows(labels, "test.gatherLabels");
    std::vector<torch::Tensor> expectedLabels;
    for (int r = 0; r < comm.size(); ++r) expectedLabels.push_back(torch::full({counts[r]}, r, torch::kLong));
    EXPECT_TRUE(torch::equal(allLabels, torch::cat(expectedLabels)));
  }
  // Every rank empty: [0, 3, 2] keeps its trailing shape.
  const torch::Tensor none = comm.allGatherRows(torch::empty({0, 3, 2}), "test.gatherNone");
  EXPECT_EQ(none.sizes(), (std::vector<std::int64_t>{0, 3, 2}));
}

TEST(Collectives, ReduceScatterRowsUnevenAndEmpty) {
  Communicator& comm = testComm();
  for (const bool withEmpty : {false, true}) {
    const std::vector<std::int64_t> counts = rowCounts(comm.size(), withEmpty);
    std::int64_t total = 0, first = 0;
    for (int r = 0; r < comm.size(); ++r) {
      if (r == comm.rank()) first = total;
      total += counts[static_cast<std::size_t>(r)];
    }
    // Rank r sends (r + 1)·(row·10 + column) + r²: the sum over ranks has a closed form, and a
    // block from the wrong offset, a missing rank or a rank added twice cannot go unnoticed.
    const auto rowsOf = [&](int r, torch::ScalarType type) {
      const torch::Tensor cell = torch::arange(total, torch::kDouble).unsqueeze(1) * 10 + torch::arange(3, torch::kDouble);
      return ((r + 1) * cell + r * r).to(type);  // [N, 3]
    };
    const double w = comm.size();
    const double sumOfSquares = (w - 1) * w * (2 * w - 1) / 6;
    for (const auto type : {torch::kFloat32, torch::kFloat64}) {
      const torch::Tensor mine = comm.reduceScatterRows(rowsOf(comm.rank(), type), counts, "test.scatter");
      const torch::Tensor cell = torch::arange(total, torch::kDouble).unsqueeze(1) * 10 + torch::arange(3, torch::kDouble);
      const torch::Tensor expected = (w * (w + 1) / 2 * cell + sumOfSquares).narrow(0, first, counts[comm.rank()]);
      EXPECT_EQ(mine.scalar_type(), type);
      EXPECT_TRUE(torch::equal(mine, expected.to(type))) << mine << "\nexpected\n" << expected;
    }
  }
  // Trailing dimensions ride along: [N, 2, 2] → [n_rank, 2, 2].
  const std::vector<std::int64_t> counts = rowCounts(comm.size(), false);
  std::int64_t total = 0;
  for (const std::int64_t n : counts) total += n;
  const torch::Tensor block = comm.reduceScatterRows(torch::ones({total, 2, 2}), counts, "test.scatter3d");
  EXPECT_EQ(block.sizes(), (std::vector<std::int64_t>{counts[comm.rank()], 2, 2}));
  EXPECT_TRUE(torch::equal(block, torch::full({counts[comm.rank()], 2, 2}, static_cast<float>(comm.size()))));
  // Counts that do not add up to the rows fail on every rank before any transfer.
  std::vector<std::int64_t> wrong = counts;
  wrong.back() += 1;
  EXPECT_THROW(comm.reduceScatterRows(torch::ones({total, 2}), wrong, "test.wrongCounts"), c10::Error);
  if (comm.size() > 1) {
    EXPECT_THROW(comm.reduceScatterRows(torch::ones({total, 2}), {total}, "test.oneCount"), c10::Error);
  }
  comm.barrier("test.afterScatter");
}

TEST(Collectives, AllGatherRowsRejectsMismatchedTrailingShapeOnEveryRank) {
  Communicator& comm = testComm();
  if (comm.size() == 1) GTEST_SKIP() << "needs two ranks";
  // Rank-dependent width: every rank learns the layouts and throws, so none hangs.
  const torch::Tensor rows = torch::zeros({2, comm.rank() == 0 ? 3 : 4});
  EXPECT_THROW(comm.allGatherRows(rows, "test.mismatch"), c10::Error);
  comm.barrier("test.afterMismatch");  // collectives still line up afterwards
}

TEST(Collectives, CountersAccumulateBytesCallsAndSeconds) {
  Communicator& comm = testComm();
  comm.resetCounters();
  torch::Tensor buffer = torch::ones({10}, torch::kDouble);
  comm.allReduce(buffer, ReduceOp::Sum, "test.counters");
  comm.broadcast(buffer, 0, "test.counters");
  const CommCounters counters = comm.counters();
  EXPECT_EQ(counters.bytes, 2 * 10 * 8);
  EXPECT_EQ(counters.calls, 2);
  EXPECT_GE(counters.seconds, 0.0);
  if (comm.size() > 1) {
    EXPECT_GT(counters.seconds, 0.0);
  }
}

}  // namespace
}  // namespace repshape::dist
