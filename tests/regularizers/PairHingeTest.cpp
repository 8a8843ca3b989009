// lmulti / lmulti-unsup (SPEC §2, Romanov Eq. 4–6) computed per class block in one fp64 autograd
// node, against the formula written out here from scratch with ATen ops over the full [N, N] KL
// matrix (values and gradients, fp64, 1e-12), and against central finite differences.
#include "TestSupport.h"

#include "detail/Penalties.h"

#include <gtest/gtest.h>

#include <cmath>

namespace repshape::test {
namespace {

using torch::Tensor;
namespace detail = reg::detail;

double maxAbs(const Tensor& t) { return t.numel() ? t.abs().max().item<double>() : 0.0; }

// (1/S) Σ_{i,j: y_i = y_j} [h(m − KL(q_i‖q_j)) + h(m − KL(q_j‖q_i))], S = Σ_k n_k² (all ordered
// pairs, i = j included); no labels: all pairs, S = N². Double loop over the pairs in the sum, KL
// from its definition Σ_m q_im (log q_im − log q_jm).
Tensor referencePenalty(const Tensor& z, const Tensor& labels, double margin) {
  const int64_t n = z.size(0);
  const Tensor logQ = torch::log_softmax(z.to(torch::kFloat64), 1);
  const Tensor q = logQ.exp();
  // kl[i][j] = KL(q_i ‖ q_j) = Σ_m q_im (logQ_im − logQ_jm), [N, N] by broadcasting [N, 1, M] − [1, N, M].
  const Tensor kl = (q.unsqueeze(1) * (logQ.unsqueeze(1) - logQ.unsqueeze(0))).sum(2);
  const Tensor h = torch::relu(margin - kl);
  const Tensor pairTerm = h + h.t();  // h(m − KL(i‖j)) + h(m − KL(j‖i))
  if (!labels.defined()) return pairTerm.sum() / static_cast<double>(n * n);
  const Tensor same = labels.unsqueeze(1).eq(labels.unsqueeze(0)).to(torch::kFloat64);
  return (pairTerm * same).sum() / same.sum();
}

struct Case {
  const char* name;
  Tensor labels;  // undefined: lmulti-unsup
};

std::vector<Case> labelCases(int64_t n) {
  torch::manual_seed(5);
  Tensor balanced = torch::arange(n, torch::kLong).remainder(4);
  balanced = balanced.index_select(0, torch::randperm(n, torch::kLong));
  // Unbalanced, non-contiguous label values, two classes of one row, a large class.
  Tensor unbalanced = torch::full({n}, 7, torch::kLong);
  unbalanced[0] = 3;
  unbalanced[1] = 42;
  unbalanced.narrow(0, 2, n / 4).fill_(0);
  unbalanced = unbalanced.index_select(0, torch::randperm(n, torch::kLong));
  return {{"balanced", balanced}, {"unbalanced", unbalanced}, {"one class", torch::zeros({n}, torch::kLong)},
          {"all singletons", torch::arange(n, torch::kLong)}, {"unsup", Tensor()}};
}

// Values and gradients equal the [N, N] formulation to 1e-12 (relative to the largest gradient),
// for margins where none, some or all hinges are active; fp32 input gives an fp32 gradient equal to
// the reference on the same data in fp64.
TEST(PairHinge, BlocksMatchTheFullPairMatrix) {
  const int64_t n = 37, M = 9;
  torch::manual_seed(11);
  const Tensor z = torch::randn({n, M}, torch::kFloat64) * 1.5;
  for (const auto& c : labelCases(n))
    for (const double margin : {0.0, 0.5, 1.0, 3.0, 100.0}) {
      SCOPED_TRACE(std::string(c.name) + " margin " + std::to_string(margin));
      const Tensor zv = z.detach().requires_grad_(true);
      const Tensor v = detail::pairHingePenalty(zv, c.labels, margin);
      const Tensor g = torch::autograd::grad({v}, {zv})[0];
      const Tensor zr = z.detach().requires_grad_(true);
      const Tensor ref = referencePenalty(zr, c.labels, margin);
      const Tensor gRef = torch::autograd::grad({ref}, {zr})[0];
      EXPECT_NEAR(v.item<double>(), ref.item<double>(), 1e-12 * std::max(1.0, std::abs(ref.item<double>())));
      EXPECT_LE(maxAbs(g - gRef), 1e-12 * std::max(1.0, maxAbs(gRef)));
      // Every hinge active: a real gradient, except with singleton classes (only KL(i‖i) = 0).
      if (margin == 100.0 && std::string(c.name) != "all singletons") {
        EXPECT_GT(maxAbs(gRef), 1e-3);
      }
      if (margin == 0.0) {
        EXPECT_LE(std::abs(v.item<double>()), 1e-15);  // KL ≥ 0: only rounding of KL(i‖i) = 0
      }

      const Tensor z32 = z.to(torch::kFloat32).detach().requires_grad_(true);
      const Tensor v32 = detail::pairHingePenalty(z32, c.labels, margin);
      const Tensor g32 = torch::autograd::grad({v32}, {z32})[0];
      ASSERT_EQ(g32.scalar_type(), torch::kFloat32);
      const Tensor z32r = z32.detach().to(torch::kFloat64).requires_grad_(true);
      const Tensor ref32 = referencePenalty(z32r, c.labels, margin);
      const Tensor g32Ref = torch::autograd::grad({ref32}, {z32r})[0];
      EXPECT_NEAR(v32.item<double>(), ref32.item<double>(), 1e-12 * std::max(1.0, std::abs(ref32.item<double>())));
      EXPECT_LE(maxAbs(g32.to(torch::kFloat64) - g32Ref), 1e-6 * std::max(1.0, maxAbs(g32Ref)));
    }
}

// Central differences (h = 1e-6, fp64) of the node's value match its gradient; the margin sits
// between the KL values so some hinges are active and some are not (no KL within 1e-4 of it).
TEST(PairHinge, GradientMatchesFiniteDifferences) {
  const int64_t n = 11, M = 5;
  torch::manual_seed(3);
  const Tensor z = torch::randn({n, M}, torch::kFloat64);
  for (const auto& c : labelCases(n)) {
    SCOPED_TRACE(c.name);
    const double margin = 0.4;
    const Tensor logQ = torch::log_softmax(z, 1);
    const Tensor kl = (logQ.exp().unsqueeze(1) * (logQ.unsqueeze(1) - logQ.unsqueeze(0))).sum(2);
    ASSERT_GT((kl - margin).abs().min().item<double>(), 1e-4);
    const Tensor zv = z.detach().requires_grad_(true);
    const Tensor g = torch::autograd::grad({detail::pairHingePenalty(zv, c.labels, margin)}, {zv})[0];
    Tensor fd = torch::zeros_like(z);
    const double h = 1e-6;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t m = 0; m < M; ++m) {
        Tensor up = z.clone(), down = z.clone();
        up[i][m] += h;
        down[i][m] -= h;
        fd[i][m] = (detail::pairHingePenalty(up, c.labels, margin).item<double>() -
                    detail::pairHingePenalty(down, c.labels, margin).item<double>()) /
                   (2 * h);
      }
    if (std::string(c.name) == "all singletons") {
      EXPECT_LE(maxAbs(g), 1e-12);  // only i = j pairs: h(m − 0) is constant
    } else {
      EXPECT_GT(maxAbs(g), 1e-3);
    }
    EXPECT_LE(maxAbs(g - fd), 1e-7);
  }
}

}  // namespace
}  // namespace repshape::test
