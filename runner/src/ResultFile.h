#pragma once
// result.json (SPEC §7): written last and atomically by rank 0 on every ending the process
// survives. `status` is ok | diverged | failed | interrupted | preempted; every status but ok has a
// one-line `reason`; diverged and interrupted runs record the `step` (diverged: also the `term`).

#include "Trainer.h"

#include <string>

namespace repshape {

struct ResultContext {
  std::string configPath;
  int worldSize = 1;
  std::string backend;
  std::string device;
};

std::string resultJson(const ResultContext& context, const RunReport& report);

// Writes DIR/result.json atomically.
void writeResult(const std::string& dir, const ResultContext& context, const RunReport& report);

// eval.save_covariance: DIR/covariance-<layer>.json for each saved test-set covariance, written
// atomically before result.json: {"layer", "split": "test", "samples", "width", "covariance":
// [[row], …], "eigenvalues": [decreasing]} (nulls for non-finite values).
void writeCovariances(const std::string& dir, const RunReport& report);

}  // namespace repshape
