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

class RowsVarianceFn : public torch::autograd::Function<RowsVarianceFn> {
 public:
  static Tensor forward(AutogradContext* ctx, Tensor z, Tensor labels, int64_t classes, double scale) {
    const Tensor zc = z.contiguous();
    const int64_t n = zc.size(0), M = zc.size(1), K = classes;
    const int64_t* label = nullptr;
    if (K > 1) {
      TORCH_CHECK(labels.dim() == 1 && labels.size(0) == n, "penalties: labels of shape ", labels.sizes(),
                  ", expected [", n, "]");
      label = labels.data_ptr<int64_t>();
      for (int64_t r = 0; r < n; ++r)
        TORCH_CHECK(label[r] >= 0 && label[r] < K, "penalties: label ", label[r], " of row ", r, ", expected [0, ", K,
                    ")");
    }
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

// rr (Hölder bound, Choi Eq. 9): Ω = scale · Σ z² / (A·B), A = max_i Σ_r |z_ri| (largest column
// |z|-sum), B = max_r Σ_i |z_ri| (largest row |z|-sum); 0 where A·B ≤ 1e-30 (as safeRatio). One
// fp64 pass each way. Backward, as the packed path's amax / max-row weights: ties share the max's
// gradient equally, |z|' = sign(z):
//   dΩ/dz_ri = scale · [2 z_ri/(AB) − sign(z_ri)·(Ω/A · [i ties A]/#A + Ω/B · [r ties B]/#B)].
template <typename T>
double absSums(const T* z, int64_t n, int64_t M, double* colAbs, double* rowAbs) {
  double sq = 0.0;
  for (int64_t i = 0; i < M; ++i) colAbs[i] = 0.0;
  for (int64_t r = 0; r < n; ++r) {
    const T* row = z + r * M;
    double abs = 0.0;
    for (int64_t i = 0; i < M; ++i) {
      const double v = static_cast<double>(row[i]);
      sq += v * v;
      abs += std::abs(v);
      colAbs[i] += std::abs(v);
    }
    rowAbs[r] = abs;
  }
  return sq;
}

// Equal shares of 1 over the entries equal to the maximum best of v [len]: w [len].
void tieWeights(const double* v, int64_t len, double best, double* w) {
  double ties = 0.0;
  for (int64_t i = 0; i < len; ++i) ties += v[i] == best ? 1.0 : 0.0;
  for (int64_t i = 0; i < len; ++i) w[i] = v[i] == best ? 1.0 / ties : 0.0;
}

template <typename T>
void holderGrad(const T* z, int64_t n, int64_t M, double twoOverDen, const double* colCoef, const double* rowCoef,
                double g, T* out) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < M; ++i) {
      const double v = static_cast<double>(z[r * M + i]);
      const double sign = static_cast<double>((v > 0.0) - (v < 0.0));
      out[r * M + i] = static_cast<T>(g * (twoOverDen * v - sign * (colCoef[i] + rowCoef[r])));
    }
}

class RowsHolderRatioFn : public torch::autograd::Function<RowsHolderRatioFn> {
 public:
  static Tensor forward(AutogradContext* ctx, Tensor z, double scale) {
    const Tensor zc = z.contiguous();
    const int64_t n = zc.size(0), M = zc.size(1);
    const auto f64 = zc.options().dtype(torch::kFloat64);
    Tensor colAbs = torch::empty({M}, f64), rowAbs = torch::empty({n}, f64);
    double* cp = colAbs.data_ptr<double>();
    double* rp = rowAbs.data_ptr<double>();
    double sq = 0.0;
    switch (zc.scalar_type()) {
      case torch::kFloat64: sq = absSums(zc.data_ptr<double>(), n, M, cp, rp); break;
      case torch::kFloat32: sq = absSums(zc.data_ptr<float>(), n, M, cp, rp); break;
      default: TORCH_CHECK(false, "penalties: rr from rows of dtype ", zc.scalar_type());
    }
    const double A = M > 0 ? *std::max_element(cp, cp + M) : 0.0, B = n > 0 ? *std::max_element(rp, rp + n) : 0.0;
    const double den = A * B;
    const double value = den > 1e-30 ? sq / den : 0.0;
    ctx->save_for_backward({zc, colAbs, rowAbs});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["value"] = value;
    ctx->saved_data["A"] = A;
    ctx->saved_data["B"] = B;
    return torch::scalar_tensor(value * scale, f64);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &zc = saved[0], &colAbs = saved[1], &rowAbs = saved[2];
    const int64_t n = zc.size(0), M = zc.size(1);
    const double A = ctx->saved_data["A"].toDouble(), B = ctx->saved_data["B"].toDouble();
    const double value = ctx->saved_data["value"].toDouble();
    if (!(A * B > 1e-30)) return {torch::zeros_like(zc), Tensor()};  // safeRatio: no gradient
    std::vector<double> colCoef(M), rowCoef(n);
    tieWeights(colAbs.data_ptr<double>(), M, A, colCoef.data());
    tieWeights(rowAbs.data_ptr<double>(), n, B, rowCoef.data());
    for (auto& c : colCoef) c *= value / A;
    for (auto& c : rowCoef) c *= value / B;
    const double g = ctx->saved_data["scale"].toDouble() * grads[0].item<double>();
    Tensor dz = torch::empty_like(zc);
    if (zc.scalar_type() == torch::kFloat64)
      holderGrad(zc.data_ptr<double>(), n, M, 2.0 / (A * B), colCoef.data(), rowCoef.data(), g, dz.data_ptr<double>());
    else
      holderGrad(zc.data_ptr<float>(), n, M, 2.0 / (A * B), colCoef.data(), rowCoef.data(), g, dz.data_ptr<float>());
    return {dz, Tensor()};
  }
};

}  // namespace

Tensor rowsCrossCovariancePenalty(const Tensor& z, const Tensor& probs, double scale) {
  TORCH_CHECK(z.dim() == 2 && z.is_cpu() && probs.defined(), "penalties: xcov from rows needs CPU rows [n, M] and "
              "probabilities, got ", z.sizes());
  return RowsCrossCovarianceFn::apply(z, probs, scale);
}

Tensor rowsHolderRatioPenalty(const Tensor& z, double scale) {
  TORCH_CHECK(z.dim() == 2 && z.is_cpu(), "penalties: rr from rows needs CPU rows [n, M], got ", z.sizes());
  return RowsHolderRatioFn::apply(z, scale);
}

Tensor rowsVariancePenalty(const Tensor& z, const Tensor& labels, int64_t classes, double scale) {
  TORCH_CHECK(z.dim() == 2 && z.is_cpu(), "penalties: rows variance needs CPU rows [n, M], got ", z.sizes());
  const Tensor l = classes > 1 ? labels.to(torch::kLong).contiguous() : torch::empty({0}, z.options().dtype(torch::kLong));
  return RowsVarianceFn::apply(z, l, classes, scale);
}

}  // namespace repshape::reg::detail
