#include <repshape/distributed/Communicator.h>

#include <utility>

namespace repshape::dist {

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
  for (const Bucket& bucket : buckets_) {
    const torch::Tensor& first = parameters_[bucket.params.front()];
    const auto numParams = static_cast<std::int64_t>(bucket.params.size());
    // [numel grads | one "grad defined" flag per parameter]; flags are exact in fp32 up to 2^24
    // ranks.
    torch::Tensor flat = torch::zeros({bucket.numel + numParams}, first.options());
    torch::Tensor flags = flat.narrow(0, bucket.numel, numParams);
    std::int64_t offset = 0;
    for (std::int64_t j = 0; j < numParams; ++j) {
      const torch::Tensor& p = parameters_[bucket.params[j]];
      const torch::Tensor& grad = p.grad();
      if (grad.defined()) {
        TORCH_CHECK(!grad.is_sparse(), "GradientAllReducer: sparse gradient of parameter #",
                    bucket.params[j], " is not supported");
        flat.narrow(0, offset, p.numel()).copy_(grad.reshape({-1}));
        flags[j].fill_(1);
      }
      offset += p.numel();
    }
    torch::Tensor onDevice = comm_.size() == 1 ? flat : flat.to(comm_.device());
    comm_.allReduce(onDevice, ReduceOp::Sum, bucket.what.c_str());
    if (options_.scale != 1.0) onDevice.narrow(0, 0, bucket.numel).mul_(options_.scale);
    flat = onDevice.to(first.device());
    flags = flat.narrow(0, bucket.numel, numParams);
    const torch::Tensor definedSomewhere = flags.gt(0).cpu();  // [numParams] bool
    offset = 0;
    for (std::int64_t j = 0; j < numParams; ++j) {
      torch::Tensor& p = parameters_[bucket.params[j]];
      const torch::Tensor summed = flat.narrow(0, offset, p.numel()).view(p.sizes());
      offset += p.numel();
      if (p.grad().defined()) {
        p.mutable_grad().copy_(summed);
      } else if (definedSomewhere[j].item<bool>()) {
        p.mutable_grad() = summed.clone();
      }
    }
  }
}

}  // namespace repshape::dist
