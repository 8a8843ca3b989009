#include "Config.h"

#include "MetricsExporter.h"
#include "detail/ConfigFields.h"

#include <toml++/toml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace repshape {

using detail::Field;
using detail::ParseContext;

namespace detail {

std::string ParseContext::where(const toml::source_region& source) const {
  // Values given with --set are parsed with the source path "--set".
  if (source.begin.line == 0 || (source.path && *source.path == kOverrideSource)) return file + ": --set";
  return file + ":" + std::to_string(source.begin.line);
}

std::string ParseContext::where(const toml::node& node) const { return where(node.source()); }

void ParseContext::fail(const toml::source_region& source, const std::string& key,
                        const std::string& what) const {
  throw ConfigError(where(source) + ": " + key + ": " + what);
}

void ParseContext::fail(const toml::node& node, const std::string& key, const std::string& what) const {
  fail(node.source(), key, what);
}

std::size_t editDistance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string nearest(const std::string& key, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t bestDistance = std::max<std::size_t>(3, key.size() / 2) + 1;
  for (const auto& c : candidates) {
    const std::size_t d = editDistance(key, c);
    if (d < bestDistance) bestDistance = d, best = c;
  }
  return best;
}

std::string typeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date/time";
  }
}

}  // namespace detail

namespace {

const std::vector<Field<DataConfig>>& dataFields() {
  static const std::vector<Field<DataConfig>> fields = {
      detail::stringField<DataConfig>("source", &DataConfig::source,
                                      {"fashion-mnist", "mnist", "idx", "cifar10", "cifar100", "strokes",
                                       "projection", "xor", "factors"}),
      detail::stringField<DataConfig>("dir", &DataConfig::dir),
      detail::intField<DataConfig>("train_size", &DataConfig::trainSize, 0),
      detail::intField<DataConfig>("validation_size", &DataConfig::validationSize, 0),
      detail::intField<DataConfig>("test_size", &DataConfig::testSize, 0),
      detail::optionalIntField<DataConfig>("seed", &DataConfig::seed, 0),
      detail::intField<DataConfig>("num_classes", &DataConfig::numClasses, 0, 100),
      detail::intField<DataConfig>("samples", &DataConfig::samples, 1),
      detail::intField<DataConfig>("test_samples", &DataConfig::testSamples, 1),
      detail::intField<DataConfig>("factors", &DataConfig::factors, 1, 100000),
      detail::intField<DataConfig>("input_dim", &DataConfig::inputDim, 1, 1000000),
      detail::doubleField<DataConfig>("noise", &DataConfig::noise, 0.0),
      detail::classGroupsField<DataConfig>("relabel", &DataConfig::relabel),
      detail::intField<DataConfig>("pca_dims", &DataConfig::pcaDims, 0, 1000000),
  };
  return fields;
}

const std::vector<Field<ModelConfig>>& modelFields() {
  static const std::vector<Field<ModelConfig>> fields = {
      detail::stringField<ModelConfig>("type", &ModelConfig::type, {"mlp", "cnn", "lstm", "conv_ae"}),
      detail::stringField<ModelConfig>("activation", &ModelConfig::activation,
                                       {"relu", "leaky_relu", "sigmoid", "tanh", "linear"}),
      detail::doubleField<ModelConfig>("leaky_slope", &ModelConfig::leakySlope, 0.0, 1.0),
      detail::intListField<ModelConfig>("hidden", &ModelConfig::hidden, 1),
      detail::stringListField<ModelConfig>("layers", &ModelConfig::layers),
      detail::intField<ModelConfig>("lstm_hidden", &ModelConfig::lstmHidden, 1, 1 << 20),
      detail::intField<ModelConfig>("lstm_layers", &ModelConfig::lstmLayers, 1, 64),
      detail::doubleField<ModelConfig>("dropout", &ModelConfig::dropout, 0.0, 1.0),
      detail::stringListField<ModelConfig>("dropout_layers", &ModelConfig::dropoutLayers),
      detail::stringListField<ModelConfig>("batch_norm_layers", &ModelConfig::batchNormLayers),
  };
  return fields;
}

const std::vector<Field<OptimConfig>>& optimFields() {
  static const std::vector<Field<OptimConfig>> fields = {
      detail::stringField<OptimConfig>("name", &OptimConfig::name, {"adam", "sgd", "rmsprop"}),
      detail::doubleField<OptimConfig>("lr", &OptimConfig::lr, 0.0, 10.0, /*loOpen=*/true),
      detail::doubleField<OptimConfig>("momentum", &OptimConfig::momentum, 0.0, 1.0),
      detail::doubleField<OptimConfig>("weight_decay", &OptimConfig::weightDecay, 0.0),
      detail::doubleField<OptimConfig>("beta1", &OptimConfig::beta1, 0.0, 1.0),
      detail::doubleField<OptimConfig>("beta2", &OptimConfig::beta2, 0.0, 1.0),
      detail::doubleField<OptimConfig>("eps", &OptimConfig::eps, 0.0, 1.0, true),
      detail::doubleField<OptimConfig>("alpha", &OptimConfig::alpha, 0.0, 1.0),
  };
  return fields;
}

const std::vector<Field<TrainConfig>>& trainFields() {
  static const std::vector<Field<TrainConfig>> fields = {
      detail::stringField<TrainConfig>("objective", &TrainConfig::objective, {"cross_entropy", "binary", "mse"}),
      detail::intField<TrainConfig>("epochs", &TrainConfig::epochs, 0, 100000),
      detail::intField<TrainConfig>("steps", &TrainConfig::steps, 0),
      detail::intField<TrainConfig>("batch_size", &TrainConfig::batchSize, 1, 10000000),
      detail::seedField<TrainConfig>("seed", &TrainConfig::seed),
      detail::intField<TrainConfig>("threads", &TrainConfig::threads, 1, 1024),
      detail::stringField<TrainConfig>("device", &TrainConfig::device, {"cpu", "cuda"}),
      detail::intField<TrainConfig>("log_every", &TrainConfig::logEvery, 1),
      detail::boolField<TrainConfig>("timings", &TrainConfig::timings),
      detail::intField<TrainConfig>("checkpoint_every", &TrainConfig::checkpointEvery, 0),
      detail::doubleField<TrainConfig>("progress_s", &TrainConfig::progressSeconds, 0.0),
  };
  return fields;
}

const std::vector<Field<ClusteringConfig>>& clusteringFields() {
  static const std::vector<Field<ClusteringConfig>> fields = {
      detail::intField<ClusteringConfig>("k", &ClusteringConfig::k, 0, 100000),
      detail::intField<ClusteringConfig>("n_init", &ClusteringConfig::nInit, 1, 1000),
      detail::intField<ClusteringConfig>("max_iter", &ClusteringConfig::maxIter, 1),
      detail::doubleField<ClusteringConfig>("tol", &ClusteringConfig::tol, 0.0),
      detail::stringField<ClusteringConfig>("normalization", &ClusteringConfig::normalization,
                                            {"arithmetic", "max", "geometric", "min"}),
      detail::intListField<ClusteringConfig>("k_values", &ClusteringConfig::kValues, 1),
  };
  return fields;
}

const std::vector<Field<MiConfig>>& miFields() {
  static const std::vector<Field<MiConfig>> fields = {
      detail::doubleField<MiConfig>("sigma2", &MiConfig::sigma2, 0.0, detail::kInf, true),
      detail::stringField<MiConfig>("precision", &MiConfig::precision, {"mixed", "fp64"}),
  };
  return fields;
}

// An optional inline table (`clustering = { k = 10 }`) parsed with its own fields.
template <typename S, typename Parent>
Field<Parent> subTableField(const char* key, std::optional<S> Parent::*member,
                            const std::vector<Field<S>>& (*fields)()) {
  return {key,
          [=](Parent& p, const toml::node& n, const std::string& path, const ParseContext& c) {
            if (!n.is_table()) c.fail(n, path, "expected a table, got " + detail::typeName(n));
            S value;
            detail::parseTable(*n.as_table(), path, fields(), value, c);
            p.*member = value;
          },
          [=](const Parent& p, toml::table& t) {
            if (p.*member) t.insert_or_assign(key, detail::emitTable(*(p.*member), fields()));
          }};
}

const std::vector<Field<EvalConfig>>& evalFields() {
  static const std::vector<Field<EvalConfig>> fields = {
      detail::intField<EvalConfig>("batch_size", &EvalConfig::batchSize, 1),
      detail::intField<EvalConfig>("every", &EvalConfig::every, 0),
      detail::stringListField<EvalConfig>("layers", &EvalConfig::layers),
      detail::intListField<EvalConfig>("tdv_dims", &EvalConfig::tdvDims, 1),
      detail::doubleListField<EvalConfig>("ud_fractions", &EvalConfig::udFractions, 0.0, 1.0),
      subTableField<ClusteringConfig, EvalConfig>("clustering", &EvalConfig::clustering, clusteringFields),
      subTableField<MiConfig, EvalConfig>("mi", &EvalConfig::mi, miFields),
      detail::boolField<EvalConfig>("save_covariance", &EvalConfig::saveCovariance),
  };
  return fields;
}

const std::vector<Field<DistributedConfig>>& distributedFields() {
  static const std::vector<Field<DistributedConfig>> fields = {
      detail::stringField<DistributedConfig>("backend", &DistributedConfig::backend,
                                             {"auto", "single", "mpi", "nccl"}),
      detail::doubleField<DistributedConfig>("timeout_s", &DistributedConfig::timeoutSeconds, 0.0,
                                             detail::kInf, true),
  };
  return fields;
}

// A string key whose value `check` accepts ("" always passes: the feature is off).
Field<MetricsConfig> addressField(const char* key, std::string MetricsConfig::*member,
                                  std::string (*check)(const std::string&)) {
  Field<MetricsConfig> field = detail::stringField<MetricsConfig>(key, member);
  field.parse = [=](MetricsConfig& s, const toml::node& n, const std::string& p, const ParseContext& c) {
    s.*member = detail::readString(n, p, c, {});
    if (const std::string problem = (s.*member).empty() ? "" : check(s.*member); !problem.empty())
      c.fail(n, p, problem);
  };
  return field;
}

const std::vector<Field<MetricsConfig>>& metricsFields() {
  static const std::vector<Field<MetricsConfig>> fields = {
      addressField("listen", &MetricsConfig::listen, checkListenAddress),
      addressField("pushgateway", &MetricsConfig::pushgateway, checkPushgatewayAddress),
      detail::stringField<MetricsConfig>("targets_dir", &MetricsConfig::targetsDir),
      detail::stringField<MetricsConfig>("grid", &MetricsConfig::grid),
      detail::stringField<MetricsConfig>("cell", &MetricsConfig::cell),
  };
  return fields;
}

const std::vector<Field<reg::PenaltySpec>>& regularizerFields() {
  using reg::PenaltySpec;
  static const std::vector<Field<PenaltySpec>> fields = {
      detail::stringField<PenaltySpec>("name", &PenaltySpec::name, reg::penaltyNames()),
      detail::doubleField<PenaltySpec>("weight", &PenaltySpec::weight, 0.0),
      detail::stringListField<PenaltySpec>("targets", &PenaltySpec::targets),
      detail::doubleField<PenaltySpec>("margin", &PenaltySpec::margin, 0.0),
      detail::boolField<PenaltySpec>("normalized", &PenaltySpec::normalized),
      detail::stringField<PenaltySpec>("method", &PenaltySpec::method, {"holder", "exact"}),
  };
  return fields;
}

// Applies `--set a.b.c=value` to the document. The value is parsed as TOML; a bare word that is
// not valid TOML (`--set optim.name=sgd`) is taken as a string.
void applyOverride(toml::table& root, const std::string& text, const std::string& file) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(file + ": --set '" + text + "': expected section.key=value");
  const std::string path = text.substr(0, eq);
  const std::string valueText = text.substr(eq + 1);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + valueText, detail::kOverrideSource);
  } catch (const toml::parse_error&) {
    parsed = toml::table{{"v", valueText}};
  }
  std::vector<std::string> parts;
  std::stringstream stream(path);
  for (std::string part; std::getline(stream, part, '.');) parts.push_back(part);
  if (parts.size() < 2) throw ConfigError(file + ": --set '" + text + "': expected section.key=value");

  toml::table* table = &root;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    toml::node* child = table->get(parts[i]);
    if (child && child->is_array_of_tables()) {
      // regularizer.0.weight=…, or regularizer.weight=… when there is exactly one.
      toml::array& tables = *child->as_array();
      const std::string arrayName = parts[i];
      std::size_t index = 0;
      if (i + 2 < parts.size() && !parts[i + 1].empty() &&
          parts[i + 1].find_first_not_of("0123456789") == std::string::npos) {
        index = std::stoul(parts[++i]);
      } else if (tables.size() != 1) {
        throw ConfigError(file + ": --set '" + text + "': " + parts[i] + " has " +
                          std::to_string(tables.size()) + " entries; name one as " + parts[i] + ".N.key");
      }
      if (index >= tables.size())
        throw ConfigError(file + ": --set '" + text + "': " + arrayName + " has no entry " + std::to_string(index));
      table = tables.get(index)->as_table();
      continue;
    }
    if (!child) child = &table->insert_or_assign(parts[i], toml::table{}).first->second;
    if (!child->is_table())
      throw ConfigError(file + ": --set '" + text + "': " + parts[i] + " is not a table");
    table = child->as_table();
  }
  table->insert_or_assign(parts.back(), std::move(*parsed.get("v")));
}

// Layer names of the model, in order: h1…hL (MLP) or conv1/pool1/fc1… (CNN), then "out".
std::vector<std::string> declaredLayers(const ModelConfig& model) {
  std::vector<std::string> names = modelLayerNames(model);
  names.push_back("out");
  return names;
}

void checkLayers(const std::vector<std::string>& names, const std::vector<std::string>& layers,
                 const toml::node* node, const std::string& key, const ParseContext& ctx) {
  for (const auto& name : names) {
    if (std::find(layers.begin(), layers.end(), name) != layers.end()) continue;
    std::string list;
    for (const auto& l : layers) list += (list.empty() ? "" : ", ") + l;
    const std::string hint = detail::nearest(name, layers);
    const std::string what = "no layer named '" + name + "' (layers: " + list + ")" +
                             (hint.empty() ? "" : "; did you mean '" + hint + "'?");
    if (node) ctx.fail(*node, key, what);
    throw ConfigError(ctx.file + ": " + key + ": " + what);
  }
}

void validateCrossFields(const Config& config, const toml::table& root, const ParseContext& ctx) {
  const toml::node* model = root.get("model");
  auto modelNode = [&](const char* key) -> const toml::node* {
    return model && model->is_table() ? model->as_table()->get(key) : nullptr;
  };
  const bool autoencoder = config.model.type == "conv_ae";
  if (config.model.type == "cnn" || autoencoder) {
    const toml::node* layersNode = modelNode("layers");
    const std::size_t count = config.model.layers.size();
    for (std::size_t i = 0; i < count; ++i) {
      const toml::node* item = layersNode && layersNode->is_array() ? layersNode->as_array()->get(i) : nullptr;
      const std::string key = "model.layers[" + std::to_string(i) + "]";
      auto fail = [&](const std::string& what) {
        if (item) ctx.fail(*item, key, "'" + config.model.layers[i] + "': " + what);
        throw ConfigError(ctx.file + ": " + key + ": '" + config.model.layers[i] + "': " + what);
      };
      LayerSpec spec;
      try {
        spec = parseLayerSpec(config.model.layers[i]);
      } catch (const std::invalid_argument& e) {
        fail(e.what());
      }
      // The decoder mirrors the encoder layer by layer; max pooling has no exact mirror.
      if (autoencoder && spec.kind == LayerSpec::Kind::Pool)
        fail("a conv_ae encoder has conv and fc layers only (pooling is not mirrored; use a strided conv)");
      if (autoencoder && i + 1 == count && spec.kind != LayerSpec::Kind::Fc)
        fail("the last conv_ae encoder layer is the code and must be fc:WIDTH, e.g. \"fc:84\"");
    }
  }
  if (autoencoder && config.train.objective != "mse") {
    const toml::node* train = root.get("train");
    const toml::node* objective = train && train->is_table() ? train->as_table()->get("objective") : nullptr;
    ctx.fail(objective ? objective->source() : (modelNode("type") ? modelNode("type")->source() : toml::source_region{}),
             "train.objective", "model.type = \"conv_ae\" reconstructs its input; set train.objective = \"mse\" (got \"" +
                                    config.train.objective + "\")");
  }
  if (config.model.type == "mlp" && config.model.hidden.empty())
    ctx.fail(modelNode("hidden") ? modelNode("hidden")->source() : toml::source_region{}, "model.hidden",
             "an mlp needs at least one hidden layer, e.g. [100]");
  if (config.model.dropout >= 1.0)
    ctx.fail(modelNode("dropout") ? modelNode("dropout")->source() : toml::source_region{}, "model.dropout",
             "expected a rate in [0, 1), got " + std::to_string(config.model.dropout));
  const toml::node* train = root.get("train");
  const toml::node* deviceNode = train && train->is_table() ? train->as_table()->get("device") : nullptr;
  if (config.train.device == "cuda" && !torch::cuda::is_available())
    ctx.fail(deviceNode ? deviceNode->source() : toml::source_region{}, "train.device",
             "\"cuda\" but no CUDA device is available to this build of LibTorch (" +
                 std::string(torch::cuda::device_count() == 0 ? "0 devices" : "driver error") + "); use \"cpu\"");
  const toml::node* dist = root.get("distributed");
  const toml::node* backendNode = dist && dist->is_table() ? dist->as_table()->get("backend") : nullptr;
  if (config.distributed.backend == "nccl" && config.train.device != "cuda")
    ctx.fail(backendNode ? backendNode->source() : toml::source_region{}, "distributed.backend",
             "\"nccl\" moves CUDA tensors; set train.device = \"cuda\" (or use \"mpi\" on CPUs)");
  const auto layers = declaredLayers(config.model);
  checkLayers(config.model.dropoutLayers, layers, modelNode("dropout_layers"), "model.dropout_layers", ctx);
  checkLayers(config.model.batchNormLayers, layers, modelNode("batch_norm_layers"),
              "model.batch_norm_layers", ctx);
  const toml::node* eval = root.get("eval");
  checkLayers(config.eval.layers, layers, eval && eval->is_table() ? eval->as_table()->get("layers") : nullptr,
              "eval.layers", ctx);
  if (config.model.type == "cnn" && config.model.layers.empty())
    throw ConfigError(ctx.file + ": model.layers: a cnn needs at least one layer, e.g. [\"conv:32:3\", \"fc:128\"]");
  if (autoencoder && config.model.layers.empty())
    throw ConfigError(ctx.file + ": model.layers: a conv_ae needs its encoder, e.g. [\"conv:32:5:2\", \"fc:100\", \"fc:84\"]");

  const toml::array* regs = root.get("regularizer") ? root.get("regularizer")->as_array() : nullptr;
  for (std::size_t i = 0; i < config.regularizers.size(); ++i) {
    const auto& spec = config.regularizers[i];
    const toml::node* node = regs ? regs->get(i) : nullptr;
    const std::string key = "regularizer[" + std::to_string(i) + "]";
    const toml::node* targets = node && node->is_table() ? node->as_table()->get("targets") : nullptr;
    checkLayers(spec.targets, layers, targets, key + ".targets", ctx);
    // A repeated (penalty, target) pair would count the penalty twice and repeat a JSON key.
    for (std::size_t t = 0; t < spec.targets.size(); ++t) {
      const std::string& target = spec.targets[t];
      const bool repeatedHere = std::find(spec.targets.begin(), spec.targets.begin() + static_cast<long>(t), target) !=
                                spec.targets.begin() + static_cast<long>(t);
      std::size_t earlier = i;
      for (std::size_t j = 0; j < i && earlier == i; ++j) {
        const auto& other = config.regularizers[j];
        if (other.name == spec.name && std::find(other.targets.begin(), other.targets.end(), target) != other.targets.end())
          earlier = j;
      }
      if (!repeatedHere && earlier == i) continue;
      const std::string what = "'" + spec.name + "' on layer '" + target + "' is given twice" +
                               (repeatedHere ? std::string(" in targets")
                                             : " (also regularizer[" + std::to_string(earlier) + "])") +
                               "; merge the weights into one entry";
      if (targets) ctx.fail(*targets, key + ".targets", what);
      throw ConfigError(ctx.file + ": " + key + ".targets: " + what);
    }
    try {
      reg::validate(spec);
    } catch (const std::invalid_argument& e) {
      if (node) ctx.fail(*node, key, e.what());
      throw ConfigError(ctx.file + ": " + key + ": " + e.what());
    }
  }
}

}  // namespace

LayerSpec parseLayerSpec(const std::string& spec) {
  static const char* kForms = "expected conv:OUT:KERNEL[:STRIDE[:PAD]], pool:SIZE or fc:OUT";
  std::vector<std::string> parts;
  std::stringstream stream(spec);
  for (std::string part; std::getline(stream, part, ':');) parts.push_back(part);
  if (!spec.empty() && spec.back() == ':') parts.push_back("");
  if (parts.empty()) throw std::invalid_argument(std::string("empty layer; ") + kForms);
  std::vector<int64_t> values;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    std::size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (part.empty() || used != part.size() || v < 0 || v > (int64_t{1} << 31))
      throw std::invalid_argument("'" + part + "' is not an integer in [0, 2^31]");
    values.push_back(v);
  }
  LayerSpec layer;
  const std::string& kind = parts[0];
  auto need = [&](std::size_t lo, std::size_t hi) {
    if (values.size() < lo || values.size() > hi) throw std::invalid_argument(kForms);
  };
  auto positive = [&](int64_t v, const char* what) {
    if (v < 1) throw std::invalid_argument(std::string(what) + " must be at least 1, got " + std::to_string(v));
  };
  if (kind == "fc") {
    need(1, 1);
    layer.kind = LayerSpec::Kind::Fc;
    layer.out = values[0];
    positive(layer.out, "fc width");
  } else if (kind == "pool") {
    need(1, 1);
    layer.kind = LayerSpec::Kind::Pool;
    layer.pool = values[0];
    positive(layer.pool, "pool size");
  } else if (kind == "conv") {
    need(2, 4);
    layer.kind = LayerSpec::Kind::Conv;
    layer.out = values[0];
    layer.kernel = values[1];
    layer.stride = values.size() > 2 ? values[2] : 1;
    layer.pad = values.size() > 3 ? values[3] : layer.kernel / 2;
    positive(layer.out, "conv channels");
    positive(layer.kernel, "conv kernel");
    positive(layer.stride, "conv stride");
  } else {
    throw std::invalid_argument("unknown layer kind '" + kind + "'; " + kForms);
  }
  return layer;
}

std::vector<std::string> modelLayerNames(const ModelConfig& model) {
  std::vector<std::string> names;
  if (model.type == "mlp") {
    for (std::size_t i = 0; i < model.hidden.size(); ++i) names.push_back("h" + std::to_string(i + 1));
    return names;
  }
  if (model.type == "lstm") {
    names.push_back("lstm");
    for (std::size_t i = 0; i < model.hidden.size(); ++i) names.push_back("fc" + std::to_string(i + 1));
    return names;
  }
  int conv = 0, pool = 0, fc = 0;
  for (const auto& layer : model.layers) {
    const std::string kind = layer.substr(0, layer.find(':'));
    if (kind == "conv") names.push_back("conv" + std::to_string(++conv));
    else if (kind == "pool") names.push_back("pool" + std::to_string(++pool));
    else if (kind == "fc") names.push_back("fc" + std::to_string(++fc));
    else throw ConfigError("model.layers: '" + layer + "': expected conv:OUT:KERNEL[:STRIDE[:PAD]], pool:SIZE or fc:OUT");
  }
  if (model.type == "conv_ae" && !names.empty()) {
    // Encoder …, code; decoder dec1 … dec(L-1), then "out" (the mirror of the first encoder layer).
    names.back() = "code";
    const std::size_t encoder = names.size();
    for (std::size_t i = 1; i < encoder; ++i) names.push_back("dec" + std::to_string(i));
  }
  return names;
}

std::string Config::where(const std::string& key) const {
  const auto it = locations.find(key);
  return it == locations.end() ? path : it->second;
}

Config loadConfig(const std::string& path, const std::vector<std::string>& overrides) {
  Config config;
  config.path = path;
  ParseContext ctx{path, &config.locations};
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (!std::filesystem::exists(status)) throw ConfigError(path + ": cannot open config file: no such file");
  if (std::filesystem::is_directory(status))
    throw ConfigError(path + ": is a directory; expected a TOML config file (e.g. jobs/fashion-mlp.toml)");
  if (!std::filesystem::is_regular_file(status)) throw ConfigError(path + ": not a regular file");
  std::ifstream probe(path);
  if (!probe) throw ConfigError(path + ": cannot open config file (permission?)");
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw ConfigError(path + ":" + std::to_string(e.source().begin.line) + ": " +
                      std::string(e.description()));
  }
  for (const auto& o : overrides) applyOverride(root, o, path);

  static const std::vector<std::string> kSections = {"data", "model", "optim", "train",
                                                     "eval", "distributed", "metrics", "regularizer"};
  for (auto&& [key, node] : root) {
    const std::string name(key.str());
    if (name == "regularizer") {
      if (!node.is_array_of_tables())
        ctx.fail(node, name, "expected [[regularizer]] tables, got " + detail::typeName(node));
      int index = 0;
      for (const auto& entry : *node.as_array()) {
        reg::PenaltySpec spec;
        const std::string prefix = "regularizer[" + std::to_string(index++) + "]";
        ctx.record(prefix, entry);
        if (!entry.is_table()) ctx.fail(entry, prefix, "expected a table");
        detail::parseTable(*entry.as_table(), prefix, regularizerFields(), spec, ctx);
        if (spec.name.empty()) ctx.fail(entry, prefix + ".name", "missing: every [[regularizer]] needs a name");
        if (spec.name == "decov") spec.name = "cr";  // SPEC §2: decov is an alias of cr
        config.regularizers.push_back(std::move(spec));
      }
      continue;
    }
    if (!node.is_table()) {
      const std::string hint = detail::nearest(name, kSections);
      ctx.fail(key.source(), name,
               "unknown top-level key" + (hint.empty() ? std::string() : " (did you mean [" + hint + "]?)"));
    }
    const toml::table& table = *node.as_table();
    if (name == "data") detail::parseTable(table, name, dataFields(), config.data, ctx);
    else if (name == "model") detail::parseTable(table, name, modelFields(), config.model, ctx);
    else if (name == "optim") detail::parseTable(table, name, optimFields(), config.optim, ctx);
    else if (name == "train") detail::parseTable(table, name, trainFields(), config.train, ctx);
    else if (name == "eval") detail::parseTable(table, name, evalFields(), config.eval, ctx);
    else if (name == "distributed") detail::parseTable(table, name, distributedFields(), config.distributed, ctx);
    else if (name == "metrics") detail::parseTable(table, name, metricsFields(), config.metrics, ctx);
    else {
      const std::string hint = detail::nearest(name, kSections);
      ctx.fail(key.source(), name,
               "unknown section" + (hint.empty() ? std::string() : " (did you mean [" + hint + "]?)"));
    }
  }
  validateCrossFields(config, root, ctx);
  return config;
}

std::string toToml(const Config& config) {
  toml::table root;
  root.insert_or_assign("data", detail::emitTable(config.data, dataFields()));
  root.insert_or_assign("model", detail::emitTable(config.model, modelFields()));
  root.insert_or_assign("optim", detail::emitTable(config.optim, optimFields()));
  root.insert_or_assign("train", detail::emitTable(config.train, trainFields()));
  root.insert_or_assign("eval", detail::emitTable(config.eval, evalFields()));
  root.insert_or_assign("distributed", detail::emitTable(config.distributed, distributedFields()));
  root.insert_or_assign("metrics", detail::emitTable(config.metrics, metricsFields()));
  toml::array regs;
  for (const auto& spec : config.regularizers) regs.push_back(detail::emitTable(spec, regularizerFields()));
  if (!regs.empty()) root.insert_or_assign("regularizer", std::move(regs));
  std::ostringstream out;
  out << "# Resolved by repshape: every key with its effective value.\n" << root << "\n";
  return out.str();
}

}  // namespace repshape
