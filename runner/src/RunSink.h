#pragma once
// What one training run reports, and the small interface its consumers implement. The trainer
// computes each record once and hands it to every sink (steps.jsonl, progress, Prometheus,
// checkpoints …) instead of growing its loop. Every rank calls every sink; a sink that writes files
// checks `rank == 0` itself. Sinks never throw for monitoring problems: they warn and go on.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace repshape {

// One logged step (every train.log_every steps and the last one). Values are global (all ranks).
struct StepRecord {
  int64_t step = 0;        // 1-based: steps done so far
  int64_t totalSteps = 0;
  int64_t epoch = 0;
  double loss = 0.0;       // task + Σ λΩ
  double taskLoss = 0.0;   // mean over the global batch
  double penalty = 0.0;    // Σ λΩ
  std::vector<std::pair<std::string, double>> penalties;  // Ω by "name@layer"
  std::vector<std::pair<std::string, double>> weights;    // λ by "name@layer"
  int64_t statsBytes = 0, gradBytes = 0;                   // this rank, this step
  double statsCommSeconds = 0.0, gradCommSeconds = 0.0;    // this rank, this step
  double stepSeconds = 0.0;                                // wall time of this step on this rank
  // Where this rank's steps went since the last record: mean seconds per step of each phase, in
  // step order (forward, penalty incl. the statistics exchange, backward, gradient all-reduce,
  // control all-reduce + divergence checks, optimizer). Their sum is the mean step time.
  std::vector<std::pair<std::string, double>> phaseSeconds;
  double samplesPerSecond = 0.0;                           // global samples / s since the last record
  double elapsedSeconds = 0.0;                             // since the run started
};

struct SplitResult {
  double error = 0.0;  // % misclassified, or the reconstruction MSE (train.objective = "mse")
  double loss = 0.0;
  int64_t samples = 0;
  std::string errorKey = "error";  // error's result.json key: "error" (%) or "mse"
  // eval.save_covariance (test split): each metric layer's covariance over all ranks' samples,
  // C = Σ z zᵀ / N − μ μᵀ (population, 1/N), row-major [width²], and its eigenvalues, decreasing.
  struct Covariance {
    std::string layer;
    int64_t width = 0, samples = 0;
    std::vector<double> matrix, eigenvalues;
  };
  std::vector<Covariance> covariances;
};

// One evaluation: at the end of training (final = true) or every eval.every steps.
struct EvalRecord {
  int64_t step = 0;
  bool final = false;
  std::optional<SplitResult> train, validation, test;
  // Representation metrics of each captured layer on the test set: layer → [(metric, value)].
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, double>>>> layers;
};

// How the run ended (SPEC §7): status ok | diverged | failed | interrupted | preempted.
struct RunOutcome {
  std::string status = "ok";
  std::string reason;       // one line, empty for ok
  int exitCode = 0;
  int64_t step = 0;         // steps completed (diverged: the step that went non-finite)
  std::string term;         // diverged: which value went non-finite ("loss", "penalty cr@h5", "gradient", "parameter")
  double wallSeconds = 0.0;
};

struct RunInfo {
  std::string outDir;
  std::string configPath;
  int rank = 0, worldSize = 1;
  std::string backend;
  int64_t totalSteps = 0;
  std::vector<std::string> layers;  // captured layers (penalty targets, then eval layers)
};

class RunSink {
 public:
  virtual ~RunSink() = default;
  virtual void onStart(const RunInfo&) {}
  virtual void onStep(const StepRecord&) {}
  virtual void onEvaluation(const EvalRecord&) {}
  // After a checkpoint of the state after `step` is complete on disk (every rank calls it).
  virtual void onCheckpoint(int64_t /*step*/) {}
  // Called once on every ending the process survives, before result.json is written.
  virtual void onEnd(const RunOutcome&) {}
};

}  // namespace repshape
