#include "StopSignals.h"

#include <atomic>
#include <csignal>

namespace repshape {

namespace {

std::atomic<int> gStopSignal{0};

extern "C" void onStopSignal(int signal) {
  int expected = 0;
  if (!gStopSignal.compare_exchange_strong(expected, signal) && signal == SIGINT) {
    std::signal(SIGINT, SIG_DFL);  // second Ctrl-C: give up on a clean stop
    std::raise(SIGINT);
  }
}

}  // namespace

void installStopSignals() {
  struct sigaction action {};
  action.sa_handler = onStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // blocking reads and MPI progress resume after the handler
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR2, &action, nullptr);  // the scheduler's warning (Slurm --signal=B:USR2@s): checkpoint, exit 75
}

int pendingStopSignal() { return gStopSignal.load(); }

void requestStop(int signal) {
  int expected = 0;
  gStopSignal.compare_exchange_strong(expected, signal);
}

}  // namespace repshape
