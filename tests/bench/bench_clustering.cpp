// Time and peak memory of clustering (KMeans + AMI/NMI) and of the MI bounds on synthetic
// representations. One measurement per process, so ru_maxrss (a high-water mark) is meaningful:
//
//   bench_clustering <kmeans|mi|mi64> <N> <M> [k=10] [n_init=10]
//   mpirun -np 2 bench_clustering mi 50000 128
// `mi` is the default fp32-GEMM path, `mi64` the fp64 reference path (InformationBoundsOptions).
//
// Prints, from rank 0: what, W, N, M, seconds, the process's peak RSS, and the peak growth over
// the RSS after the data was built (both MiB, rank 0; other ranks print theirs to stderr).

#include <repshape/distributed/Communicator.h>
#include <repshape/regularizers/Clustering.h>
#include <repshape/regularizers/InformationBounds.h>

#include "CommReducer.h"

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

namespace {

double peakRssMiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // ru_maxrss is in KiB on Linux
}

}  // namespace

int main(int argc, char** argv) {
  using namespace repshape;
  if (argc < 4) {
    std::cerr << "usage: bench_clustering <kmeans|mi|mi64> <N> <M> [k=10] [n_init=10]\n";
    return 2;
  }
  const std::string what = argv[1];
  const int64_t n = std::atoll(argv[2]);
  const int64_t m = std::atoll(argv[3]);
  const int64_t k = argc > 4 ? std::atoll(argv[4]) : 10;
  const int nInit = argc > 5 ? std::atoi(argv[5]) : 10;
  auto comm = dist::makeCommunicator(dist::CommOptions{});
  CommReducer reducer(*comm, "bench");
  const int rank = comm->rank();
  const int world = comm->size();

  // k blobs in M dimensions, fp32 like a trained layer's output; this rank's contiguous shard.
  const int64_t begin = n * rank / world;
  const int64_t end = n * (rank + 1) / world;
  torch::Tensor rows, labels;
  {
    const auto gen = at::make_generator<at::CPUGeneratorImpl>(1234);
    const auto centres = torch::randn({k, m}, gen) * 3.0;
    const auto all = torch::randint(0, k, {n}, gen, torch::kInt64);
    const auto noise = torch::randn({n, m}, gen);
    // Overlapping blobs (centre spread 0.3 of the noise), scaled so that pair distances are
    // comparable to σ² = 0.1: neither KMeans nor the MI bounds meet a trivial case.
    const auto full = (centres.index_select(0, all) * 0.1 + noise) * 0.05;  // [N, M]
    rows = full.narrow(0, begin, end - begin).clone();
    labels = all.narrow(0, begin, end - begin).clone();
  }
  comm->barrier("bench.start");
  const double baseline = peakRssMiB();
  const auto start = std::chrono::steady_clock::now();
  std::string summary;
  if (what == "kmeans") {
    reg::ClusteringOptions options;
    options.k = k;
    options.nInit = nInit;
    const auto r = reg::clusterAndScore(rows, labels, options, reducer);
    summary = "ami " + std::to_string(r.ami) + " nmi " + std::to_string(r.nmi) + " inertia " +
              std::to_string(r.inertia);
  } else if (what == "mi" || what == "mi64") {
    reg::InformationBoundsOptions options;
    options.numClasses = k;
    options.fp64 = what == "mi64";
    const auto b = reg::informationBounds(rows, labels, options, reducer);
    char text[256];
    std::snprintf(text, sizeof text,
                  "mi_x %.12g..%.12g mi_y %.12g..%.12g redone in fp64: %lld classes, %lld rows",
                  b.xLower, b.xUpper, b.yLower, b.yUpper,
                  static_cast<long long>(b.fp64FallbackClasses),
                  static_cast<long long>(b.fp64FallbackRows));
    summary = text;
  } else {
    std::cerr << "unknown benchmark '" << what << "' (kmeans, mi or mi64)\n";
    return 2;
  }
  comm->barrier("bench.end");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double peak = peakRssMiB();
  char line[512];
  std::snprintf(line, sizeof line,
                "%-6s W=%d N=%lld M=%lld  %.2f s  peak RSS %.0f MiB  (+%.0f MiB over data)  %s",
                what.c_str(), world, static_cast<long long>(n), static_cast<long long>(m), seconds,
                peak, peak - baseline, summary.c_str());
  (rank == 0 ? std::cout : std::cerr) << (rank == 0 ? "" : "  rank " + std::to_string(rank) + ": ")
                                      << line << std::endl;
  return 0;
}
