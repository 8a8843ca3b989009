#include "detail/Statistics.h"

#include "detail/ClassBlocks.h"

#include <algorithm>
#include <string>
#include <vector>

namespace repshape::reg::detail {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void StatsNeeds::merge(const StatsNeeds& o) {
  sum |= o.sum;
  sqDiag |= o.sqDiag;
  gram |= o.gram;
  absCol |= o.absCol;
  rowAbsMax |= o.rowAbsMax;
  classSum |= o.classSum;
  classSqDiag |= o.classSqDiag;
  classGram |= o.classGram;
  classAbsCol |= o.classAbsCol;
  classRowAbsMax |= o.classRowAbsMax;
  cross |= o.cross;
}

StatsLayout::StatsLayout(const StatsNeeds& needs, int64_t width, int64_t classes, int64_t probs) {
  fields_.fill(kAbsent);
  TORCH_CHECK(width > 0, "statistics: layer width ", width, " must be positive");
  TORCH_CHECK(!needs.anyClass() || classes > 0, "statistics: class-wise sums need numClasses > 0, got ", classes);
  TORCH_CHECK(!needs.cross || probs > 0, "statistics: xcov needs probabilities with > 0 columns, got ", probs);
  fields_[kWidth] = width;
  fields_[kClasses] = classes;
  fields_[kProbs] = probs;
  const int64_t M = width, K = classes, C = probs;
  int64_t offset = 0;
  auto place = [&](Field f, bool needed, int64_t size) {
    if (!needed) return;
    fields_[f] = offset;
    offset += size;
  };
  place(kCount, true, 1);
  place(kClassCount, needs.anyClass(), K);
  // Class-wise Grams need class sums for their shift correction, the Gram needs Σz.
  place(kSum, needs.sum || needs.gram || needs.cross, M);
  place(kSqDiag, needs.sqDiag, M);
  place(kGram, needs.gram, M * M);
  place(kAbsCol, needs.absCol, M);
  place(kClassSum, needs.classSum || needs.classGram, K * M);
  place(kClassSqDiag, needs.classSqDiag, K * M);
  place(kClassGram, needs.classGram, K * M * M);
  place(kClassAbsCol, needs.classAbsCol, K * M);
  place(kProbSum, needs.cross, C);
  place(kCross, needs.cross, C * M);
  fields_[kSumSize] = offset;
  offset = 0;
  place(kRowAbsMax, needs.rowAbsMax, 1);
  place(kClassRowAbsMax, needs.classRowAbsMax, K);
  fields_[kMaxSize] = offset;
}

StatsLayout StatsLayout::fromVector(const std::vector<int64_t>& v) {
  TORCH_CHECK(static_cast<int>(v.size()) == kNumFields, "statistics: layout of ", v.size(), " fields, expected ",
              static_cast<int>(kNumFields));
  StatsLayout layout;
  std::copy(v.begin(), v.end(), layout.fields_.begin());
  return layout;
}

namespace {

Tensor segment(const Tensor& buffer, int64_t offset, int64_t size) { return buffer.narrow(0, offset, size); }

// Σ z zᵀ in fp64 from the centred Gram G̃ = (Z−s)ᵀ(Z−s): G̃ + s·S1ᵀ + S1·sᵀ − n·s·sᵀ.
// s [M] fp64 (exact value of the fp32 shift), S1 [M] fp64. Written as s·dᵀ + d·sᵀ, d = S1 − n·s/2.
Tensor uncentre(const Tensor& centredGram, const Tensor& shift, const Tensor& colSum, double n) {
  const Tensor d = colSum - shift * (n / 2.0);
  return centredGram.addr(shift, d).addr_(d, shift);
}

// Rows attaining the row |z|-sum maximum of their group get weight 1/(ties in the group): the
// same subgradient as torch.max over a full reduction. rowAbs [n], group [n] in [0, G).
Tensor maxRowWeights(const Tensor& rowAbs, const Tensor& groupMax, const Tensor& group, int64_t groups) {
  const Tensor hit = rowAbs.eq(groupMax.index_select(0, group)).to(rowAbs.scalar_type());
  const Tensor ties = torch::zeros({groups}, rowAbs.options()).index_add_(0, group, hit);
  return hit / ties.clamp_min(1.0).index_select(0, group);
}

class LocalStatisticsFn : public torch::autograd::Function<LocalStatisticsFn> {
 public:
  static variable_list forward(AutogradContext* ctx, Tensor z, Tensor probs, Tensor labels,
                               std::vector<int64_t> layoutFields) {
    const StatsLayout L = StatsLayout::fromVector(layoutFields);
    using F = StatsLayout;
    const int64_t n = z.size(0), M = L.width(), K = L.classes();
    TORCH_CHECK(z.dim() == 2 && z.size(1) == M, "statistics: activations of shape ", z.sizes(), ", expected [n, ", M, "]");
    const auto f64 = z.options().dtype(torch::kFloat64);
    // fp16/bf16 activations use fp32 GEMMs; fp64 stays fp64.
    const auto gemmType = z.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
    const double nd = static_cast<double>(n);
    Tensor sumPart = torch::zeros({L.sumSize()}, f64);
    Tensor maxPart = torch::zeros({L.maxSize()}, f64);
    const Tensor z64 = z.to(torch::kFloat64);
    const Tensor zg = z.to(gemmType);
    segment(sumPart, L[F::kCount], 1).fill_(nd);

    Tensor colSum;
    if (L.has(F::kSum)) {
      colSum = z64.sum(0);  // [M]
      segment(sumPart, L[F::kSum], M).copy_(colSum);
    }
    if (L.has(F::kSqDiag)) segment(sumPart, L[F::kSqDiag], M).copy_(z64.square().sum(0));
    if (L.has(F::kAbsCol)) segment(sumPart, L[F::kAbsCol], M).copy_(z64.abs().sum(0));
    Tensor shift, centred;  // [M] gemmType (detached local mean), [n, M]
    if (L.has(F::kGram) || L.has(F::kCross)) {
      shift = n > 0 ? (colSum / nd).to(gemmType) : torch::zeros({M}, zg.options());
      centred = zg - shift;
      ctx->saved_data["shift"] = shift;
      ctx->saved_data["centred"] = centred;
    }
    if (L.has(F::kGram)) {
      const Tensor g = uncentre(centred.t().mm(centred).to(torch::kFloat64), shift.to(torch::kFloat64), colSum, nd);
      segment(sumPart, L[F::kGram], M * M).copy_(g.reshape({-1}));
    }
    if (L.has(F::kCross)) {
      const int64_t C = L.probs();
      TORCH_CHECK(probs.dim() == 2 && probs.size(0) == n && probs.size(1) == C, "statistics: probabilities of shape ",
                  probs.sizes(), ", expected [", n, ", ", C, "]");
      const Tensor p64 = probs.to(torch::kFloat64);
      const Tensor probSum = p64.sum(0);  // [C]
      const Tensor pShift = n > 0 ? (probSum / nd).to(gemmType) : torch::zeros({C}, zg.options());
      const Tensor pCentred = probs.to(gemmType) - pShift;  // [n, C]
      // Σ p zᵀ = (P−sp)ᵀ(Z−sz) + sp·S1zᵀ + S1p·szᵀ − n·sp·szᵀ
      const Tensor sp = pShift.to(torch::kFloat64), sz = shift.to(torch::kFloat64);
      const Tensor cross = pCentred.t().mm(centred).to(torch::kFloat64).addr(sp, colSum).addr_(probSum - sp * nd, sz);
      segment(sumPart, L[F::kProbSum], C).copy_(probSum);
      segment(sumPart, L[F::kCross], C * M).copy_(cross.reshape({-1}));
      ctx->saved_data["pShift"] = pShift;
      ctx->saved_data["probsType"] = static_cast<int64_t>(probs.scalar_type());
      ctx->saved_data["pCentred"] = pCentred;
    }
    Tensor rowAbs;  // [n] fp64
    if (L.has(F::kRowAbsMax) || L.has(F::kClassRowAbsMax)) rowAbs = z64.abs().sum(1);
    if (L.has(F::kRowAbsMax) && n > 0) segment(maxPart, L[F::kRowAbsMax], 1).copy_(rowAbs.max().reshape({1}));

    if (L.has(F::kClassCount)) {
      TORCH_CHECK(labels.dim() == 1 && labels.size(0) == n, "statistics: labels of shape ", labels.sizes(),
                  ", expected [", n, "]");
      if (n > 0) {
        const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
        TORCH_CHECK(lo >= 0 && hi < K, "statistics: labels in [", lo, ", ", hi, "], expected [0, ", K, ")");
      }
      const Tensor counts = torch::bincount(labels, {}, K).to(torch::kFloat64);
      segment(sumPart, L[F::kClassCount], K).copy_(counts);
      auto classAdd = [&](StatsLayout::Field field, const Tensor& rows) {
        if (L.has(field)) segment(sumPart, L[field], K * M).view({K, M}).index_add_(0, labels, rows);
      };
      classAdd(F::kClassSum, z64);
      if (L.has(F::kClassSqDiag)) classAdd(F::kClassSqDiag, z64.square());
      if (L.has(F::kClassAbsCol)) classAdd(F::kClassAbsCol, z64.abs());
      if (L.has(F::kClassRowAbsMax) && n > 0) {
        // Row |z|-sums placed in their class column of an [n, K] zero matrix; sums are >= 0, so
        // the column max is the class max (0 for an absent class, the identity of the MAX reduce).
        const Tensor byClass = torch::zeros({n, K}, f64).scatter_(1, labels.unsqueeze(1), rowAbs.unsqueeze(1));
        segment(maxPart, L[F::kClassRowAbsMax], K).copy_(byClass.amax(0));
      }
      if (L.has(F::kClassGram)) {
        const Tensor classSum = segment(sumPart, L[F::kClassSum], K * M).view({K, M});
        const Tensor classShift = (classSum / counts.clamp_min(1.0).unsqueeze(1)).to(gemmType);  // [K, M]
        const Tensor centred = zg - classShift.index_select(0, labels);  // [n, M], each row minus its class shift
        const ClassBlocks blocks(centred, labels, counts.cpu(), K);
        const Tensor gram = blocks.grams();  // [K, M, M] gemmType, Σ_{S_k} (z − s_k)(z − s_k)ᵀ
        blocks.save(ctx, "class.");
        // Batched uncentre: G_k + s_k·d_kᵀ + d_k·s_kᵀ, d_k = S1_k − n_k·s_k/2 (absent class: all 0).
        const Tensor shift64 = classShift.to(torch::kFloat64);
        const Tensor d = classSum - shift64 * (counts / 2.0).unsqueeze(1);
        segment(sumPart, L[F::kClassGram], K * M * M)
            .view({K, M, M})
            .copy_(gram.to(torch::kFloat64).baddbmm_(shift64.unsqueeze(2), d.unsqueeze(1)).baddbmm_(d.unsqueeze(2), shift64.unsqueeze(1)));
        ctx->saved_data["classShift"] = classShift;
      }
    }
    ctx->saved_data["layout"] = layoutFields;
    ctx->save_for_backward({z, labels});
    if (rowAbs.defined()) ctx->saved_data["rowAbs"] = rowAbs;
    ctx->saved_data["maxPart"] = maxPart.clone();
    return {sumPart, maxPart};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    using F = StatsLayout;
    const StatsLayout L = StatsLayout::fromVector(ctx->saved_data["layout"].toIntVector());
    const auto saved = ctx->get_saved_variables();
    const Tensor z = saved[0], labels = saved[1];
    const int64_t n = z.size(0), M = L.width(), K = L.classes();
    const auto f64 = z.options().dtype(torch::kFloat64);
    const Tensor gSum = grads[0].defined() ? grads[0] : torch::zeros({L.sumSize()}, f64);
    const Tensor gMax = grads[1].defined() ? grads[1] : torch::zeros({L.maxSize()}, f64);
    const Tensor z64 = z.to(torch::kFloat64);
    // Row-broadcast and element-wise terms accumulate in fp64; GEMM terms in the GEMM dtype.
    Tensor rowTerm = torch::zeros({M}, f64);  // added to every row
    Tensor dz = torch::zeros({n, M}, f64);
    Tensor dProbs;

    if (L.has(F::kSum)) rowTerm += segment(gSum, L[F::kSum], M);
    if (L.has(F::kSqDiag)) dz += z64 * (2.0 * segment(gSum, L[F::kSqDiag], M));
    if (L.has(F::kAbsCol)) dz += z64.sign() * segment(gSum, L[F::kAbsCol], M);
    if (L.has(F::kGram)) {
      // d(Σ z zᵀ)/dz_n = (G + Gᵀ) z_n = (G + Gᵀ)(z_n − s) + (G + Gᵀ) s
      const Tensor g = segment(gSum, L[F::kGram], M * M).view({M, M});
      const Tensor gSym = g + g.t();
      const Tensor centred = ctx->saved_data["centred"].toTensor();
      const Tensor shift = ctx->saved_data["shift"].toTensor();
      dz += centred.mm(gSym.to(centred.scalar_type())).to(torch::kFloat64);
      rowTerm += gSym.mv(shift.to(torch::kFloat64));
    }
    if (L.has(F::kCross)) {
      // H = Σ p zᵀ [C, M]: dZ = P·gH = (P − sp)·gH + 1·(spᵀ gH); dP = Z·gHᵀ = (Z − sz)·gHᵀ + 1·(gH sz)ᵀ
      const int64_t C = L.probs();
      const Tensor gH = segment(gSum, L[F::kCross], C * M).view({C, M});
      const Tensor pCentred = ctx->saved_data["pCentred"].toTensor();
      const Tensor pShift = ctx->saved_data["pShift"].toTensor().to(torch::kFloat64);
      const Tensor centred = ctx->saved_data["centred"].toTensor();
      const Tensor shift = ctx->saved_data["shift"].toTensor().to(torch::kFloat64);
      dz += pCentred.mm(gH.to(pCentred.scalar_type())).to(torch::kFloat64);
      rowTerm += gH.t().mv(pShift);
      const Tensor pRow = gH.mv(shift) + segment(gSum, L[F::kProbSum], C);  // [C]
      dProbs = centred.mm(gH.t().to(centred.scalar_type())).to(torch::kFloat64) + pRow;
    }
    if (L.has(F::kRowAbsMax) && n > 0) {
      const Tensor rowAbs = ctx->saved_data["rowAbs"].toTensor();
      const Tensor best = ctx->saved_data["maxPart"].toTensor().narrow(0, L[F::kRowAbsMax], 1);
      const Tensor weight = maxRowWeights(rowAbs, best, torch::zeros({n}, labels.options().dtype(torch::kLong)), 1);
      dz += z64.sign() * (weight * segment(gMax, L[F::kRowAbsMax], 1)).unsqueeze(1);
    }
    if (L.has(F::kClassCount) && n > 0) {
      auto classGrad = [&](StatsLayout::Field field) { return segment(gSum, L[field], K * M).view({K, M}).index_select(0, labels); };
      if (L.has(F::kClassSum)) dz += classGrad(F::kClassSum);
      if (L.has(F::kClassSqDiag)) dz += 2.0 * z64 * classGrad(F::kClassSqDiag);
      if (L.has(F::kClassAbsCol)) dz += z64.sign() * classGrad(F::kClassAbsCol);
      if (L.has(F::kClassRowAbsMax)) {
        const Tensor rowAbs = ctx->saved_data["rowAbs"].toTensor();
        const Tensor best = ctx->saved_data["maxPart"].toTensor().narrow(0, L[F::kClassRowAbsMax], K);
        const Tensor weight = maxRowWeights(rowAbs, best, labels, K);
        const Tensor g = segment(gMax, L[F::kClassRowAbsMax], K).index_select(0, labels);
        dz += z64.sign() * (weight * g).unsqueeze(1);
      }
      if (L.has(F::kClassGram)) {
        const Tensor g = segment(gSum, L[F::kClassGram], K * M * M).view({K, M, M});
        const Tensor gSym = g + g.transpose(1, 2);  // [K, M, M]
        const Tensor classShift = ctx->saved_data["classShift"].toTensor();
        dz += ClassBlocks::load(ctx, "class.").times(gSym).to(torch::kFloat64);
        // Per-class row term (G_k + G_kᵀ) s_k, [K, M].
        const Tensor classRow = gSym.bmm(classShift.to(torch::kFloat64).unsqueeze(2)).squeeze(2);
        dz += classRow.index_select(0, labels);
      }
    }
    dz += rowTerm;
    if (dProbs.defined()) {
      dProbs = dProbs.to(static_cast<c10::ScalarType>(ctx->saved_data["probsType"].toInt()));
    }
    return {dz.to(z.scalar_type()), dProbs, Tensor(), Tensor()};
  }
};

}  // namespace

std::pair<Tensor, Tensor> localStatistics(const Tensor& z, const Tensor& labels, const Tensor& probs,
                                          const StatsLayout& layout) {
  const Tensor labels64 = labels.defined() ? labels.to(torch::kLong) : torch::empty({0}, z.options().dtype(torch::kLong));
  const Tensor p = probs.defined() ? probs : torch::empty({0, 0}, z.options());
  auto out = LocalStatisticsFn::apply(z, p, labels64, layout.toVector());
  return {out[0], out[1]};
}

LayerStats unpackStatistics(const Tensor& sumPart, const Tensor& maxPart, const StatsLayout& L) {
  using F = StatsLayout;
  const int64_t M = L.width(), K = L.classes(), C = L.probs();
  LayerStats s;
  struct Slot {
    F::Field field;
    std::vector<int64_t> shape;
    Tensor* out;
  };
  // In placement order, so the present fields tile each part exactly. One split per part: its
  // backward writes every gradient into one buffer (a narrow per field would zero-fill the whole
  // buffer once per field).
  const std::vector<Slot> sumSlots = {
      {F::kCount, {}, &s.count},           {F::kClassCount, {K}, &s.classCount},
      {F::kSum, {M}, &s.sum},              {F::kSqDiag, {M}, &s.sqDiag},
      {F::kGram, {M, M}, &s.gram},         {F::kAbsCol, {M}, &s.absCol},
      {F::kClassSum, {K, M}, &s.classSum}, {F::kClassSqDiag, {K, M}, &s.classSqDiag},
      {F::kClassGram, {K, M, M}, &s.classGram}, {F::kClassAbsCol, {K, M}, &s.classAbsCol},
      {F::kProbSum, {C}, &s.probSum},      {F::kCross, {C, M}, &s.cross}};
  const std::vector<Slot> maxSlots = {{F::kRowAbsMax, {}, &s.rowAbsMax},
                                      {F::kClassRowAbsMax, {K}, &s.classRowAbsMax}};
  auto unpack = [&](const Tensor& part, const std::vector<Slot>& slots) {
    std::vector<const Slot*> present;
    std::vector<int64_t> sizes;
    for (const auto& slot : slots) {
      if (!L.has(slot.field)) continue;
      int64_t size = 1;
      for (int64_t d : slot.shape) size *= d;
      present.push_back(&slot);
      sizes.push_back(size);
    }
    if (present.empty()) return;
    const auto pieces = part.split_with_sizes(sizes);
    for (std::size_t i = 0; i < present.size(); ++i) *present[i]->out = pieces[i].view(present[i]->shape);
  };
  unpack(sumPart, sumSlots);
  unpack(maxPart, maxSlots);
  // Counts carry no gradient: detaching them keeps divisions from reducing gradients onto them.
  s.count = s.count.detach();
  if (s.classCount.defined()) s.classCount = s.classCount.detach();
  return s;
}

}  // namespace repshape::reg::detail
