// PenaltySet::compute: one packed SUM all-reduce of every layer's statistics per step, at most one
// MAX, a row gather per lmulti target, and the parameter penalties (SPEC §2, §4).
#include <repshape/regularizers/Environment.h>
#include <repshape/regularizers/Regularizers.h>

#include "detail/FusedPenalties.h"
#include "detail/Penalties.h"
#include "detail/Statistics.h"

#include <algorithm>
#include <stdexcept>

namespace repshape::reg {

using detail::PenaltyKind;
using torch::Tensor;

namespace {

const Tensor& findNamed(const std::vector<std::pair<std::string, Tensor>>& list, const std::string& name,
                        const char* what) {
  for (const auto& [key, tensor] : list)
    if (key == name) return tensor;
  std::string known;
  for (const auto& entry : list) known += (known.empty() ? "" : ", ") + entry.first;
  TORCH_CHECK(false, "penalties: no ", what, " for layer '", name, "' (have: ", known, ")");
}

// [n, ...] → [n, M]; flatten keeps an empty shard's width (reshape(-1) cannot infer it).
Tensor asRows(const Tensor& activations) {
  return activations.dim() == 1 ? activations.unsqueeze(1) : activations.flatten(1);
}

// One statistics layer of a step.
struct LayerPlan {
  std::string name;
  detail::StatsNeeds needs;
  detail::StatsLayout layout;
  Tensor z;  // [n, M]
  bool gather = false;
  bool complete = false;  // every rank's rows are in z (one rank, or gathered): covariances from rows
  Tensor labels;          // [n] labels of z's rows (where class-wise)
  Tensor probs;           // [n, C] probabilities of z's rows (where xcov)
  detail::LayerStats stats;
  Tensor localZ;           // this rank's rows as they went into the gather (where gathered)
  Tensor ownZ, ownLabels;  // gathered rows of the classes this rank owns (split class-wise), lazily
};

StatisticsPath pathFromEnvironment() {
  const std::string value = environmentChoice("REPSHAPE_STATS_PATH", {"auto", "packed", "gather"});
  return value == "packed" ? StatisticsPath::kPacked : value == "gather" ? StatisticsPath::kGather : StatisticsPath::kAuto;
}

// REPSHAPE_SPLIT_CLASSES: 1 always, 0 never, auto (default) where the rows are on the CPU and the
// penalty is large enough to pay for the split (splitPays). On a GPU the per-class work is
// microseconds against the extra collective's latency (not measured: no GPU here), so there every
// rank keeps computing every class.
int splitFromEnvironment() {
  const std::string value = environmentChoice("REPSHAPE_SPLIT_CLASSES", {"auto", "1", "0"});
  return value == "auto" ? -1 : value == "1" ? 1 : 0;
}

// Whether splitting a class-wise penalty over N gathered rows of width M, K classes, saves more
// than it adds (a sync point in backward, the N × M gradient's reduce-scatter, a row selection:
// ~0.1 ms on the CPU). Its cost, ~N·M·min(N/K, M) multiply-adds (kernel or Gram form), against 2^20:
// measured at W = 2 on the Choi MLP (M = 100, K = 10), N = 100 (10^5) loses 9 % of the step and
// N = 500 (2.5·10^6) gains 5 % (tests/bench/run-all.sh §3); the threshold sits between the two.
bool splitPays(int64_t rows, int64_t width, int64_t classes) {
  const double perClassRows = static_cast<double>(rows) / static_cast<double>(std::max<int64_t>(classes, 1));
  const double work = static_cast<double>(rows) * static_cast<double>(width) *
                      std::min(perClassRows, static_cast<double>(width));
  return work >= 1048576.0;
}

// Penalties that are a plain sum of per-class terms over the classes present (SPEC §2), whose
// rows path can therefore run on any set of whole classes.
bool classSeparable(PenaltyKind kind) { return kind == PenaltyKind::kCwCr || kind == PenaltyKind::kCwVr; }

// Bytes one rank contributes per step on each path (SPEC §4 volumes): packed fp64 sums vs the
// layer's columns of the global rows (its own, a label column, the probability columns).
bool gatherIsCheaper(const detail::StatsLayout& layout, int64_t globalRows, int64_t elementSize) {
  const int64_t packed = 8 * (layout.sumSize() + layout.maxSize());
  const int64_t cols = layout.width() + (layout.has(detail::StatsLayout::kClassCount) ? 1 : 0) + layout.probs();
  return elementSize * globalRows * cols < packed;
}

}  // namespace

PenaltySet::PenaltySet(std::vector<PenaltySpec> specs, int numClasses)
    : specs_(std::move(specs)), numClasses_(numClasses), path_(pathFromEnvironment()), split_(splitFromEnvironment()) {
  for (const auto& spec : specs_) {
    validate(spec);
    const PenaltyKind kind = detail::penaltyKind(spec.name);
    const bool classWise = kind == PenaltyKind::kCwCr || kind == PenaltyKind::kCwVr || kind == PenaltyKind::kCwRr;
    if (classWise && numClasses_ <= 0)
      throw std::invalid_argument(spec.name + " needs the number of classes of the task, got " +
                                  std::to_string(numClasses_));
  }
}

std::vector<std::string> PenaltySet::activationTargets() const {
  std::vector<std::string> layers;
  for (const auto& spec : specs_) {
    if (detail::isParameterPenalty(detail::penaltyKind(spec.name))) continue;
    for (const auto& t : spec.targets)
      if (std::find(layers.begin(), layers.end(), t) == layers.end()) layers.push_back(t);
  }
  return layers;
}

bool PenaltySet::needsProbabilities() const {
  return std::any_of(specs_.begin(), specs_.end(),
                     [](const PenaltySpec& s) { return detail::penaltyKind(s.name) == PenaltyKind::kXcov; });
}

std::vector<PenaltyValue> PenaltySet::compute(const PenaltyBatch& batch, Reducer& reducer) const {
  // 1. What each statistics layer needs.
  std::vector<LayerPlan> plans;
  auto planOf = [&](const std::string& layer) -> LayerPlan& {
    for (auto& p : plans)
      if (p.name == layer) return p;
    plans.push_back(LayerPlan{layer, {}, {}, {}, false, false, {}, {}, {}, {}, {}, {}});
    return plans.back();
  };
  for (const auto& spec : specs_) {
    const PenaltyKind kind = detail::penaltyKind(spec.name);
    if (!detail::usesStatistics(kind)) continue;
    for (const auto& t : spec.targets) planOf(t).needs.merge(detail::statsNeeds(kind, spec.method));
  }

  // 2. The path of each layer; gathered layers ride in one row gather: [z_1 | … | probs | label].
  const bool multiRank = reducer.worldSize() > 1;
  bool anyGather = false, gatherLabels = false;
  int64_t gatherProbs = 0;
  auto rowType = torch::kFloat32;  // fp16/bf16 rows travel as fp32; fp64 stays fp64
  for (auto& plan : plans) {
    plan.z = asRows(findNamed(batch.activations, plan.name, "activations"));
    const int64_t probs = plan.needs.cross ? batch.probabilities.size(1) : 0;
    if (plan.needs.anyClass()) TORCH_CHECK(batch.labels.defined(), "penalties: class-wise penalties need labels");
    plan.layout = detail::StatsLayout(plan.needs, plan.z.size(1), numClasses_, probs);
    const int64_t elementSize = plan.z.scalar_type() == torch::kFloat64 ? 8 : 4;
    plan.gather = multiRank && (path_ == StatisticsPath::kGather ||
                                (path_ == StatisticsPath::kAuto && batch.globalRows > 0 &&
                                 gatherIsCheaper(plan.layout, batch.globalRows, elementSize)));
    if (!plan.gather) continue;
    anyGather = true;
    gatherLabels |= plan.needs.anyClass();
    gatherProbs = std::max(gatherProbs, probs);
    if (plan.z.scalar_type() == torch::kFloat64) rowType = torch::kFloat64;
  }
  Tensor allLabels, allProbs;
  std::vector<int64_t> gatherCounts;  // every rank's rows in the gather
  if (anyGather) {
    std::vector<Tensor> columns;
    for (auto& plan : plans)
      if (plan.gather) columns.push_back(plan.localZ = plan.z.to(rowType));
    if (gatherProbs > 0) columns.push_back(batch.probabilities.to(rowType));
    // Labels as one column: exact in fp32 below 2^24 classes.
    if (gatherLabels) columns.push_back(batch.labels.to(rowType).unsqueeze(1));
    const Tensor gathered = reducer.gatherRows(torch::cat(columns, 1), &gatherCounts);
    int64_t column = 0;
    for (auto& plan : plans)
      if (plan.gather) {
        plan.z = gathered.narrow(1, column, plan.layout.width());  // [N, M], all ranks' rows
        column += plan.layout.width();
      }
    if (gatherProbs > 0) allProbs = gathered.narrow(1, column, gatherProbs);
    column += gatherProbs;
    if (gatherLabels) allLabels = gathered.select(1, column).detach().round().to(torch::kLong);
  }

  // Where every row is at hand, the covariance family runs on the rows (fromRows): its sums are
  // not formed; a layer left with no other penalty forms none.
  for (auto& plan : plans) {
    plan.complete = !multiRank || plan.gather;
    if (!plan.complete) continue;
    plan.labels = plan.gather ? allLabels : batch.labels;
    if (plan.layout.probs() > 0)
      plan.probs = plan.gather ? allProbs.narrow(1, 0, plan.layout.probs()) : batch.probabilities;
    detail::StatsNeeds rest;
    for (const auto& spec : specs_) {
      const PenaltyKind kind = detail::penaltyKind(spec.name);
      if (!detail::usesStatistics(kind) || detail::fromRows(kind, spec.method, plan.z)) continue;
      if (std::find(spec.targets.begin(), spec.targets.end(), plan.name) != spec.targets.end())
        rest.merge(detail::statsNeeds(kind, spec.method));
    }
    plan.needs = rest;
    plan.layout = detail::StatsLayout(rest, plan.layout.width(), numClasses_, plan.layout.probs());
  }
  auto formsSums = [](const LayerPlan& plan) { return !plan.complete || plan.needs.anyAtAll(); };

  // 3. Local sums of every packed layer: one SUM and at most one MAX collective for all of them;
  // a gathered layer's sums over all rows are already global.
  std::vector<Tensor> sumParts, maxParts;
  std::vector<int64_t> sumSizes, maxSizes;
  int64_t maxSize = 0;
  for (auto& plan : plans) {
    if (!formsSums(plan)) continue;
    if (plan.gather) {
      const Tensor labels = plan.needs.anyClass() ? allLabels : Tensor();
      const Tensor probs = plan.needs.cross ? allProbs.narrow(1, 0, plan.layout.probs()) : Tensor();
      auto [sumPart, maxPart] = detail::localStatistics(plan.z, labels, probs, plan.layout);
      plan.stats = detail::unpackStatistics(sumPart, maxPart, plan.layout);
      continue;
    }
    auto [sumPart, maxPart] = detail::localStatistics(plan.z, batch.labels, batch.probabilities, plan.layout);
    sumParts.push_back(sumPart);
    maxParts.push_back(maxPart);
    sumSizes.push_back(plan.layout.sumSize());
    maxSizes.push_back(plan.layout.maxSize());
    maxSize += plan.layout.maxSize();
  }
  if (!sumParts.empty()) {
    const Tensor sums = reducer.sum(sumParts.size() == 1 ? sumParts[0] : torch::cat(sumParts));
    const Tensor maxes = maxSize == 0 ? Tensor() : reducer.max(maxParts.size() == 1 ? maxParts[0] : torch::cat(maxParts));
    const auto sumByLayer = sums.split_with_sizes(sumSizes);
    const auto maxByLayer = maxSize == 0 ? std::vector<Tensor>(sumParts.size()) : maxes.split_with_sizes(maxSizes);
    std::size_t i = 0;
    for (auto& plan : plans)
      if (!plan.gather && formsSums(plan)) {
        plan.stats = detail::unpackStatistics(sumByLayer[i], maxByLayer[i], plan.layout);
        ++i;
      }
  }

  // 4. Values, in spec order and target order.
  std::vector<PenaltyValue> values;
  for (const auto& spec : specs_) {
    const PenaltyKind kind = detail::penaltyKind(spec.name);
    const std::string name = detail::canonicalName(kind);
    auto emit = [&](const std::string& target, const Tensor& omega, c10::ScalarType dtype) {
      values.push_back(PenaltyValue{name, target, spec.weight, omega.to(dtype), detail::isParameterPenalty(kind)});
    };
    if (detail::usesStatistics(kind)) {
      for (const auto& t : spec.targets) {
        LayerPlan& plan = planOf(t);
        const auto dtype = findNamed(batch.activations, t, "activations").scalar_type();
        const bool split = split_ == 1 || (split_ == -1 && plan.z.device().is_cpu() &&
                                           splitPays(plan.z.size(0), plan.z.size(1), numClasses_));
        if (plan.gather && split && batch.splitClassWise && classSeparable(kind) && detail::fromRows(kind, spec.method, plan.z)) {
          // This rank's share: the classes k ≡ rank (mod W), each with all of its gathered rows.
          // The shares' gradients meet in sumGradientsToRows' backward (one reduce-scatter per layer).
          if (!plan.ownZ.defined()) {
            const Tensor index = plan.labels.remainder(reducer.worldSize()).eq(reducer.rank()).nonzero().squeeze(1);
            plan.ownZ = reducer.sumGradientsToRows(plan.z, plan.localZ, gatherCounts).index_select(0, index);
            plan.ownLabels = plan.labels.index_select(0, index);
          }
          // No rows of its classes in this batch: a zero share, still on the graph, so this rank
          // joins the backward collective.
          const Tensor share = plan.ownZ.size(0) == 0
                                   ? (plan.ownZ.sum() * 0.0).to(torch::kFloat64)
                                   : detail::rowsPenalty(kind, spec, plan.ownZ, plan.ownLabels, Tensor(), numClasses_);
          emit(t, share, dtype);
          values.back().rankShare = true;
        } else if (plan.complete && detail::fromRows(kind, spec.method, plan.z))
          emit(t, detail::rowsPenalty(kind, spec, plan.z, plan.labels, plan.probs, numClasses_), dtype);
        else
          emit(t, detail::statisticsPenalty(kind, spec, plan.stats, plan.layout.width(), numClasses_), dtype);
      }
    } else if (detail::usesPairs(kind)) {
      for (const auto& t : spec.targets) {
        const Tensor z = asRows(findNamed(batch.activations, t, "activations"));
        Tensor all, labels;
        if (kind == PenaltyKind::kLmulti) {
          TORCH_CHECK(batch.labels.defined(), "penalties: lmulti needs labels");
          // Labels ride as one extra column, so one gather moves rows and labels together.
          const auto rowType = z.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
          const Tensor rows = torch::cat({z.to(rowType), batch.labels.to(rowType).unsqueeze(1)}, 1);
          const Tensor gathered = reducer.gatherRows(rows);
          all = gathered.narrow(1, 0, z.size(1));
          labels = gathered.select(1, z.size(1)).detach().round().to(torch::kLong);
        } else {
          all = reducer.gatherRows(z);
        }
        emit(t, detail::pairHingePenalty(all, labels, spec.margin), z.scalar_type());
      }
    } else if (kind == PenaltyKind::kLsingle) {
      for (const auto& t : spec.targets) {
        const Tensor& w = findNamed(batch.weights, t, "weight");
        emit(t, detail::lsinglePenalty(w, spec.margin), w.scalar_type());
      }
    } else {  // l1w, l2w
      // Σ over the weights: one autograd node for all of them on the CPU (fusedWeightNorms).
      auto norm = [&](const std::vector<Tensor>& ws, c10::ScalarType dtype) {
        const Tensor fused = detail::fusedWeightNorms(ws, kind == PenaltyKind::kL1w, dtype);
        if (fused.defined()) return fused;
        Tensor total;
        for (const Tensor& w : ws) {
          const Tensor w64 = w.to(torch::kFloat64);
          const Tensor n = kind == PenaltyKind::kL1w ? w64.abs().sum() : w64.square().sum();
          total = total.defined() ? total + n : n;
        }
        return total;
      };
      if (spec.targets.empty()) {
        TORCH_CHECK(!batch.weights.empty(), "penalties: ", name, " over every weight, but no weights were given");
        std::vector<Tensor> all;
        for (const auto& named : batch.weights) all.push_back(named.second);
        const auto dtype = all.front().scalar_type();
        emit("*", norm(all, dtype), dtype);
      } else {
        for (const auto& t : spec.targets) {
          const Tensor& w = findNamed(batch.weights, t, "weight");
          emit(t, norm({w}, w.scalar_type()), w.scalar_type());
        }
      }
    }
  }
  return values;
}

}  // namespace repshape::reg
