#pragma once
// Data-parallel training with exact global-batch semantics (SPEC §4).
//
// Per step: every rank takes a contiguous part of global batch t of one seeded permutation; the
// task loss is normalised by the GLOBAL batch size; the statistics of all targeted layers go through
// one packed all-reduce (identity backward) inside PenaltySet::compute; parameter-only penalties are
// added on rank 0 only; parameter gradients are summed across ranks. One process is the same code
// with W = 1. After the gradients, one small control all-reduce per step carries the task loss, a
// non-finite flag and pending stop signals, so every rank stops (diverged, interrupted) after the
// same step. What a step produces goes to the run's sinks (steps.jsonl, progress, metrics …).

#include "Config.h"
#include "Model.h"
#include "RunSink.h"
#include "data/Data.h"

#include <repshape/distributed/Communicator.h>

#include <optional>
#include <string>
#include <vector>

namespace repshape {

namespace dist {
struct FaultSpec;
}

// Rows [begin, end) of a global batch of `globalRows` that `rank` of `world` takes: contiguous,
// sizes differ by at most one, the first `globalRows % world` ranks take one more.
struct Shard {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
Shard shardOf(int64_t globalRows, int rank, int world);

// What a finished Trainer::run hands to result.json.
struct RunReport {
  RunOutcome outcome;                 // ok | diverged | interrupted | preempted (failures are exceptions)
  std::optional<EvalRecord> evaluation;  // final evaluation; absent when the run stopped early
  int64_t steps = 0;                  // steps planned
  double epochs = 0.0;                // steps done / batches per epoch
  double trainSeconds = 0.0;
};

struct RunOptions {
  std::string outDir;
  const dist::FaultSpec* fault = nullptr;
  // Rank 0 writes the summed parameter gradients of the first step here (one value per line,
  // parameters in registration order): the W-rank vs 1-process check.
  std::string gradientDump;
  std::vector<RunSink*> sinks;
  // Checkpoints (Checkpoint.h) into outDir/checkpoints every N steps (0: only when a stop signal
  // ends the run: always on SIGUSR2, on SIGINT/SIGTERM when N > 0).
  int64_t checkpointEvery = 0;
  // A complete checkpoint directory to continue from (--resume): parameters, optimizer, RNG, step.
  std::string resumeFrom;
};

class Trainer {
 public:
  Trainer(const Config& config, const data::DataSplits& data, const ModelPlan& plan, dist::Communicator& comm);

  // Trains, then evaluates every split (unless the run stopped early). Calls the sinks' onStart,
  // onStep and onEvaluation; the caller ends them (onEnd) and writes result.json.
  RunReport run(const RunOptions& options);

  Network& network() { return network_; }
  const std::vector<std::string>& captureLayers() const { return captureLayers_; }
  int64_t totalSteps() const;

  // Sharded evaluation with exact global sums; metrics of the captured layers when `layers`.
  SplitResult evaluate(const data::Dataset& split,
                       std::vector<std::pair<std::string, std::vector<std::pair<std::string, double>>>>* layers);

 private:
  ForwardContext context(bool training, int64_t globalBatch, int64_t rowOffset, int64_t step) const;
  void writeGradients(const std::string& path);
  // The first non-finite value among the parameters ("parameter h1.weight"), or "".
  std::string nonFiniteParameter() const;
  bool gradientsFinite(const std::vector<torch::Tensor>& parameters) const;

  const Config& config_;
  const data::DataSplits& data_;
  dist::Communicator& comm_;
  torch::Device device_;
  Network network_{nullptr};
  reg::PenaltySet penalties_;
  std::vector<std::string> captureLayers_;  // penalty targets first, then eval-only layers
};

}  // namespace repshape
