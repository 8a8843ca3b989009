#pragma once
// Constructors of the concrete backends (Communicator.cpp picks one) and helpers they share.

#include <repshape/distributed/Communicator.h>

#include <chrono>
#include <memory>

namespace repshape::dist::detail {

std::unique_ptr<Communicator> makeSingleCommunicator(const CommOptions& options);
std::unique_ptr<Communicator> makeMpiCommunicator(const CommOptions& options);
// Defined only when built with NCCL (REPSHAPE_HAVE_NCCL); Communicator.cpp checks the macro.
std::unique_ptr<Communicator> makeNcclCommunicator(const CommOptions& options);

// Wall time of one collective, for CommCounters::seconds.
class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Row-count exchange of allGatherRows, as one int64 triple per rank: {rows, elements per row,
// dtype}. Throws (identically on every rank) when the trailing shapes or dtypes differ.
constexpr int kGatherFields = 3;
void checkGatherLayouts(const std::vector<std::int64_t>& layouts, const torch::Tensor& rows,
                        const char* what);
// Checks reduceScatterRows' arguments (a row dimension, one non-negative count per rank summing to
// the rows) and returns every rank's first row, [size].
std::vector<std::int64_t> checkScatterRows(const torch::Tensor& rows, const std::vector<std::int64_t>& rowCounts,
                                           int size, const char* what);

}  // namespace repshape::dist::detail
