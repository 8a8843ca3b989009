#pragma once
// Mutual-information scores of a contingency table, transcribed from scikit-learn 1.2
// (sklearn/metrics/cluster/_supervised.py and _expected_mutual_info_fast.pyx) so that the values
// agree to rounding: same special cases, same formulas, same order of operations where it matters.

#include <repshape/regularizers/Clustering.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace repshape::reg::detail {

// A contingency table with its empty rows and columns removed (scikit-learn builds it from the
// labels present, so an empty row or column never exists there).
struct DenseTable {
  int64_t rows = 0;               // classes present
  int64_t cols = 0;               // clusters present
  std::vector<double> counts;     // [rows, cols] row-major, non-negative integers
  std::vector<double> rowSums;    // a_i
  std::vector<double> colSums;    // b_j
  double total = 0.0;             // N
};

inline DenseTable compactTable(const torch::Tensor& contingency) {
  TORCH_CHECK(contingency.dim() == 2, "contingency table must be 2-D, got ", contingency.sizes());
  const auto c = contingency.to(torch::kFloat64).contiguous();
  const auto valid = (c >= 0).logical_and(c == torch::round(c)).all().item<bool>();
  TORCH_CHECK(valid, "contingency table must hold non-negative integer counts");
  const auto rowSums = c.sum(1);
  const auto colSums = c.sum(0);
  const auto keepRows = rowSums.gt(0).nonzero().squeeze(1);
  const auto keepCols = colSums.gt(0).nonzero().squeeze(1);
  const auto kept = c.index_select(0, keepRows).index_select(1, keepCols).contiguous();
  DenseTable t;
  t.rows = kept.size(0);
  t.cols = kept.size(1);
  t.counts.assign(kept.data_ptr<double>(), kept.data_ptr<double>() + kept.numel());
  t.rowSums.assign(t.rows, 0.0);
  t.colSums.assign(t.cols, 0.0);
  for (int64_t i = 0; i < t.rows; ++i) {
    for (int64_t j = 0; j < t.cols; ++j) {
      const double v = t.counts[i * t.cols + j];
      t.rowSums[i] += v;
      t.colSums[j] += v;
      t.total += v;
    }
  }
  return t;
}

// sklearn.metrics.cluster.entropy from the label counts (all > 0).
inline double labelEntropy(const std::vector<double>& counts) {
  if (counts.size() == 1) {
    return 0.0;  // single cluster ⇒ zero entropy
  }
  double sum = 0.0;
  for (double c : counts) {
    sum += c;
  }
  const double logSum = std::log(sum);
  double h = 0.0;
  for (double c : counts) {
    h -= (c / sum) * (std::log(c) - logSum);
  }
  return h;
}

// sklearn mutual_info_score(contingency=…), nats.
inline double mutualInformation(const DenseTable& t) {
  if (t.rows == 1 || t.cols == 1) {
    return 0.0;  // MI ≤ min(H(X), H(Y)) = 0
  }
  const double eps = std::numeric_limits<double>::epsilon();
  const double logTotal = std::log(t.total);
  double mi = 0.0;
  for (int64_t i = 0; i < t.rows; ++i) {
    for (int64_t j = 0; j < t.cols; ++j) {
      const double nij = t.counts[i * t.cols + j];
      if (nij == 0.0) {
        continue;
      }
      const double p = nij / t.total;
      const double logOuter = -std::log(t.rowSums[i] * t.colSums[j]) + logTotal + logTotal;
      const double term = p * (std::log(nij) - logTotal) + p * logOuter;
      mi += std::abs(term) < eps ? 0.0 : term;
    }
  }
  return std::max(mi, 0.0);
}

// sklearn expected_mutual_information (Vinh, Epps & Bailey 2010, Eq. 24a), fp64 accumulation.
inline double expectedMutualInformation(const DenseTable& t) {
  if (t.rows == 1 || t.cols == 1) {
    return 0.0;
  }
  const double n = t.total;
  const auto n64 = static_cast<int64_t>(n);
  double maxMargin = 0.0;
  for (double a : t.rowSums) maxMargin = std::max(maxMargin, a);
  for (double b : t.colSums) maxMargin = std::max(maxMargin, b);
  // Tables indexed by n_ij (index 0 unused, set to 1 to avoid log 0, as scikit-learn).
  const auto top = static_cast<int64_t>(maxMargin);
  std::vector<double> term1(top + 1), logNnij(top + 1), glnNnij(top + 1);
  for (int64_t v = 0; v <= top; ++v) {
    const double nij = v == 0 ? 1.0 : static_cast<double>(v);
    term1[v] = nij / n;
    logNnij[v] = std::log(n) + std::log(nij);
    glnNnij[v] = std::lgamma(nij + 1.0) + std::lgamma(n + 1.0);
  }
  double emi = 0.0;
  for (int64_t i = 0; i < t.rows; ++i) {
    const double a = t.rowSums[i];
    const auto a64 = static_cast<int64_t>(a);
    const double glnA = std::lgamma(a + 1.0), glnNa = std::lgamma(n - a + 1.0);
    for (int64_t j = 0; j < t.cols; ++j) {
      const double b = t.colSums[j];
      const auto b64 = static_cast<int64_t>(b);
      const double glnB = std::lgamma(b + 1.0), glnNb = std::lgamma(n - b + 1.0);
      const int64_t start = std::max<int64_t>(1, a64 - n64 + b64);
      const int64_t end = std::min(a64, b64) + 1;
      for (int64_t nij = start; nij < end; ++nij) {
        const double term2 = logNnij[nij] - std::log(a) - std::log(b);
        const double gln = glnA + glnB + glnNa + glnNb - glnNnij[nij] -
                           std::lgamma(static_cast<double>(a64 - nij + 1)) -
                           std::lgamma(static_cast<double>(b64 - nij + 1)) -
                           std::lgamma(static_cast<double>(n64 - a64 - b64 + nij + 1));
        emi += term1[nij] * term2 * std::exp(gln);
      }
    }
  }
  return emi;
}

// sklearn _generalized_average.
inline double generalizedAverage(double u, double v, MiNormalization normalization) {
  switch (normalization) {
    case MiNormalization::Min:
      return std::min(u, v);
    case MiNormalization::Geometric:
      return std::sqrt(u * v);
    case MiNormalization::Arithmetic:
      return (u + v) / 2.0;
    case MiNormalization::Max:
      return std::max(u, v);
  }
  return (u + v) / 2.0;
}

inline ClusterScores scoreTable(const DenseTable& t, MiNormalization normalization) {
  ClusterScores s;
  // Both labelings single-valued (or empty): a perfect match, 1.0 (scikit-learn's special case).
  if ((t.rows == 1 && t.cols == 1) || (t.rows == 0 && t.cols == 0)) {
    s.ami = 1.0;
    s.nmi = 1.0;
    return s;
  }
  const double mi = mutualInformation(t);
  const double hTrue = labelEntropy(t.rowSums);
  const double hPred = labelEntropy(t.colSums);
  const double normalizer = generalizedAverage(hTrue, hPred, normalization);
  // NMI: mi = 0 cannot be a perfect match here, so NMI is 0 whatever the normalisation.
  s.nmi = mi == 0.0 ? 0.0 : mi / normalizer;
  const double emi = expectedMutualInformation(t);
  double denominator = normalizer - emi;
  // Keep the sign when the expectation equals the maximum up to rounding (scikit-learn).
  const double eps = std::numeric_limits<double>::epsilon();
  denominator = denominator < 0.0 ? std::min(denominator, -eps) : std::max(denominator, eps);
  s.ami = (mi - emi) / denominator;
  return s;
}

}  // namespace repshape::reg::detail
