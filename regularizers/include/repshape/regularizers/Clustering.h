#pragma once
// repshape/regularizers: KMeans clustering of a representation and its AMI/NMI against the true
// labels (SPEC §3, Romanov & Rumshisky's scores), on the evaluation set of any number of ranks.
//
// Every rank passes its shard of rows; nothing is gathered to cluster. Centroid sums, counts and
// the contingency table are summed through the Reducer. Results — labels included — are
// bit-identical for any number of ranks and any split of the rows for the same seed: the sums that
// decide anything are exact (integer limbs, see detail/ClusteringCollectives.h), per-row distances
// that decide an assignment are recomputed in a fixed order when two centroids are nearly tied, and
// ties go to the lowest index.

#include <repshape/regularizers/Regularizers.h>

#include <cstdint>
#include <string>

namespace repshape::reg {

// How H(true) and H(pred) are averaged in the AMI/NMI denominator (scikit-learn's average_method).
enum class MiNormalization { Arithmetic, Max, Geometric, Min };

// "arithmetic", "max", "geometric", "min"; throws std::invalid_argument naming the value otherwise.
MiNormalization parseMiNormalization(const std::string& name);
const char* miNormalizationName(MiNormalization normalization);

struct ClusteringOptions {
  int64_t k = 0;            // clusters; 0 = number of distinct true labels (global)
  int nInit = 10;           // k-means++ restarts; the lowest inertia wins (earliest on ties)
  int maxIter = 300;        // Lloyd iterations per restart
  double tol = 1e-4;        // stop when Σ‖Δcentroid‖² ≤ tol · mean per-unit variance (scikit-learn)
  MiNormalization normalization = MiNormalization::Arithmetic;
  uint64_t seed = 0;        // one std::mt19937_64 stream, consumed identically on every rank
};

struct KMeansResult {
  torch::Tensor labels;     // [n_local] int64 in [0, k)
  torch::Tensor centroids;  // [k, M] fp64, identical on every rank
  double inertia = 0.0;     // Σ over all ranks' rows of ‖x − centroid‖²
  int iterations = 0;       // Lloyd iterations of the winning restart
  int bestInit = 0;         // index of the winning restart
};

// Greedy k-means++ seeding (scikit-learn's: 2 + ⌊ln k⌋ D²-sampled candidates per centroid, the one
// of lowest potential kept) followed by Lloyd iterations, nInit times. An empty cluster keeps its
// previous centroid (deterministic; scikit-learn instead moves it to a far point). Needs at least
// k rows in total. localRows: [n_local, ...] any floating dtype, flattened to [n_local, M].
KMeansResult kmeans(const torch::Tensor& localRows, const ClusteringOptions& options,
                    Reducer& reducer);

struct ClusterScores {
  double ami = 0.0;
  double nmi = 0.0;
};

// AMI/NMI of a global contingency table [classes, clusters] of counts (any numeric dtype), exactly
// as scikit-learn 1.2 (expected MI from log-gamma sums, Vinh et al. 2010; both labelings with a
// single value → 1.0; one of them single-valued → NMI 0, AMI 0). Empty rows/columns are ignored.
ClusterScores scoreContingency(const torch::Tensor& contingency, MiNormalization normalization);
// Expected mutual information (nats) of random labelings with the margins of `contingency`.
double expectedMutualInformation(const torch::Tensor& contingency);

// Scores two labelings whose rows are spread over ranks: the contingency table is built locally and
// summed. Labels are non-negative integers [n_local]; numbers of values are found by a global max.
ClusterScores scoreLabelings(const torch::Tensor& localTrue, const torch::Tensor& localPred,
                             MiNormalization normalization, Reducer& reducer);

struct ClusteringResult {
  double ami = 0.0;
  double nmi = 0.0;
  double inertia = 0.0;     // kmeans_inertia
  int64_t k = 0;            // clusters used
  torch::Tensor labels;     // [n_local] int64 cluster of each local row

  // {"ami", "nmi", "kmeans_inertia"} for result.json.
  MetricList metrics() const;
};

// KMeans on the representation, scored against the true labels (SPEC §3 `ami`, `nmi`).
// localLabels: [n_local] int64 true (fine) labels.
ClusteringResult clusterAndScore(const torch::Tensor& localRows, const torch::Tensor& localLabels,
                                 const ClusteringOptions& options, Reducer& reducer);

}  // namespace repshape::reg
