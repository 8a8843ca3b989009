// Differentiable collectives (SPEC §4). Convention: each rank's objective is its share of the
// global objective and parameter gradients are SUMMED across ranks after backward. A value built
// from globally reduced statistics and consumed identically on every rank therefore needs an
// identity backward here — all-reducing its gradient as well would count it W times, the 1/W or
// W× scale bugs of naive implementations (lightly#1977, lightly#1528, cellarium-ml#184).

#include <repshape/distributed/Communicator.h>

#include <cstdint>
#include <string>

namespace repshape::dist {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// autograd saved_data holds IValues: the communicator travels as an integer address. It must
// outlive the graph (the trainer owns it for the whole run).
std::int64_t address(Communicator& comm) { return reinterpret_cast<std::intptr_t>(&comm); }
Communicator& fromAddress(const c10::IValue& value) {
  return *reinterpret_cast<Communicator*>(static_cast<std::intptr_t>(value.toInt()));
}

// Single process: collectives are identities on any device; otherwise tensors must sit on the
// backend's device. Returns a fresh contiguous copy (collectives work in place).
torch::Tensor stagingCopy(Communicator& comm, const torch::Tensor& tensor) {
  const torch::Device device = comm.size() == 1 ? tensor.device() : comm.device();
  return tensor.detach().to(device, tensor.scalar_type(), /*non_blocking=*/false, /*copy=*/true)
      .contiguous();
}

struct AllReduceSumFunction : public torch::autograd::Function<AllReduceSumFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& local, Communicator* comm,
                               ReduceBackward backward, const char* what) {
    ctx->saved_data["comm"] = address(*comm);
    ctx->saved_data["mode"] = static_cast<std::int64_t>(backward);
    ctx->saved_data["what"] = std::string(what);
    torch::Tensor global = stagingCopy(*comm, local);
    comm->allReduce(global, ReduceOp::Sum, what);
    return global.to(local.device());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    torch::Tensor grad = grads[0];
    const auto mode = static_cast<ReduceBackward>(ctx->saved_data["mode"].toInt());
    if (grad.defined() && mode == ReduceBackward::Sum) {
      Communicator& comm = fromAddress(ctx->saved_data["comm"]);
      const std::string what = ctx->saved_data["what"].toStringRef() + ".backward";
      torch::Tensor summed = stagingCopy(comm, grad);
      comm.allReduce(summed, ReduceOp::Sum, what.c_str());
      grad = summed.to(grad.device());
    }
    // Identity: d(global)/d(local) = I on this rank; the other ranks' terms reach their own
    // inputs through their own (identical) replicated consumer.
    return {grad, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

struct AllReduceMaxFunction : public torch::autograd::Function<AllReduceMaxFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& local, Communicator* comm,
                               const char* what) {
    torch::Tensor global = stagingCopy(*comm, local);
    comm->allReduce(global, ReduceOp::Max, what);
    // Lowest rank holding each maximum: MIN over ranks of (rank if local == global else size).
    const torch::Tensor localOnDevice = local.detach().to(global.device());
    torch::Tensor owner = torch::full_like(global, comm->size(), global.options().dtype(torch::kInt))
                              .masked_fill_(localOnDevice.eq(global), comm->rank())
                              .contiguous();
    const std::string ownerWhat = std::string(what) + ".argmax";
    comm->allReduce(owner, ReduceOp::Min, ownerWhat.c_str());
    ctx->save_for_backward({owner.eq(comm->rank()).to(local.device())});
    return global.to(local.device());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const torch::Tensor mine = ctx->get_saved_variables()[0];  // [same as local] bool
    torch::Tensor grad = grads[0];
    if (grad.defined()) grad = grad * mine.to(grad.scalar_type());
    return {grad, torch::Tensor(), torch::Tensor()};
  }
};

struct AllGatherRowsFunction : public torch::autograd::Function<AllGatherRowsFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& rows, Communicator* comm,
                               const char* what, std::vector<std::int64_t>* rowCounts) {
    std::vector<std::int64_t> counts;
    torch::Tensor gathered = comm->allGatherRows(stagingCopy(*comm, rows), what, &counts);
    if (rowCounts != nullptr) *rowCounts = counts;
    std::int64_t offset = 0;
    for (int r = 0; r < comm->rank(); ++r) offset += counts[static_cast<std::size_t>(r)];
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["rows"] = rows.size(0);
    return gathered.to(rows.device());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    torch::Tensor grad = grads[0];
    if (grad.defined()) {
      // This rank's slice, unscaled: the replicated consumer on every rank sees all rows, and
      // summing parameter gradients over ranks adds the other ranks' identical contributions
      // to their own rows only.
      grad = grad.narrow(0, ctx->saved_data["offset"].toInt(), ctx->saved_data["rows"].toInt());
    }
    return {grad, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

struct SumGradientsToRowsFunction : public torch::autograd::Function<SumGradientsToRowsFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& /*local*/, const torch::Tensor& gathered,
                               Communicator* comm, const std::vector<std::int64_t>* rowCounts, const char* what) {
    ctx->saved_data["comm"] = address(*comm);
    ctx->saved_data["what"] = std::string(what);
    ctx->saved_data["counts"] = *rowCounts;
    return gathered.view_as(gathered);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    Communicator& comm = fromAddress(ctx->saved_data["comm"]);
    const std::string what = ctx->saved_data["what"].toStringRef() + ".backward";
    // Never undefined here: custom functions materialise a missing gradient as zeros, so every
    // rank that reaches this node takes part in the collective.
    const torch::Tensor& grad = grads[0];
    const torch::Tensor mine = comm.reduceScatterRows(grad.to(comm.device()), ctx->saved_data["counts"].toIntVector(),
                                                      what.c_str());
    return {mine.to(grad.device()), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor sumGradientsToRows(Communicator& comm, const torch::Tensor& gathered, const torch::Tensor& local,
                                 const std::vector<std::int64_t>& rowCounts, const char* what) {
  TORCH_CHECK(gathered.defined() && local.defined() && gathered.dim() >= 1, "sumGradientsToRows '", what,
              "': needs the gathered rows and this rank's rows");
  if (comm.size() == 1) return local;
  TORCH_CHECK(gathered.sizes().slice(1) == local.sizes().slice(1) && rowCounts.size() == static_cast<std::size_t>(comm.size()) &&
                  rowCounts[static_cast<std::size_t>(comm.rank())] == local.size(0),
              "sumGradientsToRows '", what, "': gathered rows ", gathered.sizes(), " and this rank's ", local.sizes(),
              " do not match the row counts ", rowCounts);
  return SumGradientsToRowsFunction::apply(local, gathered.detach(), &comm, &rowCounts, what);
}

torch::Tensor allReduceSum(Communicator& comm, const torch::Tensor& local, ReduceBackward backward,
                           const char* what) {
  TORCH_CHECK(local.defined(), "allReduceSum '", what, "': undefined tensor");
  if (comm.size() == 1) return local;  // identity forward and backward: no copy, no graph node
  return AllReduceSumFunction::apply(local, &comm, backward, what);
}

torch::Tensor allReduceMax(Communicator& comm, const torch::Tensor& local, const char* what) {
  TORCH_CHECK(local.defined(), "allReduceMax '", what, "': undefined tensor");
  if (comm.size() == 1) return local;
  return AllReduceMaxFunction::apply(local, &comm, what);
}

torch::Tensor allGatherRows(Communicator& comm, const torch::Tensor& rows, const char* what,
                            std::vector<std::int64_t>* rowCounts) {
  TORCH_CHECK(rows.defined() && rows.dim() >= 1, "allGatherRows '", what,
              "': needs a tensor with a row dimension");
  if (comm.size() == 1) {
    if (rowCounts != nullptr) *rowCounts = {rows.size(0)};
    return rows;
  }
  return AllGatherRowsFunction::apply(rows, &comm, what, rowCounts);
}

}  // namespace repshape::dist
