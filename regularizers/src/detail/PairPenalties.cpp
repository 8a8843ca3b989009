// Pairwise KL hinge penalties of Romanov & Rumshisky (SPEC §2): lmulti / lmulti-unsup on gathered
// activations, lsingle on the rows of a weight matrix.
//
// lmulti / lmulti-unsup on the CPU: one autograd node in fp64. Rows are sorted by class, so the
// same-class pairs are the diagonal blocks of the [N, N] KL matrix; KL(q_i‖q_j) = e_i − G_ij with
// e_i = Σ_m p_im log p_im and G_k = P_k (log P_k)ᵀ per class block [n_k, n_k]: Σ_k n_k²·M
// multiply-adds instead of N²·M (≈ K× less for balanced classes), and no [N, N] temporaries.
// Other devices: the ATen formulation over the full [N, N] matrix with a same-class mask.
#include "detail/Penalties.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace repshape::reg::detail {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// KL(d_i ‖ d_j) for all pairs of rows of logits [R, D] (fp64), [R, R].
Tensor pairwiseKl(const Tensor& logits) {
  const Tensor logP = torch::log_softmax(logits, 1);  // no ε needed (SPEC §2)
  const Tensor p = logP.exp();
  const Tensor negEntropy = (p * logP).sum(1, /*keepdim=*/true);  // [R, 1]
  return negEntropy - p.mm(logP.t());
}

// The ATen formulation (any device): the full [N, N] hinge matrix, masked to same-class pairs.
Tensor pairHingeAten(const Tensor& z, const Tensor& labels, double margin) {
  const int64_t n = z.size(0);
  const Tensor hinge = torch::relu(margin - pairwiseKl(z.to(torch::kFloat64)));  // [N, N]
  // Σ over ordered pairs (i, j) of h(m − KL(i‖j)) + h(m − KL(j‖i)) = 2 Σ_{i,j} h(m − KL(i‖j)).
  if (!labels.defined()) return 2.0 * hinge.sum() / static_cast<double>(n * n);
  const Tensor same = labels.unsqueeze(1).eq(labels.unsqueeze(0)).to(torch::kFloat64);  // [N, N]
  // Σ_k n_k² = number of same-class ordered pairs, diagonal included.
  return 2.0 * (hinge * same).sum() / same.sum();
}

// y[i] = z[order[i]] in fp64 (z fp32 or fp64, any strides), y [N, M] contiguous; and back:
// out[order[i]] = g[i] in z's dtype. One plain loop each (~4 Ir per element) instead of an
// index_select / index_copy plus a dtype conversion (two ATen passes, ~20 Ir per element).
template <typename T>
void gatherRows(const Tensor& z, const int64_t* order, double* y) {
  const int64_t n = z.size(0), M = z.size(1), s0 = z.stride(0), s1 = z.stride(1);
  const T* zp = z.data_ptr<T>();
  for (int64_t i = 0; i < n; ++i) {
    const T* row = zp + (order ? order[i] : i) * s0;
    for (int64_t m = 0; m < M; ++m) y[i * M + m] = static_cast<double>(row[m * s1]);
  }
}

template <typename T>
void scatterRows(const double* g, const int64_t* order, int64_t n, int64_t M, T* out) {
  for (int64_t i = 0; i < n; ++i) {
    T* row = out + (order ? order[i] : i) * M;
    for (int64_t m = 0; m < M; ++m) row[m] = static_cast<T>(g[i * M + m]);
  }
}

// value = (2/S) Σ_k Σ_{i,j ∈ block k} h(m − e_i + G_ij), S = Σ_k n_k². Inputs: z [N, M] (fp32 or
// fp64, CPU), order [N] int64 (rows sorted by class; empty: one block in input order), sizes [B]
// int64 (rows per block, in sorted order), margin m. Saved: log P and P (sorted, fp64 [N, M]), the
// 0/1 hinge mask of every block (flat, Σ n_k²) and its row counts.
class PairHingeNode : public torch::autograd::Function<PairHingeNode> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& z, const Tensor& order, const Tensor& sizes,
                        double margin) {
    const int64_t n = z.size(0);
    const auto f64 = z.options().dtype(torch::kFloat64);
    // Row-wise work as ATen's vectorised ops over [N, M] (a scalar loop here costs ~20 Ir per
    // element at -O2; callgrind): log P = y − log Σ exp y, P = exp(y)/Σ exp y, y = z − max z.
    const int64_t* op = order.numel() ? order.data_ptr<int64_t>() : nullptr;
    Tensor logP = torch::empty({n, z.size(1)}, f64);  // sorted rows in fp64, then log P in place
    if (z.scalar_type() == torch::kFloat64) gatherRows<double>(z, op, logP.data_ptr<double>());
    else gatherRows<float>(z, op, logP.data_ptr<double>());
    logP.sub_(std::get<0>(logP.max(1, /*keepdim=*/true)));
    Tensor P = logP.exp();
    const Tensor sum = P.sum(1, /*keepdim=*/true);
    P.div_(sum);
    logP.sub_(sum.log());
    const Tensor eT = (P * logP).sum(1).contiguous();  // e_i = Σ_m p log p = −H(q_i)
    const double* e = eT.data_ptr<double>();
    const int64_t* nk = sizes.data_ptr<int64_t>();
    const int64_t blocks = sizes.numel();
    int64_t pairs = 0, largest = 0;
    for (int64_t b = 0; b < blocks; ++b) {
      pairs += nk[b] * nk[b];
      largest = std::max(largest, nk[b]);
    }
    Tensor mask = torch::empty({pairs}, f64), active = torch::empty({n}, f64);
    Tensor g = torch::empty({largest * largest}, f64);
    double *mk = mask.data_ptr<double>(), *ap = active.data_ptr<double>();
    double total = 0.0;
    for (int64_t b = 0, row = 0; b < blocks; row += nk[b], ++b) {
      Tensor gb = g.narrow(0, 0, nk[b] * nk[b]).view({nk[b], nk[b]});
      torch::mm_out(gb, P.narrow(0, row, nk[b]), logP.narrow(0, row, nk[b]).t());  // G_k [n_k, n_k]
      const double* gp = gb.data_ptr<double>();
      for (int64_t i = 0; i < nk[b]; ++i) {
        const double base = margin - e[row + i];  // m − KL_ij = m − e_i + G_ij
        double count = 0.0;
        for (int64_t j = 0; j < nk[b]; ++j) {
          const double t = base + gp[i * nk[b] + j];
          const bool on = t > 0.0;
          total += on ? t : 0.0;
          count += on ? 1.0 : 0.0;
          *mk++ = on ? 1.0 : 0.0;
        }
        ap[row + i] = count;
      }
    }
    ctx->save_for_backward({logP, P, mask, active, order, sizes});
    ctx->saved_data["dtype"] = static_cast<int64_t>(z.scalar_type());
    ctx->saved_data["pairs"] = static_cast<double>(pairs);
    return torch::full({}, 2.0 * total / static_cast<double>(pairs), f64);
  }

  // With W = c·mask per block (c = 2g/S) and r_i = −Σ_j W_ij: ∂/∂P = W log P + r ⊙ log P,
  // ∂/∂log P = Wᵀ P + r ⊙ P; then through P = exp(log P) and log_softmax. A block with every
  // hinge active (mask = 11ᵀ: e.g. near-uniform softmaxes early in training, or a large margin)
  // needs column sums instead of the two GEMMs; one with none, nothing.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &logP = saved[0], &P = saved[1], &mask = saved[2], &active = saved[3], &order = saved[4],
                 &sizes = saved[5];
    const auto dtype = static_cast<c10::ScalarType>(ctx->saved_data["dtype"].toInt());
    const double c = 2.0 * grads[0].item<double>() / ctx->saved_data["pairs"].toDouble();
    Tensor gP = torch::empty_like(P), gLogP = torch::empty_like(P);  // mask·log P, maskᵀ·P
    const int64_t* nk = sizes.data_ptr<int64_t>();
    const double* ap = active.data_ptr<double>();
    for (int64_t b = 0, row = 0, offset = 0; b < sizes.numel(); offset += nk[b] * nk[b], row += nk[b], ++b) {
      Tensor gPb = gP.narrow(0, row, nk[b]), gLogPb = gLogP.narrow(0, row, nk[b]);
      const Tensor logPb = logP.narrow(0, row, nk[b]), Pb = P.narrow(0, row, nk[b]);
      double on = 0.0;  // active pairs of the block
      for (int64_t i = 0; i < nk[b]; ++i) on += ap[row + i];
      if (on == 0.0) {  // no hinge active: no gradient from this block
        gPb.zero_();
        gLogPb.zero_();
      } else if (on == static_cast<double>(nk[b] * nk[b])) {  // all active: mask = 11ᵀ, rank one
        gPb.copy_(logPb.sum(0, /*keepdim=*/true).expand_as(gPb));
        gLogPb.copy_(Pb.sum(0, /*keepdim=*/true).expand_as(gLogPb));
      } else {
        const Tensor wb = mask.narrow(0, offset, nk[b] * nk[b]).view({nk[b], nk[b]});
        torch::mm_out(gPb, wb, logPb);
        torch::mm_out(gLogPb, wb.t(), Pb);
      }
    }
    // ∂/∂log P total = c·[maskᵀP − a P + (mask log P − a log P) ⊙ P] (a = active count of row i);
    // log_softmax backward: g − P Σ_m g. ATen's vectorised ops, in place over gP.
    const Tensor r = active.neg().unsqueeze(1);  // [N, 1]
    Tensor& g = gP.addcmul_(logP, r).mul_(P).add_(gLogP).addcmul_(P, r).mul_(c);
    g.addcmul_(P, g.sum(1, /*keepdim=*/true), -1.0);
    const int64_t n = g.size(0), M = g.size(1);
    const int64_t* op = order.numel() ? order.data_ptr<int64_t>() : nullptr;
    Tensor gz = torch::empty({n, M}, g.options().dtype(dtype));  // input order, z's dtype
    if (dtype == torch::kFloat64) scatterRows<double>(g.data_ptr<double>(), op, n, M, gz.data_ptr<double>());
    else scatterRows<float>(g.data_ptr<double>(), op, n, M, gz.data_ptr<float>());
    return {gz, Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

Tensor pairHingePenalty(const Tensor& z, const Tensor& labels, double margin) {
  const int64_t n = z.size(0);
  if (n == 0) return (z.sum() * 0.0).to(torch::kFloat64);
  TORCH_CHECK(z.dim() == 2, "lmulti: rows of shape ", z.sizes(), ", expected [N, M]");
  if (!z.device().is_cpu() || (z.scalar_type() != torch::kFloat32 && z.scalar_type() != torch::kFloat64))
    return pairHingeAten(z, labels, margin);
  const auto longs = torch::TensorOptions().dtype(torch::kLong);
  if (!labels.defined()) return PairHingeNode::apply(z, torch::empty({0}, longs), torch::full({1}, n, longs), margin);
  TORCH_CHECK(labels.numel() == n, "lmulti: ", labels.numel(), " labels for ", n, " rows");
  const Tensor y = labels.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* yp = y.data_ptr<int64_t>();
  std::vector<int64_t> order(n), sizes;
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [yp](int64_t a, int64_t b) { return yp[a] < yp[b]; });
  for (int64_t i = 0; i < n; ++i) {
    if (i == 0 || yp[order[i]] != yp[order[i - 1]]) sizes.push_back(0);
    ++sizes.back();
  }
  const Tensor orderT = torch::tensor(order, longs), sizesT = torch::tensor(sizes, longs);
  return PairHingeNode::apply(z, orderT, sizesT, margin);
}

Tensor lsinglePenalty(const Tensor& weight, double margin) {
  TORCH_CHECK(weight.dim() >= 2, "lsingle: weight of shape ", weight.sizes(), ", expected [out, in]");
  const Tensor w = weight.reshape({weight.size(0), -1}).to(torch::kFloat64);
  const Tensor hinge = torch::relu(margin - pairwiseKl(w));  // [out, out]
  // Σ_{i<j} [h(m − KL_ij) + h(m − KL_ji)] = Σ over off-diagonal entries.
  return hinge.sum() - hinge.diagonal().sum();
}

}  // namespace repshape::reg::detail
