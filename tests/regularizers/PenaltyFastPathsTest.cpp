// The fast paths of the penalties (issue 12) against the paths they shortcut: the covariance
// family from rows vs the packed fp64 sums, the cw-cr kernel form, and power iteration for λ_max
// vs a full eigendecomposition.
#include "TestSupport.h"

#include "detail/FusedPenalties.h"

#include <repshape/regularizers/CpuKernels.h>

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>

namespace repshape::test {
namespace {

using torch::Tensor;
namespace detail = reg::detail;

double maxAbs(const Tensor& t) { return t.numel() ? t.abs().max().item<double>() : 0.0; }

// The hand-vectorised loops of these tests run in both compiled versions (CpuKernels.h): AVX2+FMA
// where the CPU has it, and baseline x86-64.
class BothCpuKernels : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { cpu::useBaselineKernels(GetParam()); }
  void TearDown() override { cpu::useBaselineKernels(false); }
};
std::string kernelName(const ::testing::TestParamInfo<bool>& info) { return info.param ? "Baseline" : "Native"; }

// The covariance family from rows (one rank / gathered rows: fp32 rows centred by their class
// mean, one fp32 GEMM) equals the packed fp64 path on the same fp32 data with |mean|/std = 1e3,
// for balanced (one padded bmm) and unbalanced (a GEMM per class) labels; an uncentred fp32 Gram
// would be off by ~10 % there. vr / cw-vr from rows (fp64 centring) on the same data. Both
// compiled versions of the fused C/Ω/D loops (allGroups).
using RowsPath = BothCpuKernels;
TEST_P(RowsPath, MatchesPackedFp64ForLargeMeans) {
  torch::manual_seed(23);
  const int64_t n = 300, m = 16, K = 3;
  const Tensor z32 = (torch::randn({n, m}) * torch::linspace(0.5, 2.0, m) + torch::linspace(500, 2000, m))
                         .to(torch::kFloat32);
  const Tensor z64 = z32.to(torch::kFloat64);
  // Naive fp32 covariance of the same data: shows the offset is large enough to matter.
  const Tensor naive = (z32.t().mm(z32) / static_cast<float>(n) - torch::outer(z32.mean(0), z32.mean(0))).to(torch::kFloat64);
  const Tensor centred = z64 - z64.mean(0);
  const Tensor exact = centred.t().mm(centred) / static_cast<double>(n);
  ASSERT_GT(((naive - exact).norm() / exact.norm()).item<double>(), 1e-2);

  const Tensor balanced = torch::randint(0, K, {n}, torch::kLong);
  Tensor unbalanced = torch::zeros({n}, torch::kLong);  // 3·282 > 2·300 + 3: one GEMM per class
  unbalanced.narrow(0, 0, 10).fill_(1);
  unbalanced.narrow(0, 10, 8).fill_(2);
  unbalanced = unbalanced.index_select(0, torch::randperm(n, torch::kLong));
  for (const auto& labels : {balanced, unbalanced})
    for (const char* text :
         {"cr", "cw-cr", "cw-cr:normalized=true", "lsigma", "corr", "vr", "cw-vr", "cw-vr:normalized=true"}) {
      SCOPED_TRACE(std::string(text) + (labels.equal(balanced) ? " (balanced)" : " (unbalanced)"));
      const reg::PenaltySpec spec = parseCase(text);
      reg::LocalReducer local;  // one rank: the rows path
      const Tensor zRows = z32.detach().requires_grad_(true);
      const Tensor v = penaltyValue(spec, zRows, labels, Tensor(), Tensor(), K, local);
      const Tensor g = torch::autograd::grad({v}, {zRows})[0].to(torch::kFloat64);
      CountingReducer packed;  // two ranks reported, nothing moved: one process's packed fp64 sums
      packed.world = 2;
      const Tensor zRef = z64.detach().requires_grad_(true);
      const Tensor ref = penaltyValue(spec, zRef, labels, Tensor(), Tensor(), K, packed, reg::StatisticsPath::kPacked);
      ASSERT_EQ(packed.sums, 1);
      const Tensor gRef = torch::autograd::grad({ref}, {zRef})[0];
      EXPECT_NEAR(v.item<double>(), ref.item<double>(), 1e-5 * std::abs(ref.item<double>()));
      EXPECT_LE(maxAbs(g - gRef), 1e-4 * maxAbs(gRef));
      // fp64 rows: the rows path to the packed path's own accuracy (its uncentred sums lose
      // ~|μ|²/σ² · 1e-16 ≈ 1e-9 here).
      const Tensor z64Rows = z64.detach().requires_grad_(true);
      const Tensor v64 = penaltyValue(spec, z64Rows, labels, Tensor(), Tensor(), K, local);
      const Tensor g64 = torch::autograd::grad({v64}, {z64Rows})[0];
      EXPECT_EQ(g64.scalar_type(), torch::kFloat64);
      EXPECT_NEAR(v64.item<double>(), ref.item<double>(), 1e-7 * std::abs(ref.item<double>()));
      EXPECT_LE(maxAbs(g64 - gRef), 1e-6 * maxAbs(gRef));
    }
}

// cw-cr with classes smaller than the width takes the n_k × n_k kernel form (rows path, balanced
// classes, largest class P = 20 < M = 41; K·P = 120 ≤ 2n + K = 126): equal to the packed fp64 path
// in fp64, and with fp32 rows at |mean|/std = 1e3; one class absent, one with a single sample;
// both compiled versions of its row passes (41 columns: a vector body and a scalar tail).
using CwCrKernelForm = BothCpuKernels;
TEST_P(CwCrKernelForm, MatchesPackedFp64) {
  torch::manual_seed(29);
  const int64_t m = 41, K = 6;
  std::vector<int64_t> perClass = {14, 12, 1, 13, 20, 0}, labelList;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t i = 0; i < perClass[k]; ++i) labelList.push_back(k);
  const auto n = static_cast<int64_t>(labelList.size());
  const Tensor labels = torch::tensor(labelList, torch::kLong).index_select(0, torch::randperm(n, torch::kLong));
  const Tensor mix = torch::randn({m, m}, torch::kFloat64) * 0.3 + torch::eye(m, torch::kFloat64);
  const Tensor base = torch::randn({n, m}, torch::kFloat64).mm(mix);
  struct Variant {
    const char* what;
    Tensor z;
    double valueTol, gradTol;
  };
  const Tensor offset = torch::linspace(500, 2000, m, torch::kFloat64);
  for (const auto& v : {Variant{"fp64", base + 0.3, 1e-10, 1e-10},
                        Variant{"fp32, |mean|/std = 1e3", (base + offset).to(torch::kFloat32), 1e-5, 1e-4}})
    for (const char* text : {"cw-cr", "cw-cr:normalized=true"}) {
      SCOPED_TRACE(std::string(text) + ", " + v.what);
      const reg::PenaltySpec spec = parseCase(text);
      reg::LocalReducer local;
      const Tensor zRows = v.z.detach().requires_grad_(true);
      const Tensor value = penaltyValue(spec, zRows, labels, Tensor(), Tensor(), K, local);
      const Tensor g = torch::autograd::grad({value}, {zRows})[0].to(torch::kFloat64);
      CountingReducer packed;
      packed.world = 2;
      const Tensor zRef = v.z.to(torch::kFloat64).detach().requires_grad_(true);
      const Tensor ref = penaltyValue(spec, zRef, labels, Tensor(), Tensor(), K, packed, reg::StatisticsPath::kPacked);
      ASSERT_EQ(packed.sums, 1);
      const Tensor gRef = torch::autograd::grad({ref}, {zRef})[0];
      EXPECT_NEAR(value.item<double>(), ref.item<double>(), v.valueTol * std::abs(ref.item<double>()));
      EXPECT_LE(maxAbs(g - gRef), v.gradTol * maxAbs(gRef));
    }
}

// xcov from rows (one rank, fp64 centred product) equals the packed fp64 cross sums, in the value
// and in both gradients (activations and probabilities), on fp32 rows with |mean|/std = 1e3.
using XcovRowsPath = BothCpuKernels;
// Shapes: one class block of four, no column tail; and 15 classes (blocks of 8, 4, 2 and 1) over
// 39 columns (two 16-column groups, a 4-column step and a 3-column scalar tail).
TEST_P(XcovRowsPath, MatchesPackedFp64) {
  for (const auto& [n, m, c] : {std::tuple<int64_t, int64_t, int64_t>{50, 12, 4}, {37, 39, 15}}) {
    SCOPED_TRACE("n " + std::to_string(n) + " m " + std::to_string(m) + " c " + std::to_string(c));
    torch::manual_seed(37);
    const Tensor z32 = (torch::randn({n, m}) + torch::linspace(500, 2000, m)).to(torch::kFloat32);
    const Tensor p32 = torch::softmax(torch::randn({n, c}) * 2, 1).to(torch::kFloat32);
    const reg::PenaltySpec spec = parseCase("xcov");
    auto run = [&](const Tensor& z, const Tensor& p, reg::Reducer& reducer, reg::StatisticsPath path) {
      const Tensor zIn = z.detach().requires_grad_(true), pIn = p.detach().requires_grad_(true);
      const Tensor v = penaltyValue(spec, zIn, Tensor(), pIn, Tensor(), 3, reducer, path);
      const auto g = torch::autograd::grad({v}, {zIn, pIn});
      return std::make_tuple(v.item<double>(), g[0].to(torch::kFloat64), g[1].to(torch::kFloat64));
    };
    reg::LocalReducer local;
    const auto [value, dz, dp] = run(z32, p32, local, reg::StatisticsPath::kAuto);
    CountingReducer packed;
    packed.world = 2;
    const auto [ref, dzRef, dpRef] =
        run(z32.to(torch::kFloat64), p32.to(torch::kFloat64), packed, reg::StatisticsPath::kPacked);
    ASSERT_EQ(packed.sums, 1);
    EXPECT_NEAR(value, ref, 1e-6 * std::abs(ref));
    EXPECT_LE(maxAbs(dz - dzRef), 1e-5 * maxAbs(dzRef));
    EXPECT_LE(maxAbs(dp - dpRef), 1e-5 * maxAbs(dpRef));
    // fp64 rows and probabilities, and fp32 rows with fp64 probabilities: the rows path to the
    // packed path's own accuracy (its cross sums lose ~|z̄|·|p̄|/cov · 1e-16).
    const auto [value64, dz64, dp64] = run(z32.to(torch::kFloat64), p32.to(torch::kFloat64), local, reg::StatisticsPath::kAuto);
    EXPECT_NEAR(value64, ref, 1e-9 * std::abs(ref));
    EXPECT_LE(maxAbs(dz64 - dzRef), 1e-9 * maxAbs(dzRef));
    EXPECT_LE(maxAbs(dp64 - dpRef), 1e-9 * maxAbs(dpRef));
    const auto [valueMixed, dzMixed, dpMixed] = run(z32, p32.to(torch::kFloat64), local, reg::StatisticsPath::kAuto);
    EXPECT_NEAR(valueMixed, ref, 1e-6 * std::abs(ref));         // the value in the rows' dtype
    EXPECT_LE(maxAbs(dzMixed - dzRef), 1e-5 * maxAbs(dzRef));  // dz rounded to fp32
    EXPECT_LE(maxAbs(dpMixed - dpRef), 1e-9 * maxAbs(dpRef));
  }
}

// rr (Hölder) from rows (one rank, one fp64 node) equals the packed sums (|z| column sums, Σz²,
// the max row |z|-sum through a MAX collective) in value and gradient, fp64 to 1e-12 and fp32,
// with ReLU zeros and ties: two columns share the largest |z|-sum and three rows the largest row
// sum (the max's gradient is shared equally), and all-zero rows (denominator 0: value and gradient 0).
TEST(Penalties, RrHolderRowsPathMatchesPackedFp64) {
  torch::manual_seed(41);
  const int64_t n = 30, m = 8;
  Tensor z = torch::relu(torch::randn({n, m}, torch::kFloat64)).round_(3);  // exact in fp32 too
  z.select(1, 2).add_(3.0);
  z.select(1, 5).copy_(z.select(1, 2));  // tie in the largest column sum
  for (const int64_t r : {4, 9, 17}) z[r].fill_(2.0);  // tie in the largest row sum (16)
  ASSERT_LT(std::get<0>(z.abs().sum(1).topk(4))[3].item<double>(), 16.0);
  const Tensor zColumns = z.abs().sum(0);
  ASSERT_EQ(zColumns[2].item<double>(), zColumns[5].item<double>());
  ASSERT_EQ(zColumns.max().item<double>(), zColumns[2].item<double>());
  for (const bool normalized : {false, true})
    for (const auto dtype : {torch::kFloat64, torch::kFloat32})
      for (const Tensor& rows : {z, torch::zeros({n, m}, torch::kFloat64)}) {
        SCOPED_TRACE(std::string(normalized ? "normalized " : "") + (dtype == torch::kFloat64 ? "fp64" : "fp32") +
                     (rows.abs().sum().item<double>() == 0.0 ? " zeros" : ""));
        reg::PenaltySpec spec = parseCase("rr");
        spec.normalized = normalized;
        reg::LocalReducer local;  // one rank: the rows path
        const Tensor zRows = rows.to(dtype).detach().requires_grad_(true);
        const Tensor v = penaltyValue(spec, zRows, Tensor(), Tensor(), Tensor(), 1, local);
        const Tensor g = torch::autograd::grad({v}, {zRows})[0];
        ASSERT_EQ(g.scalar_type(), dtype);
        CountingReducer packed;
        packed.world = 2;
        const Tensor zRef = rows.to(dtype).to(torch::kFloat64).detach().requires_grad_(true);
        const Tensor ref = penaltyValue(spec, zRef, Tensor(), Tensor(), Tensor(), 1, packed, reg::StatisticsPath::kPacked);
        ASSERT_EQ(packed.maxes, 1);
        const Tensor gRef = torch::autograd::grad({ref}, {zRef})[0];
        const double tol = dtype == torch::kFloat64 ? 1e-12 : 1e-6;
        EXPECT_NEAR(v.item<double>(), ref.item<double>(), tol * std::abs(ref.item<double>()));
        EXPECT_LE(maxAbs(g.to(torch::kFloat64) - gRef), tol * std::max(maxAbs(gRef), 1e-300));
        if (rows.abs().sum().item<double>() == 0.0) {
          EXPECT_EQ(v.item<double>(), 0.0);
          EXPECT_EQ(maxAbs(g), 0.0);
        } else {
          EXPECT_GT(maxAbs(gRef), 1e-6);
        }
      }
}

// cw-rr (Hölder) from rows, per class, equals the packed per-class sums in value and gradient,
// fp64 to 1e-12 and fp32: class 0 has a tie in its largest column |z|-sum and three rows tied for
// its largest row sum, class 1 is all zeros (its term and gradient 0), class 2 is absent, class 3
// has one row.
TEST(Penalties, CwRrHolderRowsPathMatchesPackedFp64) {
  torch::manual_seed(43);
  const int64_t n = 40, m = 8, K = 4;
  Tensor z = torch::relu(torch::randn({n, m}, torch::kFloat64)).round_(3);  // exact in fp32 too
  Tensor labels = torch::zeros({n}, torch::kLong);
  labels.narrow(0, 20, 19).fill_(1);
  labels[39] = 3;
  z.narrow(0, 20, 19).zero_();                           // class 1: all zeros
  z.narrow(0, 0, 20).select(1, 2).add_(3.0);
  z.narrow(0, 0, 20).select(1, 5).copy_(z.narrow(0, 0, 20).select(1, 2));  // class 0: column tie
  for (const int64_t r : {4, 9, 17}) z[r].fill_(2.0);  // class 0: row tie at 16
  ASSERT_LT(std::get<0>(z.narrow(0, 0, 20).abs().sum(1).topk(4))[3].item<double>(), 16.0);
  const Tensor columns = z.narrow(0, 0, 20).abs().sum(0);
  ASSERT_EQ(columns[2].item<double>(), columns[5].item<double>());
  ASSERT_EQ(columns.max().item<double>(), columns[2].item<double>());
  for (const bool normalized : {false, true})
    for (const auto dtype : {torch::kFloat64, torch::kFloat32}) {
      SCOPED_TRACE(std::string(normalized ? "normalized " : "") + (dtype == torch::kFloat64 ? "fp64" : "fp32"));
      reg::PenaltySpec spec = parseCase("cw-rr");
      spec.normalized = normalized;
      reg::LocalReducer local;  // one rank: the rows path
      const Tensor zRows = z.to(dtype).detach().requires_grad_(true);
      const Tensor v = penaltyValue(spec, zRows, labels, Tensor(), Tensor(), K, local);
      const Tensor g = torch::autograd::grad({v}, {zRows})[0];
      ASSERT_EQ(g.scalar_type(), dtype);
      CountingReducer packed;
      packed.world = 2;
      const Tensor zRef = z.to(dtype).to(torch::kFloat64).detach().requires_grad_(true);
      const Tensor ref = penaltyValue(spec, zRef, labels, Tensor(), Tensor(), K, packed, reg::StatisticsPath::kPacked);
      ASSERT_EQ(packed.maxes, 1);
      const Tensor gRef = torch::autograd::grad({ref}, {zRef})[0];
      const double tol = dtype == torch::kFloat64 ? 1e-12 : 1e-6;
      EXPECT_NEAR(v.item<double>(), ref.item<double>(), tol * std::abs(ref.item<double>()));
      EXPECT_LE(maxAbs(g.to(torch::kFloat64) - gRef), tol * maxAbs(gRef));
      EXPECT_GT(maxAbs(gRef.narrow(0, 0, 20)), 1e-6);
      EXPECT_EQ(maxAbs(g.narrow(0, 20, 19)), 0.0);  // the all-zero class
      EXPECT_GT(maxAbs(g.narrow(0, 39, 1)), 0.0);   // the one-row class
    }
}

// l1w / l2w over every weight (one node, hand-vectorised passes: AVX2 or SSE2 plus a scalar tail)
// equal the ATen formulas Σ|w|, Σw² in fp64: values to 1e-12, gradients bit for bit (sign(w)·g,
// 2g·w, with the fp32 factor rounded as ATen rounds it). Weights of 1, 7, 8, 13 and 1003 elements
// (tails of every length), exact zeros (sign 0), and one fp64 weight.
using WeightNorms = BothCpuKernels;
TEST_P(WeightNorms, MatchAtenOverSeveralWeights) {
  torch::manual_seed(43);
  std::vector<Tensor> ws = {torch::randn({1}), torch::randn({7}), torch::randn({2, 4}), torch::randn({13}),
                            torch::randn({17, 59}), torch::randn({3, 5}, torch::kFloat64)};
  ws[4].view(-1).narrow(0, 0, 40).zero_();
  ws[3][5] = 0.0f;
  for (const char* name : {"l1w", "l2w"}) {
    SCOPED_TRACE(name);
    const bool l1 = std::string(name) == "l1w";
    reg::PenaltySpec spec;
    spec.name = name;
    reg::PenaltyBatch batch;
    std::vector<Tensor> leaves;
    for (std::size_t i = 0; i < ws.size(); ++i) {
      leaves.push_back(ws[i].detach().requires_grad_(true));
      batch.weights.emplace_back("w" + std::to_string(i), leaves.back());
    }
    reg::LocalReducer local;
    const auto values = reg::PenaltySet({spec}, 1).compute(batch, local);
    ASSERT_EQ(values.size(), 1u);
    const Tensor v = values[0].value;
    ASSERT_EQ(v.scalar_type(), torch::kFloat32);  // the first weight's dtype
    const double g = 0.375;  // exact in fp32: the fp32 value passes it on unrounded
    const auto grads = torch::autograd::grad({v * g}, leaves);
    double ref = 0.0;
    for (const Tensor& w : ws) {
      const Tensor w64 = w.to(torch::kFloat64);
      ref += (l1 ? w64.abs().sum() : w64.square().sum()).item<double>();
    }
    EXPECT_NEAR(v.item<double>(), static_cast<float>(ref), 1e-6 * ref);
    const Tensor value64 = detail::fusedWeightNorms(ws, l1, torch::kFloat64);
    EXPECT_NEAR(value64.item<double>(), ref, 1e-12 * ref);
    for (std::size_t i = 0; i < ws.size(); ++i) {
      // What autograd through ATen gives: g·sign(w) / 2g·w, the factor in w's dtype.
      const Tensor w = ws[i].detach().requires_grad_(true);
      const Tensor n = l1 ? w.abs().sum() : w.square().sum();
      const Tensor expected = torch::autograd::grad({n}, {w}, {torch::full({}, g, w.options())})[0];
      EXPECT_TRUE(grads[i].equal(expected)) << "weight " << i << ": max diff " << maxAbs(grads[i] - expected);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Penalties, RowsPath, ::testing::Bool(), kernelName);
INSTANTIATE_TEST_SUITE_P(Penalties, XcovRowsPath, ::testing::Bool(), kernelName);
INSTANTIATE_TEST_SUITE_P(Penalties, CwCrKernelForm, ::testing::Bool(), kernelName);
INSTANTIATE_TEST_SUITE_P(Penalties, WeightNorms, ::testing::Bool(), kernelName);

// λ_max by power iteration equals eigvalsh's to 1e-12 relative, and its gradient v vᵀ equals
// autograd through eigvalsh: a well separated top (the mean direction of an uncentred Gram), a
// near-degenerate top pair (1 + 1e-9: the iteration cannot converge, the eigh fallback answers), a
// dominant negative eigenvalue (power iteration would find it; λ_max is the positive one), an
// exactly degenerate top, the zero matrix, and a batch of them at once (cw-rr exact).
TEST(Penalties, LargestEigenvalueMatchesEigvalsh) {
  torch::manual_seed(31);
  const int64_t m = 30;
  auto withSpectrum = [&](std::vector<double> top) {
    const Tensor q = std::get<0>(torch::linalg_qr(torch::randn({m, m}, torch::kFloat64)));
    Tensor spectrum = torch::rand({m}, torch::kFloat64) * 0.5;
    for (std::size_t i = 0; i < top.size(); ++i) spectrum[static_cast<int64_t>(i)] = top[i];
    return (q * spectrum).mm(q.t());
  };
  const Tensor rows = torch::relu(torch::randn({80, m}, torch::kFloat64)) + 0.2;
  const std::vector<std::pair<const char*, Tensor>> cases = {
      {"uncentred Gram", rows.t().mm(rows)},
      {"near-degenerate top", withSpectrum({5.0, 5.0 * (1 + 1e-9), 1.0})},
      {"dominant negative", withSpectrum({-9.0, 3.0, 2.9})},
      {"degenerate top", withSpectrum({4.0, 4.0, 4.0})},
      {"zero", torch::zeros({m, m}, torch::kFloat64)}};
  std::vector<Tensor> all;
  for (const auto& [what, g] : cases) {
    SCOPED_TRACE(what);
    const Tensor sym = ((g + g.t()) / 2).detach().requires_grad_(true);
    const Tensor value = detail::largestEigenvalue(sym);
    const Tensor eig = torch::linalg_eigvalsh(sym.detach());
    const double ref = eig[m - 1].item<double>();
    EXPECT_NEAR(value.item<double>(), ref, 1e-12 * std::max(1.0, std::abs(ref)));
    all.push_back(sym.detach());
    if (std::string(what) == "degenerate top" || std::string(what) == "zero") continue;  // gradient not unique
    const Tensor refSym = sym.detach().requires_grad_(true);
    const Tensor refGrad = torch::autograd::grad({torch::linalg_eigvalsh(refSym)[m - 1]}, {refSym})[0];
    const Tensor grad = torch::autograd::grad({value}, {sym})[0];
    // eigvalsh's gradient is V diag(e_M) Vᵀ symmetrised; v vᵀ is symmetric already.
    EXPECT_LE(maxAbs(grad - (refGrad + refGrad.t()) / 2), 1e-8) << what;
  }
  const Tensor batch = torch::stack(all);  // [5, m, m]
  const Tensor values = detail::largestEigenvalue(batch);
  const Tensor refs = torch::linalg_eigvalsh(batch).select(-1, m - 1);
  EXPECT_LE(maxAbs(values - refs), 1e-12 * maxAbs(refs));
}

}  // namespace
}  // namespace repshape::test
