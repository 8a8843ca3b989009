#pragma once
// Checkpoints of a run (SPEC §7, DIR/checkpoints/): written by rank 0 after a barrier, every
// train.checkpoint_every steps and when a stop signal ends the run; `repshape train --resume`
// continues from the newest complete one.
//
// Layout: DIR/checkpoints/step-00000040/{model.pt, optimizer.pt, rng.pt, state.json, DONE}.
// Atomic: the files go to a temporary directory that is renamed to step-N, then DONE is written
// (after an fsync); a directory without DONE is never loaded. The newest two complete ones are kept.
//
// World-size independent: every rank holds the same parameters and optimizer state (gradients are
// summed, SPEC §4) and the data position is a pure function of the step (the permutation of epoch e
// comes from (seed, e); global batch t is a slice of it), so a checkpoint from W ranks resumes on any
// number of ranks.

#include "Model.h"

#include <repshape/distributed/Communicator.h>

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>

namespace repshape {

struct CheckpointState {
  int64_t step = 0;            // steps completed (1-based count)
  int64_t epoch = 0;           // epoch of the next step
  int64_t stepsLogBytes = 0;   // size of steps.jsonl after step `step` was logged
  int worldSize = 1;           // ranks that wrote it (information only)
  std::string path;            // the checkpoint directory (set by the loader)
};

// The newest complete checkpoint (a DONE marker) under RUN_DIR/checkpoints, or nothing.
std::optional<std::string> latestCheckpoint(const std::string& runDir);

// state.json of a checkpoint directory (step, epoch, steps.jsonl offset); throws std::runtime_error.
CheckpointState readCheckpointState(const std::string& checkpointDir);

// Restores parameters, buffers, optimizer state and RNG states from `checkpointDir` (every rank
// reads the same files) and returns what the trainer needs to continue. Throws std::runtime_error
// naming the file when one is missing or unreadable.
CheckpointState loadCheckpoint(const std::string& checkpointDir, Network& network,
                               torch::optim::Optimizer& optimizer, const torch::Device& device);

class Checkpointer {
 public:
  // every = 0: only on demand (a stop signal); `keep` complete checkpoints are retained.
  Checkpointer(std::string runDir, int64_t every, dist::Communicator& comm, int keep = 2)
      : runDir_(std::move(runDir)), every_(every), comm_(comm), keep_(keep) {}

  bool due(int64_t stepsDone) const { return every_ > 0 && stepsDone % every_ == 0; }

  // Every rank calls this at the same step boundary: barrier, rank 0 writes, barrier (so no rank
  // exits — and no launcher tears the job down — before the checkpoint is complete).
  // `epoch` is the epoch of the next step. Returns the checkpoint directory (rank 0) or "".
  std::string save(int64_t stepsDone, int64_t epoch, Network& network, torch::optim::Optimizer& optimizer,
                   const torch::Device& device);

  // The next save records steps.jsonl's size as it is now (before a line that only the stop
  // forces), not as it will be then.
  void pinStepsLogOffset();

 private:
  void prune() const;
  int64_t stepsLogSize() const;

  std::string runDir_;
  int64_t every_;
  dist::Communicator& comm_;
  int keep_;
  std::optional<int64_t> pinnedBytes_;
};

// Cuts RUN_DIR/steps.jsonl back to `bytes` (the lines of the steps after a checkpoint are
// written again by the resumed run). Throws when the file is shorter than `bytes`.
void truncateStepsLog(const std::string& path, int64_t bytes);

}  // namespace repshape
