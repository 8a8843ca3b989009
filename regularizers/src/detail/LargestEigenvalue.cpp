// largestEigenvalue (FusedPenalties.h): λ_max of each symmetric M×M matrix by power iteration,
// with a full eigendecomposition only where the iteration does not converge.
//
// rr exact asks every step for the top eigenvalue of an M×M Gram; a full LAPACK eigh is ~6 M
// instructions at M = 100 (callgrind), as much as half the Choi MLP step. The uncentred Gram of
// activations usually has a well separated top eigenvalue (the mean direction), where ~10-40
// matrix-vector products reach fp64 accuracy.
//
// Exactness: the iteration stops only when the residual ‖Gv − λv‖ ≤ 1e-12·|λ|; the Rayleigh
// quotient's error is then ≤ ‖r‖²/gap, and a (near-)degenerate top pair that keeps the residual up
// falls back to eigh after kMaxIterations. The start vector is 1/√M plus a fixed small pattern in
// every direction, so it is never orthogonal to the top eigenvector (an exact eigenvector of a
// lower eigenvalue would otherwise stop the iteration at once). Deterministic: no state across calls.
#include "detail/FusedPenalties.h"

#include <cmath>
#include <tuple>

namespace repshape::reg::detail {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

constexpr int kMaxIterations = 100;
constexpr double kResidualTolerance = 1e-12;

// One matrix g [M, M] (contiguous fp64): λ_max into *value, its unit eigenvector into vec [M].
// Returns false where the iteration did not converge (the caller then uses eigh).
bool powerIteration(const Tensor& g, double* value, Tensor& vec) {
  const int64_t M = g.size(0);
  double* v = vec.data_ptr<double>();
  double norm = 0.0;
  for (int64_t i = 0; i < M; ++i) {
    v[i] = 1.0 + 1e-2 * std::sin(1.0 + 2.3 * static_cast<double>(i));  // every direction present
    norm += v[i] * v[i];
  }
  norm = std::sqrt(norm);
  for (int64_t i = 0; i < M; ++i) v[i] /= norm;
  Tensor product = torch::empty({M}, g.options());
  const double* w = product.data_ptr<double>();
  for (int it = 0; it < kMaxIterations; ++it) {
    at::mv_out(product, g, vec);  // w = G v
    double lambda = 0.0, wNorm = 0.0;
    for (int64_t i = 0; i < M; ++i) {
      lambda += v[i] * w[i];
      wNorm += w[i] * w[i];
    }
    wNorm = std::sqrt(wNorm);
    // ‖w − λv‖² = ‖w‖² − λ² for unit v (λ = vᵀw); computed directly to avoid the cancellation.
    double residual = 0.0;
    for (int64_t i = 0; i < M; ++i) residual += (w[i] - lambda * v[i]) * (w[i] - lambda * v[i]);
    residual = std::sqrt(residual);
    if (wNorm == 0.0) {  // G v = 0: G = 0 on the start vector's span (the zero Gram): λ_max = 0 if G = 0
      *value = 0.0;
      return g.abs().max().item<double>() == 0.0;
    }
    // Power iteration finds the eigenvalue of largest magnitude: λ_max when it is >= 0.
    if (residual <= kResidualTolerance * std::abs(lambda) && lambda >= 0.0) {
      *value = lambda;
      return true;
    }
    for (int64_t i = 0; i < M; ++i) v[i] = w[i] / wNorm;
  }
  return false;
}

class LargestEigenvalueFn : public torch::autograd::Function<LargestEigenvalueFn> {
 public:
  static Tensor forward(AutogradContext* ctx, Tensor sym) {
    const int64_t M = sym.size(-1);
    const Tensor batch = sym.reshape({-1, M, M}).contiguous();
    const int64_t B = batch.size(0);
    Tensor values = torch::empty({B}, batch.options());
    Tensor vectors = torch::empty({B, M}, batch.options());
    for (int64_t b = 0; b < B; ++b) {
      Tensor vec = vectors[b];
      double value = 0.0;
      if (powerIteration(batch[b], &value, vec)) {
        values[b].fill_(value);
        continue;
      }
      const auto [eigenvalues, eigenvectors] = torch::linalg_eigh(batch[b]);  // ascending
      values[b].copy_(eigenvalues[M - 1]);
      vec.copy_(eigenvectors.select(1, M - 1));
    }
    ctx->save_for_backward({vectors});
    ctx->saved_data["shape"] = sym.sizes().vec();
    return values.view(sym.sizes().slice(0, sym.dim() - 2));
  }

  // dλ/dG = v vᵀ (a simple top eigenvalue; at a degenerate one, one valid subgradient).
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor v = ctx->get_saved_variables()[0];  // [B, M]
    const Tensor g = grads[0].reshape({-1, 1, 1}).to(v.scalar_type());
    return {(v.unsqueeze(2) * v.unsqueeze(1) * g).view(ctx->saved_data["shape"].toIntVector())};
  }
};

}  // namespace

Tensor largestEigenvalue(const Tensor& sym) {
  TORCH_CHECK(sym.dim() >= 2 && sym.size(-1) == sym.size(-2), "largest eigenvalue: expected [..., M, M], got ",
              sym.sizes());
  if (!sym.is_cpu() || sym.scalar_type() != torch::kFloat64 || sym.size(-1) == 0) {
    const Tensor eig = torch::linalg_eigvalsh(sym);
    return eig.select(-1, eig.size(-1) - 1);
  }
  return LargestEigenvalueFn::apply(sym);
}

}  // namespace repshape::reg::detail
