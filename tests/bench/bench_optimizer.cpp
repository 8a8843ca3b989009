// bench_optimizer: one Adam step over the Choi MNIST MLP's parameters (784-6x100-10: 14 tensors,
// 140k fp32), torch::optim::Adam vs repshape's FusedAdam (runner/src/FusedAdam.h), interleaved,
// min and median of each over many steps (min: the least disturbed on a shared machine). Also
// checks the two stay equal to fp32 rounding over the steps. Not a test: run by hand,
//   build/tests/bench/bench_optimizer [--steps 2000]
#include "FusedAdam.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  int steps = 2000;
  for (int i = 1; i + 1 < argc; i += 2)
    if (std::strcmp(argv[i], "--steps") == 0) steps = std::atoi(argv[i + 1]);
  torch::set_num_threads(1);
  torch::manual_seed(0);
  const std::vector<int64_t> widths = {784, 100, 100, 100, 100, 100, 100, 10};
  std::vector<torch::Tensor> a, b;
  for (size_t i = 0; i + 1 < widths.size(); ++i)
    for (const std::vector<int64_t>& shape : {std::vector<int64_t>{widths[i + 1], widths[i]}, {widths[i + 1]}}) {
      const torch::Tensor init = torch::randn(shape) * 0.05;
      a.push_back(init.clone().requires_grad_(true));
      b.push_back(init.clone().requires_grad_(true));
    }
  const auto options = torch::optim::AdamOptions(1e-3);
  torch::optim::Adam reference(a, options);
  repshape::FusedAdam fused(b, options);
  using Clock = std::chrono::steady_clock;
  std::vector<double> tRef, tFused;
  for (int s = 0; s < steps; ++s) {
    for (size_t i = 0; i < a.size(); ++i) {
      const torch::Tensor g = torch::randn(a[i].sizes()) * 0.01;
      a[i].mutable_grad() = g.clone();
      b[i].mutable_grad() = g.clone();
    }
    auto t0 = Clock::now();
    reference.step();
    auto t1 = Clock::now();
    fused.step();
    auto t2 = Clock::now();
    tRef.push_back(std::chrono::duration<double>(t1 - t0).count());
    tFused.push_back(std::chrono::duration<double>(t2 - t1).count());
  }
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>() / a[i].abs().max().item<double>());
  auto stats = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return std::make_pair(v.front() * 1e6, v[v.size() / 2] * 1e6);
  };
  const auto [refMin, refMed] = stats(tRef);
  const auto [fusedMin, fusedMed] = stats(tFused);
  std::printf("Adam step over the Choi MLP's 14 parameter tensors, %d steps: torch::optim::Adam min %.1f us median "
              "%.1f us; FusedAdam min %.1f us median %.1f us; ratio (min) %.2f; max relative parameter difference "
              "after %d steps %.2e\n",
              steps, refMin, refMed, fusedMin, fusedMed, fusedMin / refMin, steps, worst);
  return worst < 1e-4 ? 0 : 1;
}
