// AMI / NMI against scikit-learn 1.2 on random, unbalanced and degenerate labelings.

#include <repshape/regularizers/Clustering.h>

#include "ReferencePython.h"

#include <cmath>
#include <fstream>
#include <iostream>
#include <random>
#include <vector>

namespace repshape::reg {
namespace {

using Labels = std::vector<int64_t>;

struct Case {
  Labels truth;
  Labels pred;
};

torch::Tensor toTensor(const Labels& v) {
  return torch::tensor(std::vector<int64_t>(v.begin(), v.end()), torch::kInt64);
}

// Labels drawn with probabilities ∝ weights[i].
Labels draw(std::mt19937_64& rng, int64_t n, const std::vector<double>& weights) {
  std::discrete_distribution<int64_t> pick(weights.begin(), weights.end());
  Labels out(n);
  for (auto& v : out) v = pick(rng);
  return out;
}

std::vector<Case> makeCases() {
  std::mt19937_64 rng(20240521);
  std::vector<Case> cases;
  // Uniform random labelings of several sizes and numbers of values.
  for (int64_t n : {12, 57, 300, 2000, 5000}) {
    for (auto [c, k] : std::vector<std::pair<int, int>>{{2, 2}, {3, 7}, {10, 10}, {7, 3}}) {
      cases.push_back({draw(rng, n, std::vector<double>(c, 1.0)),
                       draw(rng, n, std::vector<double>(k, 1.0))});
    }
  }
  // Unbalanced: geometric class frequencies, and predictions correlated with the truth.
  for (int64_t n : {40, 800, 3000}) {
    const std::vector<double> skew{64, 16, 4, 1, 1};
    auto truth = draw(rng, n, skew);
    auto pred = truth;
    std::uniform_int_distribution<int64_t> noise(0, 5);
    for (auto& p : pred) {
      if (noise(rng) == 0) p = noise(rng);
    }
    cases.push_back({truth, pred});
    cases.push_back({truth, draw(rng, n, {1, 30})});
  }
  // Degenerate cases.
  cases.push_back({Labels(20, 0), Labels(20, 3)});                 // both single-valued → 1
  cases.push_back({Labels(20, 0), draw(rng, 20, {1, 1, 1})});      // one class, many clusters
  cases.push_back({draw(rng, 20, {1, 1, 1}), Labels(20, 0)});      // many classes, one cluster
  cases.push_back({{0, 0, 1, 1}, {1, 1, 0, 0}});                   // permuted perfect match
  cases.push_back({{0, 0, 0, 0}, {0, 1, 2, 3}});                   // split completely
  Labels own(30);
  for (int64_t i = 0; i < 30; ++i) own[i] = i;
  cases.push_back({draw(rng, 30, {1, 2, 3}), own});                // every sample its own cluster
  cases.push_back({own, own});                                     // identical, all distinct
  cases.push_back({{7}, {2}});                                     // one sample
  cases.push_back({{0, 5, 5, 9, 9, 9}, {4, 4, 0, 0, 8, 8}});        // gaps in label values
  return cases;
}

TEST(ClusteringScores, EqualScikitLearn) {
  const auto cases = makeCases();
  const std::string input = test::scratchPath("scores.txt");
  {
    std::ofstream out(input);
    for (const auto& c : cases) {
      out << c.truth.size() << "\n";
      for (auto v : c.truth) out << v << " ";
      out << "\n";
      for (auto v : c.pred) out << v << " ";
      out << "\n";
    }
  }
  const auto reference = test::runReference("reference_scores.py", input);
  ASSERT_EQ(reference.size(), cases.size() * 4 * 3);
  const MiNormalization methods[] = {MiNormalization::Arithmetic, MiNormalization::Max,
                                     MiNormalization::Geometric, MiNormalization::Min};
  LocalReducer reducer;
  size_t at = 0;
  int illConditioned = 0;
  for (size_t c = 0; c < cases.size(); ++c) {
    for (auto method : methods) {
      const auto s = scoreLabelings(toTensor(cases[c].truth), toTensor(cases[c].pred), method,
                                    reducer);
      // AMI = 0/0 (every sample its own cluster under `min`): both values are rounding noise.
      if (reference[at + 2] == 1.0) {
        EXPECT_NEAR(s.ami, reference[at], 1e-9)
            << "case " << c << " n=" << cases[c].truth.size() << " " << miNormalizationName(method);
      } else {
        ++illConditioned;
        EXPECT_TRUE(std::isfinite(s.ami));
        std::cout << "not compared (0/0): case " << c << " " << miNormalizationName(method) << "\n";
      }
      EXPECT_NEAR(s.nmi, reference[at + 1], 1e-9)
          << "case " << c << " n=" << cases[c].truth.size() << " " << miNormalizationName(method);
      at += 3;
    }
  }
  // Only the two all-singleton cases are 0/0: (random, singletons) under `min` and (singletons,
  // singletons) under all four normalisations, where MI = EMI = H mathematically.
  EXPECT_EQ(illConditioned, 5);
  std::remove(input.c_str());
}

TEST(ClusteringScores, ContingencyFormMatchesLabelForm) {
  // [[3,1,0],[0,2,4]] written as labels; empty rows/columns of the table are ignored.
  const auto table = torch::tensor({3., 1., 0., 0., 0., 0., 0., 2., 4.}).view({3, 3});
  const Labels truth{0, 0, 0, 0, 2, 2, 2, 2, 2, 2};
  const Labels pred{0, 0, 0, 1, 1, 1, 2, 2, 2, 2};
  LocalReducer reducer;
  const auto fromLabels =
      scoreLabelings(toTensor(truth), toTensor(pred), MiNormalization::Arithmetic, reducer);
  const auto fromTable = scoreContingency(table, MiNormalization::Arithmetic);
  EXPECT_DOUBLE_EQ(fromLabels.ami, fromTable.ami);
  EXPECT_DOUBLE_EQ(fromLabels.nmi, fromTable.nmi);
  // A single-row table has no information: EMI 0 (scikit-learn's early return).
  EXPECT_EQ(expectedMutualInformation(torch::tensor({{2., 3.}})), 0.0);
}

TEST(ClusteringScores, RejectsBadInput) {
  EXPECT_THROW(parseMiNormalization("mean"), std::invalid_argument);
  EXPECT_EQ(parseMiNormalization("geometric"), MiNormalization::Geometric);
  EXPECT_THROW(scoreContingency(torch::tensor({{1.5, 2.0}}), MiNormalization::Max), c10::Error);
  LocalReducer reducer;
  EXPECT_THROW(scoreLabelings(toTensor({0, 1}), toTensor({0}), MiNormalization::Max, reducer),
               c10::Error);
  EXPECT_THROW(scoreLabelings(toTensor({0, -1}), toTensor({0, 1}), MiNormalization::Max, reducer),
               c10::Error);
}

}  // namespace
}  // namespace repshape::reg
