#pragma once
// The networks of the papers: an MLP (Choi, Simon, Kågebäck XOR), a CNN (Choi Table 7, Romanov's
// VGG-style net), an LSTM over pen strokes (Romanov §4.1) and a mirrored convolutional autoencoder
// (Kågebäck §3.4), built from ModelConfig with every layer addressable by name (h1…, conv1…, pool1…, fc1…, out) so
// penalties, dropout and batch norm can target it.
//
// Layer order inside one named layer: affine (Linear/Conv) → activation → [captured here: the
// post-activation output that penalties and metrics see] → batch norm → dropout. Batch norm and
// dropout behave as if one process held the whole global batch (SPEC §4): batch-norm moments come
// from a sum across ranks, and dropout masks are drawn for the global batch by (seed, step, layer)
// and sliced to this rank's rows.

#include "Config.h"

#include <torch/torch.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace repshape {

// Everything a forward pass needs to know about the step beyond its own rows.
struct ForwardContext {
  bool training = false;
  int64_t globalBatch = 0;  // rows of the global batch (all ranks)
  int64_t rowOffset = 0;    // global index of this rank's first row
  int64_t step = 0;         // dropout masks depend on (seed, step, layer), never on the rank
  uint64_t seed = 0;
  // Sums a tensor across ranks with a Sum backward (batch-norm moments); identity on one process.
  std::function<torch::Tensor(const torch::Tensor&)> sumAcrossRanks;
};

// The model as shapes only, walked from the config and the data's sample shape without allocating
// a tensor: every layer is validated (shapes through the CNN, batch-norm placement) and the run is
// sized (parameters, activations) before any work starts. The Network is built from this plan.
struct LayerPlan {
  std::string name;  // h1…, conv1…, pool1…, fc1…, lstm, code, dec1…, out
  LayerSpec spec;    // MLP hidden layers and "out" are Fc (a conv_ae's "out" may be Deconv)
  std::vector<int64_t> inShape, outShape;  // [C, H, W], [T, F] (lstm input) or [F] per sample
  int64_t parameters = 0;                  // weights + biases (+ batch-norm scale and shift)
  int64_t width = 0;                       // features per sample after the layer
};

struct ModelPlan {
  std::vector<LayerPlan> layers;  // hidden layers in order, then "out"
  int64_t parameters = 0;
  int64_t activationsPerSample = 0;  // Σ widths (what one sample keeps for backward, roughly)
};

// Throws ConfigError located at the model keys (config.where("model.layers") …). ModelPlan.cpp.
ModelPlan planModel(const Config& config, const std::vector<int64_t>& sampleShape, int64_t numClasses);

class NetworkImpl : public torch::nn::Module {
 public:
  NetworkImpl(const ModelConfig& config, const ModelPlan& plan);

  // logits [n, K]. `captured[i]` receives the post-activation output of captureLayers[i]
  // (set with setCaptureLayers), flattened to [n, M].
  torch::Tensor forward(const torch::Tensor& input, const ForwardContext& context,
                        std::vector<torch::Tensor>* captured = nullptr);

  void setCaptureLayers(const std::vector<std::string>& names);
  const std::vector<std::string>& captureLayers() const { return captureNames_; }

  // Affine weights by layer name: Linear [out, in]; conv and deconv kernels flattened to
  // [out, in·k·k]; the LSTM's as "lstm.weight_ih_l0" [4H, in], "lstm.weight_hh_l0" [4H, H], ….
  std::vector<std::pair<std::string, torch::Tensor>> weightMatrices() const;
  std::vector<std::string> layerNames() const;
  // Width (features per sample) of each named layer's output.
  int64_t layerWidth(const std::string& name) const;
  bool isReluLayer(const std::string& name) const;

 private:
  enum class Kind { Linear, Conv, Pool, Deconv, Lstm };
  struct Layer {
    std::string name;
    Kind kind = Kind::Linear;
    torch::nn::Linear linear{nullptr};
    torch::nn::Conv2d conv{nullptr};
    torch::nn::ConvTranspose2d deconv{nullptr};
    torch::nn::LSTM lstm{nullptr};
    std::vector<int64_t> inShape;  // per sample: a flat input to a deconv is viewed as this map
    int64_t poolSize = 0;
    bool activate = false;
    // Batch norm over the global batch (per feature, or per channel for conv layers).
    bool batchNorm = false;
    torch::Tensor bnWeight, bnBias, runningMean, runningVar;  // [features]
    double dropout = 0.0;
    int captureSlot = -1;  // index into `captured`, or -1
    int64_t width = 0;     // features per sample after this layer
    int64_t features = 0;  // batch-norm features: channels of a map, or the width
  };

  // The LSTM's hidden state at each sequence's last valid step: [n, T, F] → [n, H].
  torch::Tensor lastStates(Layer& layer, const torch::Tensor& x);

  torch::Tensor activation(const torch::Tensor& x) const;
  torch::Tensor applyBatchNorm(Layer& layer, const torch::Tensor& x, const ForwardContext& context);
  torch::Tensor applyDropout(const Layer& layer, std::size_t index, const torch::Tensor& x,
                             const ForwardContext& context) const;

  // A Linear+ReLU chain without batch norm or dropout trains through one fused autograd node
  // (FusedMlp.h) unless REPSHAPE_FUSED_MLP=0; evaluation and every other model take the layers.
  bool fusable_ = false;
  torch::Tensor fusedForward(const torch::Tensor& x, std::vector<torch::Tensor>* captured);

  ModelConfig config_;
  std::vector<Layer> layers_;
  std::vector<std::string> captureNames_;
};
TORCH_MODULE(Network);

}  // namespace repshape
