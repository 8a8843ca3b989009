// rowsVariancePenalty, rowsCrossCovariancePenalty, rowsHolderRatioPenalty (FusedPenalties.h): vr /
// cw-vr, xcov and rr (Hölder) straight
// from rows when every row is at hand, each one autograd node in fp64. vr: three passes over
// [n, M] (group sums, centred rows and Ω, and in the backward one scaled copy) instead of the
// packed sums' ~15 ATen ops over the same rows; xcov: one [C, n]·[n, M] product of centred rows
// instead of the fp64 cross sums' centring corrections, packing and split.
#include "detail/FusedPenalties.h"

#include <repshape/regularizers/CpuKernels.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

namespace repshape::reg::detail {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// Ω = scale · Σ_k (1/n_k) Σ_{rows of k} ‖z − μ_k‖²  (biased variance summed over units, n_k ≥ 1).
template <typename T>
double centredSquares(const T* z, const int64_t* label, int64_t n, int64_t M, int64_t K, double* centred,
                      std::vector<double>& weight) {
  std::vector<double> sums(K * M, 0.0), counts(K, 0.0);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t k = label ? label[r] : 0;
    double* s = sums.data() + k * M;
    const T* row = z + r * M;
    for (int64_t i = 0; i < M; ++i) s[i] += static_cast<double>(row[i]);
    counts[k] += 1.0;
  }
  weight.assign(K, 0.0);
  for (int64_t k = 0; k < K; ++k) {
    weight[k] = 1.0 / std::max(counts[k], 1.0);
    for (int64_t i = 0; i < M; ++i) sums[k * M + i] *= weight[k];  // now the means
  }
  double total = 0.0;
  for (int64_t r = 0; r < n; ++r) {
    const int64_t k = label ? label[r] : 0;
    const double* mean = sums.data() + k * M;
    const T* row = z + r * M;
    double* c = centred + r * M;
    double sq = 0.0;
    for (int64_t i = 0; i < M; ++i) {
      c[i] = static_cast<double>(row[i]) - mean[i];
      sq += c[i] * c[i];
    }
    total += weight[k] * sq;
  }
  return total;
}

template <typename T>
void scaledRows(const double* centred, const int64_t* label, int64_t n, int64_t M, const std::vector<double>& weight,
                double factor, T* out) {
  for (int64_t r = 0; r < n; ++r) {
    const double f = factor * weight[label ? label[r] : 0];
    for (int64_t i = 0; i < M; ++i) out[r * M + i] = static_cast<T>(f * centred[r * M + i]);
  }
}

// The row → group map of K > 1 groups: labels [n] (int64, contiguous), each checked in [0, K);
// nullptr for one group.
const int64_t* groupLabels(const Tensor& labels, int64_t n, int64_t K) {
  if (K <= 1) return nullptr;
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == n, "penalties: labels of shape ", labels.sizes(), ", expected [",
              n, "]");
  const int64_t* label = labels.data_ptr<int64_t>();
  for (int64_t r = 0; r < n; ++r)
    TORCH_CHECK(label[r] >= 0 && label[r] < K, "penalties: label ", label[r], " of row ", r, ", expected [0, ", K, ")");
  return label;
}

class RowsVarianceFn : public torch::autograd::Function<RowsVarianceFn> {
 public:
  static Tensor forward(AutogradContext* ctx, Tensor z, Tensor labels, int64_t classes, double scale) {
    const Tensor zc = z.contiguous();
    const int64_t n = zc.size(0), M = zc.size(1), K = classes;
    const int64_t* label = groupLabels(labels, n, K);
    Tensor centred = torch::empty({n, M}, zc.options().dtype(torch::kFloat64));
    std::vector<double> weight;
    double total = 0.0;
    switch (zc.scalar_type()) {
      case torch::kFloat64:
        total = centredSquares(zc.data_ptr<double>(), label, n, M, K, centred.data_ptr<double>(), weight);
        break;
      case torch::kFloat32:
        total = centredSquares(zc.data_ptr<float>(), label, n, M, K, centred.data_ptr<double>(), weight);
        break;
      default: TORCH_CHECK(false, "penalties: rows variance of dtype ", zc.scalar_type());
    }
    ctx->saved_data["centred"] = centred;
    ctx->saved_data["weight"] = torch::tensor(weight, centred.options());
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["dtype"] = static_cast<int64_t>(zc.scalar_type());
    ctx->save_for_backward({labels});
    return torch::scalar_tensor(total * scale, centred.options());
  }

  // dΩ/dz_r = 2 · scale · (z_r − μ_k)/n_k (the mean's own dependence sums to zero over the group).
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor centred = ctx->saved_data["centred"].toTensor();
    const Tensor weightT = ctx->saved_data["weight"].toTensor();
    const std::vector<double> weight(weightT.data_ptr<double>(), weightT.data_ptr<double>() + weightT.numel());
    const Tensor labels = ctx->get_saved_variables()[0];
    const int64_t* label = weight.size() > 1 ? labels.data_ptr<int64_t>() : nullptr;
    const double factor = 2.0 * ctx->saved_data["scale"].toDouble() * grads[0].item<double>();
    const auto dtype = static_cast<c10::ScalarType>(ctx->saved_data["dtype"].toInt());
    const int64_t n = centred.size(0), M = centred.size(1);
    Tensor dz = torch::empty({n, M}, centred.options().dtype(dtype));
    if (dtype == torch::kFloat64)
      scaledRows(centred.data_ptr<double>(), label, n, M, weight, factor, dz.data_ptr<double>());
    else
      scaledRows(centred.data_ptr<double>(), label, n, M, weight, factor, dz.data_ptr<float>());
    return {dz, Tensor(), Tensor(), Tensor()};
  }
};

// xcov: X = (P − p̄)ᵀ(Z − z̄)/n [C, M], Ω = scale · ½‖X‖_F², n = max(N, 1).
// Backward: dZ = (P − p̄)·X·s/n, dP = (Z − z̄)·Xᵀ·s/n, s = scale·g (the means' own terms vanish:
// centred columns sum to zero). Raw fp64 loops over the rows as they are (fp32 or fp64), the
// gradients written in the rows' dtype: the ATen version (fp64 copies of Z and P, two means, two
// subtractions, three dgemm, two casts back) spent ~40 µs per step of the Choi MLP in its casts
// alone (perf), against ~3·N·C·M = 0.3 M multiply-adds of arithmetic.
// Column means of rows [N, W] in fp64 into mean [W] (per column in row order; vectorised across
// columns where compiled into crossBaseline/crossAvx2 at O3).
template <typename T>
__attribute__((always_inline)) inline void columnMeans(const T* __restrict rows, int64_t N, int64_t W,
                                                       double* __restrict mean) {
  std::fill(mean, mean + W, 0.0);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t i = 0; i < W; ++i) mean[i] += static_cast<double>(rows[r * W + i]);
  const double inv = 1.0 / std::max(static_cast<double>(N), 1.0);
  for (int64_t i = 0; i < W; ++i) mean[i] *= inv;
}

typedef double Double4 __attribute__((vector_size(32)));

// X[a0 … a0+B) [B, M] += Σ_r pc_ra ⊗ zc_r: B accumulators of four columns each stay in registers
// over all N rows (one load of zc and B broadcasts per row), instead of a load and a store of X_a
// per row and class. Each X_ai is still the sum over r in row order, so the result is the same.
template <int B>
__attribute__((always_inline)) inline void crossBlock(const double* __restrict zc, const double* __restrict pc,
                                                      int64_t N, int64_t M, int64_t C, int64_t a0,
                                                      double* __restrict x) {
  const int64_t M4 = M - M % 4;
  for (int64_t i = 0; i < M4; i += 4) {
    Double4 acc[B];
    for (int b = 0; b < B; ++b) std::memcpy(&acc[b], x + (a0 + b) * M + i, sizeof(Double4));
    for (int64_t r = 0; r < N; ++r) {
      Double4 zv;
      std::memcpy(&zv, zc + r * M + i, sizeof zv);
      for (int b = 0; b < B; ++b) acc[b] += pc[r * C + a0 + b] * zv;
    }
    for (int b = 0; b < B; ++b) std::memcpy(x + (a0 + b) * M + i, &acc[b], sizeof(Double4));
  }
  for (int64_t i = M4; i < M; ++i)
    for (int64_t r = 0; r < N; ++r)
      for (int b = 0; b < B; ++b) x[(a0 + b) * M + i] += pc[r * C + a0 + b] * zc[r * M + i];
}

// The means z̄ [M], p̄ [C], then X [C, M] = Σ_r (p_r − p̄) ⊗ (z_r − z̄) in fp64 (x zeroed by the
// caller); zc [N·M] and pc [N·C] scratch for the centred rows.
template <typename T, typename P>
__attribute__((always_inline)) inline void crossLoop(const T* __restrict z, const P* __restrict p,
                                                     double* __restrict zMean, double* __restrict pMean, int64_t N,
                                                     int64_t M, int64_t C, double* __restrict zc,
                                                     double* __restrict pc, double* __restrict x) {
  columnMeans(z, N, M, zMean);
  columnMeans(p, N, C, pMean);
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t i = 0; i < M; ++i) zc[r * M + i] = static_cast<double>(z[r * M + i]) - zMean[i];
    for (int64_t a = 0; a < C; ++a) pc[r * C + a] = static_cast<double>(p[r * C + a]) - pMean[a];
  }
  int64_t a0 = 0;
  for (; a0 + 8 <= C; a0 += 8) crossBlock<8>(zc, pc, N, M, C, a0, x);
  if (a0 + 4 <= C) crossBlock<4>(zc, pc, N, M, C, a0, x), a0 += 4;
  if (a0 + 2 <= C) crossBlock<2>(zc, pc, N, M, C, a0, x), a0 += 2;
  if (a0 < C) crossBlock<1>(zc, pc, N, M, C, a0, x);
}

// dz_r = f·Σ_a (p_ra − p̄_a) X_a,  dp_ra = f·(z_r − z̄)·X_a, in the rows' dtypes; zc [M] and
// pcRow [C] scratch. GCC keeps a floating-point dot product scalar (it may not reassociate the
// sum), so each dot runs on four explicit partial sums (GCC vector extension: SSE2 pairs in the
// baseline build, one AVX register in the AVX2 one; the same summation order in both), for up to
// eight classes at once so one load of zc serves them all; dz's four columns sum over the classes
// in a register. Every sum keeps its order (classes, then columns), whatever the blocking.
template <int B, typename P>
__attribute__((always_inline)) inline void crossDots(const double* __restrict zc, const double* __restrict x,
                                                     int64_t M, int64_t a0, double f, P* __restrict dpRow) {
  const int64_t M4 = M - M % 4;
  Double4 partial[B];
  for (int b = 0; b < B; ++b) partial[b] = Double4{0.0, 0.0, 0.0, 0.0};
  for (int64_t i = 0; i < M4; i += 4) {
    Double4 zv;
    std::memcpy(&zv, zc + i, sizeof zv);
    for (int b = 0; b < B; ++b) {
      Double4 xv;
      std::memcpy(&xv, x + (a0 + b) * M + i, sizeof xv);
      partial[b] += zv * xv;
    }
  }
  for (int b = 0; b < B; ++b) {
    double dot = (partial[b][0] + partial[b][1]) + (partial[b][2] + partial[b][3]);
    for (int64_t i = M4; i < M; ++i) dot += zc[i] * x[(a0 + b) * M + i];
    dpRow[a0 + b] = static_cast<P>(f * dot);
  }
}

template <typename T, typename P>
__attribute__((always_inline)) inline void crossGradLoop(const T* __restrict z, const P* __restrict p,
                                                         const double* __restrict zMean,
                                                         const double* __restrict pMean, const double* __restrict x,
                                                         int64_t N, int64_t M, int64_t C, double f,
                                                         double* __restrict zc, double* __restrict pcRow,
                                                         T* __restrict dz, P* __restrict dp) {
  const int64_t M4 = M - M % 4;
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t i = 0; i < M; ++i) zc[i] = static_cast<double>(z[r * M + i]) - zMean[i];
    for (int64_t a = 0; a < C; ++a) pcRow[a] = static_cast<double>(p[r * C + a]) - pMean[a];
    P* dpRow = dp + r * C;
    int64_t a0 = 0;
    for (; a0 + 8 <= C; a0 += 8) crossDots<8>(zc, x, M, a0, f, dpRow);
    if (a0 + 4 <= C) crossDots<4>(zc, x, M, a0, f, dpRow), a0 += 4;
    if (a0 + 2 <= C) crossDots<2>(zc, x, M, a0, f, dpRow), a0 += 2;
    if (a0 < C) crossDots<1>(zc, x, M, a0, f, dpRow);
    T* dzRow = dz + r * M;
    int64_t i0 = 0;
    for (; i0 + 16 <= M4; i0 += 16) {  // sixteen columns in four registers over the classes
      Double4 acc[4] = {};
      for (int64_t a = 0; a < C; ++a) {
        const double pa = pcRow[a];
        for (int q = 0; q < 4; ++q) {
          Double4 xv;
          std::memcpy(&xv, x + a * M + i0 + 4 * q, sizeof xv);
          acc[q] += pa * xv;
        }
      }
      for (int q = 0; q < 4; ++q)
        for (int j = 0; j < 4; ++j) dzRow[i0 + 4 * q + j] = static_cast<T>(f * acc[q][j]);
    }
    for (int64_t i = i0; i < M4; i += 4) {
      Double4 acc = {0.0, 0.0, 0.0, 0.0};
      for (int64_t a = 0; a < C; ++a) {
        Double4 xv;
        std::memcpy(&xv, x + a * M + i, sizeof xv);
        acc += pcRow[a] * xv;
      }
      for (int j = 0; j < 4; ++j) dzRow[i + j] = static_cast<T>(f * acc[j]);
    }
    for (int64_t i = M4; i < M; ++i) {
      double acc = 0.0;
      for (int64_t a = 0; a < C; ++a) acc += pcRow[a] * x[a * M + i];
      dzRow[i] = static_cast<T>(f * acc);
    }
  }
}

template <typename T, typename P>
__attribute__((optimize("O3"))) void crossBaseline(const T* z, const P* p, double* zMean, double* pMean, int64_t N,
                                                   int64_t M, int64_t C, double* zc, double* pc, double* x) {
  crossLoop(z, p, zMean, pMean, N, M, C, zc, pc, x);
}
template <typename T, typename P>
__attribute__((optimize("O3"))) void crossGradBaseline(const T* z, const P* p, const double* zMean,
                                                       const double* pMean, const double* x, int64_t N, int64_t M,
                                                       int64_t C, double f, double* zc, double* pcRow, T* dz, P* dp) {
  crossGradLoop(z, p, zMean, pMean, x, N, M, C, f, zc, pcRow, dz, dp);
}
#if defined(__x86_64__) && defined(__GNUC__)
template <typename T, typename P>
__attribute__((optimize("O3"), target("avx2,fma"))) void crossAvx2(const T* z, const P* p, double* zMean,
                                                                  double* pMean, int64_t N, int64_t M, int64_t C,
                                                                  double* zc, double* pc, double* x) {
  crossLoop(z, p, zMean, pMean, N, M, C, zc, pc, x);
}
template <typename T, typename P>
__attribute__((optimize("O3"), target("avx2,fma"))) void crossGradAvx2(const T* z, const P* p, const double* zMean,
                                                                      const double* pMean, const double* x,
                                                                      int64_t N, int64_t M, int64_t C, double f,
                                                                      double* zc, double* pcRow, T* dz, P* dp) {
  crossGradLoop(z, p, zMean, pMean, x, N, M, C, f, zc, pcRow, dz, dp);
}
#endif

class RowsCrossCovarianceFn : public torch::autograd::Function<RowsCrossCovarianceFn> {
 public:
  static Tensor forward(AutogradContext* ctx, Tensor z, Tensor probs, double scale) {
    const int64_t N = z.size(0);
    TORCH_CHECK(probs.dim() == 2 && probs.size(0) == N, "penalties: probabilities of shape ", probs.sizes(),
                ", expected [", N, ", C]");
    const Tensor zc = z.contiguous(), pc = probs.contiguous();
    const int64_t M = zc.size(1), C = pc.size(1);
    const double n = std::max(static_cast<double>(N), 1.0);
    const auto f64 = zc.options().dtype(torch::kFloat64);
    Tensor means = torch::empty({M + C}, f64), x = torch::zeros({C, M}, f64);  // [z̄, p̄], X
    double* zMean = means.data_ptr<double>();
    double* pMean = zMean + M;
    const std::unique_ptr<double[]> scratch(new double[static_cast<std::size_t>(N * (M + C))]);  // centred z [N, M], p [N, C]
    double* zs = scratch.get();
    double* ps = zs + N * M;
    dispatch(zc, pc, [&](auto* zp, auto* pp) {
#if defined(__x86_64__) && defined(__GNUC__)
      if (cpu::avx2Fma()) return crossAvx2(zp, pp, zMean, pMean, N, M, C, zs, ps, x.data_ptr<double>());
#endif
      crossBaseline(zp, pp, zMean, pMean, N, M, C, zs, ps, x.data_ptr<double>());
    });
    double* xp = x.data_ptr<double>();
    double squares = 0.0;
    for (int64_t i = 0; i < C * M; ++i) {
      xp[i] /= n;
      squares += xp[i] * xp[i];
    }
    ctx->save_for_backward({zc, pc});
    ctx->saved_data["means"] = means;
    ctx->saved_data["x"] = x;
    ctx->saved_data["n"] = n;
    ctx->saved_data["scale"] = scale;
    return torch::scalar_tensor(0.5 * squares * scale, f64);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &zc = saved[0], &pc = saved[1];
    const int64_t N = zc.size(0), M = zc.size(1), C = pc.size(1);
    const double f = ctx->saved_data["scale"].toDouble() * grads[0].item<double>() / ctx->saved_data["n"].toDouble();
    const Tensor means = ctx->saved_data["means"].toTensor(), x = ctx->saved_data["x"].toTensor();
    const double* zMean = means.data_ptr<double>();
    const double* pMean = zMean + M;
    Tensor dz = torch::empty_like(zc), dp = torch::empty_like(pc);
    std::vector<double> scratch(static_cast<std::size_t>(M + C));  // centred z_r [M], p_r [C]
    dispatch(zc, pc, [&](auto* zp, auto* pp) {
      using T = std::remove_const_t<std::remove_pointer_t<decltype(zp)>>;
      using P = std::remove_const_t<std::remove_pointer_t<decltype(pp)>>;
#if defined(__x86_64__) && defined(__GNUC__)
      if (cpu::avx2Fma())
        return crossGradAvx2(zp, pp, zMean, pMean, x.data_ptr<double>(), N, M, C, f, scratch.data(),
                             scratch.data() + M, dz.data_ptr<T>(), dp.data_ptr<P>());
#endif
      crossGradBaseline(zp, pp, zMean, pMean, x.data_ptr<double>(), N, M, C, f, scratch.data(), scratch.data() + M,
                        dz.data_ptr<T>(), dp.data_ptr<P>());
    });
    return {dz, dp, Tensor()};
  }

 private:
  // fn(const T* z, const P* p) for the fp32/fp64 combinations of the rows and the probabilities.
  template <typename Fn>
  static void dispatch(const Tensor& z, const Tensor& p, Fn&& fn) {
    const auto zt = z.scalar_type(), pt = p.scalar_type();
    TORCH_CHECK((zt == torch::kFloat32 || zt == torch::kFloat64) && (pt == torch::kFloat32 || pt == torch::kFloat64),
                "penalties: xcov from rows of dtype ", zt, " and probabilities of dtype ", pt);
    if (zt == torch::kFloat32) {
      if (pt == torch::kFloat32) fn(z.data_ptr<float>(), p.data_ptr<float>());
      else fn(z.data_ptr<float>(), p.data_ptr<double>());
    } else {
      if (pt == torch::kFloat32) fn(z.data_ptr<double>(), p.data_ptr<float>());
      else fn(z.data_ptr<double>(), p.data_ptr<double>());
    }
  }
};

// rr (Hölder bound, Choi Eq. 9) per group k (one group for rr; the classes for cw-rr):
// Ω = scale · Σ_k Σ_{r∈k} z_r² / (A_k·B_k), A_k = max_i Σ_{r∈k} |z_ri| (largest column |z|-sum of
// the group), B_k = max_{r∈k} Σ_i |z_ri| (largest row |z|-sum); a group with A_k·B_k ≤ 1e-30
// (absent, all zero) adds 0 and no gradient (as safeRatio). One fp64 pass each way. Backward, as
// the packed path's amax / max-row weights: ties share the max's gradient equally, |z|' = sign(z):
//   dΩ/dz_ri = scale · [2 z_ri/(A_k B_k) − sign(z_ri)·(Ω_k/A_k · [i ties A_k]/#A_k + Ω_k/B_k · [r ties B_k]/#B_k)].
// label == nullptr: one group.
template <typename T>
void absSums(const T* z, const int64_t* label, int64_t n, int64_t M, double* sq, double* colAbs, double* rowAbs) {
  for (int64_t r = 0; r < n; ++r) {
    const T* row = z + r * M;
    const int64_t k = label ? label[r] : 0;
    double* col = colAbs + k * M;
    double abs = 0.0, squares = 0.0;
    for (int64_t i = 0; i < M; ++i) {
      const double v = static_cast<double>(row[i]);
      squares += v * v;
      abs += std::abs(v);
      col[i] += std::abs(v);
    }
    sq[k] += squares;
    rowAbs[r] = abs;
  }
}

template <typename T>
void holderGrad(const T* z, const int64_t* label, int64_t n, int64_t M, const std::vector<double>& twoOverDen,
                const double* colCoef, const double* rowCoef, double g, T* out) {
  for (int64_t r = 0; r < n; ++r) {
    const int64_t k = label ? label[r] : 0;
    const double* col = colCoef + k * M;
    for (int64_t i = 0; i < M; ++i) {
      const double v = static_cast<double>(z[r * M + i]);
      const double sign = static_cast<double>((v > 0.0) - (v < 0.0));
      out[r * M + i] = static_cast<T>(g * (twoOverDen[k] * v - sign * (col[i] + rowCoef[r])));
    }
  }
}

class RowsHolderRatioFn : public torch::autograd::Function<RowsHolderRatioFn> {
 public:
  static Tensor forward(AutogradContext* ctx, Tensor z, Tensor labels, int64_t classes, double scale) {
    const Tensor zc = z.contiguous();
    const int64_t n = zc.size(0), M = zc.size(1), K = classes;
    const int64_t* label = groupLabels(labels, n, K);
    const auto f64 = zc.options().dtype(torch::kFloat64);
    Tensor colAbs = torch::zeros({K, M}, f64), rowAbs = torch::empty({n}, f64);
    std::vector<double> sq(K, 0.0);
    double* cp = colAbs.data_ptr<double>();
    double* rp = rowAbs.data_ptr<double>();
    switch (zc.scalar_type()) {
      case torch::kFloat64: absSums(zc.data_ptr<double>(), label, n, M, sq.data(), cp, rp); break;
      case torch::kFloat32: absSums(zc.data_ptr<float>(), label, n, M, sq.data(), cp, rp); break;
      default: TORCH_CHECK(false, "penalties: rr from rows of dtype ", zc.scalar_type());
    }
    // A_k, B_k (0 for a group without rows) and Ω_k.
    std::vector<double> a(K, 0.0), b(K, 0.0), value(K, 0.0);
    for (int64_t k = 0; k < K; ++k)
      if (M > 0) a[k] = *std::max_element(cp + k * M, cp + (k + 1) * M);
    for (int64_t r = 0; r < n; ++r) {
      const int64_t k = label ? label[r] : 0;
      b[k] = std::max(b[k], rp[r]);
    }
    double total = 0.0;
    for (int64_t k = 0; k < K; ++k) {
      value[k] = a[k] * b[k] > 1e-30 ? sq[k] / (a[k] * b[k]) : 0.0;
      total += value[k];
    }
    std::vector<double> abv(a);  // [3, K]: A_k, B_k, Ω_k
    abv.insert(abv.end(), b.begin(), b.end());
    abv.insert(abv.end(), value.begin(), value.end());
    ctx->save_for_backward({zc, colAbs, rowAbs, labels});
    ctx->saved_data["abv"] = torch::tensor(abv, f64);
    ctx->saved_data["scale"] = scale;
    return torch::scalar_tensor(total * scale, f64);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &zc = saved[0], &colAbs = saved[1], &rowAbs = saved[2], &labels = saved[3];
    const int64_t n = zc.size(0), M = zc.size(1), K = colAbs.size(0);
    const int64_t* label = K > 1 ? labels.data_ptr<int64_t>() : nullptr;
    const double* abv = ctx->saved_data["abv"].toTensor().data_ptr<double>();
    const double *a = abv, *b = abv + K, *value = abv + 2 * K;
    const double* cp = colAbs.data_ptr<double>();
    const double* rp = rowAbs.data_ptr<double>();
    // Per group: 2/(A_k B_k), the tied columns' and rows' shares of Ω_k/A_k and Ω_k/B_k; a group
    // with A_k B_k ≤ 1e-30 keeps zero coefficients (safeRatio: no gradient).
    std::vector<double> twoOverDen(K, 0.0), colCoef(K * M, 0.0), rowCoef(n, 0.0), rowTies(K, 0.0);
    for (int64_t r = 0; r < n; ++r) {
      const int64_t k = label ? label[r] : 0;
      rowTies[k] += rp[r] == b[k] ? 1.0 : 0.0;
    }
    for (int64_t k = 0; k < K; ++k) {
      if (!(a[k] * b[k] > 1e-30)) continue;
      twoOverDen[k] = 2.0 / (a[k] * b[k]);
      double colTies = 0.0;
      for (int64_t i = 0; i < M; ++i) colTies += cp[k * M + i] == a[k] ? 1.0 : 0.0;
      for (int64_t i = 0; i < M; ++i)
        colCoef[k * M + i] = cp[k * M + i] == a[k] ? value[k] / a[k] / colTies : 0.0;
    }
    for (int64_t r = 0; r < n; ++r) {
      const int64_t k = label ? label[r] : 0;
      if (a[k] * b[k] > 1e-30 && rp[r] == b[k]) rowCoef[r] = value[k] / b[k] / rowTies[k];
    }
    const double g = ctx->saved_data["scale"].toDouble() * grads[0].item<double>();
    Tensor dz = torch::empty_like(zc);
    if (zc.scalar_type() == torch::kFloat64)
      holderGrad(zc.data_ptr<double>(), label, n, M, twoOverDen, colCoef.data(), rowCoef.data(), g,
                 dz.data_ptr<double>());
    else
      holderGrad(zc.data_ptr<float>(), label, n, M, twoOverDen, colCoef.data(), rowCoef.data(), g,
                 dz.data_ptr<float>());
    return {dz, Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

Tensor rowsCrossCovariancePenalty(const Tensor& z, const Tensor& probs, double scale) {
  TORCH_CHECK(z.dim() == 2 && z.is_cpu() && probs.defined(), "penalties: xcov from rows needs CPU rows [n, M] and "
              "probabilities, got ", z.sizes());
  return RowsCrossCovarianceFn::apply(z, probs, scale);
}

Tensor rowsHolderRatioPenalty(const Tensor& z, const Tensor& labels, int64_t classes, double scale) {
  TORCH_CHECK(z.dim() == 2 && z.is_cpu(), "penalties: rr from rows needs CPU rows [n, M], got ", z.sizes());
  const Tensor l = classes > 1 ? labels.to(torch::kLong).contiguous() : torch::empty({0}, z.options().dtype(torch::kLong));
  return RowsHolderRatioFn::apply(z, l, classes, scale);
}

Tensor rowsVariancePenalty(const Tensor& z, const Tensor& labels, int64_t classes, double scale) {
  TORCH_CHECK(z.dim() == 2 && z.is_cpu(), "penalties: rows variance needs CPU rows [n, M], got ", z.sizes());
  const Tensor l = classes > 1 ? labels.to(torch::kLong).contiguous() : torch::empty({0}, z.options().dtype(torch::kLong));
  return RowsVarianceFn::apply(z, l, classes, scale);
}

}  // namespace repshape::reg::detail
