// NCCL backend: CUDA tensors, one GPU per rank (cudaSetDevice(local rank) before any other CUDA
// call), bootstrapped over MPI (rank 0's ncclUniqueId is broadcast with MPI).
//
// Built only when REPSHAPE_WITH_NCCL is ON. It uses no c10/cuda API, so it compiles against the
// CPU-only Debian LibTorch as well as CUDA builds of LibTorch 2.x: device pointers come from
// tensor.data_ptr() and the collectives run on the legacy default stream, which is LibTorch's
// default CUDA stream, so they are ordered after the kernels that produced their inputs.
//
// Deadline: the communicator is non-blocking (ncclConfig_t::blocking = 0); completion is polled
// with cudaStreamQuery + ncclCommGetAsyncError, and on timeout the communicator is aborted
// (ncclCommAbort) before MPI_Abort ends every rank.

#include <cuda_runtime.h>
#include <nccl.h>

#include "detail/Backends.h"
#include "detail/MpiWorld.h"

#define REPSHAPE_CUDA_CHECK(expr)                                                            \
  do {                                                                                       \
    const cudaError_t repshapeCudaRc_ = (expr);                                              \
    if (repshapeCudaRc_ != cudaSuccess) {                                                    \
      ::repshape::dist::detail::failCall("CUDA", #expr, __FILE__, __LINE__,                  \
                                         cudaGetErrorString(repshapeCudaRc_), abortComm());  \
    }                                                                                        \
  } while (0)

// ncclInProgress is the normal answer of a non-blocking communicator.
#define REPSHAPE_NCCL_CHECK(expr)                                                            \
  do {                                                                                       \
    const ncclResult_t repshapeNcclRc_ = (expr);                                             \
    if (repshapeNcclRc_ != ncclSuccess && repshapeNcclRc_ != ncclInProgress) {               \
      ::repshape::dist::detail::failCall("NCCL", #expr, __FILE__, __LINE__,                  \
                                         ncclErrorText(repshapeNcclRc_), abortComm());       \
    }                                                                                        \
  } while (0)

namespace repshape::dist::detail {
namespace {

ncclDataType_t ncclType(torch::ScalarType type, const char* what) {
  switch (type) {
    case torch::kFloat: return ncclFloat32;
    case torch::kDouble: return ncclFloat64;
    case torch::kHalf: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kLong: return ncclInt64;
    case torch::kInt: return ncclInt32;
    case torch::kChar: return ncclInt8;
    case torch::kByte: return ncclUint8;
    default: break;
  }
  TORCH_CHECK(false, "NCCL collective '", what, "': unsupported dtype ", type);
}

ncclRedOp_t ncclOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
  }
  return ncclSum;
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(double timeoutSeconds)
      : Communicator(timeoutSeconds), world_(MpiWorld::instance()) {
    int devices = 0;
    REPSHAPE_CUDA_CHECK(cudaGetDeviceCount(&devices));
    if (world_.localRank() >= devices) {
      abortJob(kCommFailureExitCode, "NCCL backend: local rank " +
                                         std::to_string(world_.localRank()) + " but only " +
                                         std::to_string(devices) + " CUDA device(s) on this node");
    }
    REPSHAPE_CUDA_CHECK(cudaSetDevice(world_.localRank()));  // first: NCCL binds the current device

    ncclUniqueId id;
    if (world_.rank() == 0) REPSHAPE_NCCL_CHECK(ncclGetUniqueId(&id));
    MPI_Request request = MPI_REQUEST_NULL;
    REPSHAPE_MPI_CHECK(MPI_Ibcast(&id, sizeof(id), MPI_BYTE, 0, world_.world(), &request));
    world_.wait(request, Pending{"nccl.bootstrap", 0, timeoutSeconds_});

    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // calls return at once, so a dead peer cannot block us past the deadline
    REPSHAPE_NCCL_CHECK(ncclCommInitRankConfig(&comm_, world_.size(), id, world_.rank(), &config));
    waitForNccl(Pending{"nccl.init", 0, timeoutSeconds_}, /*stream=*/false);
  }

  ~NcclCommunicator() override {
    if (comm_ != nullptr) ncclCommDestroy(comm_);  // no check: never throw from a destructor
  }

  int rank() const override { return world_.rank(); }
  int size() const override { return world_.size(); }
  int localRank() const override { return world_.localRank(); }
  std::string backendName() const override { return "nccl"; }
  torch::Device device() const override {
    return torch::Device(torch::kCUDA, static_cast<torch::DeviceIndex>(world_.localRank()));
  }

  void allReduce(torch::Tensor& tensor, ReduceOp op, const char* what) override {
    checkTensor(tensor, "allReduce", what);
    const Stopwatch watch;
    const Pending pending{what, ++seq_, timeoutSeconds_};
    REPSHAPE_NCCL_CHECK(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(),
                                      static_cast<std::size_t>(tensor.numel()),
                                      ncclType(tensor.scalar_type(), what), ncclOp(op), comm_,
                                      kStream));
    waitForNccl(pending, /*stream=*/true);
    account(static_cast<std::int64_t>(tensor.nbytes()), watch.seconds());
  }

  void broadcast(torch::Tensor& tensor, int root, const char* what) override {
    checkTensor(tensor, "broadcast", what);
    TORCH_CHECK(root >= 0 && root < size(), "broadcast '", what, "': root ", root,
                " outside [0, ", size(), ")");
    const Stopwatch watch;
    const Pending pending{what, ++seq_, timeoutSeconds_};
    REPSHAPE_NCCL_CHECK(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), tensor.nbytes(),
                                      ncclUint8, root, comm_, kStream));
    waitForNccl(pending, /*stream=*/true);
    account(static_cast<std::int64_t>(tensor.nbytes()), watch.seconds());
  }

  torch::Tensor allGatherRows(const torch::Tensor& input, const char* what,
                              std::vector<std::int64_t>* rowCounts) override {
    TORCH_CHECK(input.defined() && input.dim() >= 1, "allGatherRows '", what,
                "': needs a tensor with a row dimension");
    const torch::Tensor rows = input.contiguous();
    checkTensor(rows, "allGatherRows", what);
    const Stopwatch watch;
    const Pending pending{what, ++seq_, timeoutSeconds_};
    const std::int64_t rowNumel = rows.size(0) > 0 ? rows.numel() / rows.size(0)
                                                   : rows.reshape({0, -1}).size(1);
    // Row counts are host data: exchange them over MPI instead of a device round trip.
    const std::vector<std::int64_t> layouts = world_.allGatherInt64(
        {rows.size(0), rowNumel, static_cast<std::int64_t>(rows.scalar_type())}, pending);
    checkGatherLayouts(layouts, rows, what);
    std::vector<std::int64_t> counts(static_cast<std::size_t>(size()));
    std::int64_t total = 0;
    for (int r = 0; r < size(); ++r) total += counts[r] = layouts[r * kGatherFields];
    std::vector<std::int64_t> shape = rows.sizes().vec();
    shape[0] = total;
    torch::Tensor gathered = torch::empty(shape, rows.options());
    const std::size_t rowBytes = static_cast<std::size_t>(rowNumel) * rows.element_size();
    if (total > 0 && rowBytes > 0) {
      // Uneven all-gather = one broadcast per rank with rows, fused in a group.
      auto* out = static_cast<char*>(gathered.data_ptr());
      REPSHAPE_NCCL_CHECK(ncclGroupStart());
      std::size_t offset = 0;
      for (int r = 0; r < size(); ++r) {
        const std::size_t bytes = static_cast<std::size_t>(counts[r]) * rowBytes;
        if (bytes == 0) continue;  // every rank skips the same roots
        REPSHAPE_NCCL_CHECK(ncclBroadcast(rows.data_ptr(), out + offset, bytes, ncclUint8, r,
                                          comm_, kStream));
        offset += bytes;
      }
      REPSHAPE_NCCL_CHECK(ncclGroupEnd());
      waitForNccl(pending, /*stream=*/true);
    }
    if (rowCounts != nullptr) *rowCounts = std::move(counts);
    account(static_cast<std::int64_t>(gathered.nbytes() + layouts.size() * sizeof(std::int64_t)), watch.seconds());
    return gathered;
  }

  torch::Tensor reduceScatterRows(const torch::Tensor& input, const std::vector<std::int64_t>& rowCounts,
                                  const char* what) override {
    const std::vector<std::int64_t> first = checkScatterRows(input, rowCounts, size(), what);
    const torch::Tensor rows = input.contiguous();
    checkTensor(rows, "reduceScatterRows", what);
    const Stopwatch watch;
    const Pending pending{what, ++seq_, timeoutSeconds_};
    torch::Tensor block = torch::empty(rows.narrow(0, first[rank()], rowCounts[rank()]).sizes(), rows.options());
    const std::int64_t rowNumel = rows.size(0) > 0 ? rows.numel() / rows.size(0) : 0;
    if (rowNumel > 0) {
      // Uneven reduce-scatter = one reduce per rank with rows, to that rank, fused in a group.
      const ncclDataType_t type = ncclType(rows.scalar_type(), what);
      const auto* in = static_cast<const char*>(rows.data_ptr());
      const std::size_t rowBytes = static_cast<std::size_t>(rowNumel) * rows.element_size();
      REPSHAPE_NCCL_CHECK(ncclGroupStart());
      for (int r = 0; r < size(); ++r) {
        const auto n = static_cast<std::size_t>(rowCounts[r]);
        if (n == 0) continue;  // every rank skips the same roots
        REPSHAPE_NCCL_CHECK(ncclReduce(in + static_cast<std::size_t>(first[r]) * rowBytes,
                                       r == rank() ? block.data_ptr() : nullptr, n * static_cast<std::size_t>(rowNumel),
                                       type, ncclSum, r, comm_, kStream));
      }
      REPSHAPE_NCCL_CHECK(ncclGroupEnd());
      waitForNccl(pending, /*stream=*/true);
    }
    account(static_cast<std::int64_t>(rows.nbytes()), watch.seconds());
    return block;
  }

  // Host-side barrier over MPI; GPU work already enqueued is not waited for.
  void barrier(const char* what) override {
    const Stopwatch watch;
    const Pending pending{what, ++seq_, timeoutSeconds_};
    MPI_Request request = MPI_REQUEST_NULL;
    REPSHAPE_MPI_CHECK(MPI_Ibarrier(world_.world(), &request));
    world_.wait(request, pending);
    account(0, watch.seconds());
  }

  [[noreturn]] void abort(int exitCode, const std::string& why) override {
    abortJob(exitCode, why, abortComm());
  }

 private:
  static inline const cudaStream_t kStream = cudaStreamLegacy;

  std::string ncclErrorText(ncclResult_t rc) const {
    std::string text = ncclGetErrorString(rc);
    if (comm_ != nullptr) {
      const char* last = ncclGetLastError(comm_);
      if (last != nullptr && *last != '\0') text += std::string(" (") + last + ")";
    }
    return text;
  }

  // Runs before MPI_Abort: frees NCCL's proxy threads and kernels stuck on a dead peer.
  std::function<void()> abortComm() {
    return [this] {
      if (comm_ != nullptr) ncclCommAbort(comm_);
      comm_ = nullptr;
    };
  }

  void checkTensor(const torch::Tensor& tensor, const char* op, const char* what) const {
    TORCH_CHECK(tensor.defined(), op, " '", what, "': undefined tensor");
    TORCH_CHECK(tensor.device() == device(), op, " '", what, "': the NCCL backend of local rank ",
                localRank(), " takes tensors on ", device(), ", got ", tensor.device());
    TORCH_CHECK(tensor.is_contiguous(), op, " '", what, "': tensor must be contiguous (sizes ",
                tensor.sizes(), ", strides ", tensor.strides(), ")");
  }

  // Polls until NCCL has no operation in progress and (if `stream`) the stream is idle.
  void waitForNccl(const Pending& pending, bool stream) {
    world_.waitUntil(
        [&] {
          ncclResult_t state = ncclSuccess;
          REPSHAPE_NCCL_CHECK(ncclCommGetAsyncError(comm_, &state));
          if (state == ncclInProgress) return false;
          if (state != ncclSuccess) {
            failCall("NCCL", pending.what, __FILE__, __LINE__,
                     "asynchronous error: " + ncclErrorText(state), abortComm());
          }
          if (!stream) return true;
          const cudaError_t query = cudaStreamQuery(kStream);
          if (query == cudaErrorNotReady) return false;
          REPSHAPE_CUDA_CHECK(query);
          return true;
        },
        pending, abortComm());
  }

  MpiWorld& world_;
  ncclComm_t comm_ = nullptr;
  std::int64_t seq_ = 0;  // collectives issued on this communicator, for error messages
};

}  // namespace

std::unique_ptr<Communicator> makeNcclCommunicator(const CommOptions& options) {
  return std::make_unique<NcclCommunicator>(options.timeoutSeconds);
}

}  // namespace repshape::dist::detail
