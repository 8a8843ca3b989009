// Kolchinsky–Tracey MI bounds against a direct NumPy computation (full N×N, pairwise differences)
// and their invariants: 0 ≤ mi_x_lower ≤ mi_x_upper ≤ ln N.

#include <repshape/regularizers/InformationBounds.h>

#include "ReferencePython.h"

#include <cmath>
#include <fstream>
#include <iomanip>

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
    const auto b = informationBounds(rows, labels, 0, sigma2, reducer);
    const auto ref = reference(rows, labels, sigma2);
    ASSERT_EQ(ref.size(), 4u);
    EXPECT_NEAR(b.xUpper, ref[0], 1e-10 * std::abs(ref[0]) + 1e-12) << "sigma2 " << sigma2;
    EXPECT_NEAR(b.xLower, ref[1], 1e-10 * std::abs(ref[1]) + 1e-12) << "sigma2 " << sigma2;
    EXPECT_NEAR(b.yUpper, ref[2], 1e-10 * std::abs(ref[2]) + 1e-12) << "sigma2 " << sigma2;
    EXPECT_NEAR(b.yLower, ref[3], 1e-10 * std::abs(ref[3]) + 1e-12) << "sigma2 " << sigma2;
    EXPECT_EQ(b.rows, 45);

    // Row blocks of any size give the same sums (block of 1 row, of 7 rows, all rows).
    for (int64_t elements : {1, 7 * 45, 1 << 22}) {
      InformationBoundsOptions options;
      options.sigma2 = sigma2;
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
