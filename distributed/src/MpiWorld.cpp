#include "detail/MpiWorld.h"

#include <repshape/distributed/Communicator.h>

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace repshape::dist::detail {
namespace {

using Clock = std::chrono::steady_clock;

// Poll MPI_Test this long before sleeping: small buffers complete within microseconds, and Open
// MPI's non-blocking collectives (libnbc) only progress inside MPI calls, so a multi-MB
// all-reduce needs frequent tests (sleeping after 100 µs doubled its median time). Blocking
// MPI_Allreduce spins forever; we spin with sched_yield (oversubscribed ranks still run) for
// kSpinSeconds, then sleep with exponential backoff.
constexpr double kSpinSeconds = 5e-3;
constexpr double kFirstSleep = 50e-6;     // then sleep, doubling up to kMaxSleep
constexpr double kMaxSleep = 1e-3;
constexpr int kQueryTag = 71;              // diag_: "which collective are you in?"
constexpr int kReplyTag = 72;              // diag_: Reply
constexpr std::size_t kWhatChars = 64;

// A rank's answer to a timed-out rank: where it is waiting.
struct Reply {
  std::int64_t seq;
  char what[kWhatChars];
};

int gRank = -1;  // world rank for log prefixes; -1 before MPI_Init

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

bool mpiUp() {
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

void finalizeAtExit() {
  if (mpiUp()) MPI_Finalize();
}

}  // namespace

std::string mpiErrorString(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(text, static_cast<std::size_t>(length));
}

std::string hostName() {
  char name[256] = {0};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

std::string logPrefix() {
  return "repshape[rank " + (gRank < 0 ? std::string("?") : std::to_string(gRank)) + "@" +
         hostName() + "]: ";
}

void abortJob(int exitCode, const std::string& message, const std::function<void()>& beforeAbort) {
  std::fprintf(stderr, "%s%s\n", logPrefix().c_str(), message.c_str());
  std::fflush(stderr);
  dist::runFatalErrorHook(exitCode, message);
  if (beforeAbort) beforeAbort();
  if (mpiUp()) MPI_Abort(MPI_COMM_WORLD, exitCode);
  _exit(exitCode);
}

void failCall(const char* library, const char* expr, const char* file, int line,
              const std::string& error, const std::function<void()>& beforeAbort) {
  std::ostringstream message;
  message << library << " call failed: " << expr << " at " << file << ":" << line << ": " << error;
  if (!mpiUp()) throw std::runtime_error(logPrefix() + message.str());
  abortJob(kCommFailureExitCode, message.str(), beforeAbort);
}

MpiWorld& MpiWorld::instance() {
  // Leaked on purpose: MPI is finalised by an atexit handler, not by a static destructor.
  static MpiWorld* world = new MpiWorld();
  return *world;
}

MpiWorld::MpiWorld() {
  int initialized = 0;
  REPSHAPE_MPI_CHECK(MPI_Initialized(&initialized));
  if (!initialized) {
    int provided = 0;
    REPSHAPE_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided));
    std::atexit(finalizeAtExit);
  }
  REPSHAPE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  gRank = rank_;
  REPSHAPE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
  REPSHAPE_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &world_));
  REPSHAPE_MPI_CHECK(MPI_Comm_set_errhandler(world_, MPI_ERRORS_RETURN));
  REPSHAPE_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &diag_));
  REPSHAPE_MPI_CHECK(MPI_Comm_set_errhandler(diag_, MPI_ERRORS_RETURN));
  MPI_Comm node = MPI_COMM_NULL;
  REPSHAPE_MPI_CHECK(MPI_Comm_split_type(world_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
  REPSHAPE_MPI_CHECK(MPI_Comm_rank(node, &localRank_));
  REPSHAPE_MPI_CHECK(MPI_Comm_free(&node));
}

void MpiWorld::wait(MPI_Request& request, const Pending& pending) {
  waitUntil(
      [&request] {
        int done = 0;
        REPSHAPE_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
        return done != 0;
      },
      pending);
}

void MpiWorld::waitUntil(const std::function<bool()>& done, const Pending& pending,
                         const std::function<void()>& onTimeout) {
  const Clock::time_point start = Clock::now();
  current_ = &pending;
  double sleep = kFirstSleep;
  for (int round = 0; !done(); ++round) {
    const double waited = secondsSince(start);
    if (waited < kSpinSeconds) {
      if (round > 8) sched_yield();  // oversubscribed ranks: let the peer we wait for run
      continue;
    }
    serviceQueries();
    if (waited > pending.timeoutSeconds) timedOut(pending, waited, onTimeout);
    std::this_thread::sleep_for(std::chrono::duration<double>(sleep));
    sleep = std::min(sleep * 2.0, kMaxSleep);
  }
  current_ = nullptr;
}

std::vector<std::int64_t> MpiWorld::allGatherInt64(const std::vector<std::int64_t>& mine,
                                                   const Pending& pending) {
  std::vector<std::int64_t> all(mine.size() * static_cast<std::size_t>(size_));
  const int count = static_cast<int>(mine.size());
  MPI_Request request = MPI_REQUEST_NULL;
  REPSHAPE_MPI_CHECK(MPI_Iallgather(mine.data(), count, MPI_INT64_T, all.data(), count,
                                    MPI_INT64_T, world_, &request));
  wait(request, pending);
  return all;
}

void MpiWorld::serviceQueries() {
  if (size_ == 1) return;
  for (;;) {
    int flag = 0;
    MPI_Status status;
    REPSHAPE_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, diag_, &flag, &status));
    if (!flag) return;
    std::int64_t query = 0;
    REPSHAPE_MPI_CHECK(MPI_Recv(&query, 1, MPI_INT64_T, status.MPI_SOURCE, kQueryTag, diag_,
                                MPI_STATUS_IGNORE));
    // Leaked: replies only happen while the job is being aborted, and the buffer must outlive
    // the freed send request.
    auto* reply = new Reply{-1, {0}};
    if (current_ != nullptr) {
      reply->seq = current_->seq;
      std::strncpy(reply->what, current_->what, kWhatChars - 1);
    }
    MPI_Request request = MPI_REQUEST_NULL;
    REPSHAPE_MPI_CHECK(MPI_Isend(reply, sizeof(Reply), MPI_BYTE, status.MPI_SOURCE, kReplyTag,
                                 diag_, &request));
    REPSHAPE_MPI_CHECK(MPI_Request_free(&request));
  }
}

std::string MpiWorld::diagnose(const Pending& pending) {
  // Ask every rank where it is. Ranks blocked in a collective answer from their wait loop within
  // milliseconds; a crashed, stalled or still-computing rank does not answer.
  std::vector<MPI_Request> sends(static_cast<std::size_t>(size_), MPI_REQUEST_NULL);
  static std::int64_t query = 0;  // static: must outlive the (never awaited) sends
  query = pending.seq;
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    REPSHAPE_MPI_CHECK(MPI_Isend(&query, 1, MPI_INT64_T, r, kQueryTag, diag_, &sends[r]));
  }
  std::vector<Reply> replies(static_cast<std::size_t>(size_));
  std::vector<bool> answered(static_cast<std::size_t>(size_), false);
  answered[rank_] = true;
  int missing = size_ - 1;
  const double grace = std::clamp(0.2 * pending.timeoutSeconds, 0.5, 3.0);  // seconds
  const Clock::time_point start = Clock::now();
  while (missing > 0 && secondsSince(start) < grace) {
    serviceQueries();  // peers that timed out at the same moment ask us too
    int flag = 0;
    MPI_Status status;
    REPSHAPE_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kReplyTag, diag_, &flag, &status));
    if (!flag) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    const int source = status.MPI_SOURCE;
    REPSHAPE_MPI_CHECK(MPI_Recv(&replies[source], sizeof(Reply), MPI_BYTE, source, kReplyTag,
                                diag_, MPI_STATUS_IGNORE));
    if (!answered[source]) --missing;
    answered[source] = true;
  }
  // Unanswered sends to dead ranks are left pending: the job is about to be aborted.
  std::ostringstream silent;
  std::ostringstream waiting;
  int silentCount = 0;
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    if (!answered[r]) {
      silent << (silentCount++ ? "," : "") << r;
    } else if (replies[r].seq >= 0) {
      replies[r].what[kWhatChars - 1] = 0;
      waiting << (waiting.tellp() > 0 ? ", " : " ") << "rank " << r << " in '" << replies[r].what
              << "' (#" << replies[r].seq << ")";
    }
  }
  std::ostringstream text;
  if (silentCount > 0) {
    text << "rank(s) " << silent.str() << " never arrived (crashed, stalled or still computing)";
  } else {
    text << "every rank answered; mismatched collectives?";
  }
  const std::string others = waiting.str();
  if (!others.empty()) text << "; waiting:" << others;
  return text.str();
}

void MpiWorld::timedOut(const Pending& pending, double waitedSeconds,
                        const std::function<void()>& onTimeout) {
  std::ostringstream message;
  message.precision(3);
  message << "collective '" << pending.what << "' (#" << pending.seq << ") timed out after "
          << waitedSeconds << "s (deadline " << pending.timeoutSeconds << "s); ";
  message << (size_ > 1 ? diagnose(pending) : std::string("single rank"));
  message << "; aborting the job";
  abortJob(kCommFailureExitCode, message.str(), onTimeout);
}

}  // namespace repshape::dist::detail
