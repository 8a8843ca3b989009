#pragma once
// The benchmarks' thread count for ATen *and* OpenBLAS. torch::set_num_threads does not reach
// OpenBLAS's own pool, which defaults to every core and spins in sched_yield between GEMMs: a
// benchmark run without OPENBLAS_NUM_THREADS=1 would time a step that borrows the other core.
// `repshape train` does the same (runner/src/Train.cpp, setBlasThreads).
#include <dlfcn.h>
#include <torch/torch.h>

namespace repshape::bench {

inline void setThreads(int threads) {
  torch::set_num_threads(threads);
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(threads);
}

}  // namespace repshape::bench
