// fusedWeightNorms (FusedPenalties.h): l1w / l2w over several weight tensors as one autograd node.
//
// The build targets baseline x86-64 (-O2), where GCC does not vectorise a reduction. The passes
// over the weights are written by hand: AVX2 where the CPU has it (cpu::avx2Fma, CpuKernels.h),
// SSE2 (part of x86-64) otherwise, scalar for the tail and other targets. Forward: fp64
// accumulation of |w| or w² (two accumulators); backward: sign(w)·g or 2g·w in w's dtype, with
// the fp32 factor rounded once as ATen's `w.sign().mul_(g)` / `w.mul(2g)` would (same bits).
#include "detail/FusedPenalties.h"

#include <repshape/regularizers/CpuKernels.h>

#include <cmath>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define REPSHAPE_X86 1
#endif

namespace repshape::reg::detail {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

#if REPSHAPE_X86
// Σ|p| or Σp² over p[0, n − n % 8) in fp64; *done = the elements covered.
template <bool L1>
__attribute__((target("avx2"))) double normAvx2(const float* p, int64_t n, int64_t* done) {
  const __m256d absMask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(p + i);
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    if constexpr (L1) {
      lo = _mm256_and_pd(lo, absMask);
      hi = _mm256_and_pd(hi, absMask);
    } else {
      lo = _mm256_mul_pd(lo, lo);
      hi = _mm256_mul_pd(hi, hi);
    }
    a0 = _mm256_add_pd(a0, lo);
    a1 = _mm256_add_pd(a1, hi);
  }
  double lanes[4];
  _mm256_storeu_pd(lanes, _mm256_add_pd(a0, a1));
  *done = i;
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

template <bool L1>
double normSse2(const float* p, int64_t n, int64_t* done) {
  const __m128d absMask = _mm_castsi128_pd(_mm_set1_epi64x(0x7fffffffffffffffLL));
  __m128d a0 = _mm_setzero_pd(), a1 = _mm_setzero_pd();
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m128 v = _mm_loadu_ps(p + i);
    __m128d lo = _mm_cvtps_pd(v), hi = _mm_cvtps_pd(_mm_movehl_ps(v, v));
    if constexpr (L1) {
      lo = _mm_and_pd(lo, absMask);
      hi = _mm_and_pd(hi, absMask);
    } else {
      lo = _mm_mul_pd(lo, lo);
      hi = _mm_mul_pd(hi, hi);
    }
    a0 = _mm_add_pd(a0, lo);
    a1 = _mm_add_pd(a1, hi);
  }
  double lanes[2];
  _mm_storeu_pd(lanes, _mm_add_pd(a0, a1));
  *done = i;
  return lanes[0] + lanes[1];
}

// out = f·sign(p) (L1) or f·p over [0, n − n % 8); returns the elements covered.
template <bool L1>
__attribute__((target("avx2"))) int64_t gradAvx2(const float* p, int64_t n, float f, float* out) {
  const __m256 fv = _mm256_set1_ps(f), zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(p + i);
    if constexpr (L1) {
      const __m256 pos = _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ), fv);
      const __m256 neg = _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ), fv);
      _mm256_storeu_ps(out + i, _mm256_sub_ps(pos, neg));
    } else {
      _mm256_storeu_ps(out + i, _mm256_mul_ps(v, fv));
    }
  }
  return i;
}
#endif

template <bool L1>
double normOfFloat(const float* p, int64_t n) {
  int64_t i = 0;
  double total = 0.0;
#if REPSHAPE_X86
  total = cpu::avx2Fma() ? normAvx2<L1>(p, n, &i) : normSse2<L1>(p, n, &i);
#endif
  for (; i < n; ++i) {
    const double v = static_cast<double>(p[i]);
    total += L1 ? std::abs(v) : v * v;
  }
  return total;
}

template <bool L1, typename T>
double normOf(const T* p, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return normOfFloat<L1>(p, n);
  } else {
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) total += L1 ? std::abs(p[i]) : p[i] * p[i];
    return total;
  }
}

// d|w|/dw = sign(w), 0 at 0 (as torch.abs); dw²/dw = 2w. f = g (l1) or 2g (l2) in w's dtype.
template <bool L1, typename T>
void gradOf(const T* p, int64_t n, T f, T* out) {
  int64_t i = 0;
#if REPSHAPE_X86
  if constexpr (std::is_same_v<T, float>)
    if (cpu::avx2Fma()) i = gradAvx2<L1>(p, n, f, out);
#endif
  for (; i < n; ++i) out[i] = L1 ? static_cast<T>((p[i] > T(0)) - (p[i] < T(0))) * f : p[i] * f;
}

class WeightNormsFn : public torch::autograd::Function<WeightNormsFn> {
 public:
  static Tensor forward(AutogradContext* ctx, at::TensorList weights, bool l1, int64_t outType) {
    double total = 0.0;
    std::vector<Tensor> kept;
    for (const Tensor& weight : weights) {
      const Tensor w = weight.contiguous();
      const int64_t n = w.numel();
      if (w.scalar_type() == torch::kFloat64)
        total += l1 ? normOf<true>(w.data_ptr<double>(), n) : normOf<false>(w.data_ptr<double>(), n);
      else
        total += l1 ? normOf<true>(w.data_ptr<float>(), n) : normOf<false>(w.data_ptr<float>(), n);
      kept.push_back(w);
    }
    ctx->save_for_backward(kept);
    ctx->saved_data["l1"] = l1;
    return torch::scalar_tensor(total, weights[0].options().dtype(static_cast<c10::ScalarType>(outType)));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto weights = ctx->get_saved_variables();
    const bool l1 = ctx->saved_data["l1"].toBool();
    const double g = grads[0].item<double>() * (l1 ? 1.0 : 2.0);
    variable_list out;
    for (const Tensor& w : weights) {
      Tensor dw = torch::empty_like(w);
      const int64_t n = w.numel();
      if (w.scalar_type() == torch::kFloat64) {
        if (l1) gradOf<true>(w.data_ptr<double>(), n, g, dw.data_ptr<double>());
        else gradOf<false>(w.data_ptr<double>(), n, g, dw.data_ptr<double>());
      } else {
        const auto f = static_cast<float>(g);
        if (l1) gradOf<true>(w.data_ptr<float>(), n, f, dw.data_ptr<float>());
        else gradOf<false>(w.data_ptr<float>(), n, f, dw.data_ptr<float>());
      }
      out.push_back(dw);
    }
    out.emplace_back();  // l1
    out.emplace_back();  // outType
    return out;
  }
};

}  // namespace

Tensor fusedWeightNorms(const std::vector<Tensor>& weights, bool l1, c10::ScalarType out) {
  if (weights.empty()) return Tensor();
  for (const Tensor& w : weights)
    if (!w.defined() || !w.is_cpu() || (w.scalar_type() != torch::kFloat32 && w.scalar_type() != torch::kFloat64))
      return Tensor();
  return WeightNormsFn::apply(at::TensorList(weights), l1, static_cast<int64_t>(out));
}

}  // namespace repshape::reg::detail
