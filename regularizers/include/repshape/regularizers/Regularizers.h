#pragma once
// repshape/regularizers: the papers' penalties (SPEC §2) and representation metrics (SPEC §3).
//
// Activation penalties never see raw activations of other ranks. Each rank turns its rows into
// SUMS over samples (count, Σz, ZᵀZ, class-wise sums and Grams, column |z| sums, row |z| maxima …),
// packed into one flat fp64 buffer; a Reducer (implemented by the runner over repshape/distributed)
// sums it across ranks once per step, plus one element-wise MAX where `rr`/`cw-rr` need it. Every
// penalty is then a function of global statistics, so W ranks reproduce one process (SPEC §4).
// Where gathering a layer's rows moves fewer bytes than its packed sums (N·M vs K(1+M+M²)), the
// layer's rows are gathered instead and every rank sums all N rows itself: equally exact
// (StatisticsPath below).
// This folder knows nothing about MPI: a single process uses LocalReducer.

#include <torch/torch.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace repshape::reg {

// Moves sums across processes. Autograd convention (SPEC §4): the result of sum()/max() is
// consumed identically on every rank and the penalty is added in full on every rank, so the
// backward is the identity on this rank's part; the runner sums parameter gradients across ranks.
class Reducer {
 public:
  virtual ~Reducer() = default;
  virtual torch::Tensor sum(const torch::Tensor& flat) = 0;   // Σ over ranks, identity backward
  virtual torch::Tensor max(const torch::Tensor& flat) = 0;   // max over ranks, grad to the argmax rank
  // [Σ n_r, ...] in rank order, backward: own slice; rowCounts (optional) receives every n_r.
  virtual torch::Tensor gatherRows(const torch::Tensor& rows, std::vector<std::int64_t>* rowCounts = nullptr) = 0;
  virtual int worldSize() const = 0;
  virtual int rank() const { return 0; }
  // For a value each rank computes a different share of: the values of `gathered` (gatherRows of
  // `local`, or the same columns of it, with that gather's rowCounts); backward sums the gradient
  // over ranks and hands `local` this rank's rows of it. Every rank must use the result.
  virtual torch::Tensor sumGradientsToRows(const torch::Tensor& gathered, const torch::Tensor& /*local*/,
                                           const std::vector<std::int64_t>& /*rowCounts*/) {
    return gathered;
  }
};

// The reducer of a single process: every collective is the identity.
class LocalReducer final : public Reducer {
 public:
  torch::Tensor sum(const torch::Tensor& flat) override { return flat; }
  torch::Tensor max(const torch::Tensor& flat) override { return flat; }
  torch::Tensor gatherRows(const torch::Tensor& rows, std::vector<std::int64_t>* rowCounts = nullptr) override {
    if (rowCounts != nullptr) *rowCounts = {rows.size(0)};
    return rows;
  }
  int worldSize() const override { return 1; }
};

// One `[[regularizer]]` table of a training config, already type-checked by the runner.
struct PenaltySpec {
  std::string name;                  // lsigma, cr, decov, cw-cr, vr, cw-vr, l1r, rr, cw-rr, corr,
                                     // xcov, lsingle, lmulti, lmulti-unsup, l1w, l2w
  double weight = 1.0;               // λ in loss = task + λ·Ω
  std::vector<std::string> targets;  // layer names; l1w/l2w: empty = every weight matrix
  double margin = 1.0;               // hinge margin m of lsingle / lmulti
  bool normalized = false;           // divide by the official code's divisor (SPEC §2)
  std::string method = "holder";     // rr / cw-rr: "holder" or "exact"
};

// Every penalty name SPEC §2 defines (aliases included), for config validation and suggestions.
const std::vector<std::string>& penaltyNames();
// Throws std::invalid_argument naming the field when a spec is inconsistent (unknown name,
// negative weight, method not holder/exact …).
void validate(const PenaltySpec& spec);

// What the trainer hands over for one step, all on this rank.
struct PenaltyBatch {
  // Post-activation output of each targeted layer, flattened to [n_local, M], autograd-connected.
  std::vector<std::pair<std::string, torch::Tensor>> activations;
  torch::Tensor labels;         // [n_local] int64 in [0, numClasses)
  torch::Tensor probabilities;  // [n_local, C] model's predicted class probabilities (xcov only)
  // Weight matrices by layer name ([out, in] for Linear; conv kernels flattened to [out, rest]).
  std::vector<std::pair<std::string, torch::Tensor>> weights;
  // Rows of this step over all ranks (the same on every rank); 0 = unknown, which keeps every
  // statistics layer on the packed path under StatisticsPath::kAuto.
  int64_t globalRows = 0;
  // Split class-wise penalties across ranks on gathered layers: rank r computes cw-cr / cw-vr over
  // the classes k with k mod W = r only (every row of such a class is at hand after the gather),
  // and returns that share with PenaltyValue::rankShare set. The caller must then sum those values
  // over ranks for the penalty's value (the trainer adds them to its control all-reduce); the
  // gradients are exact as they are (each share's gradient is summed over ranks in backward).
  // Halves the redundant per-rank penalty work of the gather path at W = 2. Where the rows are on
  // the CPU; REPSHAPE_SPLIT_CLASSES=1 forces it everywhere, =0 turns it off.
  bool splitClassWise = false;
};

// How a statistics layer crosses ranks; both exact. kPacked: its fp64 sums, 8·(sum + max part)
// bytes; kGather: its rows (+ a label column, + probability columns for xcov) in the activation
// dtype, every rank then sums all N rows itself (elem·N·cols bytes, the same ops as one process).
// kAuto: per layer and step, the one with fewer bytes (packed on one rank or when N is unknown).
// The environment variable REPSHAPE_STATS_PATH=auto|packed|gather sets the default (tests force
// each path with it).
enum class StatisticsPath { kAuto, kPacked, kGather };

struct PenaltyValue {
  std::string name;    // canonical penalty name
  std::string target;  // layer name, or "*" for all weights
  double weight;       // λ
  torch::Tensor value; // scalar Ω (unweighted), differentiable
  // True for terms computed from parameters alone (l1w, l2w, lsingle): identical on every rank,
  // so the runner must count them once (SPEC §4) when parameter gradients are summed.
  bool parameterOnly;
  // This rank's share of a split class-wise penalty (PenaltyBatch::splitClassWise): the penalty's
  // value is the sum of the shares over ranks.
  bool rankShare = false;
};

class PenaltySet {
 public:
  PenaltySet(std::vector<PenaltySpec> specs, int numClasses);

  bool empty() const { return specs_.empty(); }
  const std::vector<PenaltySpec>& specs() const { return specs_; }
  // Layers whose activations compute() needs.
  std::vector<std::string> activationTargets() const;
  bool needsProbabilities() const;

  // Values of every penalty for this step: one reducer.sum() of all packed layers' statistics,
  // at most one reducer.max(), one gatherRows() of all gathered layers' rows, and one
  // gatherRows() per lmulti / lmulti-unsup target.
  std::vector<PenaltyValue> compute(const PenaltyBatch& batch, Reducer& reducer) const;

  void setStatisticsPath(StatisticsPath path) { path_ = path; }
  StatisticsPath statisticsPath() const { return path_; }

 private:
  std::vector<PenaltySpec> specs_;
  int numClasses_;
  StatisticsPath path_;
  int split_ = -1;  // REPSHAPE_SPLIT_CLASSES (PenaltyBatch::splitClassWise): 1, 0, -1 = CPU rows only
};

// ---- Representation metrics (SPEC §3) ------------------------------------------------------

// A metric that may be undefined (mapc with no unit of positive variance): nullopt → JSON null.
using MetricValue = std::optional<double>;
using MetricList = std::vector<std::pair<std::string, MetricValue>>;

struct MetricOptions {
  bool reluLayer = false;                  // amplitude/covariance/correlation over active entries
  std::vector<int> tdvDims = {4};          // tdv@d
  std::vector<double> udFractions = {0.9}; // ud@x and ud_eig@x
};

// Accumulates sums over evaluation batches of one layer; finish() all-reduces them once.
class MetricAccumulator {
 public:
  MetricAccumulator(int64_t width, MetricOptions options);
  void add(const torch::Tensor& activations);  // [n, M], no grad needed
  // mapc, cvr, tdv@d, ud@x, ud_eig@x, amplitude, covariance, correlation, sparsity, dead_units,
  // stable_rank: equal to a single-process computation on the concatenated evaluation set.
  MetricList finish(Reducer& reducer) const;

 private:
  struct Sums;
  std::shared_ptr<Sums> sums_;
  MetricOptions options_;
};

}  // namespace repshape::reg

// KMeans + AMI/NMI and the MI bounds (SPEC §3) have their own headers; included here so this
// header stays the folder's one entry point.
#include <repshape/regularizers/Clustering.h>
#include <repshape/regularizers/InformationBounds.h>
