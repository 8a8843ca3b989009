// rowsVariancePenalty, rowsCrossCovariancePenalty, rowsHolderRatioPenalty (FusedPenalties.h): vr /
// cw-vr, xcov and rr (Hölder) straight
// from rows when every row is at hand, each one autograd node in fp64. vr: three passes over
// [n, M] (group sums, centred rows and Ω, and in the backward one scaled copy) instead of the
// packed sums' ~15 ATen ops over the same rows; xcov: one [C, n]·[n, M] product of centred rows
// instead of the fp64 cross sums' centring corrections, packing and split.
#include "detail/FusedPenalties.h"

#include <algorithm>
#include <cmath>
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
// centred columns sum to zero).
class RowsCrossCovarianceFn : public torch::autograd::Function<RowsCrossCovarianceFn> {
 public:
  static Tensor forward(AutogradContext* ctx, Tensor z, Tensor probs, double scale) {
    const int64_t N = z.size(0);
    TORCH_CHECK(probs.dim() == 2 && probs.size(0) == N, "penalties: probabilities of shape ", probs.sizes(),
                ", expected [", N, ", C]");
    const double n = std::max(static_cast<double>(N), 1.0);
    Tensor zc = z.to(torch::kFloat64), pc = probs.to(torch::kFloat64);
    zc = N > 0 ? zc - zc.mean(0) : zc;
    pc = N > 0 ? pc - pc.mean(0) : pc;
    const Tensor x = pc.t().mm(zc).div_(n);  // [C, M]
    const double value = 0.5 * x.square().sum().item<double>();
    ctx->saved_data["zc"] = zc;
    ctx->saved_data["pc"] = pc;
    ctx->saved_data["x"] = x;
    ctx->saved_data["n"] = n;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["zType"] = static_cast<int64_t>(z.scalar_type());
    ctx->saved_data["pType"] = static_cast<int64_t>(probs.scalar_type());
    return torch::scalar_tensor(value * scale, zc.options());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const double s = ctx->saved_data["scale"].toDouble() * grads[0].item<double>() / ctx->saved_data["n"].toDouble();
    const Tensor gx = ctx->saved_data["x"].toTensor() * s;  // [C, M]
    const Tensor dz = ctx->saved_data["pc"].toTensor().mm(gx);
    const Tensor dp = ctx->saved_data["zc"].toTensor().mm(gx.t());
    return {dz.to(static_cast<c10::ScalarType>(ctx->saved_data["zType"].toInt())),
            dp.to(static_cast<c10::ScalarType>(ctx->saved_data["pType"].toInt())), Tensor()};
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
