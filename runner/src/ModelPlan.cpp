// planModel: the model as shapes only (Model.h), walked from the config and the data's sample shape.
//
// mlp      h1 … hL (fc), out
// cnn      conv / pool / fc as listed, out (fc)
// lstm     lstm (hidden state H at each sequence's last step), fc1 … fcL, out (fc)
// conv_ae  encoder as listed (its last fc is "code"), then the mirror image: dec1 … dec(L-1), out;
//          each decoder layer maps the output shape of its encoder twin back to that twin's input
//          shape (fc ↔ fc, conv ↔ ConvTranspose2d with the same kernel, stride and padding).

#include "Model.h"
#include "Objective.h"

#include <algorithm>

namespace repshape {

namespace {

std::string dims(const std::vector<int64_t>& shape) {
  std::string text;
  for (int64_t d : shape) text += (text.empty() ? "" : ", ") + std::to_string(d);
  return "[" + text + "]";
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t w = 1;
  for (int64_t d : shape) w *= d;
  return w;
}

}  // namespace

ModelPlan planModel(const Config& config, const std::vector<int64_t>& sampleShape, int64_t numClasses) {
  const ModelConfig& model = config.model;
  if (sampleShape.empty()) throw ConfigError(config.where("data.source") + ": data: empty sample shape");
  const std::vector<std::string> names = modelLayerNames(model);
  ModelPlan plan;
  std::vector<int64_t> shape = sampleShape;  // [C, H, W] (images), [T, F] (sequences) or [F] (flat)
  auto add = [&](const std::string& name, const LayerSpec& spec, std::vector<int64_t> out, int64_t parameters) {
    LayerPlan layer;
    layer.name = name;
    layer.spec = spec;
    layer.inShape = shape;
    layer.outShape = out;
    layer.parameters = parameters;
    shape = std::move(out);
    layer.width = product(shape);
    plan.parameters += parameters;
    plan.activationsPerSample += layer.width;
    plan.layers.push_back(std::move(layer));
  };
  auto fc = [&](const std::string& name, int64_t out) {
    LayerSpec spec;
    spec.out = out;
    add(name, spec, {out}, (product(shape) + 1) * out);
  };

  if (model.type == "mlp") {
    for (std::size_t i = 0; i < model.hidden.size(); ++i) fc(names[i], model.hidden[i]);
  } else if (model.type == "lstm") {
    if (shape.size() != 2)
      throw ConfigError(config.where("model.type") + ": model.type: \"lstm\" reads sequences [T, F] (data.source = "
                        "\"strokes\"), but the samples here are " + dims(shape) + " (data.source = \"" +
                        config.data.source + "\")");
    const int64_t steps = shape[0], features = shape[1], h = model.lstmHidden, depth = model.lstmLayers;
    LayerSpec spec;
    spec.kind = LayerSpec::Kind::Lstm;
    spec.out = h;
    spec.layers = depth;
    // Per layer: W_ih [4H, in], W_hh [4H, H], b_ih and b_hh [4H] (LibTorch keeps both biases).
    const int64_t parameters = 4 * h * (features + h) + 8 * h + (depth - 1) * (4 * h * (2 * h) + 8 * h);
    add("lstm", spec, {h}, parameters);
    // Backward keeps the four gates, the cell and the hidden state of every step of every layer.
    plan.activationsPerSample += steps * depth * 6 * h;
    for (std::size_t i = 0; i < model.hidden.size(); ++i) fc(names[i + 1], model.hidden[i]);
  } else {  // cnn, conv_ae encoder
    for (std::size_t i = 0; i < model.layers.size(); ++i) {
      const std::string where = config.where("model.layers") + ": model.layers[" + std::to_string(i) + "]: '" +
                                model.layers[i] + "'";
      const LayerSpec spec = parseLayerSpec(model.layers[i]);  // syntax was checked by loadConfig
      if (spec.kind == LayerSpec::Kind::Fc) {
        fc(names[i], spec.out);
        continue;
      }
      if (shape.size() != 3)
        throw ConfigError(where + ": needs an image input [C, H, W]; the input here is " + dims(shape) +
                          (i == 0 ? " (data.source = \"" + config.data.source + "\")"
                                  : std::string(" (after an fc layer only fc may follow)")));
      std::vector<int64_t> out;
      int64_t parameters = 0;
      if (spec.kind == LayerSpec::Kind::Conv) {
        out = {spec.out, (shape[1] + 2 * spec.pad - spec.kernel) / spec.stride + 1,
               (shape[2] + 2 * spec.pad - spec.kernel) / spec.stride + 1};
        parameters = (shape[0] * spec.kernel * spec.kernel + 1) * spec.out;
      } else {
        out = {shape[0], shape[1] / spec.pool, shape[2] / spec.pool};
      }
      if (shape[1] + 2 * spec.pad < spec.kernel || shape[2] + 2 * spec.pad < spec.kernel || out[1] <= 0 || out[2] <= 0)
        throw ConfigError(where + ": shrinks the " + std::to_string(shape[1]) + "x" + std::to_string(shape[2]) +
                          " feature map to nothing");
      add(names[i], spec, out, parameters);
    }
  }

  if (model.type == "conv_ae") {
    // The mirror: decoder layer j undoes encoder layer L-1-j; the last one is "out" (no activation).
    const std::size_t encoder = plan.layers.size();
    for (std::size_t j = 0; j < encoder; ++j) {
      const LayerPlan twin = plan.layers[encoder - 1 - j];
      const std::string name = j + 1 == encoder ? "out" : "dec" + std::to_string(j + 1);
      if (twin.spec.kind == LayerSpec::Kind::Fc) {
        LayerSpec spec;
        spec.out = product(twin.inShape);
        add(name, spec, {spec.out}, (twin.spec.out + 1) * spec.out);
        continue;
      }
      LayerSpec spec = twin.spec;  // same kernel, stride and padding; output_padding from the shapes
      spec.kind = LayerSpec::Kind::Deconv;
      spec.out = twin.inShape[0];
      shape = twin.outShape;  // a flat input is viewed as the twin's output map
      add(name, spec, twin.inShape, twin.outShape[0] * spec.out * spec.kernel * spec.kernel + spec.out);
    }
    if (product(shape) != outputWidth(config.train.objective, sampleShape, numClasses))
      throw ConfigError(config.where("train.objective") + ": train.objective: a conv_ae reconstructs its " +
                        dims(sampleShape) + " input; set \"mse\"");
  } else {
    fc("out", outputWidth(config.train.objective, sampleShape, numClasses));  // K, 1 or D (Objective.h)
  }
  for (auto& layer : plan.layers) {
    if (std::find(model.batchNormLayers.begin(), model.batchNormLayers.end(), layer.name) == model.batchNormLayers.end())
      continue;
    if (layer.spec.kind == LayerSpec::Kind::Pool)
      throw ConfigError(config.where("model.batch_norm_layers") + ": model.batch_norm_layers: batch norm after pooling layer '" +
                        layer.name + "' is not supported; put it on the conv layer before");
    const int64_t features = layer.outShape[0];  // channels of a map, or the width
    layer.parameters += 2 * features;
    plan.parameters += 2 * features;
  }
  return plan;
}

}  // namespace repshape
