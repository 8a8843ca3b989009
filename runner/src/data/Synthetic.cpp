// Synthetic generators of SPEC §5. Every draw goes through an explicit CPU generator seeded from
// `seed`: stream 0 draws the structure (Ω, Q, class centroids), stream 1 the training samples,
// stream 2 the test samples, so the structure does not depend on `samples` and the test set does
// not depend on the training set's size.
//
// projection (Kågebäck §3.2): z ~ N(0, diag(σ²)) in R^factors with σ²_i = 1 - i/(factors+1),
//   i = 0..factors-1 (decreasing and non-degenerate: 1, .8, .6, .4 for 4 factors, so 90% of the
//   variance needs all 4 directions); x = Ωz (+ noise), Ω [input_dim, factors] with N(0, 1)
//   entries. Labels all 0, one class.
// xor (Kågebäck §3.3): x = (a, b) with a, b uniform in {-1, +1} (+ noise); label = [a != b].
// factors (Choi §4.3; the paper only says scikit-learn, d Gaussian factors and a random 1000 x d
//   rotation): as sklearn's make_classification with n_informative = d, one cluster per class,
//   class_sep = 1 and no redundant / repeated features: class k has a centroid c_k, a distinct
//   random vertex of {-1, +1}^d; z = c_label + N(0, I_d); x = Qz (+ noise) with Q [input_dim, d]
//   the orthonormal Q of a Gaussian matrix's QR. Labels balanced (i mod K, shuffled), K =
//   num_classes or 10. (make_classification's extra random per-cluster covariance is left out, so
//   the d factors stay independent within a class.)

#include "Data.h"
#include "Sources.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <sstream>

namespace repshape::data {
namespace {

at::Generator generator(uint64_t seed, uint64_t stream) {
  return at::make_generator<at::CPUGeneratorImpl>(streamSeed(seed, stream));
}

const auto kDouble = torch::TensorOptions().dtype(torch::kFloat64);

void requirePositive(int64_t value, const std::string& key) {
  if (value <= 0) throw DataError("data." + key + " = " + std::to_string(value) + ": expected > 0");
}

void checkCommon(const DataConfig& config) {
  requirePositive(config.samples, "samples");
  requirePositive(config.testSamples, "test_samples");
  requirePositive(config.factors, "factors");
  requirePositive(config.inputDim, "input_dim");
  if (!(config.noise >= 0.0))
    throw DataError("data.noise = " + std::to_string(config.noise) + ": expected >= 0");
}

// x [n, D] = z [n, d] · mixingᵀ + noise · N(0, 1), as float32.
torch::Tensor mix(const torch::Tensor& z, const torch::Tensor& mixing, double noise, at::Generator& gen) {
  auto x = z.matmul(mixing.t());
  if (noise > 0.0) x.add_(torch::randn(x.sizes(), gen, kDouble), noise);
  return x.to(torch::kFloat32);
}

SourceData makeSource(Dataset train, Dataset test, int64_t numClasses, int64_t inputDim, std::string description) {
  SourceData data;
  data.train = std::move(train);
  data.test = std::move(test);
  data.numClasses = numClasses;
  data.sampleShape = {inputDim};
  data.description = std::move(description);
  return data;
}

}  // namespace

uint64_t streamSeed(uint64_t seed, uint64_t stream) {
  // splitmix64 of seed + stream·golden ratio: distinct streams from nearby seeds are unrelated.
  uint64_t z = seed + (stream + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

ProjectionData generateProjection(const DataConfig& config, uint64_t seed) {
  checkCommon(config);
  const int64_t d = config.factors;
  auto structureGen = generator(seed, 0);
  ProjectionData result;
  result.variances = 1.0 - torch::arange(d, kDouble) / static_cast<double>(d + 1);  // [d]
  result.mixing = torch::randn({config.inputDim, d}, structureGen, kDouble);          // Ω [D, d]
  const auto stddev = result.variances.sqrt();
  auto draw = [&](int64_t n, uint64_t stream) {
    auto gen = generator(seed, stream);
    const auto z = torch::randn({n, d}, gen, kDouble) * stddev;  // [n, d]
    return Dataset{mix(z, result.mixing, config.noise, gen), torch::zeros({n}, torch::kInt64)};
  };
  std::ostringstream description;
  description << "projection x = Omega z: " << d << " factors (variances 1 - i/" << d + 1 << ") -> "
              << config.inputDim << " dims, noise " << config.noise << ", seed " << seed;
  result.data = makeSource(draw(config.samples, 1), draw(config.testSamples, 2), 1, config.inputDim,
                           description.str());
  return result;
}

SourceData generateXor(const DataConfig& config, uint64_t seed) {
  checkCommon(config);
  auto draw = [&](int64_t n, uint64_t stream) {
    auto gen = generator(seed, stream);
    const auto signs = torch::randint(0, 2, {n, 2}, gen, kDouble).mul_(2).sub_(1);  // [n, 2] in ±1
    auto x = signs.clone();
    if (config.noise > 0.0) x.add_(torch::randn({n, 2}, gen, kDouble), config.noise);
    auto labels = signs.select(1, 0).ne(signs.select(1, 1)).to(torch::kInt64);
    return Dataset{x.to(torch::kFloat32), labels};
  };
  std::ostringstream description;
  description << "xor (±1, ±1), noise " << config.noise << ", seed " << seed;
  return makeSource(draw(config.samples, 1), draw(config.testSamples, 2), 2, 2, description.str());
}

FactorsData generateFactors(const DataConfig& config, uint64_t seed) {
  checkCommon(config);
  const int64_t d = config.factors;
  const int64_t classes = config.numClasses > 0 ? config.numClasses : 10;
  if (d < 62 && (int64_t{1} << d) < classes)
    throw DataError("data.factors = " + std::to_string(d) + ": " + std::to_string(classes) +
                    " classes need distinct vertices of {-1, +1}^factors, expected 2^factors >= " +
                    std::to_string(classes));
  if (config.inputDim < d)
    throw DataError("data.input_dim = " + std::to_string(config.inputDim) + ": expected >= data.factors = " +
                    std::to_string(d) + " (the mixing has orthonormal columns)");
  auto structureGen = generator(seed, 0);
  FactorsData result;
  const auto gaussian = torch::randn({config.inputDim, d}, structureGen, kDouble);
  result.mixing = std::get<0>(at::linalg_qr(gaussian, "reduced"));  // Q [D, d], QᵀQ = I
  result.centroids = torch::empty({classes, d}, kDouble);
  for (int64_t k = 0; k < classes;) {
    const auto vertex = torch::randint(0, 2, {d}, structureGen, kDouble).mul_(2).sub_(1);
    bool repeated = false;
    for (int64_t j = 0; j < k && !repeated; ++j) repeated = torch::equal(result.centroids[j], vertex);
    if (!repeated) result.centroids[k++].copy_(vertex);
  }
  auto draw = [&](int64_t n, uint64_t stream) {
    auto gen = generator(seed, stream);
    auto labels = torch::arange(n, torch::kInt64).remainder(classes).index_select(
        0, torch::randperm(n, gen, torch::kInt64));
    const auto z = result.centroids.index_select(0, labels) + torch::randn({n, d}, gen, kDouble);  // [n, d]
    return Dataset{mix(z, result.mixing, config.noise, gen), std::move(labels)};
  };
  std::ostringstream description;
  description << "factors: " << classes << " classes, " << d << " Gaussian factors -> " << config.inputDim
              << " dims by an orthonormal mixing, noise " << config.noise << ", seed " << seed;
  result.data = makeSource(draw(config.samples, 1), draw(config.testSamples, 2), classes, config.inputDim,
                           description.str());
  return result;
}

}  // namespace repshape::data
