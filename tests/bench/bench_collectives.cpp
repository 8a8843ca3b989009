// Collective costs of the distributed penalties: one all-reduce of the packed statistics per step
// versus all-gathering the activations themselves.
//
//   tests/mpirun_test.sh 2 300 build/tests/bench/bench_collectives [--classes 100] [--width 128]
//                        [--rows 500] [--iters 20]
//
// cw-cr packs, per regularized layer, the global count, Σz and ZᵀZ plus the same per class:
// (1 + M + M²)(K + 1) doubles (SPEC §4). Gathering instead moves the N×M fp32 activations.

#include <repshape/distributed/Communicator.h>

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

using namespace repshape;

struct Timing {
  double median = 0;  // seconds per call
  double min = 0;
  std::int64_t bytes = 0;  // CommCounters bytes of one call on this rank
};

template <typename Call>
Timing measure(dist::Communicator& comm, int iterations, Call call) {
  call();  // warm-up: allocations, MPI connection setup
  std::vector<double> seconds;
  comm.barrier("bench.sync");
  for (int i = 0; i < iterations; ++i) {
    comm.resetCounters();
    call();
    seconds.push_back(comm.counters().seconds);
  }
  Timing timing;
  timing.bytes = comm.counters().bytes;
  std::sort(seconds.begin(), seconds.end());
  timing.median = seconds[seconds.size() / 2];
  timing.min = seconds.front();
  return timing;
}

// The same statistics for a raw MPI call outside the Communicator (no deadline, no counters):
// barrier, then MPI_Wtime around `call`; the first call is a warm-up.
template <typename Call>
Timing measureRaw(int iterations, Call call) {
  std::vector<double> seconds;
  for (int i = 0; i <= iterations; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double start = MPI_Wtime();
    call();
    if (i > 0) seconds.push_back(MPI_Wtime() - start);
  }
  std::sort(seconds.begin(), seconds.end());
  Timing timing;
  timing.median = seconds[seconds.size() / 2];
  timing.min = seconds.front();
  return timing;
}

void report(const dist::Communicator& comm, const char* name, std::int64_t formulaBytes,
            const std::string& formula, const Timing& t, std::int64_t wireBytes) {
  if (comm.rank() != 0) return;
  std::printf("%-28s %12lld B/step (%s)  counters %12lld B  median %9.3f ms  min %9.3f ms  "
              "bus %7.3f GB/s\n",
              name, static_cast<long long>(formulaBytes), formula.c_str(),
              static_cast<long long>(t.bytes), t.median * 1e3, t.min * 1e3,
              wireBytes / t.median / 1e9);
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t classes = 100, width = 128, rows = 500;
  int iterations = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const long long value = std::stoll(argv[i + 1]);
    if (flag == "--classes") classes = value;
    else if (flag == "--width") width = value;
    else if (flag == "--rows") rows = value;
    else if (flag == "--iters") iterations = static_cast<int>(value);
    else { std::fprintf(stderr, "unknown flag %s\n", argv[i]); return 2; }
  }
  const std::unique_ptr<dist::Communicator> comm = dist::makeCommunicator({});
  const int w = comm->size();
  const int rank = comm->rank();
  if (rank == 0) {
    std::printf("bench_collectives: backend %s, W=%d, K=%lld classes, M=%lld units, N=%lld rows, "
                "%d iterations\n", comm->backendName().c_str(), w, static_cast<long long>(classes),
                static_cast<long long>(width), static_cast<long long>(rows), iterations);
    std::printf("bus bandwidth = ring bytes on the wire per rank / median: all-reduce 2(W-1)/W·S, "
                "all-gather (W-1)/W·S\n");
  }
  const double ring = w > 1 ? 2.0 * (w - 1) / w : 1.0;
  const double gatherShare = w > 1 ? (w - 1.0) / w : 1.0;

  // Latency floor: one double.
  torch::Tensor tiny = torch::ones({1}, torch::kDouble);
  const Timing tinyTiming = measure(*comm, iterations * 50, [&] {
    comm->allReduce(tiny, dist::ReduceOp::Sum, "bench.tiny");
  });
  report(*comm, "all-reduce 1 double", 8, "8", tinyTiming, static_cast<std::int64_t>(ring * 8));

  // cr / decov on one layer: 1 + M + M² doubles.
  const std::int64_t layerStats = 1 + width + width * width;
  torch::Tensor cr = torch::rand({layerStats}, torch::kDouble);
  const Timing crTiming = measure(*comm, iterations * 5, [&] {
    comm->allReduce(cr, dist::ReduceOp::Sum, "bench.cr");
  });
  report(*comm, "all-reduce cr stats", layerStats * 8, "8(1+M+M^2)", crTiming,
         static_cast<std::int64_t>(ring * layerStats * 8));

  // cw-cr: global plus per-class sums.
  const std::int64_t cwcrStats = layerStats * (classes + 1);
  torch::Tensor cwcr = torch::rand({cwcrStats}, torch::kDouble);
  const Timing cwcrTiming = measure(*comm, iterations, [&] {
    comm->allReduce(cwcr, dist::ReduceOp::Sum, "bench.cwcr");
  });
  report(*comm, "all-reduce cw-cr stats", cwcrStats * 8, "8(1+M+M^2)(K+1)", cwcrTiming,
         static_cast<std::int64_t>(ring * cwcrStats * 8));

  // Reference without deadline: Open MPI's blocking MPI_Allreduce (tuned, spins until done).
  if (comm->backendName() == "mpi") {
    torch::Tensor raw = cwcr.clone();
    Timing timing = measureRaw(iterations, [&] {
      MPI_Allreduce(MPI_IN_PLACE, raw.data_ptr(), static_cast<int>(cwcrStats), MPI_DOUBLE, MPI_SUM,
                    MPI_COMM_WORLD);
    });
    timing.bytes = cwcrStats * 8;
    report(*comm, "  (blocking MPI_Allreduce)", cwcrStats * 8, "reference, no deadline", timing,
           static_cast<std::int64_t>(ring * cwcrStats * 8));
  }

  // In-place all-reduce of fp32 buffers: repshape's schedule (Communicator::allReduce, the ring
  // through libnbc's MPI_T control where it is faster) vs libnbc's own choice for an in-place call
  // (binomial reduce + broadcast), polled the same way. 130 017 floats = the Choi MLP's gradients.
  if (comm->backendName() == "mpi") {
    for (const std::int64_t floats : {std::int64_t{5}, std::int64_t{2000}, std::int64_t{130017}}) {
      torch::Tensor buffer = torch::rand({floats});
      const Timing ours = measure(*comm, iterations * 5, [&] {
        comm->allReduce(buffer, dist::ReduceOp::Sum, "bench.inplace");
      });
      const Timing libnbc = measureRaw(iterations * 5, [&] {
        MPI_Request request = MPI_REQUEST_NULL;
        MPI_Iallreduce(MPI_IN_PLACE, buffer.data_ptr(), static_cast<int>(floats), MPI_FLOAT, MPI_SUM,
                       MPI_COMM_WORLD, &request);
        for (int done = 0; !done;) MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      });
      if (rank == 0)
        std::printf("in-place all-reduce %7lld floats: repshape median %8.1f us min %8.1f us | libnbc's "
                    "choice median %8.1f us min %8.1f us | ratio of medians %.2f\n",
                    static_cast<long long>(floats), ours.median * 1e6, ours.min * 1e6,
                    libnbc.median * 1e6, libnbc.min * 1e6, libnbc.median / ours.median);
    }
  }

  // The alternative: gather the activations (N rows of M fp32 over all ranks, split as the trainer
  // shards a batch) and compute the statistics redundantly on every rank.
  const std::int64_t mine = rows / w + (rank < rows % w ? 1 : 0);
  const torch::Tensor activations = torch::rand({mine, width}, torch::kFloat);
  const Timing gatherTiming = measure(*comm, iterations * 5, [&] {
    comm->allGatherRows(activations, "bench.gather");
  });
  report(*comm, "all-gather activations", rows * width * 4, "4NM (+24W counts)", gatherTiming,
         static_cast<std::int64_t>(gatherShare * rows * width * 4));

  // Backward of a split class-wise penalty (REPSHAPE_SPLIT_CLASSES): the gradient of the gathered
  // rows [N, M] summed over ranks, of which each rank keeps its own rows. reduceScatterRows does
  // that in one collective; the 2026-12-07 path all-reduced the whole [N, M] and sliced it.
  std::vector<std::int64_t> counts;
  for (int r = 0; r < w; ++r) counts.push_back(rows / w + (r < rows % w ? 1 : 0));
  const torch::Tensor rowGrad = torch::rand({rows, width});
  const Timing scatterTiming = measure(*comm, iterations * 5, [&] {
    comm->reduceScatterRows(rowGrad, counts, "bench.scatter");
  });
  report(*comm, "reduce-scatter row gradient", rows * width * 4, "4NM", scatterTiming,
         static_cast<std::int64_t>(gatherShare * rows * width * 4));
  torch::Tensor summed = rowGrad.clone();
  const Timing sumAllTiming = measure(*comm, iterations * 5, [&] {
    summed.copy_(rowGrad);  // as the old path's staging copy
    comm->allReduce(summed, dist::ReduceOp::Sum, "bench.sumAll");
  });
  report(*comm, "  (all-reduce it, then slice)", rows * width * 4, "4NM", sumAllTiming,
         static_cast<std::int64_t>(ring * rows * width * 4));
  if (rank == 0)
    std::printf("row gradient: all-reduce / reduce-scatter medians %.2f\n", sumAllTiming.median / scatterTiming.median);

  // The trainer's gradient all-reduce on the Choi MLP (784-6×100-10): fresh gradients every step
  // (set to none before backward), so GradientAllReducer copies them into its bucket, sums it and
  // re-binds the grads; against one all-reduce of a buffer that size.
  {
    std::vector<torch::Tensor> choi;
    const std::vector<std::int64_t> widths = {784, 100, 100, 100, 100, 100, 100, 10};
    for (std::size_t i = 0; i + 1 < widths.size(); ++i) {
      choi.push_back(torch::zeros({widths[i + 1], widths[i]}));
      choi.push_back(torch::zeros({widths[i + 1]}));
    }
    std::vector<torch::Tensor> fresh;
    for (const auto& p : choi) fresh.push_back(torch::rand(p.sizes()));
    dist::GradientAllReducer reducer(*comm, choi);
    torch::Tensor flat = torch::rand({reducer.bytesPerCall() / 4});
    // Wall time of the call on this rank after a barrier (the counters see only the collective).
    std::vector<double> whole, one;
    for (int i = 0; i <= iterations * 5; ++i) {
      for (std::size_t j = 0; j < choi.size(); ++j) choi[j].mutable_grad() = fresh[j].clone();
      comm->barrier("bench.sync");
      auto start = std::chrono::steady_clock::now();
      reducer.allReduce();
      const double a = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      comm->barrier("bench.sync");
      start = std::chrono::steady_clock::now();
      comm->allReduce(flat, dist::ReduceOp::Sum, "bench.flat");
      const double b = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (i > 0) whole.push_back(a), one.push_back(b);
    }
    std::sort(whole.begin(), whole.end());
    std::sort(one.begin(), one.end());
    if (rank == 0)
      std::printf("Choi MLP gradients (%lld B): GradientAllReducer with fresh grads median %.1f us | one all-reduce "
                  "of a buffer that size median %.1f us\n",
                  static_cast<long long>(reducer.bytesPerCall()), whole[whole.size() / 2] * 1e6, one[one.size() / 2] * 1e6);
  }

  // Gradient all-reduce of a model this size: an MLP 784-1000-1000-10 in fp32, 4 MB buckets.
  std::vector<torch::Tensor> params = {torch::zeros({1000, 784}), torch::zeros({1000}),
                                       torch::zeros({1000, 1000}), torch::zeros({1000}),
                                       torch::zeros({10, 1000}), torch::zeros({10})};
  for (auto& p : params) p.mutable_grad() = torch::rand(p.sizes());
  dist::GradientAllReducer gradients(*comm, params);
  const Timing gradTiming = measure(*comm, iterations, [&] { gradients.allReduce(); });
  if (rank == 0) {
    std::printf("gradient buckets: %lld of <= 4 MiB\n", static_cast<long long>(gradients.numBuckets()));
  }
  report(*comm, "gradient all-reduce MLP", gradients.bytesPerCall(), "4(#params + #tensors)",
         gradTiming, static_cast<std::int64_t>(ring * gradients.bytesPerCall()));
  return 0;
}
