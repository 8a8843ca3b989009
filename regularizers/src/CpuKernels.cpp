#include <repshape/regularizers/CpuKernels.h>

namespace repshape::cpu {

namespace {
bool forceBaseline = false;  // useBaselineKernels
}  // namespace

bool avx2Fma() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes && !forceBaseline;
#else
  return false;
#endif
}

void useBaselineKernels(bool baseline) { forceBaseline = baseline; }

}  // namespace repshape::cpu
