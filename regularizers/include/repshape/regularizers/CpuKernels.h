#pragma once
// One switch for every hand-vectorised CPU element loop of repshape: the fused penalties
// (regularizers/src/detail: WeightNorms, RowsPenalties, CentredCovariance) and the runner's
// FusedAdam and FusedMlp.
//
// The build targets baseline x86-64, so each such loop is compiled twice: once for the baseline
// and once with target("avx2,fma") (or "avx2"). The choice is made at run time, from the CPU's
// features — never its model (GCC's target_clones("arch=haswell") asked for a Haswell and ran the
// SSE2 clone on every newer CPU) — and tests can force the baseline loops, so both compiled
// versions are checked on one AVX2 machine.

namespace repshape::cpu {

// True where the AVX2(+FMA) versions run: the CPU has AVX2 and FMA (checked once) and
// useBaselineKernels(true) is not in effect. Always false off x86-64 / GCC-compatible compilers.
bool avx2Fma();

// Tests only: run the baseline loops even where the CPU has AVX2+FMA. Not thread-safe; set it
// between steps, and set it back to false after.
void useBaselineKernels(bool baseline);

}  // namespace repshape::cpu
