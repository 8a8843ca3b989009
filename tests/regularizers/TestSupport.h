#pragma once
// Shared fixtures of the regularizer tests: seeded data with uneven classes (one class with a
// single sample, one class absent), the PyTorch/NumPy reference run, spec parsing, and an
// in-process multi-"rank" reducer that proves the sums-only design without MPI.

#include <repshape/regularizers/Regularizers.h>

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace repshape::test {

struct PenaltyData {
  torch::Tensor z;       // [N, M] fp64
  torch::Tensor labels;  // [N] int64, classes {0: 15, 1: 10, 2: 1, 3: 11}, class 4 absent
  torch::Tensor probs;   // [N, 3] rows of a softmax
  torch::Tensor w;       // [5, 6] target weight [out, in]
  int classes = 5;
};

PenaltyData makePenaltyData(uint64_t seed = 7);

// Every penalty and option combination the reference covers.
const std::vector<std::string>& referenceCases();

// `name[:key=value,...]` → spec aimed at layer "z" (or weight "w" for lsingle/l1w/l2w).
reg::PenaltySpec parseCase(const std::string& text);
bool onWeights(const reg::PenaltySpec& spec);

// A fresh directory under the build tree.
std::string scratchDir(const std::string& name);

// Writes z/labels/probs/w/classes/cases into dir and runs tests/regularizers/reference.py there.
void runReference(const std::string& dir, const PenaltyData& data, const std::vector<std::string>& cases);
std::map<std::string, double> readReferenceValues(const std::string& dir);
std::string fileStem(const std::string& spec);

// Ω of one spec on (z or w) through PenaltySet with the given reducer.
torch::Tensor penaltyValue(const reg::PenaltySpec& spec, const torch::Tensor& z, const torch::Tensor& labels,
                           const torch::Tensor& probs, const torch::Tensor& w, int classes, reg::Reducer& reducer,
                           reg::StatisticsPath path = reg::StatisticsPath::kAuto);

// Simulated ranks in one process. Pass 1 (record): every rank's compute() runs with the recorder,
// which keeps the buffers each collective was given. Then replay: each rank runs again and every
// collective returns the global result whose backward is this rank's share (identity for sum,
// argmax rank for max, own slice for gatherRows), exactly the Reducer contract.
class FakeRanks {
 public:
  explicit FakeRanks(int ranks) : calls_(ranks) {}
  std::unique_ptr<reg::Reducer> recorder(int rank);
  std::unique_ptr<reg::Reducer> replayer(int rank);  // a fresh one per replayed compute()
  int worldSize() const { return static_cast<int>(calls_.size()); }

  struct Call {
    std::string kind;  // sum | max | gather
    torch::Tensor input;
  };
  // Global result of call `index` (same index on every rank, as for real collectives).
  torch::Tensor global(std::size_t index) const;
  std::vector<std::vector<Call>> calls_;  // [rank][call], detached inputs
};

// Counts collectives (and moves nothing: one process's data, whatever world it reports).
class CountingReducer final : public reg::Reducer {
 public:
  torch::Tensor sum(const torch::Tensor& flat) override { ++sums; return flat; }
  torch::Tensor max(const torch::Tensor& flat) override { ++maxes; return flat; }
  torch::Tensor gatherRows(const torch::Tensor& rows, std::vector<std::int64_t>* rowCounts = nullptr) override {
    ++gathers;
    if (rowCounts != nullptr) *rowCounts = {rows.size(0)};
    return rows;
  }
  int worldSize() const override { return world; }
  int sums = 0, maxes = 0, gathers = 0;
  int world = 1;  // what it reports (the statistics path choice depends on it)
};

}  // namespace repshape::test
