#include "detail/ClassBlocks.h"

#include <algorithm>

namespace repshape::reg::detail {

using torch::Tensor;

ClassBlocks::ClassBlocks(const Tensor& rows, const Tensor& labels, const Tensor& countsCpu, int64_t K)
    : n_(rows.size(0)), classes_(K), counts_(countsCpu) {
  TORCH_CHECK(rows.dim() == 2 && countsCpu.numel() == K && countsCpu.scalar_type() == torch::kFloat64,
              "class blocks: rows ", rows.sizes(), ", ", countsCpu.numel(), " counts for ", K, " classes");
  if (K == 1) {
    mode_ = kSingle;
    blocks_ = rows;
    return;
  }
  const int64_t M = rows.size(1);
  const double* nk = countsCpu.data_ptr<double>();
  const int64_t largest = n_ > 0 ? static_cast<int64_t>(*std::max_element(nk, nk + K)) : 0;
  const Tensor order = labels.argsort();
  if (K * largest <= 2 * n_ + K) {
    mode_ = kPadded;
    const Tensor sortedLabels = labels.index_select(0, order);
    const Tensor counts = countsCpu.to(labels.device());
    const Tensor start = counts.cumsum(0).sub_(counts).to(torch::kLong);  // [K] first sorted row of each class
    const Tensor slotSorted =
        sortedLabels * largest + torch::arange(n_, labels.options()) - start.index_select(0, sortedLabels);
    index_ = torch::empty_like(slotSorted).index_copy_(0, order, slotSorted);  // [n]
    blocks_ = torch::zeros({K * largest, M}, rows.options()).index_copy_(0, index_, rows).view({K, largest, M});
  } else {
    mode_ = kSorted;
    index_ = order;
    blocks_ = rows.index_select(0, order);
  }
}

Tensor ClassBlocks::grams() const {
  switch (mode_) {
    case kSingle: return blocks_.t().mm(blocks_).unsqueeze(0);
    case kPadded: return blocks_.transpose(1, 2).bmm(blocks_);
    default: break;
  }
  const int64_t M = blocks_.size(1);
  const double* nk = counts_.data_ptr<double>();
  Tensor gram = torch::zeros({classes_, M, M}, blocks_.options());
  int64_t begin = 0;
  for (int64_t k = 0; k < classes_; ++k) {
    const auto rows = static_cast<int64_t>(nk[k]);
    if (rows == 0) continue;
    const Tensor block = blocks_.narrow(0, begin, rows);
    Tensor out = gram[k];
    torch::mm_out(out, block.t(), block);
    begin += rows;
  }
  return gram;
}

Tensor ClassBlocks::times(const Tensor& mats) const {
  const Tensor m = mats.to(blocks_.scalar_type());
  switch (mode_) {
    case kSingle: return blocks_.mm(m[0]);
    case kPadded: return unpad(blocks_.bmm(m));
    default: break;
  }
  const double* nk = counts_.data_ptr<double>();
  Tensor sorted = torch::empty_like(blocks_);  // [n, M]
  int64_t begin = 0;
  for (int64_t k = 0; k < classes_; ++k) {
    const auto rows = static_cast<int64_t>(nk[k]);
    if (rows == 0) continue;
    Tensor out = sorted.narrow(0, begin, rows);
    torch::mm_out(out, blocks_.narrow(0, begin, rows), m[k]);
    begin += rows;
  }
  return torch::empty_like(sorted).index_copy_(0, index_, sorted);
}

Tensor ClassBlocks::unpad(const Tensor& blockRows) const {
  TORCH_CHECK(mode_ == kPadded, "class blocks: unpad of a layout that is not padded");
  return blockRows.reshape({-1, blockRows.size(-1)}).index_select(0, index_);
}

void ClassBlocks::save(torch::autograd::AutogradContext* ctx, const std::string& prefix) const {
  ctx->saved_data[prefix + "mode"] = mode_;
  ctx->saved_data[prefix + "n"] = n_;
  ctx->saved_data[prefix + "classes"] = classes_;
  ctx->saved_data[prefix + "blocks"] = blocks_;
  ctx->saved_data[prefix + "index"] = index_;
  ctx->saved_data[prefix + "counts"] = counts_;
}

ClassBlocks ClassBlocks::load(torch::autograd::AutogradContext* ctx, const std::string& prefix) {
  ClassBlocks b;
  b.mode_ = ctx->saved_data[prefix + "mode"].toInt();
  b.n_ = ctx->saved_data[prefix + "n"].toInt();
  b.classes_ = ctx->saved_data[prefix + "classes"].toInt();
  b.blocks_ = ctx->saved_data[prefix + "blocks"].toTensor();
  b.index_ = ctx->saved_data[prefix + "index"].toTensor();
  b.counts_ = ctx->saved_data[prefix + "counts"].toTensor();
  return b;
}

}  // namespace repshape::reg::detail
