#pragma once
// The typed training configuration: TOML parsed once into these structs, validated up front.
// Every key, its type, default and range is declared once in Config.cpp; parsing, `--set`
// overrides, nearest-key suggestions and config.resolved.toml all come from that one table.

#include <repshape/regularizers/Regularizers.h>

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace repshape {

// A user-input error: printed as `file:line: key: what was expected`, exit code 2.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DataConfig {
  // fashion-mnist | mnist | idx | cifar10 | cifar100 | strokes | projection | xor | factors
  std::string source = "fashion-mnist";
  std::string dir;                 // empty: the source's default directory
  int64_t trainSize = 0;           // 0: all training samples (after the validation split)
  int64_t validationSize = 0;      // held out of the training set, by seed
  int64_t testSize = 0;            // 0: the whole test set
  std::optional<int64_t> seed;     // default: train.seed
  int64_t numClasses = 0;          // 0: from the source; cifar100 16/64-class conditions set it
  // Synthetic generators (SPEC §5).
  int64_t samples = 10000;         // training samples generated
  int64_t testSamples = 2000;      // test samples generated
  int64_t factors = 4;             // d: independent Gaussian factors
  int64_t inputDim = 10;           // projection / rotation output dimension
  double noise = 0.0;              // additive Gaussian noise std on the inputs
  // Grouped labels: relabel[g] lists the source classes that become class g (e.g. [[0,1,2,3,4],
  // [5,6,7,8,9]] for Romanov's binary split); every class in exactly one group. Training and the
  // task metrics use the groups; clustering AMI/NMI scores against the original labels.
  std::vector<std::vector<int64_t>> relabel;
  // > 0: inputs projected onto the top pca_dims principal components of the TRAINING split (mean
  // and components fitted there, applied to every split; Choi §4.3). Samples become [pca_dims].
  int64_t pcaDims = 0;
};

struct ModelConfig {
  // mlp | cnn | lstm | conv_ae. lstm: an LSTM over sequences [T, F] whose hidden state at each
  // sequence's last step is layer "lstm", then `hidden` FC layers fc1, fc2, … (Romanov §4.1).
  // conv_ae: `layers` is the encoder (conv… then fc…; the last fc is the code, named "code"), the
  // decoder mirrors it (dec1, dec2, …, out; ConvTranspose2d for convs); objective "mse" (Kågebäck §3.4).
  std::string type = "mlp";
  std::string activation = "relu";          // relu | leaky_relu | sigmoid | tanh | linear
  double leakySlope = 0.01;
  std::vector<int64_t> hidden = {100};      // MLP hidden widths (h1, h2, …); lstm: FC widths (fc1, …)
  int64_t lstmHidden = 128;                 // lstm: hidden (and cell) state size H
  int64_t lstmLayers = 1;                   // lstm: stacked LSTM layers
  // CNN: e.g. ["conv:32:3", "conv:32:3", "pool:2", "conv:64:3", "conv:64:3", "pool:2", "fc:128"];
  // layers are named conv1…, pool1…, fc1…; the output layer is always "out".
  std::vector<std::string> layers;
  double dropout = 0.0;                     // rate p of dropout after dropoutLayers
  std::vector<std::string> dropoutLayers;   // empty with dropout > 0: every hidden layer
  std::vector<std::string> batchNormLayers; // batch norm (global-batch statistics) after these
};

struct OptimConfig {
  std::string name = "adam";  // adam | sgd | rmsprop
  double lr = 1e-3;
  double momentum = 0.0;      // sgd, rmsprop
  double weightDecay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double alpha = 0.99;        // rmsprop smoothing
};

struct TrainConfig {
  // cross_entropy: K logits, softmax cross-entropy, error in %; binary: one logit, sigmoid
  // cross-entropy on labels 0/1, error in %; mse: the output reconstructs the (flattened) input,
  // per-sample mean squared error, reported as `mse` (autoencoders).
  std::string objective = "cross_entropy";
  int64_t epochs = 1;
  int64_t steps = 0;          // > 0: stop after this many steps (overrides epochs)
  int64_t batchSize = 100;    // global batch, split across ranks
  uint64_t seed = 0;
  int64_t threads = 1;        // intra-op threads per rank
  std::string device = "cpu"; // cpu | cuda
  int64_t logEvery = 1;       // steps.jsonl line every N steps
  bool timings = true;        // samples_per_s and comm time in steps.jsonl (false: byte-reproducible)
  int64_t checkpointEvery = 0;  // checkpoint every N steps (0: only on a stop signal), see Checkpoint.h
  double progressSeconds = 10.0;  // rank 0 prints a progress line this often when not on a terminal (0: never)
};

struct ClusteringConfig {
  int64_t k = 0;               // 0: number of classes
  int64_t nInit = 10;
  int64_t maxIter = 300;
  double tol = 1e-4;
  std::string normalization = "arithmetic";  // arithmetic | max | geometric
  // Also cluster with each of these k: result keys "ami@k=K" and "nmi@k=K" (Romanov's AMI vs the
  // number of clusters); the plain ami / nmi keep using `k`.
  std::vector<int64_t> kValues;
};

struct MiConfig {
  double sigma2 = 0.1;
  // mixed: fp32 GEMMs with per-class re-centring and a sampled fp64 check (≤ 1e-7 nats per row
  // from fp64, several times faster); fp64: the reference path (InformationBoundsOptions::fp64).
  std::string precision = "mixed";
};

struct EvalConfig {
  int64_t batchSize = 1000;
  int64_t every = 0;                         // > 0: also evaluate (validation, test + metrics) every N steps
  std::vector<std::string> layers;           // metric layers besides the regularizer targets
  std::vector<int64_t> tdvDims = {4};
  std::vector<double> udFractions = {0.9};
  std::optional<ClusteringConfig> clustering;
  std::optional<MiConfig> mi;
  // Write covariance-<layer>.json (test set: matrix, eigenvalues) for each metric layer: the
  // report's heatmap / spectrum / |ρ| histogram figures read them.
  bool saveCovariance = false;
};

struct DistributedConfig {
  std::string backend = "auto";  // auto | single | mpi | nccl
  double timeoutSeconds = 300.0; // deadline of every collective
};

// Prometheus monitoring (issue 11; see MetricsExporter.h).
struct MetricsConfig {
  std::string listen;       // "HOST:PORT" serving /metrics per rank; "127.0.0.1:0" = ephemeral; "" = off
  std::string pushgateway;  // "HOST:PORT" of a Pushgateway for the run's outcome; "" = no push
  std::string targetsDir;   // directory for file_sd targets <cell>-rank<r>.json; "" = none
  std::string grid;         // label value: the grid this run is a cell of ("" = none)
  std::string cell;         // label value: the cell id ("" = the output directory's name)
};

struct Config {
  std::string path;  // file it came from (for messages)
  // Where each key was given ("file:line", "file: --set"), for checks made after parsing (shapes
  // through the model, data, resources): key path ("model.layers", "regularizer[1].targets") → place.
  std::map<std::string, std::string> locations;
  // "file:line" of `key` when it was given, else the file: the prefix of a located message.
  std::string where(const std::string& key) const;
  DataConfig data;
  ModelConfig model;
  OptimConfig optim;
  TrainConfig train;
  EvalConfig eval;
  DistributedConfig distributed;
  MetricsConfig metrics;
  std::vector<reg::PenaltySpec> regularizers;
};

// Parses and validates `path` with `overrides` ("section.key=value", TOML values) applied on top.
// Throws ConfigError with `file:line: key: what was expected`.
Config loadConfig(const std::string& path, const std::vector<std::string>& overrides = {});

// One entry of model.layers, parsed: conv:OUT:KERNEL[:STRIDE[:PAD]], pool:SIZE or fc:OUT.
struct LayerSpec {
  // Lstm and Deconv are never parsed from text: planModel makes them for type lstm / conv_ae.
  enum class Kind { Conv, Pool, Fc, Lstm, Deconv } kind = Kind::Fc;
  int64_t out = 0;     // conv channels / fc width
  int64_t kernel = 0;  // conv
  int64_t stride = 1;  // conv
  int64_t pad = 0;     // conv (default kernel / 2)
  int64_t pool = 0;    // pool window and stride
  int64_t layers = 1;  // lstm: stacked layers
};
// Throws std::invalid_argument saying what is wrong with `spec` (without a location).
LayerSpec parseLayerSpec(const std::string& spec);

// Names of the model's hidden layers in order (h1…hL for an MLP; conv1/pool1/fc1… for a CNN;
// lstm, fc1… for an LSTM; conv1…, fc1…, code, dec1… for a conv_ae); the output layer is always "out".
std::vector<std::string> modelLayerNames(const ModelConfig& model);

// The fully resolved configuration (defaults filled in) as TOML text.
std::string toToml(const Config& config);

}  // namespace repshape
