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
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace repshape::dist {

enum class ReduceOp { Sum, Max, Min };

enum class Backend { Auto, Single, Mpi, Nccl };

struct CommOptions {
  Backend backend = Backend::Auto;  // Auto: MPI when launched by mpirun, else Single
  double timeoutSeconds = 300.0;    // deadline of every collective
};

// Bytes moved and seconds spent in collectives since the last reset; rank-local.
// bytes: payload of allReduce/broadcast/reduceScatterRows (its whole input), the gathered result of
// allGatherRows (incl. row counts).
// seconds: wall time from entering the collective until its result is usable on this rank
// (includes waiting for late ranks).
struct CommCounters {
  std::int64_t bytes = 0;
  double seconds = 0.0;
  std::int64_t calls = 0;  // collectives issued (barriers included)
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
  // n_r may differ between ranks and may be 0; trailing shape and dtype must match (checked).
  // rowCounts (optional) receives n_r for every rank, [size].
  virtual torch::Tensor allGatherRows(const torch::Tensor& rows, const char* what,
                                      std::vector<std::int64_t>* rowCounts = nullptr) = 0;
  // The adjoint of allGatherRows: rows [Σ_r n_r, ...] (same shape and dtype on every rank) summed
  // over ranks, of which this rank keeps its own block [n_rank, ...] (rows Σ_{r<rank} n_r onwards);
  // rowCounts = n_r of every rank, identical on every rank (allGatherRows' rowCounts). A ring
  // moves half an all-reduce's bytes for it. The default all-reduces a copy and keeps the block.
  virtual torch::Tensor reduceScatterRows(const torch::Tensor& rows, const std::vector<std::int64_t>& rowCounts,
                                          const char* what);
  virtual void barrier(const char* what) = 0;

  double timeoutSeconds() const { return timeoutSeconds_; }

  // Ends every rank of the job at once (MPI_Abort / ncclCommAbort); for fatal errors only.
  [[noreturn]] virtual void abort(int exitCode, const std::string& why) = 0;

  CommCounters counters() const { return counters_; }
  void resetCounters() { counters_ = {}; }

 protected:
  explicit Communicator(double timeoutSeconds = 300.0) : timeoutSeconds_(timeoutSeconds) {}
  // Every backend records each finished collective here.
  void account(std::int64_t bytes, double seconds) {
    counters_.bytes += bytes;
    counters_.seconds += seconds;
    counters_.calls += 1;
  }
  CommCounters counters_;
  double timeoutSeconds_;
};

// Called once, on the failing rank, when a collective error or deadline is about to end the job
// (before MPI_Abort): the runner records the failure (result.json) here. Must not throw or issue
// collectives. Also run by Communicator::abort.
void setFatalErrorHook(std::function<void(int exitCode, const std::string& message)> hook);
void runFatalErrorHook(int exitCode, const std::string& message);

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
// Element-wise max over ranks, differentiable: the gradient of each element goes to the lowest rank
// whose local value equals the global maximum (replicated consumer, as Identity above), so a tie
// across ranks is counted once. Costs two collectives (MAX of values, MIN of the tied rank).
torch::Tensor allReduceMax(Communicator& comm, const torch::Tensor& local, const char* what);
// All-gather of rows for a replicated consumer: backward returns this rank's slice of the incoming
// gradient (no scale, no reduction). Ranks may contribute different row counts, including 0;
// rowCounts (optional) receives them, [size].
torch::Tensor allGatherRows(Communicator& comm, const torch::Tensor& rows, const char* what,
                            std::vector<std::int64_t>* rowCounts = nullptr);
// For a value each rank computes a different share of from gathered rows (a class-wise penalty
// over the rows of the classes this rank owns, SPEC §4 "ranks split the terms"): the values of
// `gathered` (allGatherRows of `local`, or the same columns of one; its own graph is not used),
// whose backward SUMS the incoming gradient over ranks and hands `local` its block of rows — every
// rank's share reaches every rank's rows, in one reduceScatterRows (half the bytes of summing the
// whole gradient and slicing it). rowCounts: the gather's. Every rank must reach this node in
// backward (use the tensor on every rank). One rank: `local` itself.
torch::Tensor sumGradientsToRows(Communicator& comm, const torch::Tensor& gathered, const torch::Tensor& local,
                                 const std::vector<std::int64_t>& rowCounts, const char* what);
// On one rank all these return their input (identity forward and backward, nothing copied).
// They accept tensors on any device (moved to comm.device() for the transfer and back) and of
// any shape; the result has the input's device and dtype. Backward of allReduceSum(Sum) issues a
// collective, so every rank must run backward over the same graph.

// ---- Gradient synchronisation -------------------------------------------------------------

struct GradientAllReducerOptions {
  std::int64_t bucketBytes = 4 << 20;  // bytes per fused all-reduce (the last bucket may be smaller)
  double scale = 1.0;                  // applied after the sum; SPEC §4 wants the plain sum (1.0)
};

// Sums parameter gradients across ranks in place, with one all-reduce per bucket of a few MB.
// Each bucket keeps one flat buffer [grads | flags] across steps and makes every parameter's
// grad a view of it, so after the first step backward accumulates straight into the buffer
// (zero_grad zeroes in place) and the all-reduce needs no flatten or scatter copies; a grad that
// was replaced (set to none, reassigned: the trainer's every step) is copied in (memcpy in host
// memory) and re-bound to its slot, an alias made once per parameter. A parameter whose grad is undefined on this rank
// contributes zeros, so every rank issues identical collectives; after the call its grad is
// defined iff it was defined on at least one rank (a per-parameter flag travels in the bucket).
// No overlap with backward: Open MPI's CPU non-blocking collectives only progress inside MPI
// calls, so without a progress thread starting buckets early gains little here.
class GradientAllReducer {
 public:
  GradientAllReducer(Communicator& comm, std::vector<torch::Tensor> parameters,
                     GradientAllReducerOptions options = {});
  // Call on every rank after backward, before the optimizer step.
  void allReduce();
  std::int64_t numBuckets() const { return static_cast<std::int64_t>(buckets_.size()); }
  std::int64_t bytesPerCall() const;  // payload bytes of one allReduce() over all buckets

 private:
  struct Bucket {
    std::vector<std::size_t> params;  // indices into parameters_
    std::int64_t numel = 0;           // Σ numel of the parameters (flags excluded)
    std::string what;                 // "gradients[b]" for error messages
    torch::Tensor flat;               // [numel + #params] on the communicator's device, kept
    std::vector<torch::Tensor> aliases;  // per parameter: its slot of flat shaped like it (in place only)
  };
  Communicator& comm_;
  std::vector<torch::Tensor> parameters_;
  GradientAllReducerOptions options_;
  std::vector<Bucket> buckets_;
};

// ---- Fault injection (tests of the failure paths) -----------------------------------------

enum class FaultKind { None, Crash, Stall };

// Parsed from "rank=1,step=5,kind=crash" (kind: crash | stall; keys in any order, all required).
struct FaultSpec {
  int rank = -1;
  std::int64_t step = -1;
  FaultKind kind = FaultKind::None;
  bool enabled() const { return kind != FaultKind::None; }
};

// Empty text → disabled spec. Throws std::invalid_argument quoting the text and the bad part.
FaultSpec parseFault(const std::string& text);
// Call once per training step on every rank. On the matching rank and step: crash prints a
// message and _exit(3)s (no unwinding, no MPI_Finalize — like a segfault); stall prints a message
// and sleeps forever (like a deadlock). Other ranks then hit the collective deadline.
void maybeInjectFault(const FaultSpec& spec, int rank, std::int64_t step);

}  // namespace repshape::dist
