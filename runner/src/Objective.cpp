#include "Objective.h"

#include <algorithm>
#include <cmath>

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

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Σ_r (logsumexp(x_r) − x_r,y_r) over n rows of k logits, the log-sum-exp max-shifted and
// accumulated in fp64; writes softmax(x_r) into p for the backward.
template <typename T>
double crossEntropyRows(const T* x, const int64_t* y, int64_t n, int64_t k, T* p) {
  double total = 0.0;
  for (int64_t r = 0; r < n; ++r) {
    const T* row = x + r * k;
    T* prob = p + r * k;
    double top = row[0];  // a NaN anywhere in the row reaches the sum through exp below
    for (int64_t j = 1; j < k; ++j) top = std::max(top, static_cast<double>(row[j]));
    double sum = 0.0;
    for (int64_t j = 0; j < k; ++j) {
      const double e = std::exp(static_cast<double>(row[j]) - top);
      sum += e;
      prob[j] = static_cast<T>(e);
    }
    total += top + std::log(sum) - static_cast<double>(row[y[r]]);
    const double inv = 1.0 / sum;
    for (int64_t j = 0; j < k; ++j) prob[j] = static_cast<T>(static_cast<double>(prob[j]) * inv);
  }
  return total;
}

// Softmax cross-entropy summed over rows as ONE autograd node on the CPU: forward as above,
// backward dx = g · (softmax(x) − onehot(y)). ATen's F::cross_entropy is log_softmax + nll_loss,
// two nodes and a handful of ops each way (≈ 43 µs forward + backward at [100, 10], against ≈ 14 µs
// for the smallest autograd graph); on the Choi MLP this node makes the backward phase ≈ 10 µs
// shorter (+1.3 % samples/s, interleaved A/B). Values agree with ATen's to rounding.
class CrossEntropySumFn : public torch::autograd::Function<CrossEntropySumFn> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& logits, const torch::Tensor& labels) {
    const torch::Tensor x = logits.contiguous(), y = labels.contiguous();
    const int64_t n = x.size(0), k = x.size(1);
    const int64_t* label = y.data_ptr<int64_t>();
    for (int64_t r = 0; r < n; ++r)
      TORCH_CHECK(label[r] >= 0 && label[r] < k, "cross_entropy: label ", label[r], " of row ", r,
                  " is outside [0, ", k, ")");
    torch::Tensor probs = torch::empty_like(x);
    const double total = x.scalar_type() == torch::kFloat64
                             ? crossEntropyRows(x.data_ptr<double>(), label, n, k, probs.data_ptr<double>())
                             : crossEntropyRows(x.data_ptr<float>(), label, n, k, probs.data_ptr<float>());
    ctx->saved_data["probs"] = probs;
    ctx->save_for_backward({y});
    return torch::scalar_tensor(total, x.options());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const torch::Tensor y = ctx->get_saved_variables()[0];
    const double g = grads[0].item<double>();
    torch::Tensor dx = ctx->saved_data["probs"].toTensor() * g;
    const int64_t n = dx.size(0), k = dx.size(1);
    const int64_t* label = y.data_ptr<int64_t>();
    if (dx.scalar_type() == torch::kFloat64) {
      double* d = dx.data_ptr<double>();
      for (int64_t r = 0; r < n; ++r) d[r * k + label[r]] -= g;
    } else {
      float* d = dx.data_ptr<float>();
      for (int64_t r = 0; r < n; ++r) d[r * k + label[r]] -= static_cast<float>(g);
    }
    return {dx, torch::Tensor()};
  }
};

// A 0-dim CPU fp32/fp64 tensor's value, converted to T as Tensor::to(T) converts it.
template <typename T>
T scalarAs(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat64 ? static_cast<T>(*t.data_ptr<double>())
                                            : static_cast<T>(*t.data_ptr<float>());
}

bool cpuScalar(const torch::Tensor& t) {
  return t.defined() && t.is_cpu() && t.dim() == 0 &&
         (t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kFloat64);
}

// stepLoss as one node. ATen's `a / rows` for T computes a / T(rows) (its backward g / T(rows)),
// `v.to(T) * λ` computes T(v) · T(λ) (backward T(g · λ), cast back to v's dtype) and `+` passes g
// through: the same expressions here.
class StepLossFn : public torch::autograd::Function<StepLossFn> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& taskSum, at::TensorList values, double rows,
                               std::vector<double> weights) {
    std::vector<int64_t> dtypes;
    for (const torch::Tensor& v : values) dtypes.push_back(static_cast<int64_t>(v.scalar_type()));
    const bool fp32 = taskSum.scalar_type() == torch::kFloat32;
    double loss = fp32 ? static_cast<double>(scalarAs<float>(taskSum) / static_cast<float>(rows))
                       : scalarAs<double>(taskSum) / rows;
    for (std::size_t i = 0; i < values.size(); ++i)
      loss = addWeightedTerm(loss, scalarAs<double>(values[i]), weights[i], fp32);
    ctx->saved_data["rows"] = rows;
    ctx->saved_data["weights"] = std::move(weights);
    ctx->saved_data["dtypes"] = std::move(dtypes);
    return torch::scalar_tensor(loss, taskSum.options());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const double rows = ctx->saved_data["rows"].toDouble();
    const std::vector<double> weights = ctx->saved_data["weights"].toDoubleVector();
    const std::vector<int64_t> dtypes = ctx->saved_data["dtypes"].toIntVector();
    const torch::Tensor& g = grads[0];
    // One gradient per forward input: taskSum, each value, rows, weights.
    variable_list out(weights.size() + 3);
    if (g.scalar_type() == torch::kFloat64) fill<double>(scalarAs<double>(g), rows, weights, dtypes, g.options(), out);
    else fill<float>(scalarAs<float>(g), rows, weights, dtypes, g.options(), out);
    return out;
  }

 private:
  template <typename T>
  static void fill(T g, double rows, const std::vector<double>& weights, const std::vector<int64_t>& dtypes,
                   const torch::TensorOptions& options, variable_list& out) {
    out[0] = torch::scalar_tensor(static_cast<double>(static_cast<T>(g / static_cast<T>(rows))), options);
    // LibTorch 1.13's MulBackward1 takes g·λ in fp64 and casts it to T; 2.x takes g·T(λ) in T.
    // For the trainer's g = 1 both are T(λ), and so is this.
    for (std::size_t i = 0; i < weights.size(); ++i)
      out[1 + i] = torch::scalar_tensor(static_cast<double>(static_cast<T>(static_cast<double>(g) * weights[i])),
                                        options.dtype(static_cast<torch::ScalarType>(dtypes[i])));
  }
};

}  // namespace

double addWeightedTerm(double total, double value, double weight, bool fp32) {
  if (!fp32) return total + value * weight;
  const float term = static_cast<float>(value) * static_cast<float>(weight);
  return static_cast<double>(static_cast<float>(total) + term);
}

torch::Tensor stepLoss(const torch::Tensor& taskSum, int64_t rows, const std::vector<torch::Tensor>& values,
                       const std::vector<double>& weights) {
  TORCH_CHECK(values.size() == weights.size(), "stepLoss: ", values.size(), " values but ", weights.size(), " weights");
  bool fused = cpuScalar(taskSum);
  for (const torch::Tensor& v : values) fused = fused && cpuScalar(v);
  if (fused) return StepLossFn::apply(taskSum, at::TensorList(values), static_cast<double>(rows), weights);
  torch::Tensor loss = taskSum / static_cast<double>(rows);
  for (std::size_t i = 0; i < values.size(); ++i) loss = loss + values[i].to(loss.dtype()) * weights[i];
  return loss;
}

torch::Tensor crossEntropySum(const torch::Tensor& logits, const torch::Tensor& labels) {
  const bool fused = logits.is_cpu() && logits.dim() == 2 && logits.size(1) > 0 &&
                     (logits.scalar_type() == torch::kFloat32 || logits.scalar_type() == torch::kFloat64) &&
                     labels.dim() == 1 && labels.size(0) == logits.size(0) && labels.scalar_type() == torch::kLong &&
                     labels.is_cpu();
  if (!fused) return F::cross_entropy(logits, labels, F::CrossEntropyFuncOptions().reduction(torch::kSum));
  return CrossEntropySumFn::apply(logits, labels);
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
  return crossEntropySum(output, labels);
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
