#include "detail/FusedPenalties.h"

#include <algorithm>
#include <cmath>
#include <vector>


namespace repshape::reg::detail {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// One group's biased covariance C = G/n − μμᵀ (times N/(N−1) for the unbiased kinds, N = 1 → 0),
// n = max(N, 1) so an absent group (G = 0, S = 0) gives C = 0. mean [M], cov [M·M].
double groupCovariance(FusedCovKind kind, double count, const double* sum, const double* gram, int64_t M,
                       double* mean, double* cov) {
  const double n = std::max(count, 1.0);
  const double unbiased = kind == FusedCovKind::kCr ? 1.0 : count / std::max(count - 1.0, 1.0);
  for (int64_t i = 0; i < M; ++i) mean[i] = sum[i] / n;
  for (int64_t i = 0; i < M; ++i) {
    const double mi = mean[i];
    const double* gi = gram + i * M;
    double* ci = cov + i * M;
    for (int64_t j = 0; j < M; ++j) ci[j] = (gi[j] / n - mi * mean[j]) * unbiased;
  }
  return unbiased;
}

// sd_i = sqrt(C_u,ii + ε), [M].
void corrScales(const double* cov, int64_t M, double* sd) {
  for (int64_t i = 0; i < M; ++i) sd[i] = std::sqrt(cov[i * M + i] + kCorrEpsilon);
}

}  // namespace

double covarianceValue(FusedCovKind kind, const double* cov, int64_t M, double* sd) {
  double total = 0.0;
  switch (kind) {
    case FusedCovKind::kLsigma:
      for (int64_t i = 0; i < M * M; ++i) total += std::abs(cov[i]);
      return total;
    case FusedCovKind::kCr: {
      double diag = 0.0;
      for (int64_t i = 0; i < M * M; ++i) total += cov[i] * cov[i];
      for (int64_t i = 0; i < M; ++i) diag += cov[i * M + i] * cov[i * M + i];
      return 0.5 * (total - diag);
    }
    case FusedCovKind::kCorr:
      corrScales(cov, M, sd);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < M; ++j) {
          const double r = cov[i * M + j] / (sd[i] * sd[j]);
          total += r * r;
        }
      return total;
  }
  return total;
}

// dΩ_group/dC written into grad [M·M] (C the biased covariance; the unbiased factor is applied).
void covarianceGrad(FusedCovKind kind, const double* cov, double unbiased, int64_t M, double* sd, double* grad) {
  switch (kind) {
    case FusedCovKind::kLsigma:
      // d|x|/dx = sign(x), 0 at 0 (as torch.abs).
      for (int64_t i = 0; i < M * M; ++i) grad[i] = static_cast<double>((cov[i] > 0.0) - (cov[i] < 0.0)) * unbiased;
      return;
    case FusedCovKind::kCr:
      for (int64_t i = 0; i < M * M; ++i) grad[i] = cov[i];
      for (int64_t i = 0; i < M; ++i) grad[i * M + i] = 0.0;
      return;
    case FusedCovKind::kCorr: {
      // Ω = Σ_ij R_ij², R_ij = A_ij/(sd_i sd_j), sd_k = sqrt(A_kk + ε):
      //   dΩ/dA_ij = 2 R_ij/(sd_i sd_j) − δ_ij (Σ_l R_il² + Σ_l R_li²)/sd_i².
      corrScales(cov, M, sd);
      std::vector<double> rowSq(M, 0.0), colSq(M, 0.0);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < M; ++j) {
          const double q = sd[i] * sd[j];
          const double r = cov[i * M + j] / q;
          grad[i * M + j] = 2.0 * r / q;
          rowSq[i] += r * r;
          colSq[j] += r * r;
        }
      for (int64_t i = 0; i < M; ++i) grad[i * M + i] -= (rowSq[i] + colSq[i]) / (sd[i] * sd[i]);
      for (int64_t i = 0; i < M * M; ++i) grad[i] *= unbiased;
      return;
    }
  }
}

namespace {

void checkSizes(const Tensor& counts, const Tensor& sums, const Tensor& second, int64_t secondPerGroup,
                int64_t M) {
  const int64_t K = counts.numel();
  TORCH_CHECK(M > 0 && sums.numel() == K * M && second.numel() == K * secondPerGroup, "fused penalty: ", K,
              " groups of width ", M, " but sums of ", sums.numel(), " and ", second.numel(), " elements");
}

class CovariancePenaltyFn : public torch::autograd::Function<CovariancePenaltyFn> {
 public:
  static Tensor forward(AutogradContext* ctx, Tensor counts, Tensor sums, Tensor grams, int64_t kind,
                        int64_t width, double scale) {
    const int64_t M = width, K = counts.numel();
    checkSizes(counts, sums, grams, M * M, M);
    const Tensor n = counts.contiguous(), s = sums.contiguous(), g = grams.contiguous();
    const auto fk = static_cast<FusedCovKind>(kind);
    // Covariances and means [K·M·M], [K·M] are kept for the backward (no second pass over G).
    Tensor covs = torch::empty({K * M * M}, sums.options()), means = torch::empty({K * M}, sums.options());
    std::vector<double> sd(M);
    double total = 0.0;
    for (int64_t k = 0; k < K; ++k) {
      double* cov = covs.data_ptr<double>() + k * M * M;
      groupCovariance(fk, n.data_ptr<double>()[k], s.data_ptr<double>() + k * M, g.data_ptr<double>() + k * M * M, M,
                      means.data_ptr<double>() + k * M, cov);
      total += covarianceValue(fk, cov, M, sd.data());
    }
    ctx->save_for_backward({n, s, g});
    ctx->saved_data["covs"] = covs;
    ctx->saved_data["means"] = means;
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["width"] = width;
    ctx->saved_data["scale"] = scale;
    return torch::scalar_tensor(total * scale, sums.options());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor& n = saved[0];
    const Tensor& s = saved[1];
    const Tensor& g = saved[2];
    const auto fk = static_cast<FusedCovKind>(ctx->saved_data["kind"].toInt());
    const int64_t M = ctx->saved_data["width"].toInt(), K = n.numel();
    const double upstream = ctx->saved_data["scale"].toDouble() * grads[0].item<double>();
    Tensor dSums = torch::empty(s.sizes(), s.options());
    Tensor dGrams = torch::empty(g.sizes(), g.options());
    const Tensor covs = ctx->saved_data["covs"].toTensor(), means = ctx->saved_data["means"].toTensor();
    std::vector<double> sd(M);
    for (int64_t k = 0; k < K; ++k) {
      const double count = n.data_ptr<double>()[k];
      const double unbiased = fk == FusedCovKind::kCr ? 1.0 : count / std::max(count - 1.0, 1.0);
      const double* cov = covs.data_ptr<double>() + k * M * M;
      const double* mean = means.data_ptr<double>() + k * M;
      double* dGram = dGrams.data_ptr<double>() + k * M * M;  // dΩ/dC first, then dΩ/dG in place
      double* dSum = dSums.data_ptr<double>() + k * M;
      covarianceGrad(fk, cov, unbiased, M, sd.data(), dGram);
      // C = G/n − μμᵀ, μ = S/n:  dΩ/dG = D/n,  dΩ/dS_l = −(Σ_j D_lj μ_j + Σ_i D_il μ_i)/n.
      const double perCount = upstream / std::max(count, 1.0);
      std::fill(dSum, dSum + M, 0.0);
      for (int64_t i = 0; i < M; ++i) {
        double row = 0.0;
        for (int64_t j = 0; j < M; ++j) {
          const double d = dGram[i * M + j];
          row += d * mean[j];
          dSum[j] += d * mean[i];
          dGram[i * M + j] = d * perCount;
        }
        dSum[i] += row;
      }
      for (int64_t i = 0; i < M; ++i) dSum[i] *= -perCount;
    }
    return {Tensor(), dSums, dGrams, Tensor(), Tensor(), Tensor()};
  }
};

class VariancePenaltyFn : public torch::autograd::Function<VariancePenaltyFn> {
 public:
  static Tensor forward(AutogradContext* ctx, Tensor counts, Tensor sums, Tensor sqDiags, int64_t width,
                        double scale) {
    const int64_t M = width, K = counts.numel();
    checkSizes(counts, sums, sqDiags, M, M);
    const Tensor n = counts.contiguous(), s = sums.contiguous(), q = sqDiags.contiguous();
    const double* np = n.data_ptr<double>();
    const double* sp = s.data_ptr<double>();
    const double* qp = q.data_ptr<double>();
    double total = 0.0;
    for (int64_t k = 0; k < K; ++k) {
      const double nk = std::max(np[k], 1.0);
      for (int64_t i = 0; i < M; ++i) {
        const double mean = sp[k * M + i] / nk;
        total += qp[k * M + i] / nk - mean * mean;
      }
    }
    ctx->save_for_backward({n, s});
    ctx->saved_data["width"] = width;
    ctx->saved_data["scale"] = scale;
    return torch::scalar_tensor(total * scale, sums.options());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor& n = saved[0];
    const Tensor& s = saved[1];
    const int64_t M = ctx->saved_data["width"].toInt(), K = n.numel();
    const double upstream = ctx->saved_data["scale"].toDouble() * grads[0].item<double>();
    Tensor dSums = torch::empty(s.sizes(), s.options());
    Tensor dSq = torch::empty(s.sizes(), s.options());
    const double* np = n.data_ptr<double>();
    const double* sp = s.data_ptr<double>();
    double* ds = dSums.data_ptr<double>();
    double* dq = dSq.data_ptr<double>();
    for (int64_t k = 0; k < K; ++k) {
      const double nk = std::max(np[k], 1.0);
      for (int64_t i = 0; i < M; ++i) {
        dq[k * M + i] = upstream / nk;
        ds[k * M + i] = -2.0 * upstream * (sp[k * M + i] / nk) / nk;
      }
    }
    return {Tensor(), dSums, dSq, Tensor(), Tensor()};
  }
};

}  // namespace

bool canFuse(const Tensor& counts, const Tensor& sums, const Tensor& second) {
  for (const Tensor* t : {&counts, &sums, &second})
    if (!t->defined() || !t->is_cpu() || t->scalar_type() != torch::kFloat64) return false;
  return true;
}

Tensor fusedCovariancePenalty(FusedCovKind kind, const Tensor& counts, const Tensor& sums, const Tensor& grams,
                              int64_t width, double scale) {
  TORCH_CHECK(kind == FusedCovKind::kCr || counts.numel() == 1, "fused penalty: lsigma/corr over ", counts.numel(),
              " groups, expected 1");
  return CovariancePenaltyFn::apply(counts.detach(), sums, grams, static_cast<int64_t>(kind), width, scale);
}

Tensor fusedVariancePenalty(const Tensor& counts, const Tensor& sums, const Tensor& sqDiags, int64_t width,
                            double scale) {
  return VariancePenaltyFn::apply(counts.detach(), sums, sqDiags, width, scale);
}

}  // namespace repshape::reg::detail
