// Penalty names, aliases and spec validation (SPEC §2).
#include <repshape/regularizers/Regularizers.h>

#include "detail/Penalties.h"

#include <cmath>
#include <stdexcept>

namespace repshape::reg {

namespace {

struct NamedKind {
  const char* name;
  detail::PenaltyKind kind;
};

// Canonical names first; aliases after.
const NamedKind kPenaltyTable[] = {
    {"lsigma", detail::PenaltyKind::kLsigma},       {"cr", detail::PenaltyKind::kCr},
    {"cw-cr", detail::PenaltyKind::kCwCr},          {"vr", detail::PenaltyKind::kVr},
    {"cw-vr", detail::PenaltyKind::kCwVr},          {"l1r", detail::PenaltyKind::kL1r},
    {"rr", detail::PenaltyKind::kRr},               {"cw-rr", detail::PenaltyKind::kCwRr},
    {"corr", detail::PenaltyKind::kCorr},           {"xcov", detail::PenaltyKind::kXcov},
    {"lsingle", detail::PenaltyKind::kLsingle},     {"lmulti", detail::PenaltyKind::kLmulti},
    {"lmulti-unsup", detail::PenaltyKind::kLmultiUnsup}, {"l1w", detail::PenaltyKind::kL1w},
    {"l2w", detail::PenaltyKind::kL2w},             {"decov", detail::PenaltyKind::kCr},
};

}  // namespace

namespace detail {

PenaltyKind penaltyKind(const std::string& name) {
  for (const auto& entry : kPenaltyTable)
    if (name == entry.name) return entry.kind;
  std::string known;
  for (const auto& n : penaltyNames()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown penalty '" + name + "' (known: " + known + ")");
}

const char* canonicalName(PenaltyKind kind) {
  for (const auto& entry : kPenaltyTable)
    if (entry.kind == kind) return entry.name;
  return "?";
}

bool usesStatistics(PenaltyKind kind) {
  return kind != PenaltyKind::kLmulti && kind != PenaltyKind::kLmultiUnsup && !isParameterPenalty(kind);
}

bool usesPairs(PenaltyKind kind) { return kind == PenaltyKind::kLmulti || kind == PenaltyKind::kLmultiUnsup; }

bool isParameterPenalty(PenaltyKind kind) {
  return kind == PenaltyKind::kLsingle || kind == PenaltyKind::kL1w || kind == PenaltyKind::kL2w;
}

}  // namespace detail

const std::vector<std::string>& penaltyNames() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& entry : kPenaltyTable) v.emplace_back(entry.name);
    return v;
  }();
  return names;
}

void validate(const PenaltySpec& spec) {
  using detail::PenaltyKind;
  const PenaltyKind kind = detail::penaltyKind(spec.name);
  if (!std::isfinite(spec.weight) || spec.weight < 0)
    throw std::invalid_argument("weight must be a finite number >= 0, got " + std::to_string(spec.weight));
  if (!std::isfinite(spec.margin)) throw std::invalid_argument("margin must be finite");
  if (spec.method != "holder" && spec.method != "exact")
    throw std::invalid_argument("method must be \"holder\" or \"exact\", got \"" + spec.method + "\"");
  if (spec.method == "exact" && kind != PenaltyKind::kRr && kind != PenaltyKind::kCwRr)
    throw std::invalid_argument("method = \"exact\" applies to rr and cw-rr only, not " + spec.name);
  const bool hasDivisor = kind == PenaltyKind::kCr || kind == PenaltyKind::kCwCr || kind == PenaltyKind::kVr ||
                          kind == PenaltyKind::kCwVr || kind == PenaltyKind::kL1r || kind == PenaltyKind::kRr ||
                          kind == PenaltyKind::kCwRr;
  if (spec.normalized && !hasDivisor)
    throw std::invalid_argument("normalized = true is defined for cr, cw-cr, vr, cw-vr, l1r, rr, cw-rr only, not " +
                                spec.name);
  const bool allWeights = kind == PenaltyKind::kL1w || kind == PenaltyKind::kL2w;
  if (spec.targets.empty() && !allWeights)
    throw std::invalid_argument(spec.name + " needs at least one layer in targets");
}

}  // namespace repshape::reg
