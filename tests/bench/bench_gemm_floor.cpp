// bench_gemm_floor: the compute floor of one Choi MNIST MLP training step (784 → 6×100 → 10,
// Adam): a loop of ONLY the step's matrix products with the same ATen/BLAS as repshape —
// forward Y = X·Wᵀ (7 GEMMs), backward dW = dYᵀ·X (7) and dX = dY·W (6, none for the input) —
// into preallocated buffers, no bias, activation, loss, autograd or optimizer. Prints samples/s
// (one JSON line), which run-all.sh / bench_train.sh put side by side with `repshape train` and
// Python PyTorch. Not a test: run by hand,
//   build/tests/bench/bench_gemm_floor [--batch 100] [--steps 3000] [--threads 1]
#include <torch/torch.h>

#include "BlasThreads.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  int64_t batch = 100, steps = 3000;
  int threads = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--batch") == 0) batch = std::atoll(argv[i + 1]);
    else if (std::strcmp(argv[i], "--steps") == 0) steps = std::atoll(argv[i + 1]);
    else if (std::strcmp(argv[i], "--threads") == 0) threads = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "bench_gemm_floor: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  repshape::bench::setThreads(threads);  // ATen and OpenBLAS
  torch::NoGradGuard noGrad;
  const std::vector<int64_t> widths = {784, 100, 100, 100, 100, 100, 100, 10};
  const size_t layers = widths.size() - 1;
  std::vector<torch::Tensor> w, dw, act, grad;  // act[i]: input of layer i [B, in]; grad[i]: dL/d act[i]
  for (size_t i = 0; i < layers; ++i) {
    w.push_back(torch::randn({widths[i + 1], widths[i]}) * 0.05);  // [out, in], as nn::Linear
    dw.push_back(torch::empty({widths[i + 1], widths[i]}));
  }
  for (size_t i = 0; i <= layers; ++i) {
    act.push_back(torch::rand({batch, widths[i]}));
    grad.push_back(torch::randn({batch, widths[i]}) * 0.01);
  }
  auto step = [&] {
    for (size_t i = 0; i < layers; ++i) torch::mm_out(act[i + 1], act[i], w[i].t());
    for (size_t i = layers; i-- > 0;) {
      torch::mm_out(dw[i], grad[i + 1].t(), act[i]);
      if (i > 0) torch::mm_out(grad[i], grad[i + 1], w[i]);
    }
  };
  for (int i = 0; i < 50; ++i) step();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t s = 0; s < steps; ++s) step();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("{\"samples_per_s\": %.1f, \"step_ms\": %.4f, \"batch\": %lld, \"threads\": %d}\n",
              static_cast<double>(steps * batch) / seconds, seconds / static_cast<double>(steps) * 1e3,
              static_cast<long long>(batch), threads);
  return 0;
}
