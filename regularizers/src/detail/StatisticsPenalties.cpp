// Activation penalties as functions of global sums (SPEC §2). Everything here is fp64 and small
// ([M, M] or [K, M, M]); the per-sample work happened in localStatistics().
#include "detail/Penalties.h"

#include "detail/FusedPenalties.h"

#include <stdexcept>

namespace repshape::reg::detail {

using torch::Tensor;

namespace {

// Below this a ratio's denominator counts as zero: the numerator is then zero as well (all-zero
// activations), so the ratio is 0 with finite gradients. 1e-30 keeps 1/denominator inside fp32.
constexpr double kTinyDenominator = 1e-30;

Tensor safeRatio(const Tensor& num, const Tensor& den) {
  const Tensor ok = den > kTinyDenominator;
  return torch::where(ok, num / torch::where(ok, den, torch::ones_like(den)), torch::zeros_like(num));
}

// Biased covariance C = Σzzᵀ/N − μμᵀ, [M, M].
Tensor covariance(const LayerStats& s) {
  const Tensor n = s.count.clamp_min(1.0);
  const Tensor mean = s.sum / n;
  return s.gram / n - torch::outer(mean, mean);
}

// Unbiased covariance N/(N−1)·C; N = 1 gives 0 (C is 0 then).
Tensor unbiasedCovariance(const LayerStats& s) {
  return covariance(s) * (s.count / (s.count - 1.0).clamp_min(1.0));
}

// ½(‖C‖_F² − Σ_i C_ii²) over the last two dims.
Tensor offDiagonalHalfSquare(const Tensor& c) {
  return 0.5 * (c.square().sum({-2, -1}) - c.diagonal(0, -2, -1).square().sum(-1));
}

double divisorOf(PenaltyKind kind, int64_t M, int64_t K) {
  const double pairs = std::max(1.0, static_cast<double>(M) * static_cast<double>(M - 1) / 2.0);
  switch (kind) {
    case PenaltyKind::kCr: return pairs;
    case PenaltyKind::kCwCr: return pairs * static_cast<double>(K);
    case PenaltyKind::kVr:
    case PenaltyKind::kL1r:
    case PenaltyKind::kRr: return static_cast<double>(M);
    case PenaltyKind::kCwVr:
    case PenaltyKind::kCwRr: return static_cast<double>(M) * static_cast<double>(K);
    default: throw std::invalid_argument(std::string(canonicalName(kind)) + " has no normalized form");
  }
}

}  // namespace

StatsNeeds statsNeeds(PenaltyKind kind, const std::string& method) {
  StatsNeeds n;
  const bool exact = method == "exact";
  switch (kind) {
    case PenaltyKind::kLsigma:
    case PenaltyKind::kCr:
    case PenaltyKind::kCorr: n.sum = n.gram = true; break;
    case PenaltyKind::kCwCr: n.classSum = n.classGram = true; break;
    case PenaltyKind::kVr: n.sum = n.sqDiag = true; break;
    case PenaltyKind::kCwVr: n.classSum = n.classSqDiag = true; break;
    case PenaltyKind::kL1r: n.absCol = true; break;
    case PenaltyKind::kRr:
      if (exact) n.gram = true; else n.sqDiag = n.absCol = n.rowAbsMax = true;
      break;
    case PenaltyKind::kCwRr:
      if (exact) n.classGram = true; else n.classSqDiag = n.classAbsCol = n.classRowAbsMax = true;
      break;
    case PenaltyKind::kXcov: n.sum = n.cross = true; break;
    default: throw std::invalid_argument(std::string(canonicalName(kind)) + " is not a statistics penalty");
  }
  return n;
}

bool fromRows(PenaltyKind kind, const std::string& method, const Tensor& z) {
  const bool covariance = kind == PenaltyKind::kLsigma || kind == PenaltyKind::kCr || kind == PenaltyKind::kCwCr ||
                          kind == PenaltyKind::kCorr;
  const bool fp64Rows = kind == PenaltyKind::kVr || kind == PenaltyKind::kCwVr || kind == PenaltyKind::kXcov ||
                        kind == PenaltyKind::kL1r ||
                        ((kind == PenaltyKind::kRr || kind == PenaltyKind::kCwRr) && method != "exact");
  if (!z.is_cpu() || z.dim() != 2) return false;
  if (covariance) return z.is_floating_point();
  return fp64Rows && (z.scalar_type() == torch::kFloat32 || z.scalar_type() == torch::kFloat64);
}

Tensor rowsPenalty(PenaltyKind kind, const PenaltySpec& spec, const Tensor& z, const Tensor& labels,
                   const Tensor& probs, int64_t numClasses) {
  const int64_t M = z.size(1);
  const double divisor = spec.normalized ? divisorOf(kind, M, numClasses) : 1.0;
  switch (kind) {  // scales as in statisticsPenalty's fused calls
    case PenaltyKind::kLsigma:
      return centredCovariancePenalty(FusedCovKind::kLsigma, z, labels, 1, 1.0 / static_cast<double>(M * M) / divisor);
    case PenaltyKind::kCr: return centredCovariancePenalty(FusedCovKind::kCr, z, labels, 1, 1.0 / divisor);
    case PenaltyKind::kCwCr:
      TORCH_CHECK(labels.defined(), "penalties: class-wise penalties need labels");
      return centredCovariancePenalty(FusedCovKind::kCr, z, labels, numClasses, 1.0 / divisor);
    case PenaltyKind::kCorr:
      return centredCovariancePenalty(FusedCovKind::kCorr, z, labels, 1,
                                      1.0 / (2.0 * static_cast<double>(M)) / divisor);
    case PenaltyKind::kVr: return rowsVariancePenalty(z, labels, 1, 1.0 / divisor);
    case PenaltyKind::kCwVr:
      TORCH_CHECK(labels.defined(), "penalties: class-wise penalties need labels");
      return rowsVariancePenalty(z, labels, numClasses, 1.0 / divisor);
    case PenaltyKind::kL1r: {
      // Σ|z| in fp64 without an fp64 copy of z, gradient sign(z)·g (as the packed absCol sums).
      const Tensor omega = fusedWeightNorms({z}, /*l1=*/true, torch::kFloat64);
      return divisor == 1.0 ? omega : omega / divisor;
    }
    case PenaltyKind::kRr:
      TORCH_CHECK(spec.method != "exact", "penalties: rr exact has no rows form");
      return rowsHolderRatioPenalty(z, labels, 1, 1.0 / divisor);
    case PenaltyKind::kCwRr:
      TORCH_CHECK(spec.method != "exact", "penalties: cw-rr exact has no rows form");
      TORCH_CHECK(labels.defined(), "penalties: class-wise penalties need labels");
      return rowsHolderRatioPenalty(z, labels, numClasses, 1.0 / divisor);
    case PenaltyKind::kXcov:
      TORCH_CHECK(probs.defined(), "penalties: xcov needs probabilities");
      return rowsCrossCovariancePenalty(z, probs, 1.0 / divisor);
    default: throw std::invalid_argument(std::string(canonicalName(kind)) + " has no rows form");
  }
}

Tensor statisticsPenalty(PenaltyKind kind, const PenaltySpec& spec, const LayerStats& s, int64_t M,
                         int64_t numClasses) {
  const bool exact = spec.method == "exact";
  const double divisor = spec.normalized ? divisorOf(kind, M, numClasses) : 1.0;
  // Covariance family on CPU fp64 statistics: one autograd node each (FusedPenalties.h).
  switch (kind) {
    case PenaltyKind::kLsigma:
      if (canFuse(s.count, s.sum, s.gram))
        return fusedCovariancePenalty(FusedCovKind::kLsigma, s.count, s.sum, s.gram, M,
                                      1.0 / static_cast<double>(M * M) / divisor);
      break;
    case PenaltyKind::kCr:
      if (canFuse(s.count, s.sum, s.gram))
        return fusedCovariancePenalty(FusedCovKind::kCr, s.count, s.sum, s.gram, M, 1.0 / divisor);
      break;
    case PenaltyKind::kCwCr:
      if (canFuse(s.classCount, s.classSum, s.classGram))
        return fusedCovariancePenalty(FusedCovKind::kCr, s.classCount, s.classSum, s.classGram, M, 1.0 / divisor);
      break;
    case PenaltyKind::kCorr:
      if (canFuse(s.count, s.sum, s.gram))
        return fusedCovariancePenalty(FusedCovKind::kCorr, s.count, s.sum, s.gram, M,
                                      1.0 / (2.0 * static_cast<double>(M)) / divisor);
      break;
    case PenaltyKind::kVr:
      if (canFuse(s.count, s.sum, s.sqDiag)) return fusedVariancePenalty(s.count, s.sum, s.sqDiag, M, 1.0 / divisor);
      break;
    case PenaltyKind::kCwVr:
      if (canFuse(s.classCount, s.classSum, s.classSqDiag))
        return fusedVariancePenalty(s.classCount, s.classSum, s.classSqDiag, M, 1.0 / divisor);
      break;
    default: break;
  }
  Tensor omega;
  switch (kind) {
    case PenaltyKind::kLsigma:
      omega = unbiasedCovariance(s).abs().sum() / static_cast<double>(M * M);
      break;
    case PenaltyKind::kCr:
      omega = offDiagonalHalfSquare(covariance(s));
      break;
    case PenaltyKind::kCwCr: {
      // C_k = G_k/n_k − μ_k μ_kᵀ; absent classes have G_k = 0, μ_k = 0 and contribute 0.
      const Tensor nk = s.classCount.clamp_min(1.0);                  // [K]
      const Tensor mean = s.classSum / nk.unsqueeze(1);               // [K, M]
      const Tensor c = s.classGram / nk.view({-1, 1, 1}) - mean.unsqueeze(2) * mean.unsqueeze(1);  // [K, M, M]
      omega = offDiagonalHalfSquare(c).sum();
      break;
    }
    case PenaltyKind::kVr: {
      const Tensor n = s.count.clamp_min(1.0);
      omega = (s.sqDiag / n - (s.sum / n).square()).sum();
      break;
    }
    case PenaltyKind::kCwVr: {
      const Tensor nk = s.classCount.clamp_min(1.0).unsqueeze(1);  // [K, 1]
      omega = (s.classSqDiag / nk - (s.classSum / nk).square()).sum();
      break;
    }
    case PenaltyKind::kL1r:
      omega = s.absCol.sum();
      break;
    case PenaltyKind::kRr:
      if (exact) {
        omega = safeRatio(s.gram.trace(), largestEigenvalue(s.gram));
      } else {
        // Hölder: ‖Z‖_2² ≤ ‖Z‖_1 ‖Z‖_∞ = (max column |z|-sum)(max row |z|-sum)   (Choi Eq. 9)
        omega = safeRatio(s.sqDiag.sum(), s.absCol.amax() * s.rowAbsMax);
      }
      break;
    case PenaltyKind::kCwRr:
      if (exact) {
        const Tensor trace = s.classGram.diagonal(0, 1, 2).sum(1);  // [K]
        omega = safeRatio(trace, largestEigenvalue(s.classGram)).sum();
      } else {
        omega = safeRatio(s.classSqDiag.sum(1), s.classAbsCol.amax(1) * s.classRowAbsMax).sum();
      }
      break;
    case PenaltyKind::kCorr: {
      const Tensor cu = unbiasedCovariance(s);
      const Tensor sd = (cu.diagonal() + kCorrEpsilon).sqrt();  // [M]
      omega = (cu / torch::outer(sd, sd)).square().sum() / (2.0 * static_cast<double>(M));
      break;
    }
    case PenaltyKind::kXcov: {
      // X = (1/N)(P − P̄)ᵀ(Z − Z̄) = Σpzᵀ/N − p̄ z̄ᵀ   [C, M]
      const Tensor n = s.count.clamp_min(1.0);
      const Tensor x = s.cross / n - torch::outer(s.probSum / n, s.sum / n);
      omega = 0.5 * x.square().sum();
      break;
    }
    default: throw std::invalid_argument(std::string(canonicalName(kind)) + " is not a statistics penalty");
  }
  if (spec.normalized) omega = omega / divisor;
  return omega;
}

}  // namespace repshape::reg::detail
