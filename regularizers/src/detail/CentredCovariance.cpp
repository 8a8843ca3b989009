// centredCovariancePenalty (FusedPenalties.h): the covariance family straight from rows when every
// row is at hand. Per step: one fp32 GEMM (batched over classes) for the centred Grams, one fused
// pass over K·M² that forms C_k, Ω and D_k = dΩ/dC_k together, and in the backward one batched
// GEMM of the centred rows with D_k. The packed path (Statistics.cpp + fusedCovariancePenalty)
// instead moves fp64 uncentred Grams through ~10 passes (uncentre, pack, unpack, penalty, split
// backward, G + Gᵀ, casts); it stays the exact path when ranks must sum their Grams.
#include "detail/ClassBlocks.h"
#include "detail/FusedPenalties.h"

#include <repshape/regularizers/CpuKernels.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace repshape::reg::detail {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// C is formed from the upper triangle of G̃ and mirrored, so C and D are exactly symmetric (the
// GEMM's G̃_ij and G̃_ji may differ in the last bits) and the backward needs D, not D + Dᵀ.
// Each returns Ω of one group and writes D (in G̃'s dtype) into d [M·M].
// g [M·M] centred Gram, delta [M] = μ − s, invn = 1/max(n, 1), u the unbiased factor.
// The loops over a row's upper part are `omp simd` reductions (-fopenmp-simd: no OpenMP runtime):
// GCC keeps a floating-point sum scalar otherwise, as it may not reassociate it; each row is
// written contiguously and mirrored after. allGroups compiles them for baseline x86-64 and for
// AVX2+FMA (cpu::avx2Fma): perf, lsigma on the Choi MLP: the scalar loops were ≈ 1 % of the step.

// d[j·M + i] = d[i·M + j] for j > i.
template <typename T>
__attribute__((always_inline)) inline void mirrorUpper(T* d, int64_t M) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = i + 1; j < M; ++j) d[j * M + i] = d[i * M + j];
}

// cr: Ω = ½ Σ_{i≠j} C_ij² = Σ_{i<j} C_ij², D = C off the diagonal.
template <typename T>
__attribute__((always_inline)) inline double crGroup(const T* __restrict g, const double* __restrict delta,
                                                     double invn, int64_t M, T* __restrict d) {
  double total = 0.0;
  for (int64_t i = 0; i < M; ++i) {
    const double di = delta[i];
    const T* __restrict gi = g + i * M;
    T* __restrict dRow = d + i * M;
    double row = 0.0;
    dRow[i] = T(0);
#pragma omp simd reduction(+ : row)
    for (int64_t j = i + 1; j < M; ++j) {
      const double c = static_cast<double>(gi[j]) * invn - di * delta[j];
      row += c * c;
      dRow[j] = static_cast<T>(c);
    }
    total += row;
  }
  mirrorUpper(d, M);
  return total;
}

// lsigma: Ω = Σ_ij |u·C_ij|, D = u·sign(C) (0 at 0, as torch.abs).
template <typename T>
__attribute__((always_inline)) inline double lsigmaGroup(const T* __restrict g, const double* __restrict delta,
                                                         double invn, double u, int64_t M, T* __restrict d) {
  double total = 0.0;
  for (int64_t i = 0; i < M; ++i) {
    const double di = delta[i];
    const T* __restrict gi = g + i * M;
    T* __restrict dRow = d + i * M;
    const double cii = (static_cast<double>(gi[i]) * invn - di * di) * u;
    dRow[i] = static_cast<T>((static_cast<double>(cii > 0.0) - static_cast<double>(cii < 0.0)) * u);
    double row = 0.0;
#pragma omp simd reduction(+ : row)
    for (int64_t j = i + 1; j < M; ++j) {
      const double c = (static_cast<double>(gi[j]) * invn - di * delta[j]) * u;
      row += std::abs(c);
      dRow[j] = static_cast<T>((static_cast<double>(c > 0.0) - static_cast<double>(c < 0.0)) * u);
    }
    total += std::abs(cii) + 2.0 * row;
  }
  mirrorUpper(d, M);
  return total;
}

// corr (Simon §3.1): R_ij = C_ij/(sd_i sd_j), sd_i = sqrt(C_ii + ε), C = u·(G̃/n − δδᵀ) unbiased;
// Ω = Σ_ij R_ij², D = u·[2 R_ij/(sd_i sd_j) − δ_ij·2 Σ_l R_il²/sd_i²] (C symmetric: row and column
// sums of R² agree; the formula of covarianceGrad). One pass over the upper triangle, no division
// per element; invSd [M] and rowSq [M] are scratch.
template <typename T>
__attribute__((always_inline)) inline double corrGroup(const T* __restrict g, const double* __restrict delta,
                                                       double invn, double u, int64_t M, T* __restrict d,
                                                       double* __restrict invSd, double* __restrict rowSq) {
  for (int64_t i = 0; i < M; ++i) {
    const double cii = (static_cast<double>(g[i * M + i]) * invn - delta[i] * delta[i]) * u;
    invSd[i] = 1.0 / std::sqrt(cii + kCorrEpsilon);
    rowSq[i] = 0.0;
  }
  double total = 0.0;
  for (int64_t i = 0; i < M; ++i) {
    const double di = delta[i], si = invSd[i];
    const T* __restrict gi = g + i * M;
    T* __restrict dRow = d + i * M;
    const double qii = si * si;
    const double rii = (static_cast<double>(gi[i]) * invn - di * di) * u * qii;
    dRow[i] = static_cast<T>(2.0 * u * rii * qii);
    double row = 0.0;  // Σ_{j>i} R_ij²
#pragma omp simd reduction(+ : row)
    for (int64_t j = i + 1; j < M; ++j) {
      const double q = si * invSd[j];  // 1/(sd_i sd_j)
      const double r = (static_cast<double>(gi[j]) * invn - di * delta[j]) * u * q;
      const double r2 = r * r;
      row += r2;
      rowSq[j] += r2;
      dRow[j] = static_cast<T>(2.0 * u * r * q);
    }
    total += rii * rii + 2.0 * row;
    rowSq[i] += rii * rii + row;
  }
  mirrorUpper(d, M);
  for (int64_t i = 0; i < M; ++i)
    d[i * M + i] = static_cast<T>(static_cast<double>(d[i * M + i]) - u * 2.0 * rowSq[i] * invSd[i] * invSd[i]);
  return total;
}

// Σ_k Ω_k over grams [K, M, M] (contiguous), writing D into dC [K, M, M].
template <typename T>
__attribute__((always_inline)) inline double allGroupsLoop(FusedCovKind kind, int64_t K, int64_t M, const T* g,
                                                           const double* dl, const double* nk, T* d) {
  std::vector<double> invSd, rowSq;  // corr's scratch [M]
  if (kind == FusedCovKind::kCorr) invSd.resize(M), rowSq.resize(M);
  double total = 0.0;
  for (int64_t k = 0; k < K; ++k) {
    const double invn = 1.0 / std::max(nk[k], 1.0);
    const double u = kind == FusedCovKind::kCr ? 1.0 : nk[k] / std::max(nk[k] - 1.0, 1.0);
    const T* gk = g + k * M * M;
    T* dk = d + k * M * M;
    switch (kind) {
      case FusedCovKind::kCr: total += crGroup(gk, dl + k * M, invn, M, dk); break;
      case FusedCovKind::kLsigma: total += lsigmaGroup(gk, dl + k * M, invn, u, M, dk); break;
      case FusedCovKind::kCorr: total += corrGroup(gk, dl + k * M, invn, u, M, dk, invSd.data(), rowSq.data()); break;
    }
  }
  return total;
}
template <typename T>
__attribute__((optimize("O3"))) double allGroupsBaseline(FusedCovKind kind, int64_t K, int64_t M, const T* g,
                                                         const double* dl, const double* nk, T* d) {
  return allGroupsLoop(kind, K, M, g, dl, nk, d);
}
#if defined(__x86_64__) && defined(__GNUC__)
template <typename T>
__attribute__((optimize("O3"), target("avx2,fma"))) double allGroupsAvx2(FusedCovKind kind, int64_t K, int64_t M,
                                                                         const T* g, const double* dl,
                                                                         const double* nk, T* d) {
  return allGroupsLoop(kind, K, M, g, dl, nk, d);
}
#endif

// Σ_k Ω_k over K contiguous [M, M] Grams g (δ_k = dl + k·M, n_k = nk[k]), writing D into d; the
// AVX2+FMA or the baseline compile of the loops.
template <typename T>
double allGroups(FusedCovKind kind, int64_t K, int64_t M, const T* g, const double* dl, const double* nk, T* d) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (cpu::avx2Fma()) return allGroupsAvx2(kind, K, M, g, dl, nk, d);
#endif
  return allGroupsBaseline(kind, K, M, g, dl, nk, d);
}
template <typename T>
double allGroups(FusedCovKind kind, const Tensor& grams, const Tensor& delta, const Tensor& counts, Tensor& dC) {
  return allGroups(kind, grams.size(0), grams.size(1), grams.data_ptr<T>(), delta.data_ptr<double>(),
                   counts.data_ptr<double>(), dC.data_ptr<T>());
}

// δ·D [M] in T (δ rounded to T first, as the general path's delta.mm(D)): rt += δ_i·D_i, rows.
template <typename T>
__attribute__((optimize("O3"))) void deltaTimesD(const double* delta, const T* __restrict d, int64_t M,
                                                 T* __restrict rt) {
  for (int64_t i = 0; i < M; ++i) {
    const T di = static_cast<T>(delta[i]);
    if (di == T(0)) continue;
    for (int64_t j = 0; j < M; ++j) rt[j] += di * d[i * M + j];
  }
}

// One group (cr, lsigma, corr) on contiguous CPU fp32/fp64 rows: the centring as raw loops and
// the backward as one addmm, so a step costs the two M×M×n GEMMs and three passes over the rows
// instead of ~15 dispatched ATen ops (issue 12, target 1: lsigma/cr/corr ≈ 0.12 ms per step on
// the Choi MLP, of which the GEMMs are ≈ 35 µs). Ω and D through allGroups, as CentredCovarianceFn.
template <typename T>
__attribute__((always_inline)) inline void columnSumsLoop(const T* __restrict z, int64_t n, int64_t M,
                                                          double* __restrict sums) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < M; ++c) sums[c] += static_cast<double>(z[r * M + c]);
}
template <typename T>
__attribute__((always_inline)) inline void centreLoop(const T* __restrict z, const T* __restrict shift, int64_t n,
                                                      int64_t M, T* __restrict out) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < M; ++c) out[r * M + c] = z[r * M + c] - shift[c];
}
template <typename T>
__attribute__((optimize("O3"))) void columnSums(const T* z, int64_t n, int64_t M, double* sums) {
  columnSumsLoop(z, n, M, sums);
}
template <typename T>
__attribute__((optimize("O3"))) void centre(const T* z, const T* shift, int64_t n, int64_t M, T* out) {
  centreLoop(z, shift, n, M, out);
}

class SingleGroupFn : public torch::autograd::Function<SingleGroupFn> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& zIn, int64_t kind, double scale) {
    const Tensor z = zIn.contiguous();
    return z.scalar_type() == torch::kFloat64 ? run<double>(ctx, z, kind, scale) : run<float>(ctx, z, kind, scale);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor centred = ctx->saved_data["centred"].toTensor();  // x̃ = z − s
    const Tensor dC = ctx->saved_data["dC"].toTensor();            // D [M, M], symmetric
    const Tensor rowTerm = ctx->saved_data["rowTerm"].toTensor();  // δ·D [1, M]
    const double f = 2.0 * ctx->saved_data["scale"].toDouble() * grads[0].item<double>() /
                     std::max(static_cast<double>(centred.size(0)), 1.0);
    // dΩ/dz = 2 (x̃ D − 1 (δD)) / n in one product.
    return {at::addmm(rowTerm, centred, dC, /*beta=*/-f, /*alpha=*/f), Tensor(), Tensor()};
  }

 private:
  template <typename T>
  static Tensor run(AutogradContext* ctx, const Tensor& z, int64_t kind, double scale) {
    const int64_t n = z.size(0), M = z.size(1);
    std::vector<double> sums(static_cast<std::size_t>(M), 0.0);
    columnSums(z.data_ptr<T>(), n, M, sums.data());
    const double nn = std::max(static_cast<double>(n), 1.0);
    std::vector<double> delta(static_cast<std::size_t>(M));
    Tensor shift = torch::empty({M}, z.options());
    T* sh = shift.data_ptr<T>();
    for (int64_t c = 0; c < M; ++c) {
      const double mean = sums[c] / nn;
      sh[c] = static_cast<T>(mean);
      delta[c] = mean - static_cast<double>(sh[c]);  // δ = μ − s, exact
    }
    Tensor centred = torch::empty({n, M}, z.options());
    centre(z.data_ptr<T>(), sh, n, M, centred.data_ptr<T>());
    const Tensor gram = at::mm(centred.t(), centred);  // G̃ [M, M], contiguous
    Tensor dC = torch::empty({M, M}, z.options());
    const double rows = static_cast<double>(n);
    const double total = allGroups(static_cast<FusedCovKind>(kind), 1, M, gram.data_ptr<T>(), delta.data(), &rows,
                                   dC.data_ptr<T>());
    Tensor rowTerm = torch::zeros({1, M}, z.options());  // δ·D
    deltaTimesD(delta.data(), dC.data_ptr<T>(), M, rowTerm.data_ptr<T>());
    ctx->saved_data["centred"] = centred;
    ctx->saved_data["dC"] = dC;
    ctx->saved_data["rowTerm"] = rowTerm;
    ctx->saved_data["scale"] = scale;
    return torch::scalar_tensor(total * scale, z.options().dtype(torch::kFloat64));
  }
};

// The kernel form's passes over rows, compiled for baseline x86-64 and for AVX2 without FMA: no
// product feeds a sum in one rounding, so both round every operation as the scalar code does and
// agree with it bit for bit (only the loops over the columns are vectorised, each column's sum
// keeps its row order). At -O2 GCC left all three scalar (callgrind, cw-cr on the Choi MLP:
// ≈ 0.3 M of the penalty's 1.35 M instructions per step).
// Class counts [K] and fp64 class sums [K, M] of rows z [n, M] (labels checked by the caller).
template <typename T>
__attribute__((always_inline)) inline void classSumsLoop(const T* __restrict z, const int64_t* __restrict label,
                                                         int64_t n, int64_t M, double* __restrict counts,
                                                         double* __restrict sums) {
  for (int64_t r = 0; r < n; ++r) {
    counts[label[r]] += 1.0;
    double* __restrict sk = sums + label[r] * M;
    for (int64_t i = 0; i < M; ++i) sk[i] += static_cast<double>(z[r * M + i]);
  }
}
// x [slot r] = z_r − μ_k (fp64) and d_k += (z_r − μ_k)², row by row in row order.
template <typename T>
__attribute__((always_inline)) inline void kernelRowsLoop(const T* __restrict z, const int64_t* __restrict label,
                                                          const int64_t* __restrict slot, const double* __restrict mean,
                                                          int64_t n, int64_t M, double* __restrict x,
                                                          double* __restrict d) {
  for (int64_t r = 0; r < n; ++r) {
    const double* __restrict mk = mean + label[r] * M;
    double* __restrict row = x + slot[r] * M;
    double* __restrict dk = d + label[r] * M;
    for (int64_t i = 0; i < M; ++i) {
      const double v = static_cast<double>(z[r * M + i]) - mk[i];
      row[i] = v;
      dk[i] += v * v;
    }
  }
}
// dz_r = 2g/n_k² · (A_k X_k − X_k diag(d_k))[slot r], in the rows' dtype.
template <typename T>
__attribute__((always_inline)) inline void kernelGradLoop(const double* __restrict x, const double* __restrict ax,
                                                          const double* __restrict d, const int64_t* __restrict slot,
                                                          const double* __restrict nk, int64_t n, int64_t P, int64_t M,
                                                          double upstream, T* __restrict out) {
  for (int64_t r = 0; r < n; ++r) {
    const int64_t at = slot[r], k = at / P;
    const double nn = std::max(nk[k], 1.0), f = 2.0 * upstream / (nn * nn);
    const double *xr = x + at * M, *axr = ax + at * M, *dk = d + k * M;
    for (int64_t i = 0; i < M; ++i) out[r * M + i] = static_cast<T>(f * (axr[i] - xr[i] * dk[i]));
  }
}
template <typename T>
__attribute__((optimize("O3"))) void classSumsBaseline(const T* z, const int64_t* label, int64_t n, int64_t M,
                                                       double* counts, double* sums) {
  classSumsLoop(z, label, n, M, counts, sums);
}
template <typename T>
__attribute__((optimize("O3"))) void kernelRowsBaseline(const T* z, const int64_t* label, const int64_t* slot,
                                                        const double* mean, int64_t n, int64_t M, double* x,
                                                        double* d) {
  kernelRowsLoop(z, label, slot, mean, n, M, x, d);
}
template <typename T>
__attribute__((optimize("O3"))) void kernelGradBaseline(const double* x, const double* ax, const double* d,
                                                        const int64_t* slot, const double* nk, int64_t n, int64_t P,
                                                        int64_t M, double upstream, T* out) {
  kernelGradLoop(x, ax, d, slot, nk, n, P, M, upstream, out);
}
#if defined(__x86_64__) && defined(__GNUC__)
template <typename T>
__attribute__((optimize("O3"), target("avx2"))) void classSumsAvx2(const T* z, const int64_t* label, int64_t n,
                                                                   int64_t M, double* counts, double* sums) {
  classSumsLoop(z, label, n, M, counts, sums);
}
template <typename T>
__attribute__((optimize("O3"), target("avx2"))) void kernelRowsAvx2(const T* z, const int64_t* label,
                                                                    const int64_t* slot, const double* mean, int64_t n,
                                                                    int64_t M, double* x, double* d) {
  kernelRowsLoop(z, label, slot, mean, n, M, x, d);
}
template <typename T>
__attribute__((optimize("O3"), target("avx2"))) void kernelGradAvx2(const double* x, const double* ax, const double* d,
                                                                    const int64_t* slot, const double* nk, int64_t n,
                                                                    int64_t P, int64_t M, double upstream, T* out) {
  kernelGradLoop(x, ax, d, slot, nk, n, P, M, upstream, out);
}
#endif

// The AVX2 or the baseline compile of each pass (cpu::avx2Fma), as allGroups.
template <typename T>
void classSumsOf(const T* z, const int64_t* label, int64_t n, int64_t M, double* counts, double* sums) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (cpu::avx2Fma()) return classSumsAvx2(z, label, n, M, counts, sums);
#endif
  classSumsBaseline(z, label, n, M, counts, sums);
}
template <typename T>
void kernelRows(const T* z, const int64_t* label, const int64_t* slot, const double* mean, int64_t n, int64_t M,
                double* x, double* d) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (cpu::avx2Fma()) return kernelRowsAvx2(z, label, slot, mean, n, M, x, d);
#endif
  kernelRowsBaseline(z, label, slot, mean, n, M, x, d);
}
template <typename T>
void kernelGradRows(const double* x, const double* ax, const double* d, const int64_t* slot, const double* nk,
                    int64_t n, int64_t P, int64_t M, double upstream, T* out) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (cpu::avx2Fma()) return kernelGradAvx2(x, ax, d, slot, nk, n, P, M, upstream, out);
#endif
  kernelGradBaseline(x, ax, d, slot, nk, n, P, M, upstream, out);
}

class CentredCovarianceFn : public torch::autograd::Function<CentredCovarianceFn> {
  // cw-cr with classes smaller than the width (P < M, balanced): the n_k × n_k kernel form.
  // X_k = Z_k − 1μ_kᵀ in fp64 (exact centring), A_k = X_k X_kᵀ [P, P], d_k = Σ_rows X_k² [M]:
  //   ‖C_k‖_F² = ‖A_k‖_F²/n_k²,  Σ_i C_k,ii² = ‖d_k‖²/n_k²,  Ω_k = (‖A_k‖² − ‖d_k‖²)/(2 n_k²),
  //   dΩ_k/dX_k = 2 (A_k X_k − X_k diag(d_k))/n_k²  (its column sums vanish: 1ᵀX_k = 0, so it is
  //   also the gradient w.r.t. Z_k). Two bmm of K·P²·M instead of K·P·M² multiply-adds.
  // The padded blocks X [K, P, M] (row r of class k in slot k·P + its rank within the class) are
  // filled and read back by raw loops over the rows; the products are two fp64 bmm. (Through
  // ATen — argsort, slot arithmetic, index_copy_, the class means' index_select, unpad — the
  // bookkeeping cost as much as the products: perf, issue 12, cw-cr on the Choi MLP.)
  template <typename T>
  static Tensor kernelForward(AutogradContext* ctx, const Tensor& z, const Tensor& labels, const Tensor& sums,
                              const Tensor& counts, int64_t P, double scale) {
    const int64_t n = z.size(0), M = z.size(1), K = counts.numel();
    const T* zp = z.data_ptr<T>();
    const int64_t* lp = labels.data_ptr<int64_t>();
    const double* nk = counts.data_ptr<double>();
    const double* sp = sums.data_ptr<double>();
    const auto f64 = z.options().dtype(torch::kFloat64);
    std::vector<double> mean(static_cast<std::size_t>(K * M));
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < M; ++i) mean[k * M + i] = sp[k * M + i] / std::max(nk[k], 1.0);
    Tensor x = torch::empty({K, P, M}, f64), slots = torch::empty({n}, labels.options());
    double* xp = x.data_ptr<double>();
    int64_t* slot = slots.data_ptr<int64_t>();
    std::vector<int64_t> filled(static_cast<std::size_t>(K), 0);
    for (int64_t r = 0; r < n; ++r) slot[r] = lp[r] * P + filled[lp[r]]++;
    for (int64_t k = 0; k < K; ++k)  // only the padding rows need zeros: the others are written next
      std::fill(xp + (k * P + filled[k]) * M, xp + (k + 1) * P * M, 0.0);
    // d_k = Σ_rows of k X_k² [K, M], accumulated row by row in row order.
    Tensor d = torch::zeros({K, M}, f64);
    double* dp = d.data_ptr<double>();
    kernelRows(zp, lp, slot, mean.data(), n, M, xp, dp);
    const Tensor a = at::bmm(x, x.transpose(1, 2));  // [K, P, P], contiguous
    const double* ap = a.data_ptr<double>();
    double total = 0.0;
    for (int64_t k = 0; k < K; ++k) {
      const double* dk = dp + k * M;
      double sa = 0.0, sd = 0.0;
      for (int64_t i = 0; i < P * P; ++i) sa += ap[k * P * P + i] * ap[k * P * P + i];
      for (int64_t i = 0; i < M; ++i) sd += dk[i] * dk[i];
      const double nn = std::max(nk[k], 1.0);
      total += (sa - sd) / (2.0 * nn * nn);
    }
    ctx->saved_data["kernel"] = true;
    ctx->saved_data["x"] = x;
    ctx->saved_data["a"] = a;
    ctx->saved_data["d"] = d;
    ctx->saved_data["slots"] = slots;
    ctx->saved_data["counts"] = counts;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["dtype"] = static_cast<int64_t>(z.scalar_type());
    return torch::scalar_tensor(total * scale, f64);
  }

  // dΩ/dz_r = 2g/n_k² · (A_k X_k − X_k diag(d_k))[slot r], written in the rows' dtype.
  template <typename T>
  static Tensor kernelGrad(const Tensor& x, const Tensor& ax, const Tensor& d, const Tensor& slots,
                           const Tensor& counts, double upstream, c10::ScalarType dtype) {
    const int64_t n = slots.numel(), P = x.size(1), M = x.size(2);
    Tensor dz = torch::empty({n, M}, x.options().dtype(dtype));
    const double *xp = x.data_ptr<double>(), *axp = ax.data_ptr<double>(), *dp = d.data_ptr<double>();
    const double* nk = counts.data_ptr<double>();
    const int64_t* slot = slots.data_ptr<int64_t>();
    kernelGradRows(xp, axp, dp, slot, nk, n, P, M, upstream, dz.data_ptr<T>());
    return dz;
  }

  static variable_list kernelBackward(AutogradContext* ctx, const variable_list& grads) {
    const Tensor x = ctx->saved_data["x"].toTensor();
    const double upstream = ctx->saved_data["scale"].toDouble() * grads[0].item<double>();
    const Tensor ax = at::bmm(ctx->saved_data["a"].toTensor(), x);  // [K, P, M]
    const Tensor d = ctx->saved_data["d"].toTensor(), slots = ctx->saved_data["slots"].toTensor();
    const Tensor counts = ctx->saved_data["counts"].toTensor();
    const auto dtype = static_cast<c10::ScalarType>(ctx->saved_data["dtype"].toInt());
    Tensor dz = dtype == torch::kFloat64 ? kernelGrad<double>(x, ax, d, slots, counts, upstream, dtype)
                                         : kernelGrad<float>(x, ax, d, slots, counts, upstream, dtype);
    return {dz, Tensor(), Tensor(), Tensor(), Tensor()};
  }

  // Class counts [K] and fp64 class sums [K, M] of contiguous rows in one pass; labels checked.
  template <typename T>
  static void classSums(const Tensor& z, const Tensor& labels, Tensor& counts, Tensor& sums) {
    const int64_t n = z.size(0), M = z.size(1), K = counts.numel();
    const T* zp = z.data_ptr<T>();
    const int64_t* lp = labels.data_ptr<int64_t>();
    for (int64_t r = 0; r < n; ++r)
      TORCH_CHECK(lp[r] >= 0 && lp[r] < K, "penalties: label ", lp[r], " of row ", r, ", expected [0, ", K, ")");
    classSumsOf(zp, lp, n, M, counts.data_ptr<double>(), sums.data_ptr<double>());
  }

 public:
  static Tensor forward(AutogradContext* ctx, Tensor z, Tensor labels, int64_t kind, int64_t classes, double scale) {
    const int64_t n = z.size(0), M = z.size(1), K = classes;
    const auto gemmType = z.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
    const auto f64 = z.options().dtype(torch::kFloat64);
    Tensor counts, sums;  // [K] fp64, [K, M] fp64
    if (K == 1) {  // fp64 column sums without an fp64 copy of the rows
      counts = torch::full({1}, static_cast<double>(n), f64);
      sums = z.sum(0, /*keepdim=*/true, torch::kFloat64);
    } else {
      TORCH_CHECK(labels.dim() == 1 && labels.size(0) == n, "penalties: labels of shape ", labels.sizes(),
                  ", expected [", n, "]");
      counts = torch::zeros({K}, f64);
      sums = torch::zeros({K, M}, f64);
      if (z.scalar_type() == torch::kFloat64 || z.scalar_type() == torch::kFloat32) {
        z = z.contiguous();
        if (z.scalar_type() == torch::kFloat64) classSums<double>(z, labels, counts, sums);
        else classSums<float>(z, labels, counts, sums);
      } else {
        if (n > 0) {
          const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
          TORCH_CHECK(lo >= 0 && hi < K, "penalties: labels in [", lo, ", ", hi, "], expected [0, ", K, ")");
        }
        counts = torch::bincount(labels, {}, K).to(torch::kFloat64);
        sums.index_add_(0, labels, z.to(torch::kFloat64));
      }
    }
    const double* nk = counts.data_ptr<double>();
    const auto largest = static_cast<int64_t>(n > 0 ? *std::max_element(nk, nk + K) : 0.0);
    if (static_cast<FusedCovKind>(kind) == FusedCovKind::kCr && K > 1 && largest < M && K * largest <= 2 * n + K &&
        (z.scalar_type() == torch::kFloat64 || z.scalar_type() == torch::kFloat32))
      return z.scalar_type() == torch::kFloat64 ? kernelForward<double>(ctx, z, labels, sums, counts, largest, scale)
                                                : kernelForward<float>(ctx, z, labels, sums, counts, largest, scale);
    ctx->saved_data["kernel"] = false;
    // s_k: the class mean rounded to the GEMM dtype; δ_k = μ_k − s_k exactly in fp64 (0 for an
    // absent class), so C_k = G̃_k/n_k − δ_k δ_kᵀ keeps fp64 accuracy of the centring.
    const Tensor mean = K == 1 ? sums / std::max(static_cast<double>(n), 1.0) : sums / counts.clamp_min(1.0).unsqueeze(1);
    const Tensor shift = mean.to(gemmType);
    const Tensor delta = (mean - shift.to(torch::kFloat64)).contiguous();
    const Tensor zg = z.to(gemmType);
    const Tensor centred = K == 1 ? zg - shift : zg - shift.index_select(0, labels);  // [n, M]
    const ClassBlocks blocks(centred, labels, counts, K);
    const Tensor grams = blocks.grams().contiguous();  // [K, M, M]
    Tensor dC = torch::empty({K, M, M}, grams.options());
    const auto fk = static_cast<FusedCovKind>(kind);
    const double total = gemmType == torch::kFloat64 ? allGroups<double>(fk, grams, delta, counts, dC)
                                                     : allGroups<float>(fk, grams, delta, counts, dC);
    blocks.save(ctx, "");
    ctx->saved_data["dC"] = dC;
    ctx->saved_data["delta"] = delta.to(gemmType);
    ctx->saved_data["counts"] = counts;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["dtype"] = static_cast<int64_t>(z.scalar_type());
    ctx->save_for_backward({labels});
    return torch::scalar_tensor(total * scale, f64);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (ctx->saved_data["kernel"].toBool()) return kernelBackward(ctx, grads);
    const ClassBlocks blocks = ClassBlocks::load(ctx, "");
    const Tensor labels = ctx->get_saved_variables()[0];
    const Tensor dC = ctx->saved_data["dC"].toTensor();        // [K, M, M], symmetric
    const Tensor delta = ctx->saved_data["delta"].toTensor();  // [K, M]
    const Tensor counts = ctx->saved_data["counts"].toTensor();
    const int64_t K = dC.size(0);
    const double upstream = ctx->saved_data["scale"].toDouble() * grads[0].item<double>();
    // dΩ/dz_i = 2 D_k (z_i − μ_k)/n_k = 2 (x̃_i D_k − δ_k D_k)/n_k, x̃_i = z_i − s_k (D symmetric).
    Tensor dz = blocks.times(dC);  // [n, M]
    if (K == 1) {  // one group: scalars, no [K] tensor ops
      const double n = std::max(counts.data_ptr<double>()[0], 1.0);
      dz.sub_(delta.mm(dC[0])).mul_(2.0 * upstream / n);
    } else {
      const Tensor factor = (2.0 * upstream / counts.clamp_min(1.0)).to(dC.scalar_type());  // [K]
      const Tensor rowTerm = delta.unsqueeze(1).bmm(dC).squeeze(1);                        // [K, M]
      dz.sub_(rowTerm.index_select(0, labels)).mul_(factor.index_select(0, labels).unsqueeze(1));
    }
    return {dz.to(static_cast<c10::ScalarType>(ctx->saved_data["dtype"].toInt())), Tensor(), Tensor(), Tensor(),
            Tensor()};
  }
};

}  // namespace

Tensor centredCovariancePenalty(FusedCovKind kind, const Tensor& z, const Tensor& labels, int64_t classes,
                                double scale) {
  TORCH_CHECK(z.dim() == 2 && z.is_cpu(), "penalties: centred covariance needs CPU rows [n, M], got ", z.sizes());
  TORCH_CHECK(kind == FusedCovKind::kCr || classes == 1, "penalties: lsigma/corr over ", classes,
              " groups, expected 1");
  if (classes == 1 && (z.scalar_type() == torch::kFloat32 || z.scalar_type() == torch::kFloat64))
    return SingleGroupFn::apply(z, static_cast<int64_t>(kind), scale);
  const Tensor l =
      classes > 1 ? labels.to(torch::kLong).contiguous() : torch::empty({0}, z.options().dtype(torch::kLong));
  return CentredCovarianceFn::apply(z, l, static_cast<int64_t>(kind), classes, scale);
}

}  // namespace repshape::reg::detail
