// Representation metrics (SPEC §3) against an independent NumPy computation, and the
// accumulate-then-reduce-once contract (batches and simulated ranks equal one pass).
#include "TestSupport.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace repshape::test {
namespace {

using torch::Tensor;

std::map<std::string, reg::MetricValue> asMap(const reg::MetricList& list) {
  std::map<std::string, reg::MetricValue> m;
  for (const auto& [k, v] : list) m[k] = v;
  return m;
}

reg::MetricList oneBatch(const Tensor& z, bool relu) {
  reg::MetricOptions options;
  options.reluLayer = relu;
  reg::MetricAccumulator acc(z.size(1), options);
  acc.add(z);
  reg::LocalReducer local;
  return acc.finish(local);
}

void expectSame(const reg::MetricList& a, const reg::MetricList& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(a[i].first);
    EXPECT_EQ(a[i].first, b[i].first);
    ASSERT_EQ(a[i].second.has_value(), b[i].second.has_value());
    if (a[i].second) {
      EXPECT_NEAR(*a[i].second, *b[i].second, tol * std::max(1.0, std::abs(*b[i].second)));
    }
  }
}

// Activations with a dead unit, a constant unit and correlated ReLU-ish units.
Tensor metricData() {
  PenaltyData d = makePenaltyData(23);
  Tensor z = d.z.clone();
  z.select(1, 4).fill_(-1.0);  // dead after ReLU, constant before
  return z;
}

TEST(Metrics, MatchNumPyReference) {
  const Tensor z = metricData();
  const std::string dir = scratchDir("metrics-reference");
  PenaltyData d = makePenaltyData(23);
  d.z = z;
  runReference(dir, d, {});
  std::ifstream in(dir + "/ref_metrics.txt");
  std::map<std::string, std::string> ref[2];
  int relu;
  std::string name, value;
  while (in >> relu >> name >> value) ref[relu][name] = value;
  for (int r = 0; r < 2; ++r) {
    const auto list = oneBatch(r ? torch::relu(z) : z, r == 1);
    ASSERT_EQ(list.size(), ref[r].size());
    for (const auto& [k, v] : list) {
      SCOPED_TRACE(std::string(r ? "relu " : "") + k);
      ASSERT_TRUE(ref[r].count(k));
      if (ref[r][k] == "null") {
        EXPECT_FALSE(v.has_value());
      } else {
        ASSERT_TRUE(v.has_value());
        const double expected = std::stod(ref[r][k]);
        EXPECT_NEAR(*v, expected, 1e-9 * std::max(1.0, std::abs(expected)));
      }
    }
  }
}

TEST(Metrics, NamesAreTheSpecNames) {
  std::vector<std::string> names;
  for (const auto& [k, v] : oneBatch(metricData(), false)) names.push_back(k);
  EXPECT_EQ(names, (std::vector<std::string>{"mapc", "cvr", "tdv@4", "ud@0.9", "ud_eig@0.9", "amplitude",
                                             "covariance", "correlation", "sparsity", "dead_units", "stable_rank"}));
}

TEST(Metrics, BatchesEqualOneBatch) {
  const Tensor z = torch::relu(metricData());
  for (bool relu : {false, true}) {
    reg::MetricOptions options;
    options.reluLayer = relu;
    reg::MetricAccumulator acc(z.size(1), options);
    // Uneven batches, one empty, one in fp32 (the accumulator widens it to fp64).
    const std::vector<Tensor> batches = {z.narrow(0, 0, 5), z.narrow(0, 5, 0), z.narrow(0, 5, 20).to(torch::kFloat32),
                                         z.narrow(0, 25, 12)};
    std::vector<Tensor> asDouble;
    for (const auto& b : batches) {
      acc.add(b);
      asDouble.push_back(b.to(torch::kFloat64));
    }
    reg::LocalReducer local;
    expectSame(acc.finish(local), oneBatch(torch::cat(asDouble), relu), 1e-10);
  }
}

TEST(Metrics, SimulatedRanksEqualOneProcess) {
  const Tensor z = torch::relu(metricData());
  const std::vector<std::pair<int64_t, int64_t>> shards = {{0, 11}, {11, 0}, {11, 26}};
  for (bool relu : {false, true}) {
    reg::MetricOptions options;
    options.reluLayer = relu;
    std::vector<reg::MetricAccumulator> accs;
    for (const auto& [begin, size] : shards) {
      accs.emplace_back(z.size(1), options);
      if (size > 0) accs.back().add(z.narrow(0, begin, size));  // the empty rank never adds
    }
    FakeRanks ranks(static_cast<int>(shards.size()));
    for (int r = 0; r < ranks.worldSize(); ++r) accs[r].finish(*ranks.recorder(r));
    for (int r = 0; r < ranks.worldSize(); ++r) expectSame(accs[r].finish(*ranks.replayer(r)), oneBatch(z, relu), 1e-10);
  }
}

TEST(Metrics, ClosedFormOnIndependentUnits) {
  // Two units, z2 = 2·z1 over {−1, 1}: perfectly correlated, var 1 and 4.
  const Tensor z = torch::tensor({-1.0, -2.0, 1.0, 2.0, -1.0, -2.0, 1.0, 2.0}, torch::kFloat64).view({4, 2});
  const auto m = asMap(oneBatch(z, false));
  EXPECT_NEAR(*m.at("mapc"), 1.0, 1e-12);
  EXPECT_NEAR(*m.at("cvr"), (1.0 + 4.0 + 2 * 2.0) / 5.0, 1e-12);
  EXPECT_NEAR(*m.at("tdv@4"), 1.0, 1e-12);
  EXPECT_NEAR(*m.at("ud@0.9"), 2.0, 1e-12);      // 4/5 < 0.9
  EXPECT_NEAR(*m.at("ud_eig@0.9"), 1.0, 1e-12);  // rank one
  EXPECT_NEAR(*m.at("stable_rank"), 1.0, 1e-12);
  EXPECT_NEAR(*m.at("amplitude"), 1.5, 1e-12);
  EXPECT_NEAR(*m.at("correlation"), 1.0, 1e-12);
  EXPECT_NEAR(*m.at("sparsity"), 0.0, 1e-12);
  const auto zero = asMap(oneBatch(torch::zeros({3, 2}, torch::kFloat64), true));
  EXPECT_FALSE(zero.at("mapc").has_value());
  EXPECT_FALSE(zero.at("stable_rank").has_value());
  EXPECT_NEAR(*zero.at("dead_units"), 1.0, 0);
  EXPECT_NEAR(*zero.at("sparsity"), 1.0, 0);
}

}  // namespace
}  // namespace repshape::test
