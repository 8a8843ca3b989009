#pragma once
// repshape/distributed: who the ranks are and how tensors move between them.
//
// Three backends behind one interface: SingleProcess (rank 0 of 1, the default when not launched by
// mpirun), MPI (CPU tensors, Open MPI) and NCCL (CUDA tensors, bootstrapped over MPI). Distributed
// code runs unchanged on one process. This folder knows nothing about penalties or models.
//
// Every collective takes a short name (`what`) used in error messages and fault reports, and has a
// deadline (CommOptions::timeoutSeconds): a rank that crashes or stalls makes every other rank fail
// with an error naming the operation and the rank, never hang.

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>

namespace repshape::dist {

enum class ReduceOp { Sum, Max, Min };

enum class Backend { Auto, Single, Mpi, Nccl };

struct CommOptions {
  Backend backend = Backend::Auto;  // Auto: MPI when launched by mpirun, else Single
  double timeoutSeconds = 300.0;    // deadline of every collective
};

// Bytes moved and seconds spent in collectives since the last reset; rank-local.
struct CommCounters {
  std::int64_t bytes = 0;
  double seconds = 0.0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int localRank() const = 0;  // rank among the processes of this node
  virtual std::string backendName() const = 0;
  virtual torch::Device device() const = 0;  // where this backend's tensors must live

  // In place on a contiguous tensor of this backend's device. Every rank must call every
  // collective in the same order with the same shape (allGatherRows: same trailing shape).
  virtual void allReduce(torch::Tensor& tensor, ReduceOp op, const char* what) = 0;
  virtual void broadcast(torch::Tensor& tensor, int root, const char* what) = 0;
  // Concatenation of every rank's rows, in rank order: input [n_r, ...] → [Σ_r n_r, ...].
  // n_r may differ between ranks and may be 0.
  virtual torch::Tensor allGatherRows(const torch::Tensor& rows, const char* what) = 0;
  virtual void barrier(const char* what) = 0;

  // Ends every rank of the job at once (MPI_Abort / ncclCommAbort); for fatal errors only.
  [[noreturn]] virtual void abort(int exitCode, const std::string& why) = 0;

  CommCounters counters() const { return counters_; }
  void resetCounters() { counters_ = {}; }

 protected:
  CommCounters counters_;
};

// Creates the backend chosen by `options` (Auto: MPI when the process was started by mpirun).
// MPI is initialised on first use and finalised at exit.
std::unique_ptr<Communicator> makeCommunicator(const CommOptions& options);

// True when this process was launched by mpirun/srun with an MPI world of size > 1 or an
// explicit MPI environment (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK).
bool launchedUnderMpi();

// ---- Differentiable collectives -------------------------------------------------------------
// Raw collectives are not differentiable. These autograd functions fix one convention (SPEC §4):
// each rank's objective is its share of the global objective, parameter gradients are SUMMED
// across ranks after backward.

// How the gradient of an all-reduced tensor flows back.
enum class ReduceBackward {
  // The reduced value is consumed identically on every rank and the consumer's loss is added in
  // full on every rank (penalties from global statistics): d/dlocal = d/dglobal on this rank.
  // Summing parameter gradients across ranks then yields the exact global gradient.
  Identity,
  // Each rank consumes the reduced value differently (batch norm normalising its own rows): the
  // gradient is itself all-reduced (summed) so every rank's contribution reaches every input.
  Sum,
};

// Sum over ranks, differentiable.
torch::Tensor allReduceSum(Communicator& comm, const torch::Tensor& local, ReduceBackward backward,
                           const char* what);
// Element-wise max over ranks, differentiable: the gradient of each element goes to the ranks whose
// local value equals the global maximum (replicated consumer, as Identity above).
torch::Tensor allReduceMax(Communicator& comm, const torch::Tensor& local, const char* what);
// All-gather of rows for a replicated consumer: backward returns this rank's slice of the incoming
// gradient (no scale, no reduction).
torch::Tensor allGatherRows(Communicator& comm, const torch::Tensor& rows, const char* what);

}  // namespace repshape::dist
