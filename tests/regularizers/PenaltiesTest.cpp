// Penalties (SPEC §2) against the independent PyTorch reference, finite differences, degenerate
// inputs, and simulated ranks (sums-only design, SPEC §4).
#include "TestSupport.h"

#include "ArrayIO.h"
#include "detail/Statistics.h"

#include <gtest/gtest.h>

#include <cmath>

namespace repshape::test {
namespace {

using torch::Tensor;
namespace detail = reg::detail;

struct Evaluated {
  Tensor value;  // fp64 scalar
  Tensor grad;   // dΩ/d(z or w)
};

Evaluated evaluate(const std::string& text, const Tensor& z, const Tensor& labels, const Tensor& probs,
                   const Tensor& w, int classes) {
  const reg::PenaltySpec spec = parseCase(text);
  reg::LocalReducer local;
  const Tensor zIn = z.detach().requires_grad_(!onWeights(spec));
  const Tensor wIn = w.detach().requires_grad_(onWeights(spec));
  const Tensor v = penaltyValue(spec, zIn, labels, probs, wIn, classes, local);
  const Tensor input = onWeights(spec) ? wIn : zIn;
  Tensor g = torch::autograd::grad({v}, {input}, {}, false, false, true)[0];
  if (!g.defined()) g = torch::zeros_like(input);
  return {v.detach().to(torch::kFloat64), g.to(torch::kFloat64)};
}

double maxAbs(const Tensor& t) { return t.numel() ? t.abs().max().item<double>() : 0.0; }

class PenaltiesReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = makePenaltyData();
    dir_ = scratchDir("penalties-reference");
    runReference(dir_, data_, referenceCases());
    values_ = readReferenceValues(dir_);
  }
  static PenaltyData data_;
  static std::string dir_;
  static std::map<std::string, double> values_;
};
PenaltyData PenaltiesReference::data_;
std::string PenaltiesReference::dir_;
std::map<std::string, double> PenaltiesReference::values_;

TEST_F(PenaltiesReference, ValuesAndGradientsMatchPyTorchInFp64) {
  ASSERT_EQ(values_.size(), referenceCases().size());
  for (const auto& text : referenceCases()) {
    SCOPED_TRACE(text);
    const auto e = evaluate(text, data_.z, data_.labels, data_.probs, data_.w, data_.classes);
    const double ref = values_.at(text);
    EXPECT_NEAR(e.value.item<double>(), ref, 1e-9 * std::max(1.0, std::abs(ref)));
    const Tensor refGrad = io::readArray(dir_ + "/ref_grad_" + fileStem(text) + ".csv").view_as(e.grad);
    EXPECT_LE(maxAbs(e.grad - refGrad), 1e-8 * std::max(1.0, maxAbs(refGrad)));
  }
}

TEST_F(PenaltiesReference, Fp32ActivationsAgreeToSinglePrecision) {
  for (const auto& text : referenceCases()) {
    SCOPED_TRACE(text);
    const auto e = evaluate(text, data_.z.to(torch::kFloat32), data_.labels, data_.probs.to(torch::kFloat32),
                            data_.w.to(torch::kFloat32), data_.classes);
    const double ref = values_.at(text);
    EXPECT_NEAR(e.value.item<double>(), ref, 2e-5 * std::max(1.0, std::abs(ref)));
    const Tensor refGrad = io::readArray(dir_ + "/ref_grad_" + fileStem(text) + ".csv").view_as(e.grad);
    EXPECT_LE(maxAbs(e.grad - refGrad), 1e-4 * std::max(1.0, maxAbs(refGrad)));
  }
}

TEST(Penalties, GradientsMatchFiniteDifferences) {
  const PenaltyData d = makePenaltyData(11);
  const double h = 1e-6;
  for (const auto& text : referenceCases()) {
    SCOPED_TRACE(text);
    const reg::PenaltySpec spec = parseCase(text);
    const auto e = evaluate(text, d.z, d.labels, d.probs, d.w, d.classes);
    const Tensor base = onWeights(spec) ? d.w : d.z;
    reg::LocalReducer local;
    Tensor fd = torch::zeros_like(base);
    for (int64_t i = 0; i < base.numel(); ++i) {
      double f[2];
      for (int side = 0; side < 2; ++side) {
        Tensor x = base.clone();
        x.view({-1})[i] += side ? -h : h;
        const Tensor& zz = onWeights(spec) ? d.z : x;
        const Tensor& ww = onWeights(spec) ? x : d.w;
        f[side] = penaltyValue(spec, zz, d.labels, d.probs, ww, d.classes, local).item<double>();
      }
      fd.view({-1})[i] = (f[0] - f[1]) / (2 * h);
    }
    EXPECT_LE(maxAbs(fd - e.grad), 1e-6 * std::max(1.0, maxAbs(e.grad)));
  }
}

TEST(Penalties, DegenerateInputsGiveFiniteValuesAndGradients) {
  const PenaltyData d = makePenaltyData(3);
  const int64_t n = d.z.size(0), m = d.z.size(1);
  struct Variant {
    const char* what;
    Tensor z, labels, probs;
  };
  Tensor constantUnit = d.z.clone();
  constantUnit.select(1, 2).fill_(3.0);
  std::vector<Variant> variants = {
      {"all-zero Z", torch::zeros({n, m}, torch::kFloat64), d.labels, d.probs},
      {"constant unit", constantUnit, d.labels, d.probs},
      {"one class only", d.z, torch::zeros({n}, torch::kLong), d.probs},
      {"one sample", d.z.narrow(0, 0, 1), d.labels.narrow(0, 0, 1), d.probs.narrow(0, 0, 1)},
      {"constant rows", torch::ones({n, m}, torch::kFloat64), d.labels, d.probs},
  };
  for (const auto& v : variants) {
    for (const auto& text : referenceCases()) {
      SCOPED_TRACE(std::string(v.what) + " / " + text);
      for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
        const auto e = evaluate(text, v.z.to(dtype), v.labels, v.probs.to(dtype), d.w.to(dtype), d.classes);
        EXPECT_TRUE(std::isfinite(e.value.item<double>()));
        EXPECT_TRUE(torch::isfinite(e.grad).all().item<bool>());
      }
    }
  }
  // All-zero activations: every covariance/rank penalty is exactly zero.
  for (const char* text : {"cr", "cw-cr", "vr", "cw-vr", "l1r", "rr", "rr:method=exact", "cw-rr", "corr", "lsigma"}) {
    const auto e = evaluate(text, torch::zeros({n, m}, torch::kFloat64), d.labels, d.probs, d.w, d.classes);
    EXPECT_EQ(e.value.item<double>(), 0.0) << text;
  }
}

// Rows split over simulated ranks (one empty): every rank sees the single-process value and the
// per-rank gradients, concatenated, are the single-process gradient — on both statistics paths
// (packed sums all-reduced, or rows gathered and summed on every rank).
TEST(Penalties, SimulatedRanksMatchOneProcess) {
  const PenaltyData d = makePenaltyData(5);
  const std::vector<int64_t> rows = {10, 0, 20, 7};
  for (auto path : {reg::StatisticsPath::kPacked, reg::StatisticsPath::kGather})
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    const Tensor z = d.z.to(dtype), probs = d.probs.to(dtype);
    for (const auto& text : referenceCases()) {
      const reg::PenaltySpec spec = parseCase(text);
      if (onWeights(spec)) continue;  // parameter-only: no collective
      SCOPED_TRACE(text + (path == reg::StatisticsPath::kGather ? " (gather)" : " (packed)"));
      const auto single = evaluate(text, z, d.labels, probs, d.w, d.classes);
      FakeRanks ranks(static_cast<int>(rows.size()));
      std::vector<Tensor> zs, ys, ps;
      int64_t begin = 0;
      for (int64_t r : rows) {
        zs.push_back(z.narrow(0, begin, r).detach().requires_grad_(true));
        ys.push_back(d.labels.narrow(0, begin, r));
        ps.push_back(probs.narrow(0, begin, r));
        begin += r;
      }
      for (int r = 0; r < ranks.worldSize(); ++r) {
        auto rec = ranks.recorder(r);
        penaltyValue(spec, zs[r], ys[r], ps[r], d.w, d.classes, *rec, path);
      }
      std::vector<Tensor> grads;
      for (int r = 0; r < ranks.worldSize(); ++r) {
        auto rep = ranks.replayer(r);
        const Tensor v = penaltyValue(spec, zs[r], ys[r], ps[r], d.w, d.classes, *rep, path);
        const double tol = dtype == torch::kFloat64 ? 1e-10 : 1e-5;
        EXPECT_NEAR(v.item<double>(), single.value.item<double>(), tol * std::max(1.0, std::abs(single.value.item<double>())))
            << "rank " << r;
        Tensor g = torch::autograd::grad({v}, {zs[r]}, {}, false, false, true)[0];
        grads.push_back(g.defined() ? g.to(torch::kFloat64) : torch::zeros_like(zs[r], torch::kFloat64));
      }
      const double tol = dtype == torch::kFloat64 ? 1e-10 : 1e-4;
      EXPECT_LE(maxAbs(torch::cat(grads) - single.grad), tol * std::max(1.0, maxAbs(single.grad)));
    }
  }
}

// SPEC §1: global covariance equals a two-pass fp64 covariance to 1e-5 relative Frobenius even
// with |mean|/std = 1e3, from fp32 activations split over ranks with different local shifts.
TEST(Penalties, CovarianceIsExactForLargeMeans) {
  torch::manual_seed(17);
  const int64_t n = 300, m = 24;
  const Tensor z32 = (torch::randn({n, m}) * torch::linspace(0.5, 2.0, m) + torch::linspace(500, 2000, m))
                         .to(torch::kFloat32);
  const Tensor labels = torch::randint(0, 3, {n}, torch::kLong);
  detail::StatsNeeds needs;
  needs.gram = needs.classGram = true;
  const detail::StatsLayout layout(needs, m, 3, 0);
  Tensor total = torch::zeros({layout.sumSize()}, torch::kFloat64);
  for (const auto& [begin, size] : std::vector<std::pair<int64_t, int64_t>>{{0, 120}, {120, 0}, {120, 180}}) {
    total += detail::localStatistics(z32.narrow(0, begin, size), labels.narrow(0, begin, size), Tensor(), layout)
                 .first;
  }
  const auto stats = detail::unpackStatistics(total, Tensor(), layout);
  auto twoPass = [](const Tensor& x) {
    const Tensor c = x - x.mean(0);
    return c.t().mm(c) / static_cast<double>(x.size(0));
  };
  auto relativeError = [](const Tensor& a, const Tensor& b) {
    return ((a - b).norm() / b.norm()).item<double>();
  };
  const Tensor z64 = z32.to(torch::kFloat64);
  const Tensor mean = stats.sum / stats.count;
  EXPECT_LT(relativeError(stats.gram / stats.count - torch::outer(mean, mean), twoPass(z64)), 1e-5);
  for (int64_t k = 0; k < 3; ++k) {
    const Tensor rowsK = z64.index_select(0, labels.eq(k).nonzero().squeeze(1));
    const Tensor meanK = stats.classSum[k] / stats.classCount[k];
    EXPECT_LT(relativeError(stats.classGram[k] / stats.classCount[k] - torch::outer(meanK, meanK), twoPass(rowsK)),
              1e-5)
        << "class " << k;
  }
}

TEST(Penalties, OneSumOneMaxOneGatherPerStep) {
  const PenaltyData d = makePenaltyData(2);
  std::vector<reg::PenaltySpec> specs(5);
  specs[0].name = "cr";
  specs[0].targets = {"a", "b"};
  specs[1].name = "rr";
  specs[1].targets = {"a"};
  specs[2].name = "cw-vr";
  specs[2].targets = {"b"};
  specs[3].name = "lmulti";
  specs[3].targets = {"a"};
  specs[4].name = "l2w";
  reg::PenaltyBatch batch;
  batch.activations = {{"a", d.z}, {"b", d.z * 2}};
  batch.labels = d.labels;
  batch.weights = {{"w", d.w}};
  CountingReducer counting;
  counting.world = 2;  // the packed path (one rank computes every statistics penalty from its rows)
  const reg::PenaltySet set(specs, d.classes);
  EXPECT_EQ(set.activationTargets(), (std::vector<std::string>{"a", "b"}));
  const auto values = set.compute(batch, counting);
  EXPECT_EQ(counting.sums, 1);
  EXPECT_EQ(counting.maxes, 1);
  EXPECT_EQ(counting.gathers, 1);
  ASSERT_EQ(values.size(), 6u);  // cr×2, rr, cw-vr, lmulti, l2w
  EXPECT_EQ(values[5].target, "*");
  EXPECT_TRUE(values[5].parameterOnly);
  EXPECT_FALSE(values[0].parameterOnly);
  // cr on b = 16 × cr on a: C scales by 4, cr is quadratic in C.
  EXPECT_NEAR(values[1].value.item<double>(), 16 * values[0].value.item<double>(), 1e-9);
}

// Issue 12 target 3: per layer, the path with fewer bytes. cw-cr, M = 6, K = 5: packed sums are
// 8·(1 + K + K·M + K·M²) = 1728 B; gathered rows N·(M + 1 label column)·4 B (fp32) or ·8 B (fp64).
TEST(Penalties, AutoPathMovesTheFewerBytes) {
  const PenaltyData d = makePenaltyData(4);
  ASSERT_EQ(d.classes, 5);
  ASSERT_EQ(d.z.size(1), 6);
  reg::PenaltySpec spec;
  spec.name = "cw-cr";
  spec.targets = {"z"};
  struct Case {
    int world;
    int64_t globalRows;
    torch::ScalarType dtype;
    reg::StatisticsPath path;
    bool gathers;
  };
  const std::vector<Case> cases = {
      {2, 37, torch::kFloat32, reg::StatisticsPath::kAuto, true},     // 37·7·4 = 1036 < 1728
      {2, 37, torch::kFloat64, reg::StatisticsPath::kAuto, false},    // 37·7·8 = 2072 > 1728
      {2, 70, torch::kFloat32, reg::StatisticsPath::kAuto, false},    // 70·7·4 = 1960 > 1728
      {2, 0, torch::kFloat32, reg::StatisticsPath::kAuto, false},     // N unknown: packed
      {1, 37, torch::kFloat32, reg::StatisticsPath::kAuto, false},    // one rank: nothing moves
      {2, 70, torch::kFloat32, reg::StatisticsPath::kGather, true},   // forced
      {2, 37, torch::kFloat32, reg::StatisticsPath::kPacked, false}};  // forced
  for (const auto& c : cases) {
    SCOPED_TRACE("world " + std::to_string(c.world) + ", N " + std::to_string(c.globalRows));
    reg::PenaltyBatch batch;
    batch.activations = {{"z", d.z.to(c.dtype)}};
    batch.labels = d.labels;
    batch.globalRows = c.globalRows;
    CountingReducer counting;
    counting.world = c.world;
    reg::PenaltySet set({spec}, d.classes);
    set.setStatisticsPath(c.path);
    const double value = set.compute(batch, counting).at(0).value.item<double>();
    EXPECT_EQ(counting.gathers, c.gathers ? 1 : 0);
    // One rank has every row: cw-cr runs on the rows and forms no sums (no collective at all).
    EXPECT_EQ(counting.sums, c.gathers || c.world == 1 ? 0 : 1);
    // Either way one process's value (the counting reducer moves nothing).
    const double reference = evaluate("cw-cr", d.z, d.labels, d.probs, d.w, d.classes).value.item<double>();
    EXPECT_NEAR(value, reference, 1e-4 * std::abs(reference));
  }
}

TEST(Penalties, OnlyNeededSumsArePacked) {
  detail::StatsNeeds l1r;
  l1r.absCol = true;
  EXPECT_EQ(detail::StatsLayout(l1r, 100, 10, 0).sumSize(), 1 + 100);  // count + Σ|z|
  EXPECT_EQ(detail::StatsLayout(l1r, 100, 10, 0).maxSize(), 0);
  detail::StatsNeeds cwVr;
  cwVr.classSum = cwVr.classSqDiag = true;
  EXPECT_EQ(detail::StatsLayout(cwVr, 100, 10, 0).sumSize(), 1 + 10 + 2 * 10 * 100);
}

TEST(Penalties, ValidationNamesTheProblem) {
  reg::PenaltySpec spec;
  spec.name = "cwcr";
  spec.targets = {"h1"};
  EXPECT_THROW(reg::validate(spec), std::invalid_argument);
  spec.name = "decov";
  EXPECT_NO_THROW(reg::validate(spec));
  spec.method = "svd";
  EXPECT_THROW(reg::validate(spec), std::invalid_argument);
  spec.method = "holder";
  spec.weight = -1;
  EXPECT_THROW(reg::validate(spec), std::invalid_argument);
  spec.weight = 1;
  spec.name = "lsigma";
  spec.normalized = true;
  EXPECT_THROW(reg::validate(spec), std::invalid_argument);
  spec.name = "cw-cr";
  EXPECT_THROW(reg::PenaltySet({spec}, 0), std::invalid_argument);
}

}  // namespace
}  // namespace repshape::test
