#pragma once
// Rank 0's progress on stdout: on a terminal one live line (epoch, step/total, loss, penalty,
// samples/s, ETA) redrawn at most 4 times a second; otherwise one plain line every `intervalSeconds`
// (0: none). At the end a summary: how the run ended, errors per split, the target layers' main
// characteristics.

#include "RunSink.h"

#include <chrono>
#include <cstdio>

namespace repshape {

class ProgressPrinter final : public RunSink {
 public:
  ProgressPrinter(double intervalSeconds, bool live, std::FILE* out = stdout)
      : intervalSeconds_(intervalSeconds), live_(live), out_(out) {}

  void onStart(const RunInfo& info) override;
  void onStep(const StepRecord& record) override;
  void onEvaluation(const EvalRecord& record) override;
  void onEnd(const RunOutcome& outcome) override;

 private:
  using Clock = std::chrono::steady_clock;
  double intervalSeconds_;
  bool live_;
  std::FILE* out_;
  bool active_ = false;  // rank 0
  bool lineOpen_ = false;
  Clock::time_point lastPrint_{};
  int64_t totalSteps_ = 0;
  EvalRecord final_;
  bool haveFinal_ = false;
};

}  // namespace repshape
