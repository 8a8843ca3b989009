// KMeans against scikit-learn (best inertia over the same number of k-means++ restarts) and
// against its own definition (labels are the nearest centroids, inertia is their distance sum).

#include <repshape/regularizers/Clustering.h>

#include "ReferencePython.h"

#include <fstream>
#include <iomanip>
#include <iostream>
#include <random>

namespace repshape::reg {
namespace {

struct Blobs {
  torch::Tensor rows;    // [N, M] fp32, as a representation would be
  torch::Tensor labels;  // [N] int64 blob of each row
};

// `centres` Gaussian blobs of unequal sizes and spreads in M dimensions.
Blobs makeBlobs(int64_t n, int64_t m, int64_t centres, double spread, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> box(-10.0, 10.0);
  std::vector<std::vector<double>> mu(centres, std::vector<double>(m));
  for (auto& c : mu) for (auto& v : c) v = box(rng);
  auto rows = torch::empty({n, m}, torch::kFloat32);
  auto labels = torch::empty({n}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = std::min(i % (centres + 2), centres - 1);  // the last blob is 3× larger
    labels[i] = c;
    for (int64_t q = 0; q < m; ++q) {
      rows[i][q] = static_cast<float>(mu[c][q] + spread * (1.0 + 0.5 * c) * normal(rng));
    }
  }
  return {rows, labels};
}

double referenceInertia(const torch::Tensor& rows, int64_t k, int nInit) {
  const std::string input = test::scratchPath("kmeans_" + std::to_string(k) + ".txt");
  {
    std::ofstream out(input);
    out << k << " " << nInit << "\n" << std::setprecision(17);
    const auto r = rows.to(torch::kFloat64).contiguous();
    for (int64_t i = 0; i < r.size(0); ++i) {
      for (int64_t q = 0; q < r.size(1); ++q) out << r[i][q].item<double>() << " ";
      out << "\n";
    }
  }
  const auto ref = test::runReference("reference_kmeans.py", input);
  std::remove(input.c_str());
  EXPECT_EQ(ref.size(), 1u);
  return ref.empty() ? 0.0 : ref[0];
}

// Labels must be the nearest centroid and the inertia their squared distances.
void expectSelfConsistent(const torch::Tensor& rows, const KMeansResult& r) {
  const auto x = rows.to(torch::kFloat64);
  const auto d = torch::cdist(x, r.centroids).pow(2);  // [N, k]
  const auto own = d.gather(1, r.labels.unsqueeze(1)).squeeze(1);
  EXPECT_TRUE(own.le(std::get<0>(d.min(1)) * (1 + 1e-9) + 1e-9).all().item<bool>());
  EXPECT_NEAR(r.inertia, own.sum().item<double>(), 1e-9 * r.inertia + 1e-9);
}

TEST(KMeans, InertiaWithinOnePercentOfScikitLearn) {
  struct Setup { int64_t n, m, centres, k; double spread; };
  for (const auto& s : std::vector<Setup>{{600, 5, 4, 4, 1.0}, {2000, 10, 8, 8, 3.0},
                                          {1500, 3, 6, 10, 2.5}}) {
    const auto blobs = makeBlobs(s.n, s.m, s.centres, s.spread, 7 + s.n);
    ClusteringOptions options;
    options.k = s.k;
    options.nInit = 10;
    options.seed = 3;
    LocalReducer reducer;
    const auto result = kmeans(blobs.rows, options, reducer);
    const double reference = referenceInertia(blobs.rows, s.k, options.nInit);
    EXPECT_LE(result.inertia, 1.01 * reference) << "n=" << s.n << " k=" << s.k;
    std::cout << "n=" << s.n << " k=" << s.k << " inertia " << result.inertia << " scikit-learn "
              << reference << " ratio " << result.inertia / reference << "\n";
    EXPECT_GT(result.inertia, 0.0);
    expectSelfConsistent(blobs.rows, result);
  }
}

TEST(KMeans, SeparatedBlobsAreRecoveredExactly) {
  const auto blobs = makeBlobs(400, 6, 5, 0.05, 11);
  ClusteringOptions options;  // k = 0: number of classes present
  LocalReducer reducer;
  const auto result = clusterAndScore(blobs.rows, blobs.labels, options, reducer);
  EXPECT_EQ(result.k, 5);
  EXPECT_NEAR(result.ami, 1.0, 1e-12);
  EXPECT_NEAR(result.nmi, 1.0, 1e-12);
  const auto metrics = result.metrics();
  ASSERT_EQ(metrics.size(), 3u);
  EXPECT_EQ(metrics[0].first, "ami");
  EXPECT_EQ(metrics[1].first, "nmi");
  EXPECT_EQ(metrics[2].first, "kmeans_inertia");
  EXPECT_EQ(*metrics[2].second, result.inertia);
}

TEST(KMeans, SameSeedSameLabelsOtherSeedStillValid) {
  const auto blobs = makeBlobs(500, 4, 6, 2.0, 5);
  ClusteringOptions options;
  options.k = 6;
  options.seed = 99;
  LocalReducer reducer;
  const auto a = kmeans(blobs.rows, options, reducer);
  const auto b = kmeans(blobs.rows, options, reducer);
  EXPECT_TRUE(torch::equal(a.labels, b.labels));
  EXPECT_EQ(a.inertia, b.inertia);
  options.seed = 100;
  expectSelfConsistent(blobs.rows, kmeans(blobs.rows, options, reducer));
}

TEST(KMeans, FewerDistinctPointsThanClustersLeavesEmptyClusterInPlace) {
  // Two distinct points, k = 3: k-means++ must fall back to a uniform draw (all D² = 0) and Lloyd
  // leaves the duplicate centroid's cluster empty; ties go to the lowest index.
  const auto rows = torch::tensor({0., 0., 0., 1., 1.}).view({5, 1});
  ClusteringOptions options;
  options.k = 3;
  options.nInit = 3;
  LocalReducer reducer;
  const auto r = kmeans(rows, options, reducer);
  EXPECT_EQ(r.inertia, 0.0);
  EXPECT_EQ(r.labels[0].item<int64_t>(), r.labels[2].item<int64_t>());
  EXPECT_EQ(r.labels[3].item<int64_t>(), r.labels[4].item<int64_t>());
  EXPECT_NE(r.labels[0].item<int64_t>(), r.labels[3].item<int64_t>());
  EXPECT_TRUE(torch::isfinite(r.centroids).all().item<bool>());
}

TEST(KMeans, OffsetDataClustersLikeCentredData) {
  // A mean of 1e6 on every unit must not change the clustering (rows are centred before GEMMs).
  const auto blobs = makeBlobs(300, 4, 3, 0.5, 21);
  const auto x = blobs.rows.to(torch::kFloat64);
  ClusteringOptions options;
  options.k = 3;
  LocalReducer reducer;
  const auto plain = kmeans(x, options, reducer);
  const auto offset = kmeans(x + 1e6, options, reducer);
  EXPECT_TRUE(torch::equal(plain.labels, offset.labels));
}

TEST(KMeans, RejectsBadOptions) {
  LocalReducer reducer;
  ClusteringOptions options;
  options.k = 4;
  EXPECT_THROW(kmeans(torch::zeros({3, 2}), options, reducer), c10::Error);  // N < k
  options.k = 0;
  EXPECT_THROW(kmeans(torch::zeros({3, 2}), options, reducer), c10::Error);
  options.k = 2;
  EXPECT_THROW(kmeans(torch::full({3, 2}, NAN), options, reducer), c10::Error);
}

}  // namespace
}  // namespace repshape::reg
