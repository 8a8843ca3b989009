#pragma once
// The regularizers' Reducer over a dist::Communicator: packed penalty/metric statistics travel
// through the differentiable collectives of repshape/distributed (SPEC §4).
//
// Autograd convention: sum() and max() have an identity backward on this rank (the penalty built
// from the reduced statistics is added in full on every rank); gatherRows() returns this rank's
// slice of the incoming gradient; sumGradientsToRows() sums its gradient over ranks into this rank's
// rows (split class-wise penalty shares, one reduce-scatter). The trainer must then SUM parameter gradients across ranks
// (dist::GradientAllReducer). Tensors may live on any device: they are moved to the
// communicator's device for the collective and the result comes back on the input's device.

#include <repshape/distributed/Communicator.h>
#include <repshape/regularizers/Regularizers.h>

#include <string>

namespace repshape {

class CommReducer final : public reg::Reducer {
 public:
  // `tag` prefixes the operation names in timeout messages ("penalty.sum", "metrics.max" …).
  explicit CommReducer(dist::Communicator& comm, std::string tag = "reducer");

  torch::Tensor sum(const torch::Tensor& flat) override;
  torch::Tensor max(const torch::Tensor& flat) override;
  torch::Tensor gatherRows(const torch::Tensor& rows, std::vector<std::int64_t>* rowCounts = nullptr) override;
  int worldSize() const override { return comm_.size(); }
  int rank() const override { return comm_.rank(); }
  torch::Tensor sumGradientsToRows(const torch::Tensor& gathered, const torch::Tensor& local,
                                   const std::vector<std::int64_t>& rowCounts) override;

 private:
  dist::Communicator& comm_;
  std::string sumName_;
  std::string maxName_;
  std::string gatherName_;
  std::string shareName_;
};

}  // namespace repshape
