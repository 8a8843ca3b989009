// PenaltySet::compute: one packed SUM all-reduce of every layer's statistics per step, at most one
// MAX, a row gather per lmulti target, and the parameter penalties (SPEC §2, §4).
#include <repshape/regularizers/Regularizers.h>

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
  detail::LayerStats stats;
};

}  // namespace

PenaltySet::PenaltySet(std::vector<PenaltySpec> specs, int numClasses)
    : specs_(std::move(specs)), numClasses_(numClasses) {
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
    plans.push_back(LayerPlan{layer, {}, {}, {}, {}});
    return plans.back();
  };
  for (const auto& spec : specs_) {
    const PenaltyKind kind = detail::penaltyKind(spec.name);
    if (!detail::usesStatistics(kind)) continue;
    for (const auto& t : spec.targets) planOf(t).needs.merge(detail::statsNeeds(kind, spec.method));
  }

  // 2. Local sums of every layer, packed: one SUM and at most one MAX collective for all layers.
  std::vector<Tensor> sumParts, maxParts;
  for (auto& plan : plans) {
    plan.z = asRows(findNamed(batch.activations, plan.name, "activations"));
    const int64_t probs = plan.needs.cross ? batch.probabilities.size(1) : 0;
    if (plan.needs.anyClass()) TORCH_CHECK(batch.labels.defined(), "penalties: class-wise penalties need labels");
    plan.layout = detail::StatsLayout(plan.needs, plan.z.size(1), numClasses_, probs);
    auto [sumPart, maxPart] = detail::localStatistics(plan.z, batch.labels, batch.probabilities, plan.layout);
    sumParts.push_back(sumPart);
    maxParts.push_back(maxPart);
  }
  if (!plans.empty()) {
    const Tensor sums = reducer.sum(sumParts.size() == 1 ? sumParts[0] : torch::cat(sumParts));
    int64_t maxSize = 0;
    for (const auto& p : plans) maxSize += p.layout.maxSize();
    const Tensor maxes = maxSize == 0 ? Tensor() : reducer.max(maxParts.size() == 1 ? maxParts[0] : torch::cat(maxParts));
    std::vector<int64_t> sumSizes, maxSizes;
    for (const auto& plan : plans) {
      sumSizes.push_back(plan.layout.sumSize());
      maxSizes.push_back(plan.layout.maxSize());
    }
    const auto sumByLayer = sums.split_with_sizes(sumSizes);
    const auto maxByLayer = maxSize == 0 ? std::vector<Tensor>(plans.size()) : maxes.split_with_sizes(maxSizes);
    for (std::size_t i = 0; i < plans.size(); ++i)
      plans[i].stats = detail::unpackStatistics(sumByLayer[i], maxByLayer[i], plans[i].layout);
  }

  // 3. Values, in spec order and target order.
  std::vector<PenaltyValue> values;
  for (const auto& spec : specs_) {
    const PenaltyKind kind = detail::penaltyKind(spec.name);
    const std::string name = detail::canonicalName(kind);
    auto emit = [&](const std::string& target, const Tensor& omega, c10::ScalarType dtype) {
      values.push_back(PenaltyValue{name, target, spec.weight, omega.to(dtype), detail::isParameterPenalty(kind)});
    };
    if (detail::usesStatistics(kind)) {
      for (const auto& t : spec.targets) {
        const LayerPlan& plan = planOf(t);
        emit(t, detail::statisticsPenalty(kind, spec, plan.stats, plan.layout.width(), numClasses_),
             plan.z.scalar_type());
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
      auto norm = [&](const Tensor& w) {
        const Tensor w64 = w.to(torch::kFloat64);
        return kind == PenaltyKind::kL1w ? w64.abs().sum() : w64.square().sum();
      };
      if (spec.targets.empty()) {
        TORCH_CHECK(!batch.weights.empty(), "penalties: ", name, " over every weight, but no weights were given");
        Tensor total = norm(batch.weights.front().second);
        for (std::size_t i = 1; i < batch.weights.size(); ++i) total = total + norm(batch.weights[i].second);
        emit("*", total, batch.weights.front().second.scalar_type());
      } else {
        for (const auto& t : spec.targets) {
          const Tensor& w = findNamed(batch.weights, t, "weight");
          emit(t, norm(w), w.scalar_type());
        }
      }
    }
  }
  return values;
}

}  // namespace repshape::reg
