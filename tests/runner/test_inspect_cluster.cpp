// `repshape inspect --cluster K --mi SIGMA2` through the real binary, on data with closed-form
// answers: three far-apart groups of identical rows, labelled by group. KMeans must recover the
// groups (AMI = NMI = 1) and every Kolchinsky–Tracey bound is ln 3: exp(−D/2σ²) is 1 inside a group
// and 0 across groups, so each row's mixture term is n_k/N = 1/3 and H(T|Y=k) = 0.
#include "TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>

namespace repshape {
namespace {

const std::string kBin = REPSHAPE_BIN;

TEST(InspectCluster, RecoversGroupsAndClosedFormBounds) {
  const auto dir = test::tempDir("inspect-cluster");
  std::string rows, labels;
  const double centres[3][2] = {{0, 0}, {100, 0}, {0, 100}};
  for (int group = 0; group < 3; ++group) {
    for (int copy = 0; copy < 4 + group; ++copy) {  // uneven groups: 4, 5, 6 rows
      rows += std::to_string(centres[group][0]) + "," + std::to_string(centres[group][1]) + "\n";
      labels += std::to_string(2 - group) + "\n";  // label order differs from cluster order
    }
  }
  test::writeFile(dir / "z.csv", rows);
  test::writeFile(dir / "y.csv", labels);
  const auto run = test::runCommand(kBin + " inspect " + (dir / "z.csv").string() + " --labels " +
                                    (dir / "y.csv").string() + " --cluster 3 --mi 0.1");
  ASSERT_EQ(run.exitCode, 0) << run.output;
  EXPECT_NEAR(test::jsonNumber(run.output, "ami"), 1.0, 1e-12) << run.output;
  EXPECT_NEAR(test::jsonNumber(run.output, "nmi"), 1.0, 1e-12);
  EXPECT_NEAR(test::jsonNumber(run.output, "kmeans_inertia"), 0.0, 1e-9);
  // With uneven groups of n_k rows: I(X;T) bounds = −(1/N) Σ_k n_k ln(n_k/N); I(T;Y) the same.
  double expected = 0;
  for (int n : {4, 5, 6}) expected -= n / 15.0 * std::log(n / 15.0);
  for (const char* key : {"mi_x_upper", "mi_x_lower", "mi_y_upper", "mi_y_lower"})
    EXPECT_NEAR(test::jsonNumber(run.output, key), expected, 1e-9) << key << "\n" << run.output;
  EXPECT_NEAR(test::jsonNumber(run.output, "mi_x_upper_bits"), expected / std::log(2.0), 1e-9);
}

TEST(InspectCluster, NeedsLabels) {
  const auto dir = test::tempDir("inspect-cluster-bad");
  test::writeFile(dir / "z.csv", "1,2\n3,4\n");
  const auto run = test::runCommand(kBin + " inspect " + (dir / "z.csv").string() + " --cluster 2");
  EXPECT_EQ(run.exitCode, 2) << run.output;
  EXPECT_NE(run.output.find("--cluster and --mi need --labels"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace repshape
