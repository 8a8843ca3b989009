#include "FusedMlp.h"

namespace repshape {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Inputs: x, then [W_1, b_1, …, W_L, b_L] as one TensorList (ExtractVariables takes a TensorList
// element-wise; a std::vector would be treated as a non-tensor argument), then the ReLU flags.
struct FusedMlpFunction : torch::autograd::Function<FusedMlpFunction> {
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, at::TensorList params,
                               std::vector<int64_t> relu) {
    const auto layers = static_cast<int64_t>(relu.size());
    variable_list saved = {x};
    variable_list hidden;  // post-activation outputs h_1 … h_L (h_L = logits)
    torch::Tensor h = x;
    for (int64_t i = 0; i < layers; ++i) {
      const torch::Tensor& weight = params[2 * i];
      saved.push_back(weight);
      h = at::addmm(params[2 * i + 1], h, weight.t());  // as at::linear for 2-D input
      if (relu[i]) h.relu_();
      hidden.push_back(h);
    }
    saved.insert(saved.end(), hidden.begin(), hidden.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["relu"] = relu;
    // Hidden outputs no penalty reads get no gradient: keep theirs undefined instead of autograd's
    // default zero tensors, which cost a memset and an add per layer in backward.
    ctx->set_materialize_grads(false);
    variable_list outputs = {hidden.back()};
    outputs.insert(outputs.end(), hidden.begin(), hidden.end() - 1);
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list gradOutputs) {
    const std::vector<int64_t> relu = ctx->saved_data["relu"].toIntVector();
    const auto layers = static_cast<int64_t>(relu.size());
    const variable_list saved = ctx->get_saved_variables();  // [x, W_1…W_L, h_1…h_L]
    const auto weight = [&](int64_t i) -> const torch::Tensor& { return saved[1 + i]; };
    const auto output = [&](int64_t i) -> const torch::Tensor& { return saved[1 + layers + i]; };
    // One gradient per forward input: x, every parameter, the flags.
    variable_list grads(static_cast<std::size_t>(2 + 2 * layers));
    torch::Tensor g = gradOutputs[0];  // dL/d logits
    for (int64_t i = layers - 1; i >= 0; --i) {
      if (i < layers - 1 && gradOutputs[1 + i].defined())  // a penalty on h_{i+1}
        g = g.defined() ? g + gradOutputs[1 + i] : gradOutputs[1 + i];
      if (!g.defined()) continue;  // nothing above this layer reached the loss
      if (relu[i]) g = at::threshold_backward(g, output(i), 0);  // as ReluBackward0
      const torch::Tensor& input = i == 0 ? saved[0] : output(i - 1);
      grads[1 + 2 * i] = g.t().mm(input);  // dW [out, in], contiguous
      grads[2 + 2 * i] = g.sum(0);         // db
      g = i > 0 ? g.mm(weight(i)) : torch::Tensor();
    }
    return grads;
  }
};

}  // namespace

std::vector<torch::Tensor> fusedMlpForward(const torch::Tensor& x, const std::vector<FusedMlpLayer>& layers) {
  TORCH_CHECK(!layers.empty(), "fusedMlpForward: no layers");
  TORCH_CHECK(x.dim() == 2, "fusedMlpForward: input must be [n, features], got ", x.sizes());
  std::vector<torch::Tensor> params;
  std::vector<int64_t> relu;
  for (const FusedMlpLayer& layer : layers) {
    params.push_back(layer.weight);
    params.push_back(layer.bias);
    relu.push_back(layer.relu ? 1 : 0);
  }
  return FusedMlpFunction::apply(x, at::TensorList(params), relu);
}

}  // namespace repshape
