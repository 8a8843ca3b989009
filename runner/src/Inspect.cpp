// `repshape inspect`: representation metrics and penalty values (and gradients) of saved
// activations, computed by the same library code the trainer uses, on one process.
#include "ArrayIO.h"
#include "Commands.h"
#include "Json.h"

#include <repshape/regularizers/Regularizers.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace repshape {

namespace {

constexpr const char* kUsage =
    "usage: repshape inspect ACTIVATIONS.(csv|npy) [options]\n"
    "  --labels L.(csv|npy)      class labels, one per row (cw-*, lmulti)\n"
    "  --probs P.(csv|npy)       predicted class probabilities [N, C] (xcov)\n"
    "  --weights W.(csv|npy)     target weight matrix [out, in] (lsingle, l1w, l2w)\n"
    "  --classes K               number of classes (default: max label + 1)\n"
    "  --penalty NAME[:key=value,...]   keys: margin, normalized, method (repeatable)\n"
    "  --grad-out DIR            write dΩ/dZ (dΩ/dW for weight penalties) as DIR/<penalty>.csv\n"
    "  --relu                    ReLU layer: amplitude/covariance/correlation over active entries\n"
    "  --cluster K               KMeans (k-means++, 10 restarts) scored against --labels: ami, nmi (K=0: classes)\n"
    "  --normalization NAME      AMI/NMI normalisation: arithmetic (default), max, geometric, min\n"
    "  --mi SIGMA2               Kolchinsky-Tracey MI bounds with noise variance SIGMA2 (needs --labels)\n"
    "  --seed S                  KMeans seed (default 0)\n"
    "Prints one JSON object: samples, width, classes, metrics, penalties.\n";

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

InspectArgs parseArgs(int argc, char** argv) {
  InspectArgs a;
  auto next = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw std::invalid_argument(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--labels") a.labels = next(i);
    else if (arg == "--probs") a.probs = next(i);
    else if (arg == "--weights") a.weights = next(i);
    else if (arg == "--grad-out") a.gradOut = next(i);
    else if (arg == "--penalty") a.penalties.push_back(next(i));
    else if (arg == "--relu") a.relu = true;
    else if (arg == "--classes") a.classes = static_cast<int64_t>(parseNumber(next(i), "--classes"));
    else if (arg == "--cluster") a.clusters = static_cast<int64_t>(parseNumber(next(i), "--cluster"));
    else if (arg == "--mi") a.miSigma2 = parseNumber(next(i), "--mi");
    else if (arg == "--normalization") a.normalization = next(i);
    else if (arg == "--seed") a.seed = static_cast<uint64_t>(parseNumber(next(i), "--seed"));
    else if (!arg.empty() && arg[0] == '-') throw std::invalid_argument("unknown option " + arg);
    else if (a.activations.empty()) a.activations = arg;
    else throw std::invalid_argument("unexpected argument '" + arg + "' (one activations file only)");
  }
  if (a.activations.empty()) throw std::invalid_argument("missing the activations file");
  if ((a.clusters || a.miSigma2) && a.labels.empty()) throw std::invalid_argument("--cluster and --mi need --labels");
  if (a.clusters && *a.clusters < 0) throw std::invalid_argument("--cluster: expected K >= 0");
  if (a.miSigma2 && !(*a.miSigma2 > 0)) throw std::invalid_argument("--mi: expected a noise variance > 0");
  reg::parseMiNormalization(a.normalization);  // throws naming the value
  return a;
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
  torch::Tensor labels, probs, weights;
  int64_t classes = args.classes;
  if (!args.labels.empty()) {
    labels = io::readLabels(args.labels);
    if (labels.size(0) != n)
      throw std::invalid_argument(args.labels + ": " + std::to_string(labels.size(0)) + " labels for " +
                                  std::to_string(n) + " activation rows");
    const int64_t top = n > 0 ? labels.max().item<int64_t>() : -1;
    if (classes == 0) classes = top + 1;
    if (top >= classes)
      throw std::invalid_argument(args.labels + ": label " + std::to_string(top) + " >= --classes " +
                                  std::to_string(classes));
  }
  if (!args.probs.empty()) {
    probs = io::readArray(args.probs).to(torch::kFloat64);
    if (probs.size(0) != n)
      throw std::invalid_argument(args.probs + ": " + std::to_string(probs.size(0)) + " rows, expected " +
                                  std::to_string(n));
  }
  if (!args.weights.empty()) weights = io::readArray(args.weights).to(torch::kFloat64);
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
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  try {
    return inspect(parseArgs(argc, argv));
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "repshape inspect: %s\n%s", e.what(), argc == 0 ? kUsage : "");
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
