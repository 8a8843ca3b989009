#include "Objective.h"

namespace repshape {

namespace F = torch::nn::functional;

int64_t outputWidth(const std::string& objective, const std::vector<int64_t>& sampleShape, int64_t numClasses) {
  if (objective == "binary") return 1;
  if (objective == "mse") {
    int64_t width = 1;
    for (int64_t d : sampleShape) width *= d;
    return width;
  }
  return numClasses;
}

torch::Tensor taskLossSum(const std::string& objective, const torch::Tensor& output, const torch::Tensor& inputs,
                          const torch::Tensor& labels) {
  if (objective == "binary")
    return F::binary_cross_entropy_with_logits(
        output.squeeze(1), labels.to(output.dtype()),
        F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kSum));
  if (objective == "mse") {
    // Σ_rows (1/D) Σ_j (out − x)²: the per-sample mean, summed.
    const torch::Tensor target = inputs.flatten(1).to(output.dtype());
    return (output - target).square().sum() / static_cast<double>(std::max<int64_t>(output.size(1), 1));
  }
  return F::cross_entropy(output, labels, F::CrossEntropyFuncOptions().reduction(torch::kSum));
}

torch::Tensor errorSum(const std::string& objective, const torch::Tensor& output, const torch::Tensor& inputs,
                       const torch::Tensor& labels) {
  torch::NoGradGuard noGrad;
  if (objective == "binary") return output.squeeze(1).gt(0).to(torch::kLong).ne(labels).sum();
  if (objective == "mse") return taskLossSum(objective, output, inputs, labels);
  return output.argmax(1).ne(labels).sum();
}

double reportedError(const std::string& objective, double errorSum, int64_t samples) {
  const double n = std::max<double>(1.0, static_cast<double>(samples));
  return objective == "mse" ? errorSum / n : 100.0 * errorSum / n;
}

const char* errorKey(const std::string& objective) { return objective == "mse" ? "mse" : "error"; }

torch::Tensor classProbabilities(const std::string& objective, const torch::Tensor& output) {
  if (objective == "binary") return torch::sigmoid(output);
  return torch::softmax(output, 1);
}

void validateObjective(const Config& config, int64_t numClasses, const std::string& dataDescription) {
  const std::string& objective = config.train.objective;
  if (objective == "binary" && numClasses > 2)
    throw ConfigError(config.where("train.objective") + ": train.objective: \"binary\" trains one sigmoid unit on "
                      "labels 0/1, but the data has " + std::to_string(numClasses) + " classes (" + dataDescription +
                      "); group them with data.relabel, e.g. [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]");
  if (objective != "mse") return;
  for (std::size_t i = 0; i < config.regularizers.size(); ++i)
    if (config.regularizers[i].name == "xcov") {
      const std::string key = "regularizer[" + std::to_string(i) + "]";
      throw ConfigError(config.where(key) + ": " + key + ".name: \"xcov\" needs class probabilities, but "
                        "train.objective = \"mse\" has no classifier output");
    }
}

}  // namespace repshape
