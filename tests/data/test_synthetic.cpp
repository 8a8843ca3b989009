// Synthetic generators: determinism by seed and the stated statistics (SPEC §5).

#include "ExpectError.h"
#include "data/Sources.h"

#include <gtest/gtest.h>

#include <cmath>

namespace repshape::data {
namespace {

using test::expectDataError;

DataConfig synthetic(const std::string& source, int64_t samples, int64_t factors, int64_t inputDim, double noise = 0.0) {
  DataConfig config;
  config.source = source;
  config.samples = samples;
  config.testSamples = 500;
  config.factors = factors;
  config.inputDim = inputDim;
  config.noise = noise;
  return config;
}

// Sample covariance [D, D] of rows x [N, D] (float64).
torch::Tensor covariance(const torch::Tensor& x) {
  const auto centered = x.to(torch::kFloat64) - x.to(torch::kFloat64).mean(0, true);
  return centered.t().matmul(centered) / static_cast<double>(x.size(0) - 1);
}

// Each entry of a Gaussian sample covariance has std sqrt((C_ii C_jj + C_ij²) / N); allow 5 of them.
void expectCovarianceNear(const torch::Tensor& sample, const torch::Tensor& truth, int64_t n) {
  const auto diag = truth.diagonal();
  const auto stdErr = ((diag.unsqueeze(1) * diag.unsqueeze(0) + truth.square()) / static_cast<double>(n)).sqrt();
  const auto excess = ((sample - truth).abs() / stdErr).max().item<double>();
  EXPECT_LT(excess, 5.0) << "max |sample - truth| in standard errors";
}

TEST(Projection, DeterministicBySeed) {
  const auto config = synthetic("projection", 300, 4, 10);
  const auto a = generateProjection(config, 7), b = generateProjection(config, 7), c = generateProjection(config, 8);
  EXPECT_TRUE(torch::equal(a.data.train.inputs, b.data.train.inputs));
  EXPECT_TRUE(torch::equal(a.data.test.inputs, b.data.test.inputs));
  EXPECT_TRUE(torch::equal(a.mixing, b.mixing));
  EXPECT_FALSE(torch::equal(a.mixing, c.mixing));
  EXPECT_FALSE(torch::equal(a.data.train.inputs, c.data.train.inputs));
  // Ω and the test set do not depend on the number of training samples.
  auto more = config;
  more.samples = 600;
  const auto d = generateProjection(more, 7);
  EXPECT_TRUE(torch::equal(a.mixing, d.mixing));
  EXPECT_TRUE(torch::equal(a.data.test.inputs, d.data.test.inputs));
  EXPECT_TRUE(torch::equal(a.data.train.inputs, d.data.train.inputs.slice(0, 0, 300)));
}

TEST(Projection, CovarianceIsOmegaSigmaOmegaT) {
  const int64_t n = 20000;
  const auto p = generateProjection(synthetic("projection", n, 4, 10), 3);
  ASSERT_EQ(p.data.train.inputs.sizes(), (std::vector<int64_t>{n, 10}));
  EXPECT_EQ(p.data.numClasses, 1);
  EXPECT_EQ(p.data.train.labels.abs().sum().item<int64_t>(), 0);
  // The documented variances: 1 - i/(d+1), decreasing and positive.
  EXPECT_TRUE(torch::allclose(p.variances, torch::tensor({1.0, 0.8, 0.6, 0.4}, torch::kFloat64)));
  const auto truth = p.mixing.matmul(torch::diag(p.variances)).matmul(p.mixing.t());  // [10, 10]
  expectCovarianceNear(covariance(p.data.train.inputs), truth, n);

  // Without noise x lies in span(Ω): z = Ω⁺x recovers independent factors with those variances.
  const auto x = p.data.train.inputs.to(torch::kFloat64);
  const auto z = x.matmul(torch::pinverse(p.mixing).t());  // [n, 4]
  const auto residual = (x - z.matmul(p.mixing.t())).abs().max().item<double>();
  EXPECT_LT(residual, 1e-4 * x.abs().max().item<double>());
  expectCovarianceNear(covariance(z), torch::diag(p.variances), n);
}

TEST(Projection, NoiseAddsIsotropicVariance) {
  const int64_t n = 20000;
  const auto p = generateProjection(synthetic("projection", n, 3, 6, 0.5), 4);
  const auto truth = p.mixing.matmul(torch::diag(p.variances)).matmul(p.mixing.t()) +
                     0.25 * torch::eye(6, torch::kFloat64);
  expectCovarianceNear(covariance(p.data.train.inputs), truth, n);
}

TEST(Xor, LabelsAreXorOfSigns) {
  const int64_t n = 4000;
  const auto data = generateXor(synthetic("xor", n, 4, 10, 0.1), 5);
  ASSERT_EQ(data.train.inputs.sizes(), (std::vector<int64_t>{n, 2}));
  EXPECT_EQ(data.numClasses, 2);
  const auto x = data.train.inputs.to(torch::kFloat64);
  const auto signs = x.sign();
  const auto xorLabels = signs.select(1, 0).ne(signs.select(1, 1)).to(torch::kInt64);
  EXPECT_TRUE(torch::equal(xorLabels, data.train.labels));  // noise 0.1 is 10σ from flipping a sign
  const double noiseStd = (x - signs).std().item<double>();
  EXPECT_NEAR(noiseStd, 0.1, 0.1 * 5 / std::sqrt(2.0 * 2 * n));
  // Each corner has probability 1/4: class 1 has half the samples.
  const double ones = data.train.labels.sum().item<double>();
  EXPECT_NEAR(ones / n, 0.5, 5 * 0.5 / std::sqrt(static_cast<double>(n)));
  const auto again = generateXor(synthetic("xor", n, 4, 10, 0.1), 5);
  EXPECT_TRUE(torch::equal(again.train.inputs, data.train.inputs));
}

TEST(Factors, RankBalanceAndOrthonormalMixing) {
  const int64_t n = 20000, d = 10, dim = 60;
  const auto f = generateFactors(synthetic("factors", n, d, dim), 11);
  const auto& train = f.data.train;
  ASSERT_EQ(train.inputs.sizes(), (std::vector<int64_t>{n, dim}));
  EXPECT_EQ(f.data.numClasses, 10);
  EXPECT_TRUE(torch::equal(torch::bincount(train.labels), torch::full({10}, n / 10, torch::kInt64)));

  // The data has rank d: d clearly positive singular values, the rest at float32 round-off.
  const auto x = train.inputs.to(torch::kFloat64);
  const auto singular = torch::linalg_svdvals(x);
  EXPECT_GT(singular[d - 1].item<double>() / singular[0].item<double>(), 0.1);
  EXPECT_LT(singular[d].item<double>() / singular[0].item<double>(), 1e-5);

  // Within a class: covariance = Q I Qᵀ, i.e. d eigenvalues ≈ 1 and the rest ≈ 0.
  // Class means: Q c_k with c_k ∈ {±1}^d, so ‖mean‖² ≈ d and ‖mean_j - mean_k‖²/4 ≈ a positive integer.
  std::vector<torch::Tensor> means;
  for (int64_t k = 0; k < 10; ++k) {
    const auto rows = x.index_select(0, train.labels.eq(k).nonzero().select(1, 0));
    means.push_back(rows.mean(0));
    const auto eigen = torch::linalg_eigvalsh(covariance(rows));  // ascending
    const double tolerance = 5 * std::sqrt(2.0 / static_cast<double>(rows.size(0))) + 0.05;
    EXPECT_NEAR(eigen[dim - 1].item<double>(), 1.0, 2 * std::sqrt(static_cast<double>(d) / rows.size(0)) + tolerance);
    EXPECT_NEAR(eigen[dim - d].item<double>(), 1.0, 2 * std::sqrt(static_cast<double>(d) / rows.size(0)) + tolerance);
    EXPECT_LT(eigen[dim - d - 1].item<double>(), 1e-8);
    EXPECT_NEAR(means.back().square().sum().item<double>(), static_cast<double>(d), 0.1 * d);
  }
  for (int64_t j = 0; j < 10; ++j)
    for (int64_t k = j + 1; k < 10; ++k) {
      const double hamming = (means[j] - means[k]).square().sum().item<double>() / 4.0;
      EXPECT_GE(std::round(hamming), 1.0);
      EXPECT_NEAR(hamming, std::round(hamming), 0.25) << "classes " << j << ", " << k;
    }
  const auto again = generateFactors(synthetic("factors", n, d, dim), 11);
  EXPECT_TRUE(torch::equal(again.data.train.inputs, train.inputs));
  EXPECT_FALSE(torch::equal(generateFactors(synthetic("factors", n, d, dim), 12).data.train.inputs, train.inputs));
}

TEST(Factors, Errors) {
  expectDataError([] { generateFactors(synthetic("factors", 100, 3, 10), 1); },
                  {"data.factors = 3", "10 classes", "2^factors >= 10"});
  expectDataError([] { generateFactors(synthetic("factors", 100, 8, 5), 1); }, {"data.input_dim = 5", ">= data.factors = 8"});
  expectDataError([] { generateProjection(synthetic("projection", 0, 4, 10), 1); }, {"data.samples = 0"});
  expectDataError([] { generateXor(synthetic("xor", 10, 4, 10, -1.0), 1); }, {"data.noise"});
}

}  // namespace
}  // namespace repshape::data
