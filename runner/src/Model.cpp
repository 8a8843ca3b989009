#include "Model.h"

#include "Objective.h"

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

ModelPlan planModel(const Config& config, const std::vector<int64_t>& sampleShape, int64_t numClasses) {
  const ModelConfig& model = config.model;
  if (sampleShape.empty()) throw ConfigError(config.where("data.source") + ": data: empty sample shape");
  const std::vector<std::string> names = modelLayerNames(model);
  ModelPlan plan;
  std::vector<int64_t> shape = sampleShape;  // [C, H, W] (images) or [F] (flat)
  auto flatWidth = [&] {
    int64_t w = 1;
    for (int64_t d : shape) w *= d;
    return w;
  };
  auto add = [&](const std::string& name, const LayerSpec& spec, std::vector<int64_t> out, int64_t parameters) {
    LayerPlan layer;
    layer.name = name;
    layer.spec = spec;
    layer.inShape = shape;
    layer.outShape = out;
    layer.parameters = parameters;
    shape = std::move(out);
    layer.width = flatWidth();
    plan.parameters += parameters;
    plan.activationsPerSample += layer.width;
    plan.layers.push_back(std::move(layer));
  };
  auto fc = [&](const std::string& name, int64_t out) {
    LayerSpec spec;
    spec.out = out;
    add(name, spec, {out}, (flatWidth() + 1) * out);
  };
  if (model.type == "mlp") {
    for (std::size_t i = 0; i < model.hidden.size(); ++i) fc(names[i], model.hidden[i]);
  } else {
    for (std::size_t i = 0; i < model.layers.size(); ++i) {
      const std::string where = config.where("model.layers") + ": model.layers[" + std::to_string(i) + "]: '" +
                                model.layers[i] + "'";
      const LayerSpec spec = parseLayerSpec(model.layers[i]);  // syntax was checked by loadConfig
      if (spec.kind == LayerSpec::Kind::Fc) {
        fc(names[i], spec.out);
        continue;
      }
      if (shape.size() != 3)
        throw ConfigError(where + ": needs an image input [C, H, W]; the input here is flat [" +
                          std::to_string(flatWidth()) + "] (after an fc layer only fc may follow)");
      std::vector<int64_t> out;
      int64_t parameters = 0;
      if (spec.kind == LayerSpec::Kind::Conv) {
        out = {spec.out, (shape[1] + 2 * spec.pad - spec.kernel) / spec.stride + 1,
               (shape[2] + 2 * spec.pad - spec.kernel) / spec.stride + 1};
        parameters = (shape[0] * spec.kernel * spec.kernel + 1) * spec.out;
      } else {
        out = {shape[0], shape[1] / spec.pool, shape[2] / spec.pool};
      }
      if (out[1] <= 0 || out[2] <= 0)
        throw ConfigError(where + ": shrinks the " + std::to_string(shape[1]) + "x" + std::to_string(shape[2]) +
                          " feature map to nothing");
      add(names[i], spec, out, parameters);
    }
  }
  fc("out", outputWidth(config.train.objective, sampleShape, numClasses));  // K, 1 or D (Objective.h)
  for (auto& layer : plan.layers) {
    if (!listed(model.batchNormLayers, layer.name)) continue;
    if (layer.spec.kind == LayerSpec::Kind::Pool)
      throw ConfigError(config.where("model.batch_norm_layers") + ": model.batch_norm_layers: batch norm after pooling layer '" +
                        layer.name + "' is not supported; put it on the conv layer before");
    const int64_t features = layer.outShape[0];
    layer.parameters += 2 * features;
    plan.parameters += 2 * features;
  }
  return plan;
}

NetworkImpl::NetworkImpl(const ModelConfig& config, const ModelPlan& plan) : config_(config) {
  for (const LayerPlan& p : plan.layers) {
    Layer layer;
    layer.name = p.name;
    layer.width = p.width;
    layer.activate = p.name != "out";
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
      const int64_t features = layer.kind == Kind::Linear ? layer.width : layer.conv->options.out_channels();
      layer.bnWeight = register_parameter(layer.name + "_bn_weight", torch::ones({features}));
      layer.bnBias = register_parameter(layer.name + "_bn_bias", torch::zeros({features}));
      layer.runningMean = register_buffer(layer.name + "_bn_mean", torch::zeros({features}));
      layer.runningVar = register_buffer(layer.name + "_bn_var", torch::ones({features}));
    }
  }
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
    }
    if (layer.activate) x = activation(x);
    if (captured && layer.captureSlot >= 0) (*captured)[layer.captureSlot] = x.dim() == 2 ? x : x.flatten(1);
    if (layer.batchNorm) x = applyBatchNorm(layer, x, context);
    if (layer.dropout > 0) x = applyDropout(layer, i, x, context);
  }
  return x;
}

std::vector<std::pair<std::string, torch::Tensor>> NetworkImpl::weightMatrices() const {
  std::vector<std::pair<std::string, torch::Tensor>> weights;
  for (const auto& layer : layers_) {
    if (layer.kind == Kind::Linear) weights.emplace_back(layer.name, layer.linear->weight);
    if (layer.kind == Kind::Conv) weights.emplace_back(layer.name, layer.conv->weight.flatten(1));
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
