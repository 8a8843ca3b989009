#pragma once
// Data-parallel training with exact global-batch semantics (SPEC §4).
//
// Per step: every rank takes a contiguous part of global batch t of one seeded permutation; the
// task loss is normalised by the GLOBAL batch size; the statistics of all targeted layers go through
// one packed all-reduce (identity backward) inside PenaltySet::compute; parameter-only penalties are
// added on rank 0 only; parameter gradients are summed across ranks. One process is the same code
// with W = 1.

#include "Config.h"
#include "Model.h"
#include "data/Data.h"

#include <repshape/distributed/Communicator.h>

#include <optional>
#include <string>

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

struct EvalSplitResult {
  double error = 0.0;  // %
  double loss = 0.0;   // mean cross-entropy
  int64_t samples = 0;
};

class Trainer {
 public:
  Trainer(const Config& config, const data::DataSplits& data, dist::Communicator& comm);

  // Trains and writes DIR/steps.jsonl (rank 0) then DIR/result.json (rank 0, atomically).
  // With `gradientDump`, rank 0 also writes the summed parameter gradients of the first step there
  // (one value per line, parameters in registration order): the W-rank vs 1-process check.
  void run(const std::string& outDir, const dist::FaultSpec* fault, const std::string& gradientDump = "");

  Network& network() { return network_; }

 private:
  ForwardContext context(bool training, int64_t globalBatch, int64_t rowOffset, int64_t step) const;
  void writeGradients(const std::string& path);
  EvalSplitResult evaluate(const data::Dataset& split, bool collectMetrics, std::string* layersJson);

  const Config& config_;
  const data::DataSplits& data_;
  dist::Communicator& comm_;
  torch::Device device_;
  Network network_{nullptr};
  reg::PenaltySet penalties_;
  std::vector<std::string> captureLayers_;  // penalty targets first, then eval-only layers
};

}  // namespace repshape
