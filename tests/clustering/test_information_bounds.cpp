// Kolchinsky–Tracey MI bounds against a direct NumPy computation (full N×N, pairwise differences)
// and their invariants: 0 ≤ mi_x_lower ≤ mi_x_upper ≤ ln N.

#include <repshape/regularizers/InformationBounds.h>

#include "ReferencePython.h"
#include "detail/KernelLogSums.h"

#include <cmath>
#include <fstream>
#include <iomanip>
#include <limits>

namespace repshape::reg {
namespace {

std::vector<double> reference(const torch::Tensor& rows, const torch::Tensor& labels,
                              double sigma2) {
  const std::string input = test::scratchPath("mi.txt");
  {
    std::ofstream out(input);
    out << std::setprecision(17) << sigma2 << "\n";
    const auto r = rows.to(torch::kFloat64).contiguous();
    for (int64_t i = 0; i < r.size(0); ++i) {
      out << labels[i].item<int64_t>();
      for (int64_t q = 0; q < r.size(1); ++q) out << " " << r[i][q].item<double>();
      out << "\n";
    }
  }
  auto values = test::runReference("reference_mi.py", input);
  std::remove(input.c_str());
  return values;
}

TEST(InformationBounds, EqualDirectNumPyComputation) {
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(17);
  for (double sigma2 : {0.1, 1.0, 0.01}) {
    // Three classes of unequal sizes and spreads; fp32 rows as the trainer hands them over.
    const auto labels = torch::randint(0, 3, {45}, gen, torch::kInt64);
    const auto classOf = labels.unsqueeze(1).to(torch::kFloat32);  // [45, 1]
    const auto rows = torch::randn({45, 4}, gen) * (0.3 + classOf) + classOf;
    LocalReducer reducer;
    InformationBoundsOptions exact;
    exact.sigma2 = sigma2;
    exact.fp64 = true;
    const auto b = informationBounds(rows, labels, exact, reducer);
    const auto ref = reference(rows, labels, sigma2);
    ASSERT_EQ(ref.size(), 4u);
    EXPECT_NEAR(b.xUpper, ref[0], 1e-10 * std::abs(ref[0]) + 1e-12) << "sigma2 " << sigma2;
    EXPECT_NEAR(b.xLower, ref[1], 1e-10 * std::abs(ref[1]) + 1e-12) << "sigma2 " << sigma2;
    EXPECT_NEAR(b.yUpper, ref[2], 1e-10 * std::abs(ref[2]) + 1e-12) << "sigma2 " << sigma2;
    EXPECT_NEAR(b.yLower, ref[3], 1e-10 * std::abs(ref[3]) + 1e-12) << "sigma2 " << sigma2;
    EXPECT_EQ(b.rows, 45);
    // The default fp32-GEMM path, to the 1e-6 relative.
    const auto mixed = informationBounds(rows, labels, 0, sigma2, reducer);
    EXPECT_NEAR(mixed.xUpper, ref[0], 1e-6 * std::abs(ref[0])) << "sigma2 " << sigma2;
    EXPECT_NEAR(mixed.xLower, ref[1], 1e-6 * std::abs(ref[1])) << "sigma2 " << sigma2;
    EXPECT_NEAR(mixed.yUpper, ref[2], 1e-6 * std::abs(ref[2])) << "sigma2 " << sigma2;
    EXPECT_NEAR(mixed.yLower, ref[3], 1e-6 * std::abs(ref[3])) << "sigma2 " << sigma2;

    // Row blocks of any size give the same sums (block of 1 row, of 7 rows, all rows).
    for (int64_t elements : {1, 7 * 45, 1 << 22}) {
      InformationBoundsOptions options = exact;
      options.blockElements = elements;
      const auto blocked = informationBounds(rows, labels, options, reducer);
      EXPECT_NEAR(blocked.xUpper, b.xUpper, 1e-12);
      EXPECT_NEAR(blocked.yLower, b.yLower, 1e-12);
    }
  }
}

TEST(InformationBounds, OrderedAndBoundedByLogN) {
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  LocalReducer reducer;
  const int64_t n = 60;
  const auto labels = torch::randint(0, 4, {n}, gen, torch::kInt64);
  std::vector<torch::Tensor> datasets{
      torch::randn({n, 8}, gen),                                  // generic
      torch::randn({n, 8}, gen) * 1e3,                            // every pair far apart
      torch::randn({n, 8}, gen) * 1e-4,                           // every pair close
      torch::randn({1, 8}, gen).expand({n, 8}),                   // identical rows
      torch::cat({torch::randn({n / 2, 2}, gen), torch::randn({n / 2, 2}, gen) + 1e7}),  // offset
  };
  for (size_t d = 0; d < datasets.size(); ++d) {
    for (double sigma2 : {0.1, 10.0}) {
      // numClasses 6: classes 4 and 5 are empty and must be skipped.
      const auto b = informationBounds(datasets[d], labels, 6, sigma2, reducer);
      EXPECT_GE(b.xLower, -1e-12) << "dataset " << d;
      EXPECT_LE(b.xLower, b.xUpper + 1e-12) << "dataset " << d;
      EXPECT_LE(b.xUpper, std::log(static_cast<double>(n)) + 1e-12) << "dataset " << d;
      EXPECT_TRUE(std::isfinite(b.yUpper) && std::isfinite(b.yLower)) << "dataset " << d;
    }
  }
  // Closed forms: all pairs far apart → every bound of I(T;X) is ln N and I(T;Y) is H(Y);
  // identical rows → 0.
  const auto far = informationBounds(datasets[1], labels, 0, 0.1, reducer);
  EXPECT_NEAR(far.xUpper, std::log(static_cast<double>(n)), 1e-12);
  EXPECT_NEAR(far.xLower, std::log(static_cast<double>(n)), 1e-12);
  const auto counts = torch::bincount(labels).to(torch::kFloat64) / static_cast<double>(n);
  const double hY = -(counts * counts.log()).sum().item<double>();
  EXPECT_NEAR(far.yUpper, hY, 1e-12);
  EXPECT_NEAR(far.yLower, hY, 1e-12);
  const auto same = informationBounds(datasets[3], labels, 0, 0.1, reducer);
  EXPECT_NEAR(same.xUpper, 0.0, 1e-12);
  EXPECT_NEAR(same.yLower, 0.0, 1e-12);
}

// The fp32-GEMM path against the fp64 path where fp32 is hard: representations whose classes are
// tight clusters far from the mean (ReLU layers of a trained network: ‖z‖² ≫ the distances that
// matter), a 1e4 offset, duplicate rows (a row's sum dominated by one near pair) and classes made
// of two far clusters (re-centring on the class mean cannot help): in the last two the per-row
// error estimate must send rows to fp64. 1e-6 relative is the bound.
TEST(InformationBounds, MixedPrecisionMatchesFp64) {
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(29);
  const int64_t n = 1500, m = 48, k = 6;
  const auto labels = torch::randint(0, k, {n}, gen, torch::kInt64);
  const auto centres = torch::randn({k, m}, gen, torch::kFloat64);
  const auto noise = torch::randn({n, m}, gen, torch::kFloat64);
  const auto half = torch::randint(0, 2, {n, 1}, gen, torch::kInt64).to(torch::kFloat64);
  const auto twoClusters = centres.index_select(0, labels) * 5 + half * 40 + noise * 0.05;
  // Far-apart rows, every odd row a copy of the row before (each sum = 2 near-equal terms).
  const auto even = torch::arange(n, torch::kInt64).div(2, "floor").mul(2);
  const auto duplicated = ((centres.index_select(0, labels) + noise) * 3.0).index_select(0, even);
  enum class Guard { None, Rows };  // which fp64 fallback the data must trigger
  struct Case {
    const char* name;
    torch::Tensor rows;
    Guard guard;
  };
  const std::vector<Case> cases{
      {"overlapping", (centres.index_select(0, labels) * 0.1 + noise) * 0.05, Guard::None},
      {"tight relu clusters", torch::relu(centres.index_select(0, labels) * 5 + 3 + noise * 0.05), Guard::None},
      {"offset 1e4", centres.index_select(0, labels) * 0.3 + noise * 0.1 + 1e4, Guard::None},
      {"duplicate rows", duplicated, Guard::Rows},
      {"two clusters per class", twoClusters, Guard::Rows},
  };
  LocalReducer reducer;
  for (const auto& c : cases) {
    const auto rows = c.rows.to(torch::kFloat32);  // as the trainer hands them over
    for (double sigma2 : {0.1, 0.01}) {
      InformationBoundsOptions options;
      options.sigma2 = sigma2;
      const auto mixed = informationBounds(rows, labels, options, reducer);
      options.fp64 = true;
      const auto exact = informationBounds(rows, labels, options, reducer);
      const double got[] = {mixed.xUpper, mixed.xLower, mixed.yUpper, mixed.yLower};
      const double want[] = {exact.xUpper, exact.xLower, exact.yUpper, exact.yLower};
      for (int q = 0; q < 4; ++q) {
        EXPECT_NEAR(got[q], want[q], 1e-6 * std::abs(want[q]) + 1e-9)
            << c.name << " sigma2 " << sigma2 << " bound " << q;
      }
      EXPECT_EQ(exact.fp64FallbackClasses + exact.fp64FallbackRows, 0);
      if (c.guard == Guard::Rows) {
        EXPECT_GT(mixed.fp64FallbackRows, 0) << c.name << " sigma2 " << sigma2;
      }
      if (c.guard == Guard::None) {  // the fast path did the work
        EXPECT_EQ(mixed.fp64FallbackClasses, 0) << c.name << " sigma2 " << sigma2;
        EXPECT_LT(mixed.fp64FallbackRows, n / 10) << c.name << " sigma2 " << sigma2;
      }
    }
  }
}

// The second guard: with the per-row estimate switched off, the sampled fp64 rows of classes made
// of two far clusters disagree, and those classes are redone in fp64 entirely.
TEST(InformationBounds, SampledCheckRedoesClassesTheEstimateMisses) {
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(31);
  const int64_t n = 900, m = 32, k = 3;
  const auto labels = std::get<0>(torch::randint(0, k, {n}, gen, torch::kInt64).sort());
  const auto half = torch::randint(0, 2, {n, 1}, gen, torch::kInt64).to(torch::kFloat64);
  auto rows = torch::randn({k, m}, gen, torch::kFloat64).index_select(0, labels) * 5 + half * 40 +
              torch::randn({n, m}, gen, torch::kFloat64) * 0.05;
  detail::ClassSortedRows sorted;
  sorted.rows = rows.to(torch::kFloat32).to(torch::kFloat64);
  sorted.rows -= sorted.rows.mean(0, true);
  std::vector<std::pair<int64_t, int64_t>> mine;
  for (int64_t c = 0, start = 0; c < k; ++c) {
    const int64_t count = labels.eq(c).sum().item<int64_t>();
    sorted.start.push_back(start);
    sorted.count.push_back(count);
    mine.emplace_back(start, count);
    start += count;
  }
  detail::KernelLogSumsOptions options;
  options.rowTolerance = std::numeric_limits<double>::infinity();
  const auto checked = detail::kernelLogSums(sorted, mine, options);
  options.sampleTolerance = std::numeric_limits<double>::infinity();
  const auto unchecked = detail::kernelLogSums(sorted, mine, options);
  options.precision = detail::KernelPrecision::Fp64;
  const auto exact = detail::kernelLogSums(sorted, mine, options);
  EXPECT_EQ(checked.fallbackClasses, k);
  EXPECT_EQ(checked.fp64Rows, 0);
  double uncheckedError = 0.0;
  for (int e = 0; e < 2; ++e) {
    for (int64_t c = 0; c <= k; ++c) {
      EXPECT_NEAR(checked.sums[e][c], exact.sums[e][c], 1e-9 * std::abs(exact.sums[e][c]) + 1e-12);
      uncheckedError = std::max(uncheckedError, std::abs(unchecked.sums[e][c] - exact.sums[e][c]));
    }
  }
  EXPECT_GT(uncheckedError, 1e-3);  // without both guards the fp32 path is visibly off here
}

TEST(InformationBounds, MetricKeysAndBits) {
  MiBounds b;
  b.xUpper = 2.0;
  b.xLower = 1.0;
  b.yUpper = 0.5;
  b.yLower = 0.25;
  const auto m = b.metrics();
  const std::vector<std::string> keys{"mi_x_upper", "mi_x_lower", "mi_y_upper", "mi_y_lower",
                                      "mi_x_upper_bits", "mi_x_lower_bits", "mi_y_upper_bits",
                                      "mi_y_lower_bits"};
  ASSERT_EQ(m.size(), keys.size());
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(m[i].first, keys[i]);
  EXPECT_NEAR(*m[4].second, 2.0 / std::log(2.0), 1e-15);
  EXPECT_NEAR(*m[7].second, 0.25 / std::log(2.0), 1e-15);
}

TEST(InformationBounds, RejectsBadInput) {
  LocalReducer reducer;
  const auto rows = torch::randn({5, 2});
  const auto labels = torch::zeros({5}, torch::kInt64);
  EXPECT_THROW(informationBounds(rows, labels, 0, 0.0, reducer), c10::Error);
  EXPECT_THROW(informationBounds(rows, labels.narrow(0, 0, 4), 0, 0.1, reducer), c10::Error);
  EXPECT_THROW(informationBounds(rows, labels + 3, 2, 0.1, reducer), c10::Error);
}

}  // namespace
}  // namespace repshape::reg
