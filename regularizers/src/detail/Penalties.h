#pragma once
// The penalty formulas of SPEC §2, each a function of already-reduced statistics (activation
// penalties) or of gathered rows / weights (pair and parameter penalties). All math is fp64.

#include <repshape/regularizers/Regularizers.h>

#include "detail/Statistics.h"

#include <string>

namespace repshape::reg::detail {

enum class PenaltyKind {
  kLsigma, kCr, kCwCr, kVr, kCwVr, kL1r, kRr, kCwRr, kCorr, kXcov,  // from layer statistics
  kLmulti, kLmultiUnsup,                                            // pairs of gathered rows
  kLsingle, kL1w, kL2w                                              // parameters only
};

// Throws std::invalid_argument for an unknown name; `decov` is `cr`.
PenaltyKind penaltyKind(const std::string& name);
const char* canonicalName(PenaltyKind kind);
bool usesStatistics(PenaltyKind kind);
bool usesPairs(PenaltyKind kind);
bool isParameterPenalty(PenaltyKind kind);

// Sums one statistics penalty needs from its layer.
StatsNeeds statsNeeds(PenaltyKind kind, const std::string& method);

// Ω of a statistics penalty (scalar fp64) of a layer of `width` units. numClasses: K of the task
// (normalized divisors).
torch::Tensor statisticsPenalty(PenaltyKind kind, const PenaltySpec& spec, const LayerStats& stats, int64_t width,
                                int64_t numClasses);

// The covariance family (lsigma, cr, cw-cr, corr), vr / cw-vr, xcov, l1r, rr and cw-rr (method holder)
// straight from rows z [n, M] when every row of the layer is at hand (one rank, or gathered rows):
// centredCovariancePenalty / rowsVariancePenalty / … of FusedPenalties.h. fromRows says whether
// it applies (CPU rows); labels [n] for cw-cr, cw-vr, cw-rr; probs [n, C] for xcov.
bool fromRows(PenaltyKind kind, const std::string& method, const torch::Tensor& z);
torch::Tensor rowsPenalty(PenaltyKind kind, const PenaltySpec& spec, const torch::Tensor& z, const torch::Tensor& labels,
                          const torch::Tensor& probs, int64_t numClasses);

// lmulti (labels defined) / lmulti-unsup (labels undefined) over all gathered rows z [N, M].
torch::Tensor pairHingePenalty(const torch::Tensor& z, const torch::Tensor& labels, double margin);
// lsingle over the rows of a weight matrix [out, in].
torch::Tensor lsinglePenalty(const torch::Tensor& weight, double margin);

}  // namespace repshape::reg::detail
