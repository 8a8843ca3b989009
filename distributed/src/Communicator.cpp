#include <repshape/distributed/Communicator.h>

#include <atomic>
#include <cstdlib>

#include "detail/Backends.h"
#include "detail/MpiWorld.h"

namespace repshape::dist {

namespace {
std::function<void(int, const std::string&)>& fatalErrorHook() {
  static std::function<void(int, const std::string&)> hook;
  return hook;
}
}  // namespace

void setFatalErrorHook(std::function<void(int exitCode, const std::string& message)> hook) {
  fatalErrorHook() = std::move(hook);
}

void runFatalErrorHook(int exitCode, const std::string& message) {
  static std::atomic<bool> ran{false};  // the first fatal error is the one to record
  if (ran.exchange(true) || !fatalErrorHook()) return;
  try {
    fatalErrorHook()(exitCode, message);
  } catch (...) {  // the job is ending anyway; never let the record stop the abort
  }
}

torch::Tensor Communicator::reduceScatterRows(const torch::Tensor& rows, const std::vector<std::int64_t>& rowCounts,
                                              const char* what) {
  const std::int64_t first = detail::checkScatterRows(rows, rowCounts, size(), what)[static_cast<std::size_t>(rank())];
  torch::Tensor summed = rows.contiguous().clone();
  allReduce(summed, ReduceOp::Sum, what);
  return summed.narrow(0, first, rowCounts[static_cast<std::size_t>(rank())]);
}

namespace detail {

std::vector<std::int64_t> checkScatterRows(const torch::Tensor& rows, const std::vector<std::int64_t>& rowCounts,
                                           int size, const char* what) {
  TORCH_CHECK(rows.defined() && rows.dim() >= 1, "reduceScatterRows '", what, "': needs a tensor with a row dimension");
  TORCH_CHECK(rowCounts.size() == static_cast<std::size_t>(size), "reduceScatterRows '", what, "': ",
              rowCounts.size(), " row counts for ", size, " ranks");
  std::vector<std::int64_t> first(rowCounts.size());
  std::int64_t total = 0;
  for (std::size_t r = 0; r < rowCounts.size(); ++r) {
    TORCH_CHECK(rowCounts[r] >= 0, "reduceScatterRows '", what, "': rank ", r, " has a negative row count ",
                rowCounts[r]);
    first[r] = total;
    total += rowCounts[r];
  }
  TORCH_CHECK(total == rows.size(0), "reduceScatterRows '", what, "': the row counts sum to ", total, " but the tensor has ",
              rows.size(0), " rows");
  return first;
}

namespace {

// Rank 0 of 1: every collective is the identity; any device is accepted.
class SingleCommunicator final : public Communicator {
 public:
  explicit SingleCommunicator(double timeoutSeconds) : Communicator(timeoutSeconds) {}

  int rank() const override { return 0; }
  int size() const override { return 1; }
  int localRank() const override { return 0; }
  std::string backendName() const override { return "single"; }
  torch::Device device() const override { return torch::kCPU; }

  void allReduce(torch::Tensor& tensor, ReduceOp, const char*) override {
    TORCH_CHECK(tensor.defined(), "allReduce: undefined tensor");
    count(tensor.nbytes());
  }
  void broadcast(torch::Tensor& tensor, int root, const char* what) override {
    TORCH_CHECK(root == 0, "broadcast '", what, "': root ", root, " >= world size 1");
    count(tensor.nbytes());
  }
  torch::Tensor allGatherRows(const torch::Tensor& rows, const char* what,
                              std::vector<std::int64_t>* rowCounts) override {
    TORCH_CHECK(rows.defined() && rows.dim() >= 1, "allGatherRows '", what,
                "': needs a tensor with a row dimension");
    if (rowCounts != nullptr) *rowCounts = {rows.size(0)};
    count(rows.nbytes());
    return rows.contiguous().clone();
  }
  void barrier(const char*) override { count(0); }
  [[noreturn]] void abort(int exitCode, const std::string& why) override {
    abortJob(exitCode, why);
  }

 private:
  void count(std::size_t bytes) {
    counters_.bytes += static_cast<std::int64_t>(bytes);
    counters_.calls += 1;
  }
};

}  // namespace

std::unique_ptr<Communicator> makeSingleCommunicator(const CommOptions& options) {
  return std::make_unique<SingleCommunicator>(options.timeoutSeconds);
}

void checkGatherLayouts(const std::vector<std::int64_t>& layouts, const torch::Tensor& rows,
                        const char* what) {
  const std::size_t ranks = layouts.size() / kGatherFields;
  for (std::size_t r = 0; r < ranks; ++r) {
    const std::int64_t rowNumel = layouts[r * kGatherFields + 1];
    const std::int64_t dtype = layouts[r * kGatherFields + 2];
    TORCH_CHECK(rowNumel == layouts[1] && dtype == layouts[2], "allGatherRows '", what,
                "': rank ", r, " sends rows of ", rowNumel, " elements of dtype #", dtype,
                " but rank 0 sends ", layouts[1], " of dtype #", layouts[2], " (this rank: ",
                rows.sizes(), " ", rows.scalar_type(), ")");
  }
}

}  // namespace detail

bool launchedUnderMpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

std::unique_ptr<Communicator> makeCommunicator(const CommOptions& options) {
  TORCH_CHECK(options.timeoutSeconds > 0, "CommOptions::timeoutSeconds must be > 0, got ",
              options.timeoutSeconds);
  switch (options.backend) {
    case Backend::Auto:
      return launchedUnderMpi() ? detail::makeMpiCommunicator(options)
                                : detail::makeSingleCommunicator(options);
    case Backend::Single:
      return detail::makeSingleCommunicator(options);
    case Backend::Mpi:
      return detail::makeMpiCommunicator(options);
    case Backend::Nccl:
#ifdef REPSHAPE_HAVE_NCCL
      return detail::makeNcclCommunicator(options);
#else
      TORCH_CHECK(false, "backend 'nccl' requested but repshape was built without NCCL "
                         "(configure with CUDAToolkit and NCCL, REPSHAPE_WITH_NCCL=ON)");
#endif
  }
  TORCH_CHECK(false, "unknown backend #", static_cast<int>(options.backend));
}

}  // namespace repshape::dist
