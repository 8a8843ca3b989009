#pragma once
// Shared by the distributed tests: one communicator per process (MPI under mpirun, else Single)
// and data every rank can rebuild in full, so a one-process reference on the concatenation runs
// inside the same test process.

#include <repshape/distributed/Communicator.h>

#include <memory>
#include <vector>

namespace repshape::dist::testing {

inline Communicator& testComm() {
  static std::unique_ptr<Communicator> comm = [] {
    CommOptions options;
    options.timeoutSeconds = 60.0;  // a broken test fails fast instead of hanging CI
    return makeCommunicator(options);
  }();
  return *comm;
}

// Rows per rank. withEmpty: rank 1 gets none (uneven and empty shards, pytorch#36530, #22192).
inline std::vector<std::int64_t> rowCounts(int worldSize, bool withEmpty) {
  std::vector<std::int64_t> counts;
  for (int r = 0; r < worldSize; ++r) counts.push_back(withEmpty && r == 1 ? 0 : 3 + 2 * r);
  return counts;
}

inline std::int64_t firstRow(const std::vector<std::int64_t>& counts, int rank) {
  std::int64_t offset = 0;
  for (int r = 0; r < rank; ++r) offset += counts[static_cast<std::size_t>(r)];
  return offset;
}

// This rank's contiguous slice of `all` (rows), like the trainer's shard of a global batch.
inline torch::Tensor shardOf(const torch::Tensor& all, const std::vector<std::int64_t>& counts,
                             int rank) {
  return all.narrow(0, firstRow(counts, rank), counts[static_cast<std::size_t>(rank)]);
}

}  // namespace repshape::dist::testing
