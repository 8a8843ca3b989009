#include "FusedMlp.h"

#include <repshape/regularizers/CpuKernels.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace repshape {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The element work between the products, as raw loops on contiguous CPU fp32/fp64 tensors: one
// pass instead of ATen's two or three dispatched ops per layer (addmm's broadcast copy of the bias,
// relu_, threshold_backward, sum), each ~2–5 µs of dispatch and TensorIterator setup on the
// [100, 100] blocks of the Choi MLP (issue 12, target 4). Other devices and dtypes take ATen.
// Compiled at -O3 twice, baseline x86-64 and AVX2, chosen as FusedAdam's loops are.
bool rawLoops(const torch::Tensor& t) {
  return t.is_cpu() && (t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kFloat64);
}

// rows of y [rows, m] += b, then ReLU if asked: v < 0 ? 0 : v keeps NaN, as relu_ does.
template <typename T>
__attribute__((always_inline)) inline void biasReluLoop(T* __restrict y, const T* __restrict b, int64_t rows,
                                                        int64_t m, bool relu) {
  for (int64_t r = 0; r < rows; ++r) {
    T* __restrict row = y + r * m;
    if (relu) {
      for (int64_t c = 0; c < m; ++c) {
        const T v = row[c] + b[c];
        row[c] = v < T(0) ? T(0) : v;
      }
    } else {
      for (int64_t c = 0; c < m; ++c) row[c] += b[c];
    }
  }
}

// g = up (+ extra) masked by ReLU'(out) (out ≤ 0 → 0, as threshold_backward: a NaN output passes
// its gradient), then sums[c] += Σ_rows g in fp64. The flags are template parameters and the sum
// a second loop over the row just written: GCC vectorises neither loop otherwise (perf: the
// branchy scalar loop took 5 % of the step). With extra, the addition is a loop of its own: in
// one loop with the select GCC sinks the add into the select's branch, may not execute an FP add
// speculatively (it could trap), and keeps the loop scalar (perf: the one layer with a penalty's
// gradient took longer than the five without).
template <typename T, bool Relu, bool Extra>
__attribute__((always_inline)) inline void maskLoop(const T* __restrict up, const T* __restrict extra,
                                                    const T* __restrict out, T* __restrict g, double* __restrict sums,
                                                    int64_t rows, int64_t m) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* __restrict u = up + r * m;
    const T* __restrict e = Extra ? extra + r * m : nullptr;
    const T* __restrict o = out + r * m;
    T* __restrict gr = g + r * m;
    if constexpr (Extra) {
      for (int64_t c = 0; c < m; ++c) gr[c] = u[c] + e[c];
      if constexpr (Relu)
        for (int64_t c = 0; c < m; ++c) gr[c] = o[c] <= T(0) ? T(0) : gr[c];
    } else {
      for (int64_t c = 0; c < m; ++c) gr[c] = Relu && o[c] <= T(0) ? T(0) : u[c];
    }
    for (int64_t c = 0; c < m; ++c) sums[c] += static_cast<double>(gr[c]);
  }
}

template <typename T, bool Relu, bool Extra>
__attribute__((optimize("O3"))) void maskBaseline(const T* up, const T* extra, const T* out, T* g, double* sums,
                                                  int64_t rows, int64_t m) {
  maskLoop<T, Relu, Extra>(up, extra, out, g, sums, rows, m);
}
#if defined(__x86_64__) && defined(__GNUC__)
template <typename T, bool Relu, bool Extra>
__attribute__((optimize("O3"), target("avx2"))) void maskAvx2(const T* up, const T* extra, const T* out, T* g,
                                                              double* sums, int64_t rows, int64_t m) {
  maskLoop<T, Relu, Extra>(up, extra, out, g, sums, rows, m);
}
#endif

template <typename T, bool Relu, bool Extra>
void maskKernel(const T* up, const T* extra, const T* out, T* g, double* sums, int64_t rows, int64_t m) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (cpu::avx2Fma()) return maskAvx2<T, Relu, Extra>(up, extra, out, g, sums, rows, m);
#endif
  maskBaseline<T, Relu, Extra>(up, extra, out, g, sums, rows, m);
}

template <typename T>
__attribute__((optimize("O3"))) void biasReluBaseline(T* y, const T* b, int64_t rows, int64_t m, bool relu) {
  biasReluLoop(y, b, rows, m, relu);
}
#if defined(__x86_64__) && defined(__GNUC__)
template <typename T>
__attribute__((optimize("O3"), target("avx2"))) void biasReluAvx2(T* y, const T* b, int64_t rows, int64_t m,
                                                                  bool relu) {
  biasReluLoop(y, b, rows, m, relu);
}
#endif

// y [n, m] (contiguous, the product h·Wᵀ) += bias, ReLU if asked. Rows split across ATen's
// intra-op threads as its own element-wise ops would split them.
template <typename T>
void biasRelu(torch::Tensor& y, const torch::Tensor& bias, bool relu) {
  const int64_t n = y.size(0), m = y.size(1);
  T* out = y.data_ptr<T>();
  const T* b = bias.data_ptr<T>();
  const bool avx2 = cpu::avx2Fma();
  at::parallel_for(0, n, std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(m, 1)),
                   [&](int64_t begin, int64_t end) {
#if defined(__x86_64__) && defined(__GNUC__)
                     if (avx2) return biasReluAvx2(out + begin * m, b, end - begin, m, relu);
#endif
                     biasReluBaseline(out + begin * m, b, end - begin, m, relu);
                   });
}

// The gradient at a layer's pre-activation, up (+ extra) masked by ReLU'(out), into a fresh
// [n, m] tensor, and db = its column sums (fp64 accumulation). up and extra are not modified
// (autograd may share them). One thread: the blocks this path exists for are small.
template <typename T>
torch::Tensor maskAndBiasGrad(const torch::Tensor& up, const torch::Tensor& extra, const torch::Tensor& out, bool relu,
                              torch::Tensor* db) {
  const int64_t n = out.size(0), m = out.size(1);
  torch::Tensor g = torch::empty({n, m}, out.options());
  const torch::Tensor u = up.contiguous(), e = extra.defined() ? extra.contiguous() : torch::Tensor();
  std::vector<double> sums(static_cast<std::size_t>(m), 0.0);
  const T* pu = u.data_ptr<T>();
  const T* pe = e.defined() ? e.data_ptr<T>() : nullptr;
  const T* po = out.data_ptr<T>();
  T* pg = g.data_ptr<T>();
  double* ps = sums.data();
  if (relu)
    pe ? maskKernel<T, true, true>(pu, pe, po, pg, ps, n, m) : maskKernel<T, true, false>(pu, pe, po, pg, ps, n, m);
  else
    pe ? maskKernel<T, false, true>(pu, pe, po, pg, ps, n, m) : maskKernel<T, false, false>(pu, pe, po, pg, ps, n, m);
  *db = torch::empty({m}, out.options());
  T* pb = db->data_ptr<T>();
  for (int64_t c = 0; c < m; ++c) pb[c] = static_cast<T>(sums[static_cast<std::size_t>(c)]);
  return g;
}

// Inputs: x, then [W_1, b_1, …, W_L, b_L] as one TensorList (ExtractVariables takes a TensorList
// element-wise; a std::vector would be treated as a non-tensor argument), then the ReLU flags.
struct FusedMlpFunction : torch::autograd::Function<FusedMlpFunction> {
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, at::TensorList params,
                               std::vector<int64_t> relu) {
    const auto layers = static_cast<int64_t>(relu.size());
    variable_list saved = {x};
    variable_list hidden;  // post-activation outputs h_1 … h_L (h_L = logits)
    torch::Tensor h = x;
    const bool raw = rawLoops(x);
    for (int64_t i = 0; i < layers; ++i) {
      const torch::Tensor& weight = params[2 * i];
      const torch::Tensor& bias = params[2 * i + 1];
      saved.push_back(weight);
      if (raw && bias.is_contiguous() && bias.scalar_type() == x.scalar_type()) {
        h = at::mm(h, weight.t());  // fresh, contiguous
        if (x.scalar_type() == torch::kFloat64) biasRelu<double>(h, bias, relu[i] != 0);
        else biasRelu<float>(h, bias, relu[i] != 0);
      } else {
        h = at::addmm(bias, h, weight.t());  // as at::linear for 2-D input
        if (relu[i]) h.relu_();
      }
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
      // A penalty on h_{i+1} adds its gradient here.
      const torch::Tensor extra = i < layers - 1 ? gradOutputs[1 + i] : torch::Tensor();
      if (!g.defined() && !extra.defined()) continue;  // nothing above this layer reached the loss
      const torch::Tensor& out = output(i);
      const torch::Tensor& up = g.defined() ? g : extra;
      const torch::Tensor& also = g.defined() ? extra : torch::Tensor();
      if (rawLoops(out) && out.is_contiguous() && up.scalar_type() == out.scalar_type() &&
          (!also.defined() || also.scalar_type() == out.scalar_type())) {
        g = out.scalar_type() == torch::kFloat64 ? maskAndBiasGrad<double>(up, also, out, relu[i] != 0, &grads[2 + 2 * i])
                                                 : maskAndBiasGrad<float>(up, also, out, relu[i] != 0, &grads[2 + 2 * i]);
      } else {
        g = also.defined() ? up + also : up;
        if (relu[i]) g = at::threshold_backward(g, out, 0);  // as ReluBackward0
        grads[2 + 2 * i] = g.sum(0);                         // db
      }
      const torch::Tensor& input = i == 0 ? saved[0] : output(i - 1);
      grads[1 + 2 * i] = g.t().mm(input);  // dW [out, in], contiguous
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
