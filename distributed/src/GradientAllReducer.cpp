#include <repshape/distributed/Communicator.h>

#include <cstring>
#include <utility>
#include <vector>

namespace repshape::dist {

namespace {

// flat[offset, offset + numel) shaped like `param`, sharing flat's storage but without autograd
// view metadata: the optimizers' zero_grad() calls detach_() on grads, which autograd refuses on views.
torch::Tensor aliasOf(const torch::Tensor& flat, std::int64_t offset, const torch::Tensor& param) {
  const torch::Tensor view = flat.narrow(0, offset, param.numel()).view(param.sizes());
  return torch::empty({0}, flat.options()).set_(flat.storage(), view.storage_offset(), view.sizes(), view.strides());
}

}  // namespace

GradientAllReducer::GradientAllReducer(Communicator& comm, std::vector<torch::Tensor> parameters,
                                       GradientAllReducerOptions options)
    : comm_(comm), parameters_(std::move(parameters)), options_(options) {
  TORCH_CHECK(options_.bucketBytes > 0, "GradientAllReducer: bucketBytes must be > 0, got ",
              options_.bucketBytes);
  // Consecutive parameters of one dtype and device share a bucket until it holds bucketBytes.
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    const torch::Tensor& p = parameters_[i];
    TORCH_CHECK(p.defined() && p.is_floating_point(), "GradientAllReducer: parameter #", i,
                " must be a defined floating-point tensor");
    const bool fits = !buckets_.empty() && [&] {
      const torch::Tensor& first = parameters_[buckets_.back().params.front()];
      return first.scalar_type() == p.scalar_type() && first.device() == p.device() &&
             (buckets_.back().numel + p.numel()) * p.element_size() <= options_.bucketBytes;
    }();
    if (!fits) {
      buckets_.push_back({});
      buckets_.back().what = "gradients[" + std::to_string(buckets_.size() - 1) + "]";
    }
    buckets_.back().params.push_back(i);
    buckets_.back().numel += p.numel();
  }
}

std::int64_t GradientAllReducer::bytesPerCall() const {
  std::int64_t bytes = 0;
  for (const Bucket& bucket : buckets_) {
    const torch::Tensor& first = parameters_[bucket.params.front()];
    bytes += (bucket.numel + static_cast<std::int64_t>(bucket.params.size())) * first.element_size();
  }
  return bytes;
}

void GradientAllReducer::allReduce() {
  torch::NoGradGuard noGrad;
  if (comm_.size() == 1) {  // the sum over one rank: no flatten, copy or scatter per step
    if (options_.scale != 1.0)
      for (auto& p : parameters_)
        if (p.grad().defined()) p.mutable_grad().mul_(options_.scale);
    return;
  }
  for (Bucket& bucket : buckets_) {
    const torch::Tensor& first = parameters_[bucket.params.front()];
    const auto numParams = static_cast<std::int64_t>(bucket.params.size());
    // Gradients live in the buffer only where it is on the parameters' device (not for CUDA
    // parameters over a CPU communicator): there, stage through a fresh buffer each call.
    const bool inPlace = first.device() == comm_.device() && first.is_contiguous();
    if (!bucket.flat.defined() || !inPlace) {
      bucket.flat = torch::zeros({bucket.numel + numParams}, first.options());
      // One alias per contiguous parameter, made once: binding a gradient to its slot is then a
      // reference count, not two dispatched ops (the trainer sets gradients to none every step).
      bucket.aliases.assign(static_cast<std::size_t>(numParams), torch::Tensor());
      std::int64_t offset = 0;
      for (std::int64_t j = 0; j < numParams; ++j) {
        const torch::Tensor& p = parameters_[bucket.params[j]];
        if (inPlace && p.is_contiguous()) bucket.aliases[static_cast<std::size_t>(j)] = aliasOf(bucket.flat, offset, p);
        offset += p.numel();
      }
    }
    torch::Tensor flat = bucket.flat;
    // Host memory: slots are filled with memcpy and addressed by pointer, no op per parameter.
    const bool raw = inPlace && flat.is_cpu();
    auto* base = static_cast<char*>(flat.data_ptr());
    const std::size_t elementBytes = flat.element_size();
    // [numel grads | one "grad defined" flag per parameter]; flags are exact in fp32 up to 2^24
    // ranks.
    torch::Tensor flags = flat.narrow(0, bucket.numel, numParams);
    std::vector<char> defined(static_cast<std::size_t>(numParams), 0);
    std::int64_t offset = 0;
    bool allDefined = true;
    for (std::int64_t j = 0; j < numParams; ++j) {
      torch::Tensor& p = parameters_[bucket.params[j]];
      const std::int64_t slotOffset = offset;
      offset += p.numel();
      const torch::Tensor& grad = p.grad();
      char* slotData = base + slotOffset * static_cast<std::int64_t>(elementBytes);
      if (!grad.defined()) {
        if (raw) std::memset(slotData, 0, static_cast<std::size_t>(p.numel()) * elementBytes);
        else flat.narrow(0, slotOffset, p.numel()).zero_();
        allDefined = false;
        continue;
      }
      TORCH_CHECK(!grad.is_sparse(), "GradientAllReducer: sparse gradient of parameter #", bucket.params[j],
                  " is not supported");
      defined[static_cast<std::size_t>(j)] = 1;
      if (grad.data_ptr() == slotData && grad.is_contiguous()) continue;  // already in the buffer
      if (raw && grad.is_contiguous() && grad.is_cpu() && grad.scalar_type() == flat.scalar_type() &&
          grad.numel() == p.numel())
        std::memcpy(slotData, grad.data_ptr(), static_cast<std::size_t>(p.numel()) * elementBytes);
      else
        flat.narrow(0, slotOffset, p.numel()).copy_(grad.reshape({-1}));
      // Later steps accumulate into the buffer (or hand over a fresh gradient, copied in above).
      const torch::Tensor& alias = bucket.aliases[static_cast<std::size_t>(j)];  // sized with flat
      if (alias.defined()) p.mutable_grad() = alias;
    }
    if (allDefined) {
      flags.fill_(1);
    } else {
      flags.zero_();
      for (std::int64_t j = 0; j < numParams; ++j)
        if (defined[static_cast<std::size_t>(j)]) flags[j].fill_(1);
    }
    torch::Tensor onDevice = inPlace ? flat : flat.to(comm_.device());
    comm_.allReduce(onDevice, ReduceOp::Sum, bucket.what.c_str());
    if (options_.scale != 1.0) onDevice.narrow(0, 0, bucket.numel).mul_(options_.scale);
    if (!inPlace) flat = onDevice.to(first.device());
    // Where every gradient was defined here, every flag is set: no need to read them back.
    torch::Tensor definedSomewhere;
    if (!allDefined) definedSomewhere = flat.narrow(0, bucket.numel, numParams).gt(0).cpu();  // [numParams] bool
    offset = 0;
    for (std::int64_t j = 0; j < numParams; ++j) {
      torch::Tensor& p = parameters_[bucket.params[j]];
      const std::int64_t slotOffset = offset;
      offset += p.numel();
      const torch::Tensor& alias = bucket.aliases[static_cast<std::size_t>(j)];  // sized with flat
      if (p.grad().defined()) {
        if (inPlace && p.grad().data_ptr() == static_cast<void*>(base + slotOffset * static_cast<std::int64_t>(elementBytes)))
          continue;  // bound to its slot: holds the sum
        p.mutable_grad().copy_(flat.narrow(0, slotOffset, p.numel()).view(p.sizes()));
      } else if (!allDefined && definedSomewhere.data_ptr<bool>()[j]) {
        p.mutable_grad() = alias.defined() ? alias : flat.narrow(0, slotOffset, p.numel()).view(p.sizes()).clone();
      }
    }
  }
}

}  // namespace repshape::dist
