#pragma once
// SIGINT / SIGTERM (and the scheduler's warning signal) become a flag that the training loop reads
// at a step boundary; the ranks agree on it through the per-step control all-reduce, so every rank
// stops after the same step. The handler only stores the signal number (async-signal-safe).

namespace repshape {

// Installs the handlers (idempotent). A second SIGINT while a stop is pending restores the
// default action and re-raises: two Ctrl-C always end a stuck process.
void installStopSignals();
// The first stop signal received (SIGINT, SIGTERM, …), or 0.
int pendingStopSignal();
// Tests and the fault injector raise a stop as if the signal had arrived.
void requestStop(int signal);

}  // namespace repshape
