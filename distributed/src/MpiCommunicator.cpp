// MPI backend: CPU tensors over Open MPI, every collective non-blocking and polled against the
// deadline by MpiWorld::wait.

#include <algorithm>
#include <climits>

#include "detail/Backends.h"
#include "detail/IallreduceAlgorithm.h"
#include "detail/MpiWorld.h"

namespace repshape::dist::detail {
namespace {

// Element type of a reduction; half/bfloat16 have no MPI type and are rejected.
MPI_Datatype mpiType(torch::ScalarType type, const char* what) {
  switch (type) {
    case torch::kFloat: return MPI_FLOAT;
    case torch::kDouble: return MPI_DOUBLE;
    case torch::kLong: return MPI_INT64_T;
    case torch::kInt: return MPI_INT32_T;
    case torch::kShort: return MPI_INT16_T;
    case torch::kChar: return MPI_INT8_T;
    case torch::kByte: return MPI_UINT8_T;
    default: break;
  }
  TORCH_CHECK(false, "MPI reduction '", what, "': unsupported dtype ", type);
}

MPI_Op mpiOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return MPI_SUM;
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Min: return MPI_MIN;
  }
  return MPI_SUM;
}

void checkCpuTensor(const torch::Tensor& tensor, const char* op, const char* what) {
  TORCH_CHECK(tensor.defined(), op, " '", what, "': undefined tensor");
  TORCH_CHECK(tensor.device().is_cpu(), op, " '", what, "': the MPI backend takes CPU tensors, got ",
              tensor.device());
  TORCH_CHECK(tensor.is_contiguous(), op, " '", what, "': tensor must be contiguous (sizes ",
              tensor.sizes(), ", strides ", tensor.strides(), ")");
}

// MPI counts are int: large buffers go in chunks of this many elements.
constexpr std::int64_t kMaxChunk = std::int64_t{1} << 30;
// Point-to-point tag of reduceScatterRows' ring; collectives never match point-to-point messages.
constexpr int kScatterTag = 0x5253;

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(double timeoutSeconds)
      : Communicator(timeoutSeconds), world_(MpiWorld::instance()), schedule_(IallreduceAlgorithm::instance()) {
    REPSHAPE_MPI_CHECK(MPI_Comm_dup(world_.world(), &comm_));
    REPSHAPE_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);  // no check: never throw or abort from a destructor
  }

  int rank() const override { return world_.rank(); }
  int size() const override { return world_.size(); }
  int localRank() const override { return world_.localRank(); }
  std::string backendName() const override { return "mpi"; }
  torch::Device device() const override { return torch::kCPU; }

  void allReduce(torch::Tensor& tensor, ReduceOp op, const char* what) override {
    checkCpuTensor(tensor, "allReduce", what);
    const Stopwatch watch;
    const Pending pending{what, ++seq_, timeoutSeconds_};
    const MPI_Datatype type = mpiType(tensor.scalar_type(), what);
    auto* data = static_cast<char*>(tensor.data_ptr());
    const std::int64_t elementBytes = tensor.element_size();
    std::int64_t begin = 0;
    do {  // one call even for an empty tensor: every rank issues the same collectives
      const int count = static_cast<int>(std::min(kMaxChunk, tensor.numel() - begin));
      MPI_Request request = MPI_REQUEST_NULL;
      REPSHAPE_MPI_CHECK(schedule_.start(data + begin * elementBytes, count, static_cast<int>(elementBytes),
                                         type, mpiOp(op), comm_, size(), &request));
      world_.wait(request, pending);
      begin += kMaxChunk;
    } while (begin < tensor.numel());
    account(static_cast<std::int64_t>(tensor.nbytes()), watch.seconds());
  }

  void broadcast(torch::Tensor& tensor, int root, const char* what) override {
    checkCpuTensor(tensor, "broadcast", what);
    TORCH_CHECK(root >= 0 && root < size(), "broadcast '", what, "': root ", root,
                " outside [0, ", size(), ")");
    const Stopwatch watch;
    const Pending pending{what, ++seq_, timeoutSeconds_};
    auto* data = static_cast<char*>(tensor.data_ptr());
    const auto bytes = static_cast<std::int64_t>(tensor.nbytes());
    std::int64_t begin = 0;
    do {
      const int count = static_cast<int>(std::min(kMaxChunk, bytes - begin));
      MPI_Request request = MPI_REQUEST_NULL;
      REPSHAPE_MPI_CHECK(MPI_Ibcast(data + begin, count, MPI_BYTE, root, comm_, &request));
      world_.wait(request, pending);
      begin += kMaxChunk;
    } while (begin < bytes);
    account(static_cast<std::int64_t>(tensor.nbytes()), watch.seconds());
  }

  torch::Tensor allGatherRows(const torch::Tensor& input, const char* what,
                              std::vector<std::int64_t>* rowCounts) override {
    TORCH_CHECK(input.defined() && input.dim() >= 1, "allGatherRows '", what,
                "': needs a tensor with a row dimension");
    const torch::Tensor rows = input.contiguous();
    checkCpuTensor(rows, "allGatherRows", what);
    const Stopwatch watch;
    const Pending pending{what, ++seq_, timeoutSeconds_};
    const std::int64_t rowNumel = rowElements(rows);
    const std::vector<std::int64_t> layouts = gatherLayouts(rows, rowNumel, pending);
    checkGatherLayouts(layouts, rows, what);

    std::vector<std::int64_t> counts(static_cast<std::size_t>(size()));
    std::int64_t total = 0;
    for (int r = 0; r < size(); ++r) total += counts[r] = layouts[r * kGatherFields];
    std::vector<std::int64_t> shape = rows.sizes().vec();
    shape[0] = total;
    torch::Tensor gathered = torch::empty(shape, rows.options());
    const std::int64_t rowBytes = rowNumel * rows.element_size();
    if (total > 0 && rowBytes > 0) {
      TORCH_CHECK(total <= INT_MAX, "allGatherRows '", what, "': ", total, " rows exceed MPI's int");
      // Counts in rows of a contiguous datatype, so byte totals may exceed INT_MAX.
      MPI_Datatype rowType = MPI_DATATYPE_NULL;
      REPSHAPE_MPI_CHECK(MPI_Type_contiguous(static_cast<int>(rowBytes), MPI_BYTE, &rowType));
      REPSHAPE_MPI_CHECK(MPI_Type_commit(&rowType));
      std::vector<int> recvCounts(counts.size());
      std::vector<int> displacements(counts.size());
      int offset = 0;
      for (std::size_t r = 0; r < counts.size(); ++r) {
        recvCounts[r] = static_cast<int>(counts[r]);
        displacements[r] = offset;
        offset += recvCounts[r];
      }
      MPI_Request request = MPI_REQUEST_NULL;
      REPSHAPE_MPI_CHECK(MPI_Iallgatherv(rows.data_ptr(), static_cast<int>(rows.size(0)), rowType,
                                         gathered.data_ptr(), recvCounts.data(),
                                         displacements.data(), rowType, comm_, &request));
      world_.wait(request, pending);
      REPSHAPE_MPI_CHECK(MPI_Type_free(&rowType));
    }
    if (rowCounts != nullptr) *rowCounts = std::move(counts);
    account(static_cast<std::int64_t>(gathered.nbytes() + layouts.size() * sizeof(std::int64_t)), watch.seconds());
    return gathered;
  }

  // The reduce-scatter half of a ring all-reduce, over point-to-point messages: at step s = 0 …
  // W − 2, rank r sends its partial sum of block (r − 1 − s) mod W to rank r + 1 and receives the
  // partial sum of block (r − 2 − s) mod W from rank r − 1, adding its own rows of that block; after
  // the last step it holds block r summed over every rank. Each rank sends (W − 1)/W of the rows,
  // half the bytes of the ring all-reduce, and every addition happens on the receiving rank. (libnbc's
  // MPI_Ireduce_scatter reduces everything on rank 0 and scatters from there: slower at W = 2.)
  torch::Tensor reduceScatterRows(const torch::Tensor& input, const std::vector<std::int64_t>& rowCounts,
                                  const char* what) override {
    const std::vector<std::int64_t> first = checkScatterRows(input, rowCounts, size(), what);
    const torch::Tensor rows = input.contiguous();  // read only: no staging copy
    checkCpuTensor(rows, "reduceScatterRows", what);
    const Stopwatch watch;
    const Pending pending{what, ++seq_, timeoutSeconds_};
    const int w = size(), me = rank();
    const std::int64_t rowNumel = rowElements(rows);
    std::int64_t most = 0;
    for (int b = 0; b < w; ++b) {
      const std::int64_t n = rowCounts[static_cast<std::size_t>(b)];
      TORCH_CHECK(n * rowNumel <= INT_MAX, "reduceScatterRows '", what, "': rank ", b, "'s ", n, " rows of ", rowNumel,
                  " elements exceed MPI's int");
      most = std::max(most, n);
    }
    const auto ownRows = [&](int b) { return rows.narrow(0, first[b], rowCounts[static_cast<std::size_t>(b)]); };
    torch::Tensor result = torch::empty(ownRows(me).sizes(), rows.options());
    if (w == 1) return result.copy_(rows);
    std::vector<std::int64_t> bufferShape = rows.sizes().vec();
    bufferShape[0] = most;
    const torch::Tensor received = torch::empty(bufferShape, rows.options());
    torch::Tensor partial[2] = {torch::empty(bufferShape, rows.options()), torch::empty(bufferShape, rows.options())};
    const MPI_Datatype type = mpiType(rows.scalar_type(), what);
    const int next = (me + 1) % w, previous = (me + w - 1) % w;
    torch::Tensor sending = ownRows(previous);  // step 0 sends block r − 1 as this rank has it
    for (int step = 0; step + 1 < w; ++step) {
      const int in = ((me - 2 - step) % w + w) % w;  // the block this step adds to
      const std::int64_t n = rowCounts[static_cast<std::size_t>(in)];
      torch::Tensor incoming = received.narrow(0, 0, n);
      MPI_Request requests[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
      REPSHAPE_MPI_CHECK(MPI_Irecv(incoming.data_ptr(), static_cast<int>(n * rowNumel), type, previous,
                                   kScatterTag, comm_, &requests[0]));
      REPSHAPE_MPI_CHECK(MPI_Isend(sending.data_ptr(), static_cast<int>(sending.numel()), type, next, kScatterTag,
                                   comm_, &requests[1]));
      world_.wait(requests[0], pending);
      torch::Tensor sum = step + 2 == w ? result : partial[step % 2].narrow(0, 0, n);
      at::add_out(sum, incoming, ownRows(in));
      world_.wait(requests[1], pending);
      sending = sum;
    }
    account(static_cast<std::int64_t>(rows.nbytes()), watch.seconds());
    return result;
  }

  void barrier(const char* what) override {
    const Stopwatch watch;
    const Pending pending{what, ++seq_, timeoutSeconds_};
    MPI_Request request = MPI_REQUEST_NULL;
    REPSHAPE_MPI_CHECK(MPI_Ibarrier(comm_, &request));
    world_.wait(request, pending);
    account(0, watch.seconds());
  }

  [[noreturn]] void abort(int exitCode, const std::string& why) override {
    abortJob(exitCode, why);
  }

 private:
  static std::int64_t rowElements(const torch::Tensor& rows) {
    std::int64_t n = 1;
    for (std::int64_t d = 1; d < rows.dim(); ++d) n *= rows.size(d);
    return n;
  }

  // {rows, elements per row, dtype} of every rank, [size * kGatherFields].
  std::vector<std::int64_t> gatherLayouts(const torch::Tensor& rows, std::int64_t rowNumel,
                                          const Pending& pending) {
    std::vector<std::int64_t> mine = {rows.size(0), rowNumel,
                                      static_cast<std::int64_t>(rows.scalar_type())};
    std::vector<std::int64_t> all(mine.size() * static_cast<std::size_t>(size()));
    MPI_Request request = MPI_REQUEST_NULL;
    REPSHAPE_MPI_CHECK(MPI_Iallgather(mine.data(), kGatherFields, MPI_INT64_T, all.data(),
                                      kGatherFields, MPI_INT64_T, comm_, &request));
    world_.wait(request, pending);
    return all;
  }

  MpiWorld& world_;
  const IallreduceAlgorithm& schedule_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::int64_t seq_ = 0;  // collectives issued on this communicator, for error messages
};

}  // namespace

std::unique_ptr<Communicator> makeMpiCommunicator(const CommOptions& options) {
  return std::make_unique<MpiCommunicator>(options.timeoutSeconds);
}

}  // namespace repshape::dist::detail
