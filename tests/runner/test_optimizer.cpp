// The trainer's optimizer pieces (FusedAdam.h): FusedAdam against torch::optim::Adam over many
// steps, and gradientNormFinite against its definition (torch::isfinite, fp64 norm) on NaN/±inf at
// every lane of the vector loop and on norms either side of FLT_MAX.
#include "FusedAdam.h"

#include <repshape/regularizers/CpuKernels.h>

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace repshape {
namespace {

TEST(FusedAdam, FollowsTorchAdamOverManySteps) {
  // Both compiled loops: AVX2+FMA (where this CPU has it) and baseline x86-64.
  for (const bool baseline : {false, true})
  for (const double weightDecay : {0.0, 0.01}) {
    cpu::useBaselineKernels(baseline);
    torch::manual_seed(7);
    // Odd sizes: the vector loop's tail; a 2-D tensor as Linear weights.
    std::vector<torch::Tensor> mine = {torch::randn({37, 13}), torch::randn({101}), torch::randn({1})};
    std::vector<torch::Tensor> theirs, initial;
    for (auto& p : mine) {
      initial.push_back(p.clone());
      p.requires_grad_(true);
      theirs.push_back(p.detach().clone().requires_grad_(true));
    }
    const auto options = torch::optim::AdamOptions(1e-3).betas({0.9, 0.999}).eps(1e-8).weight_decay(weightDecay);
    FusedAdam fused(mine, options);
    torch::optim::Adam adam(theirs, options);
    for (int step = 0; step < 300; ++step) {
      for (std::size_t i = 0; i < mine.size(); ++i) {
        const torch::Tensor g = torch::randn(mine[i].sizes()) * (step % 7 + 1);
        mine[i].mutable_grad() = g.clone();
        theirs[i].mutable_grad() = g.clone();
      }
      fused.step();
      adam.step();
    }
    torch::NoGradGuard noGrad;
    for (std::size_t i = 0; i < mine.size(); ++i) {
      const double diff = (theirs[i] - mine[i]).abs().max().item<double>();
      EXPECT_LT(diff, 2e-5) << "baseline " << baseline << " wd " << weightDecay << " tensor " << i;
      // Random-walk movement of 300 steps of lr 1e-3 (~0.01) is 250x the bound: a wrong update would show.
      EXPECT_GT((mine[i] - initial[i]).abs().max().item<double>(), 5e-3) << i;
    }
  }
  cpu::useBaselineKernels(false);
}

// Gradients whose squares are subnormal (|g| ~ 1e-20, g² ~ 1e-40): the step flushes those moments
// to zero (DAZ/FTZ, as a subnormal √v is far below ε) yet moves p as torch::optim::Adam does, and
// the thread's floating-point mode is the caller's again after the step.
TEST(FusedAdam, SubnormalMomentsLeaveTheUpdateAndTheFpModeAsTheyWere) {
  torch::manual_seed(11);
  const torch::Tensor start = torch::randn({1000});
  torch::Tensor mine = start.clone().requires_grad_(true), theirs = start.clone().requires_grad_(true);
  const auto options = torch::optim::AdamOptions(1e-3);
  FusedAdam fused({mine}, options);
  torch::optim::Adam adam({theirs}, options);
#if defined(__x86_64__)
  const unsigned control = ~0x3fu;  // MXCSR without its sticky exception flags
  const unsigned before = _mm_getcsr() & control;
#endif
  for (int step = 0; step < 50; ++step) {
    // Half the elements tiny (subnormal g²), half ordinary.
    const torch::Tensor g = torch::where(torch::arange(1000) % 2 == 0, torch::randn({1000}) * 1e-20, torch::randn({1000}));
    mine.mutable_grad() = g.clone();
    theirs.mutable_grad() = g.clone();
    fused.step();
    adam.step();
#if defined(__x86_64__)
    EXPECT_EQ(_mm_getcsr() & control, before) << step;
#endif
  }
  torch::NoGradGuard noGrad;
  EXPECT_LT((mine - theirs).abs().max().item<double>(), 1e-6);
  // The ordinary half moved by ~50 · lr; the tiny half by ~lr per step as well (m/√v ~ ±1).
  EXPECT_GT((mine - start).abs().max().item<double>(), 1e-2);
}

// gradientNormFinite against its definition computed with torch: every element finite and the
// fp64 sum of squares at most the dtype's max.
bool reference(const std::vector<torch::Tensor>& tensors) {
  double squares = 0.0;
  for (const auto& t : tensors) {
    if (!t.defined()) continue;
    if (!torch::isfinite(t).all().item<bool>()) return false;
    squares += t.to(torch::kDouble).square().sum().item<double>();
  }
  return squares <= std::numeric_limits<float>::max();
}

TEST(GradientNormFinite, FindsEveryNonFiniteValueAtEveryPosition) {
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};
  for (const bool baseline : {false, true})
  for (const int64_t n : {1, 7, 8, 9, 33, 1000}) {
    cpu::useBaselineKernels(baseline);  // both compiled loops
    const torch::Tensor base = torch::randn({n}) * 1e3;
    EXPECT_TRUE(gradientNormFinite({base, torch::Tensor()})) << n;
    for (int64_t at = 0; at < n; at += std::max<int64_t>(1, n / 9)) {
      for (const float special : specials) {
        torch::Tensor t = base.clone();
        t[at] = special;
        EXPECT_FALSE(gradientNormFinite({torch::ones({3}), t}))
            << "baseline " << baseline << " n " << n << " at " << at << " value " << special;
      }
    }
  }
  cpu::useBaselineKernels(false);
  // Other dtypes and non-contiguous views take torch::isfinite.
  torch::Tensor d = torch::zeros({4, 4}, torch::kDouble);
  EXPECT_TRUE(gradientNormFinite({d}));
  d[2][3] = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(gradientNormFinite({d}));
  torch::Tensor f = torch::zeros({4, 4});
  f[1][2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(gradientNormFinite({f.t()}));
}

// Finite values whose Σg² does or does not pass FLT_MAX (3.4e38, ‖g‖ = 1.84e19): single large
// elements, many moderate ones (the exponent bound is loose there, so the exact fp64 sum
// decides), subnormals.
TEST(GradientNormFinite, SquaredNormPastFloatMaxIsNotFinite) {
  const std::vector<std::vector<torch::Tensor>> cases = {
      {torch::full({1}, 1.8e19f)},                             // Σg² = 3.24e38: finite
      {torch::full({1}, 1.9e19f)},                             // 3.61e38
      {torch::full({1000}, 5e17f)},                            // 2.5e38, bound loose: exact sum
      {torch::full({2000}, 5e17f)},                            // 5e38
      {torch::full({3}, 1e19f), torch::full({5}, 1e18f)},      // 3.05e38
      {torch::full({4}, 1e19f)},                               // 4e38
      {torch::randn({100000}) * 1e15f},                        // ordinary scale, loose bound
      {torch::full({9}, std::numeric_limits<float>::denorm_min())},
      {torch::full({2}, std::numeric_limits<float>::max())},   // finite elements, huge norm
  };
  int finite = 0;
  for (std::size_t c = 0; c < cases.size(); ++c) {
    EXPECT_EQ(gradientNormFinite(cases[c]), reference(cases[c])) << "case " << c;
    finite += reference(cases[c]);
  }
  EXPECT_EQ(finite, 5);  // both answers occur
}

}  // namespace
}  // namespace repshape
