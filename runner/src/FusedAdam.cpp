#include "FusedAdam.h"

#include <repshape/regularizers/CpuKernels.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>

#if defined(__x86_64__) && defined(__GNUC__)
#include <xmmintrin.h>
#endif

namespace repshape {

namespace {

// One Adam update of n fp32 elements: the 1.13 formula
//   g += wd·p;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;  p −= (lr/bc1) · m / (√v/√bc2 + ε),
// with the last line computed as p −= (lr·√bc2/bc1) · m / (√v + ε·√bc2): equal in exact arithmetic, one
// vector division instead of two (the divisions, not memory, bound this loop once it is AVX2).
// This file is compiled with -fno-math-errno so sqrt vectorises (errno is never read here).
// The loop is compiled twice, for baseline x86-64 (SSE2) and for AVX2+FMA, and cpu::avx2Fma()
// (CpuKernels.h: __builtin_cpu_supports) picks one. (GCC's target_clones("arch=haswell") did
// this before, but its resolver asks __builtin_cpu_is("haswell"), a CPU *model*: every AMD and
// every later Intel CPU ran the SSE2 clone.) bench_optimizer on Zen 4: 110 µs (SSE2, two
// divisions) → 43 µs.
__attribute__((always_inline)) inline void adamLoop(float* __restrict p, const float* __restrict g,
                                                     float* __restrict m, float* __restrict v, int64_t n,
                                                     float beta1, float beta2, float eps, float weightDecay,
                                                     float stepSize, float sqrtBc2) {
  const float oneMinusBeta1 = 1.0f - beta1, oneMinusBeta2 = 1.0f - beta2;
  const float scaled = stepSize * sqrtBc2, epsScaled = eps * sqrtBc2;
  for (int64_t i = 0; i < n; ++i) {
    const float grad = weightDecay != 0.0f ? g[i] + weightDecay * p[i] : g[i];
    const float mi = m[i] * beta1 + oneMinusBeta1 * grad;
    const float vi = v[i] * beta2 + oneMinusBeta2 * grad * grad;
    m[i] = mi;
    v[i] = vi;
    p[i] -= scaled * mi / (std::sqrt(vi) + epsScaled);
  }
}

// The largest biased exponent field over n fp32 values (0xff: some NaN or ±inf). An integer max
// reduction, so it vectorises without reassociating floating-point sums.
__attribute__((always_inline)) inline uint32_t maxExponentLoop(const float* __restrict x, int64_t n) {
  uint32_t top = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    top = std::max(top, (bits >> 23) & 0xffu);
  }
  return top;
}

__attribute__((optimize("O3"))) void adamBaseline(float* __restrict p, const float* __restrict g,
                                                  float* __restrict m, float* __restrict v, int64_t n, float beta1,
                                                  float beta2, float eps, float weightDecay, float stepSize,
                                                  float sqrtBc2) {
  adamLoop(p, g, m, v, n, beta1, beta2, eps, weightDecay, stepSize, sqrtBc2);
}
__attribute__((optimize("O3"))) uint32_t maxExponentBaseline(const float* __restrict x, int64_t n) {
  return maxExponentLoop(x, n);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((optimize("O3"), target("avx2,fma"))) void adamAvx2(float* __restrict p, const float* __restrict g,
                                                                 float* __restrict m, float* __restrict v,
                                                                 int64_t n, float beta1, float beta2, float eps,
                                                                 float weightDecay, float stepSize, float sqrtBc2) {
  adamLoop(p, g, m, v, n, beta1, beta2, eps, weightDecay, stepSize, sqrtBc2);
}
__attribute__((optimize("O3"), target("avx2"))) uint32_t maxExponentAvx2(const float* __restrict x, int64_t n) {
  return maxExponentLoop(x, n);
}
#endif

void adamKernel(float* p, const float* g, float* m, float* v, int64_t n, float beta1, float beta2, float eps,
                float weightDecay, float stepSize, float sqrtBc2) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (cpu::avx2Fma()) return adamAvx2(p, g, m, v, n, beta1, beta2, eps, weightDecay, stepSize, sqrtBc2);
#endif
  adamBaseline(p, g, m, v, n, beta1, beta2, eps, weightDecay, stepSize, sqrtBc2);
}

uint32_t maxExponent(const float* x, int64_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (cpu::avx2Fma()) return maxExponentAvx2(x, n);
#endif
  return maxExponentBaseline(x, n);
}

// Subnormal fp32 operands and results as zero (MXCSR DAZ and FTZ) while it lives; the previous
// mode comes back after. Adam's moments of parameters whose gradients are tiny or absent drift
// into the subnormal range (v ~ g² below 1.2e-38), where every vector operation on them takes a
// microcode assist: on the Choi MLP with l1r the update took 0.11 ms instead of 0.06. Flushing
// changes no update measurably: a subnormal √v is < 1.1e-19, against ε = 1e-8 in the same sum,
// and a subnormal m moves p by < lr·1.2e-38/ε.
class DenormalsAreZero {
 public:
#if defined(__x86_64__) && defined(__GNUC__)
  DenormalsAreZero() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }  // FTZ | DAZ
  ~DenormalsAreZero() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#else
  DenormalsAreZero() {}  // other targets: the loop sees subnormals as they are
#endif
  DenormalsAreZero(const DenormalsAreZero&) = delete;
  DenormalsAreZero& operator=(const DenormalsAreZero&) = delete;
};

// Adam's state key of a parameter: its TensorImpl address, as a string in LibTorch 1.13
// (c10::guts::to_string of the pointer) and as the pointer itself in later versions.
template <typename Key>
Key stateKey(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream text;
    text << p.unsafeGetTensorImpl();
    return text.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

bool fusable(const torch::Tensor& t) {
  return t.defined() && t.is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous() && !t.is_sparse();
}

}  // namespace

bool gradientNormFinite(const std::vector<torch::Tensor>& tensors) {
  double limit = std::numeric_limits<double>::max();  // of the narrowest dtype present
  double bound = 0.0;                                  // ≥ Σ g² of the scanned fp32 tensors
  bool exact = false;                                  // some tensor needs the fp64 norm
  for (const torch::Tensor& t : tensors) {
    if (!t.defined()) continue;
    if (t.scalar_type() == torch::kFloat32) limit = std::min<double>(limit, std::numeric_limits<float>::max());
    if (!fusable(t)) {
      if (!torch::isfinite(t).all().item<bool>()) return false;
      exact = true;
      continue;
    }
    const uint32_t e = maxExponent(t.data_ptr<float>(), t.numel());
    if (e == 0xffu) return false;
    // Every |g| < 2^(e − 126) (biased exponent e, e = 0: subnormal or zero), so Σ g² < n·4^(e − 126).
    bound += static_cast<double>(t.numel()) * std::ldexp(1.0, 2 * (static_cast<int>(e) - 126));
  }
  if (!exact && bound <= limit) return true;
  double squares = 0.0;
  for (const torch::Tensor& t : tensors)
    if (t.defined()) squares += t.detach().to(torch::kDouble).square().sum().item<double>();
  return std::isfinite(squares) && squares <= limit;
}

torch::Tensor FusedAdam::step(LossClosure closure) {
  for (const auto& group : param_groups_)
    if (static_cast<const torch::optim::AdamOptions&>(group.options()).amsgrad()) return Adam::step(closure);
  torch::NoGradGuard noGrad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enableGrad(true);
    loss = closure();
  }
  const DenormalsAreZero flush;
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const torch::optim::AdamOptions&>(group.options());
    const double beta1 = std::get<0>(options.betas()), beta2 = std::get<1>(options.betas());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& grad = p.grad();
      TORCH_CHECK(!grad.is_sparse(), "Adam does not support sparse gradients");
      const auto key = stateKey<std::decay_t<decltype(state_)>::key_type>(p);
      auto found = state_.find(key);
      if (found == state_.end()) {  // as Adam: zero moments, step 0
        auto fresh = std::make_unique<torch::optim::AdamParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        found = state_.emplace(key, std::move(fresh)).first;
      }
      auto& state = static_cast<torch::optim::AdamParamState&>(*found->second);
      torch::Tensor& m = state.exp_avg();
      torch::Tensor& v = state.exp_avg_sq();
      state.step(state.step() + 1);
      const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(state.step()));
      const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(state.step()));
      const double stepSize = options.lr() / bc1;
      if (fusable(p) && fusable(grad) && fusable(m) && fusable(v) && grad.numel() == p.numel()) {
        adamKernel(p.data_ptr<float>(), grad.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), p.numel(),
                   static_cast<float>(beta1), static_cast<float>(beta2), static_cast<float>(options.eps()),
                   static_cast<float>(options.weight_decay()), static_cast<float>(stepSize),
                   static_cast<float>(std::sqrt(bc2)));
        continue;
      }
      // Adam's own ops (LibTorch 1.13 Adam::step) for anything else.
      torch::Tensor g = options.weight_decay() != 0 ? grad.add(p, options.weight_decay()) : grad;
      m.mul_(beta1).add_(g, 1 - beta1);
      v.mul_(beta2).addcmul_(g, g, 1 - beta2);
      const torch::Tensor denom = (v.sqrt() / std::sqrt(bc2)).add_(options.eps());
      p.addcdiv_(m, denom, -stepSize);
    }
  }
  return loss;
}

}  // namespace repshape
