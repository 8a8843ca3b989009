#pragma once
// Process-wide MPI state shared by the MPI and NCCL backends: initialisation, the error-check
// macro, deadline-bounded waits and the "who has not arrived" diagnosis on timeout.
//
// Threading: MPI is initialised with MPI_THREAD_SERIALIZED; every call must come from one thread
// at a time (the training loop's thread).

#include <mpi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace repshape::dist::detail {

// Exit status of a job ended by a collective timeout or a failed MPI/NCCL/CUDA call.
constexpr int kCommFailureExitCode = 70;

// Checks an MPI return code: on failure prints expression, file:line, host, rank and the MPI error
// string, then ends the whole job (other ranks would otherwise hang in the next collective).
#define REPSHAPE_MPI_CHECK(expr)                                                         \
  do {                                                                                   \
    const int repshapeMpiRc_ = (expr);                                                   \
    if (repshapeMpiRc_ != MPI_SUCCESS) {                                                 \
      ::repshape::dist::detail::failCall("MPI", #expr, __FILE__, __LINE__,               \
                                         ::repshape::dist::detail::mpiErrorString(repshapeMpiRc_)); \
    }                                                                                    \
  } while (0)

std::string mpiErrorString(int rc);
std::string hostName();
// "repshape[rank R@host]: " — R is "?" before MPI is initialised.
std::string logPrefix();
// Prints "<prefix><library> call failed: <expr> at file:line: <error>" and aborts the job
// (MPI_Abort when MPI is up, else throws std::runtime_error so a single process unwinds).
// `beforeAbort` (e.g. ncclCommAbort) runs first.
[[noreturn]] void failCall(const char* library, const char* expr, const char* file, int line,
                           const std::string& error, const std::function<void()>& beforeAbort = {});
// Prints "<prefix><message>" to stderr and ends every rank with MPI_Abort (or _exit when MPI is
// down). `beforeAbort` (e.g. ncclCommAbort) runs first.
[[noreturn]] void abortJob(int exitCode, const std::string& message,
                           const std::function<void()>& beforeAbort = {});

// One collective in flight: what it is, its per-communicator sequence number and its deadline.
struct Pending {
  const char* what;
  std::int64_t seq;
  double timeoutSeconds;
};

class MpiWorld {
 public:
  // Initialises MPI on first use (finalised at exit). Safe to call many times.
  static MpiWorld& instance();

  int rank() const { return rank_; }
  int size() const { return size_; }
  int localRank() const { return localRank_; }
  MPI_Comm world() const { return world_; }

  // Polls `request` until complete: a short spin (low latency for small buffers), then sleeps with
  // exponential backoff. Past the deadline: diagnoses which ranks are not waiting in a collective
  // and aborts the job.
  void wait(MPI_Request& request, const Pending& pending);
  // Generic deadline loop: `done()` is polled like MPI_Test; `onTimeout` runs before the abort.
  void waitUntil(const std::function<bool()>& done, const Pending& pending,
                 const std::function<void()>& onTimeout = {});

  // Int64 all-gather over world() with the deadline: [size * mine.size()], rank-major.
  std::vector<std::int64_t> allGatherInt64(const std::vector<std::int64_t>& mine,
                                           const Pending& pending);

  // Answers "where are you?" queries of ranks that timed out; called from every wait loop.
  void serviceQueries();

 private:
  MpiWorld();
  [[noreturn]] void timedOut(const Pending& pending, double waitedSeconds,
                             const std::function<void()>& onTimeout);
  std::string diagnose(const Pending& pending);

  int rank_ = 0;
  int size_ = 1;
  int localRank_ = 0;
  MPI_Comm world_ = MPI_COMM_NULL;  // dup of MPI_COMM_WORLD, errors returned
  MPI_Comm diag_ = MPI_COMM_NULL;   // dup for timeout diagnosis only
  const Pending* current_ = nullptr;
};

}  // namespace repshape::dist::detail
