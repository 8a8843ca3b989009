// rowsVariancePenalty, rowsCrossCovariancePenalty (FusedPenalties.h): vr / cw-vr and xcov straight
// from rows when every row is at hand, each one autograd node in fp64. vr: three passes over
// [n, M] (group sums, centred rows and Ω, and in the backward one scaled copy) instead of the
// packed sums' ~15 ATen ops over the same rows; xcov: one [C, n]·[n, M] product of centred rows
// instead of the fp64 cross sums' centring corrections, packing and split.
#include "detail/FusedPenalties.h"

#include <algorithm>
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

}  // namespace

Tensor rowsCrossCovariancePenalty(const Tensor& z, const Tensor& probs, double scale) {
  TORCH_CHECK(z.dim() == 2 && z.is_cpu() && probs.defined(), "penalties: xcov from rows needs CPU rows [n, M] and "
              "probabilities, got ", z.sizes());
  return RowsCrossCovarianceFn::apply(z, probs, scale);
}

Tensor rowsVariancePenalty(const Tensor& z, const Tensor& labels, int64_t classes, double scale) {
  TORCH_CHECK(z.dim() == 2 && z.is_cpu(), "penalties: rows variance needs CPU rows [n, M], got ", z.sizes());
  const Tensor l = classes > 1 ? labels.to(torch::kLong).contiguous() : torch::empty({0}, z.options().dtype(torch::kLong));
  return RowsVarianceFn::apply(z, l, classes, scale);
}

}  // namespace repshape::reg::detail
