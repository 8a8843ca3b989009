#include "CommReducer.h"

#include <utility>

namespace repshape {

CommReducer::CommReducer(dist::Communicator& comm, std::string tag)
    : comm_(comm), sumName_(tag + ".sum"), maxName_(tag + ".max"), gatherName_(tag + ".gatherRows"),
      shareName_(tag + ".shareGradients") {}

torch::Tensor CommReducer::sum(const torch::Tensor& flat) {
  // Identity backward: the penalty is a replicated function of the global sums (SPEC §4).
  return dist::allReduceSum(comm_, flat, dist::ReduceBackward::Identity, sumName_.c_str());
}

torch::Tensor CommReducer::max(const torch::Tensor& flat) {
  return dist::allReduceMax(comm_, flat, maxName_.c_str());
}

torch::Tensor CommReducer::gatherRows(const torch::Tensor& rows, std::vector<std::int64_t>* rowCounts) {
  return dist::allGatherRows(comm_, rows, gatherName_.c_str(), rowCounts);
}

torch::Tensor CommReducer::sumGradientsToRows(const torch::Tensor& gathered, const torch::Tensor& local,
                                              const std::vector<std::int64_t>& rowCounts) {
  return dist::sumGradientsToRows(comm_, gathered, local, rowCounts, shareName_.c_str());
}

}  // namespace repshape
