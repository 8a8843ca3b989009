#include "Model.h"

#include "FusedMlp.h"

#include <repshape/regularizers/Environment.h>

#include <ATen/CPUGeneratorImpl.h>

#include <sstream>

namespace repshape {

namespace {

constexpr double kBatchNormMomentum = 0.1;
constexpr double kBatchNormEps = 1e-5;

// splitmix64: decorrelates the (seed, step, layer) triple into one generator seed.
uint64_t mixSeed(uint64_t seed, uint64_t step, uint64_t layer) {
  uint64_t z = seed ^ (step * 0x9E3779B97F4A7C15ULL) ^ (layer * 0xBF58476D1CE4E5B9ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

bool listed(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

NetworkImpl::NetworkImpl(const ModelConfig& config, const ModelPlan& plan) : config_(config) {
  for (const LayerPlan& p : plan.layers) {
    Layer layer;
    layer.name = p.name;
    layer.width = p.width;
    layer.features = p.outShape[0];  // channels of a map, or the width
    layer.inShape = p.inShape;
    // Pooling, the LSTM's state (already tanh-squashed), a conv_ae code and "out" are not activated.
    layer.activate = p.name != "out" && p.name != "code";
    switch (p.spec.kind) {
      case LayerSpec::Kind::Fc: {
        int64_t in = 1;
        for (int64_t d : p.inShape) in *= d;
        layer.kind = Kind::Linear;
        layer.linear = register_module(p.name, torch::nn::Linear(in, p.spec.out));
        break;
      }
      case LayerSpec::Kind::Conv:
        layer.kind = Kind::Conv;
        layer.conv = register_module(
            p.name, torch::nn::Conv2d(torch::nn::Conv2dOptions(p.inShape[0], p.spec.out, p.spec.kernel)
                                          .stride(p.spec.stride)
                                          .padding(p.spec.pad)));
        break;
      case LayerSpec::Kind::Deconv: {
        // output_padding restores the mirrored conv's input size exactly: out = (in−1)·s − 2p + k + op.
        auto outputPadding = [&](int d) {
          return p.outShape[d] - ((p.inShape[d] - 1) * p.spec.stride - 2 * p.spec.pad + p.spec.kernel);
        };
        layer.kind = Kind::Deconv;
        layer.deconv = register_module(
            p.name, torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(p.inShape[0], p.spec.out, p.spec.kernel)
                                                   .stride(p.spec.stride)
                                                   .padding(p.spec.pad)
                                                   .output_padding({outputPadding(1), outputPadding(2)})));
        break;
      }
      case LayerSpec::Kind::Lstm:
        layer.kind = Kind::Lstm;
        layer.activate = false;
        layer.lstm = register_module(
            p.name, torch::nn::LSTM(torch::nn::LSTMOptions(p.inShape[1], p.spec.out).num_layers(p.spec.layers).batch_first(true)));
        break;
      case LayerSpec::Kind::Pool:
        layer.kind = Kind::Pool;
        layer.poolSize = p.spec.pool;
        layer.activate = false;
        break;
    }
    layers_.push_back(std::move(layer));
  }

  const bool dropoutEverywhere = config.dropout > 0 && config.dropoutLayers.empty();
  for (auto& layer : layers_) {
    if (layer.name == "out") continue;
    if (config.dropout > 0 && (dropoutEverywhere || listed(config.dropoutLayers, layer.name)))
      layer.dropout = config.dropout;
    if (listed(config.batchNormLayers, layer.name)) {
      layer.batchNorm = true;
      const int64_t features = layer.features;
      layer.bnWeight = register_parameter(layer.name + "_bn_weight", torch::ones({features}));
      layer.bnBias = register_parameter(layer.name + "_bn_bias", torch::zeros({features}));
      layer.runningMean = register_buffer(layer.name + "_bn_mean", torch::zeros({features}));
      layer.runningVar = register_buffer(layer.name + "_bn_var", torch::ones({features}));
    }
  }
  fusable_ = environmentChoice("REPSHAPE_FUSED_MLP", {"1", "0"}) == "1" &&
             (config.activation == "relu" || config.activation == "linear") &&
             std::all_of(layers_.begin(), layers_.end(), [](const Layer& l) {
               return l.kind == Kind::Linear && !l.batchNorm && l.dropout <= 0 && l.linear->options.bias();
             });
}

torch::Tensor NetworkImpl::fusedForward(const torch::Tensor& input, std::vector<torch::Tensor>* captured) {
  std::vector<FusedMlpLayer> chain;
  for (const Layer& layer : layers_)
    chain.push_back({layer.linear->weight, layer.linear->bias, layer.activate && config_.activation == "relu"});
  const std::vector<torch::Tensor> outputs = fusedMlpForward(input.dim() == 2 ? input : input.flatten(1), chain);
  if (captured)  // outputs: [logits, h_1, …, h_{L−1}]
    for (std::size_t i = 0; i < layers_.size(); ++i)
      if (layers_[i].captureSlot >= 0) (*captured)[layers_[i].captureSlot] = i + 1 == layers_.size() ? outputs[0] : outputs[i + 1];
  return outputs[0];
}

void NetworkImpl::setCaptureLayers(const std::vector<std::string>& names) {
  for (auto& layer : layers_) layer.captureSlot = -1;
  captureNames_ = names;
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto it = std::find_if(layers_.begin(), layers_.end(), [&](const Layer& l) { return l.name == names[i]; });
    TORCH_CHECK(it != layers_.end(), "no layer named '", names[i], "'");
    TORCH_CHECK(it->captureSlot < 0, "layer '", names[i], "' captured twice");
    it->captureSlot = static_cast<int>(i);
  }
}

torch::Tensor NetworkImpl::activation(const torch::Tensor& x) const {
  const std::string& a = config_.activation;
  if (a == "relu") return torch::relu(x);
  if (a == "leaky_relu") return torch::leaky_relu(x, config_.leakySlope);
  if (a == "sigmoid") return torch::sigmoid(x);
  if (a == "tanh") return torch::tanh(x);
  return x;  // linear
}

torch::Tensor NetworkImpl::applyBatchNorm(Layer& layer, const torch::Tensor& x, const ForwardContext& context) {
  // Per-feature view [rows, F]; conv maps use every (sample, pixel) of a channel as a row.
  const bool image = x.dim() == 4;
  auto viewShape = [&](const torch::Tensor& v) { return image ? v.view({1, -1, 1, 1}) : v.view({1, -1}); };
  if (!context.training) {
    const auto scale = layer.bnWeight / torch::sqrt(layer.runningVar + kBatchNormEps);
    return (x - viewShape(layer.runningMean)) * viewShape(scale) + viewShape(layer.bnBias);
  }
  const torch::Tensor rows = image ? x.transpose(0, 1).reshape({x.size(1), -1}).t() : x;  // [r, F]
  const torch::Tensor rows64 = rows.to(torch::kDouble);
  // One packed sum across ranks: [Σx (F) | Σx² (F) | count]. Counts are communicated, never
  // assumed, so uneven and empty shards are exact. fp64 keeps E[x²] − μ² from cancelling.
  const torch::Tensor count = torch::full({1}, static_cast<double>(rows.size(0)), rows64.options());
  const torch::Tensor local = torch::cat({rows64.sum(0), (rows64 * rows64).sum(0), count});
  const torch::Tensor global = context.sumAcrossRanks ? context.sumAcrossRanks(local) : local;
  const int64_t f = rows.size(1);
  const torch::Tensor n = global.narrow(0, 2 * f, 1).detach().clamp_min(1.0);
  const torch::Tensor mean = global.narrow(0, 0, f) / n;
  const torch::Tensor var = (global.narrow(0, f, f) / n - mean * mean).clamp_min(0.0);  // biased, as BN
  {
    torch::NoGradGuard noGrad;
    const torch::Tensor unbiased = var * n / (n - 1.0).clamp_min(1.0);
    layer.runningMean.mul_(1 - kBatchNormMomentum).add_(mean.to(layer.runningMean.dtype()), kBatchNormMomentum);
    layer.runningVar.mul_(1 - kBatchNormMomentum).add_(unbiased.to(layer.runningVar.dtype()), kBatchNormMomentum);
  }
  const torch::Tensor invStd = torch::rsqrt(var + kBatchNormEps).to(x.dtype());
  return (x - viewShape(mean.to(x.dtype()))) * viewShape(invStd * layer.bnWeight) + viewShape(layer.bnBias);
}

torch::Tensor NetworkImpl::applyDropout(const Layer& layer, std::size_t index, const torch::Tensor& x,
                                        const ForwardContext& context) const {
  if (!context.training || layer.dropout <= 0) return x;
  // The mask of the whole global batch, then this rank's rows: independent of the world size.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(mixSeed(context.seed, context.step, index));
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape[0] = context.globalBatch;
  const torch::Tensor uniform = at::rand(shape, generator, torch::TensorOptions().dtype(x.dtype()));
  const torch::Tensor keep = uniform.narrow(0, context.rowOffset, x.size(0)).ge(layer.dropout);
  return x * keep.to(x.device(), x.dtype()) * (1.0 / (1.0 - layer.dropout));
}

torch::Tensor NetworkImpl::forward(const torch::Tensor& input, const ForwardContext& context,
                                   std::vector<torch::Tensor>* captured) {
  if (captured) captured->assign(captureNames_.size(), torch::Tensor());
  if (fusable_ && context.training && torch::GradMode::is_enabled() && !input.requires_grad())
    return fusedForward(input, captured);
  torch::Tensor x = input;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    Layer& layer = layers_[i];
    switch (layer.kind) {
      case Kind::Linear:
        if (x.dim() != 2) x = x.flatten(1);
        x = layer.linear->forward(x);
        break;
      case Kind::Conv: x = layer.conv->forward(x); break;
      case Kind::Pool: x = torch::max_pool2d(x, layer.poolSize); break;
      case Kind::Deconv:
        if (x.dim() == 2) x = x.view({x.size(0), layer.inShape[0], layer.inShape[1], layer.inShape[2]});
        x = layer.deconv->forward(x);
        break;
      case Kind::Lstm: x = lastStates(layer, x); break;
    }
    if (layer.activate) x = activation(x);
    if (captured && layer.captureSlot >= 0) (*captured)[layer.captureSlot] = x.dim() == 2 ? x : x.flatten(1);
    if (layer.batchNorm) x = applyBatchNorm(layer, x, context);
    if (layer.dropout > 0) x = applyDropout(layer, i, x, context);
  }
  return x.dim() == 2 ? x : x.flatten(1);  // a conv_ae's "out" map, flattened like its target
}

torch::Tensor NetworkImpl::lastStates(Layer& layer, const torch::Tensor& x) {
  // x [n, T, F], zero-padded after each sequence: a sequence ends at its last row that is not all
  // zero (strokes: the eod row, as data::sequenceLengths). The LSTM is causal, so its output at
  // that step ignores the padding behind it: exact per sample, for any batch split across ranks.
  const int64_t n = x.size(0), steps = x.size(1);
  const torch::Tensor position = torch::arange(1, steps + 1, x.options().dtype(torch::kLong));
  const torch::Tensor lengths = x.ne(0).any(2).to(torch::kLong).mul(position).amax(1);  // [n]
  const torch::Tensor outputs = std::get<0>(layer.lstm->forward(x));                   // [n, T, H]
  const torch::Tensor last = (lengths - 1).clamp_min(0).view({n, 1, 1}).expand({n, 1, outputs.size(2)});
  return outputs.gather(1, last).squeeze(1);  // [n, H]; an all-zero sequence reads its first step
}

std::vector<std::pair<std::string, torch::Tensor>> NetworkImpl::weightMatrices() const {
  std::vector<std::pair<std::string, torch::Tensor>> weights;
  for (const auto& layer : layers_) {
    if (layer.kind == Kind::Linear) weights.emplace_back(layer.name, layer.linear->weight);
    if (layer.kind == Kind::Conv) weights.emplace_back(layer.name, layer.conv->weight.flatten(1));
    // ConvTranspose2d keeps [in, out, k, k]: one row per output channel, like a conv.
    if (layer.kind == Kind::Deconv) weights.emplace_back(layer.name, layer.deconv->weight.transpose(0, 1).flatten(1));
    if (layer.kind == Kind::Lstm)  // "lstm.weight_ih_l0", "lstm.weight_hh_l0", …: [4H, in] / [4H, H]
      for (const auto& item : layer.lstm->named_parameters(false))
        if (item.key().rfind("weight", 0) == 0) weights.emplace_back(layer.name + "." + item.key(), item.value());
  }
  return weights;
}

std::vector<std::string> NetworkImpl::layerNames() const {
  std::vector<std::string> names;
  for (const auto& layer : layers_) names.push_back(layer.name);
  return names;
}

int64_t NetworkImpl::layerWidth(const std::string& name) const {
  for (const auto& layer : layers_)
    if (layer.name == name) return layer.width;
  TORCH_CHECK(false, "no layer named '", name, "'");
}

bool NetworkImpl::isReluLayer(const std::string& name) const {
  for (const auto& layer : layers_)
    if (layer.name == name) return layer.activate && config_.activation == "relu";
  return false;
}

}  // namespace repshape
