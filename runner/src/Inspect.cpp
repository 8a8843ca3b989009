// `repshape inspect`: representation metrics and penalty values (and gradients) of saved
// activations, computed by the same library code the trainer uses, on one process.
#include "ArrayIO.h"
#include "CommandLine.h"
#include "Commands.h"
#include "Json.h"

#include <repshape/regularizers/Regularizers.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace repshape {

namespace {

// The activation matrix and the weight matrix appear to the library as these layers.
constexpr const char* kActivationLayer = "activations";
constexpr const char* kWeightLayer = "weights";

struct InspectArgs {
  std::string activations, labels, probs, weights, gradOut;
  std::vector<std::string> penalties;
  int64_t classes = 0;
  bool relu = false;
  std::optional<int64_t> clusters;  // --cluster K
  std::optional<double> miSigma2;   // --mi SIGMA2
  std::string normalization = "arithmetic";
  uint64_t seed = 0;
};

bool parseBool(const std::string& text, const std::string& key) {
  if (text == "true" || text == "1") return true;
  if (text == "false" || text == "0") return false;
  throw std::invalid_argument("penalty key " + key + ": expected true/false, got '" + text + "'");
}

double parseNumber(const std::string& text, const std::string& what) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty()) throw std::invalid_argument(what + ": expected a number, got '" + text + "'");
  return v;
}

// "rr:method=exact,normalized=true" → a validated spec aimed at the inspected matrix.
reg::PenaltySpec parsePenalty(const std::string& text) {
  reg::PenaltySpec spec;
  const auto colon = text.find(':');
  spec.name = text.substr(0, colon);
  std::string rest = colon == std::string::npos ? "" : text.substr(colon + 1);
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string item = rest.substr(0, comma);
    rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    const auto eq = item.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("--penalty " + text + ": expected key=value, got '" + item + "'");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "margin") spec.margin = parseNumber(value, "margin");
    else if (key == "weight") spec.weight = parseNumber(value, "weight");
    else if (key == "normalized") spec.normalized = parseBool(value, key);
    else if (key == "method") spec.method = value;
    else throw std::invalid_argument("--penalty " + text + ": unknown key '" + key + "' (margin, weight, normalized, method)");
  }
  const bool weightPenalty = spec.name == "lsingle" || spec.name == "l1w" || spec.name == "l2w";
  spec.targets = {weightPenalty ? kWeightLayer : kActivationLayer};
  reg::validate(spec);
  return spec;
}

void checkArgs(const InspectArgs& a) {
  if ((a.clusters || a.miSigma2) && a.labels.empty()) throw std::invalid_argument("--cluster and --mi need --labels");
  if (a.clusters && *a.clusters < 0) throw std::invalid_argument("--cluster: expected K >= 0");
  if (a.miSigma2 && !(*a.miSigma2 > 0)) throw std::invalid_argument("--mi: expected a noise variance > 0");
  if (a.classes < 0) throw std::invalid_argument("--classes: expected K >= 0");
  reg::parseMiNormalization(a.normalization);  // throws naming the value
}

// Non-finite entries make every spectrum meaningless: name the first one.
void checkFinite(const torch::Tensor& values, const std::string& path) {
  const torch::Tensor bad = torch::isfinite(values).logical_not();
  if (!bad.any().item<bool>()) return;
  const torch::Tensor at = bad.nonzero()[0];  // [row] or [row, column]
  const int64_t row = at[0].item<int64_t>();
  const bool matrix = values.dim() > 1;
  const int64_t column = matrix ? at[1].item<int64_t>() : 0;
  const double value = matrix ? values[row][column].item<double>() : values[row].item<double>();
  throw std::invalid_argument(path + ": row " + std::to_string(row) +
                              (matrix ? ", column " + std::to_string(column) : std::string()) +
                              " (counting from 0) is " + std::to_string(value) + "; expected finite numbers");
}

// A file name for a penalty's gradient: "rr:method=exact" → "rr_method_exact".
std::string fileStem(const std::string& penalty) {
  std::string s = penalty;
  for (char& c : s)
    if (c == ':' || c == ',' || c == '=' || c == '/') c = '_';
  return s;
}

int inspect(const InspectArgs& args) {
  const torch::Tensor z = io::readArray(args.activations);  // [N, M] fp64
  if (!z.is_floating_point()) throw std::invalid_argument(args.activations + ": activations must be floating point");
  const int64_t n = z.size(0), m = z.size(1);
  checkFinite(z, args.activations);
  torch::Tensor labels, probs, weights;
  int64_t classes = args.classes;
  if (!args.labels.empty()) {
    labels = io::readLabels(args.labels);
    if (labels.size(0) != n)
      throw std::invalid_argument(args.labels + ": " + std::to_string(labels.size(0)) + " labels for " +
                                  std::to_string(n) + " activation rows");
    const int64_t top = n > 0 ? labels.max().item<int64_t>() : -1;
    if (n > 0 && labels.min().item<int64_t>() < 0) {
      const int64_t row = labels.lt(0).nonzero()[0][0].item<int64_t>();
      throw std::invalid_argument(args.labels + ": row " + std::to_string(row) + " (counting from 0): label " +
                                  std::to_string(labels[row].item<int64_t>()) + " is negative; expected 0..K-1");
    }
    if (classes == 0) classes = top + 1;
    if (top >= classes)
      throw std::invalid_argument(args.labels + ": label " + std::to_string(top) + " >= --classes " +
                                  std::to_string(classes));
  }
  if (!args.probs.empty()) {
    probs = io::readArray(args.probs).to(torch::kFloat64);
    checkFinite(probs, args.probs);
    if (probs.size(0) != n)
      throw std::invalid_argument(args.probs + ": " + std::to_string(probs.size(0)) + " rows, expected " +
                                  std::to_string(n));
  }
  if (!args.weights.empty()) {
    weights = io::readArray(args.weights).to(torch::kFloat64);
    checkFinite(weights, args.weights);
  }
  if (!args.gradOut.empty()) std::filesystem::create_directories(args.gradOut);

  JsonWriter json;
  json.beginObject().field("samples", n).field("width", m);
  if (classes > 0) json.field("classes", classes); else json.key("classes").null();

  reg::MetricOptions options;
  options.reluLayer = args.relu;
  reg::MetricAccumulator metrics(m, options);
  metrics.add(z);
  reg::LocalReducer reducer;
  json.key("metrics").beginObject();
  for (const auto& [name, value] : metrics.finish(reducer)) json.field(name, value);
  if (args.clusters) {
    reg::ClusteringOptions clustering;
    clustering.k = *args.clusters;
    clustering.normalization = reg::parseMiNormalization(args.normalization);
    clustering.seed = args.seed;
    for (const auto& [name, value] : reg::clusterAndScore(z, labels, clustering, reducer).metrics())
      json.field(name, value);
  }
  if (args.miSigma2) {
    for (const auto& [name, value] : reg::informationBounds(z, labels, classes, *args.miSigma2, reducer).metrics())
      json.field(name, value);
  }
  json.endObject();

  json.key("penalties").beginObject();
  for (const auto& text : args.penalties) {
    const reg::PenaltySpec spec = parsePenalty(text);
    const bool onWeights = spec.targets.front() == kWeightLayer;
    const bool classWise = spec.name.rfind("cw-", 0) == 0 || spec.name == "lmulti";
    if (onWeights && !weights.defined()) throw std::invalid_argument(text + " needs --weights");
    if (classWise && !labels.defined()) throw std::invalid_argument(text + " needs --labels");
    if (spec.name == "xcov" && !probs.defined()) throw std::invalid_argument(text + " needs --probs");
    const torch::Tensor input = (onWeights ? weights : z).detach().requires_grad_(true);
    reg::PenaltyBatch batch;
    if (onWeights) batch.weights = {{kWeightLayer, input}};
    else batch.activations = {{kActivationLayer, input}};
    batch.labels = labels;
    batch.probabilities = probs;
    const reg::PenaltySet set({spec}, static_cast<int>(classes));
    const reg::PenaltyValue value = set.compute(batch, reducer).front();
    json.field(text, value.value.item<double>());
    if (!args.gradOut.empty()) {
      const torch::Tensor grad = torch::autograd::grad({value.value}, {input}, {}, false, false, true)[0];
      io::writeCsv(args.gradOut + "/" + fileStem(text) + ".csv", grad.defined() ? grad : torch::zeros_like(input));
    }
  }
  json.endObject().endObject();
  std::printf("%s\n", json.str().c_str());
  return 0;
}

}  // namespace

int runInspect(int argc, char** argv) {
  InspectArgs args;
  CLI::App app{"Representation metrics and penalty values (and gradients) of saved activations.", "repshape inspect"};
  app.add_option("activations", args.activations, "activations [N, M] as .csv or .npy")->required();
  app.add_option("--labels", args.labels, "class labels, one per row (cw-*, lmulti)");
  app.add_option("--probs", args.probs, "predicted class probabilities [N, C] (xcov)");
  app.add_option("--weights", args.weights, "target weight matrix [out, in] (lsingle, l1w, l2w)");
  app.add_option("--classes", args.classes, "number of classes (default: max label + 1)");
  app.add_option("--penalty", args.penalties, "NAME[:key=value,...]; keys: margin, weight, normalized, method (repeatable)")
      ->take_all();
  app.add_option("--grad-out", args.gradOut, "write dΩ/dZ (dΩ/dW for weight penalties) as DIR/<penalty>.csv");
  app.add_flag("--relu", args.relu, "ReLU layer: amplitude/covariance/correlation over active entries");
  app.add_option("--cluster", args.clusters, "KMeans (k-means++, 10 restarts) scored against --labels: ami, nmi (K=0: classes)");
  app.add_option("--normalization", args.normalization, "AMI/NMI normalisation: arithmetic (default), max, geometric, min");
  app.add_option("--mi", args.miSigma2, "Kolchinsky-Tracey MI bounds with noise variance SIGMA2 (needs --labels)");
  app.add_option("--seed", args.seed, "KMeans seed (default 0)");
  app.footer("Prints one JSON object: samples, width, classes, metrics, penalties.");
  if (int code = parseCommandLine(app, argc, argv); code >= 0) return code;
  try {
    checkArgs(args);
    return inspect(args);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "repshape inspect: %s\n", e.what());
    return 2;
  } catch (const c10::Error& e) {  // shape or label checks of the library on the given files
    std::fprintf(stderr, "repshape inspect: %s\n", e.what_without_backtrace());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "repshape inspect: %s\n", e.what());
    return 1;
  }
}

}  // namespace repshape
