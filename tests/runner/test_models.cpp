// Issue 9 models: the LSTM over pen strokes (Romanov §4.1), the mirrored convolutional autoencoder
// (Kågebäck §3.4) and the VGG-style CNN (Romanov §4.2): planned shapes and parameter counts
// against closed forms, the built network's parameters against the plan, the LSTM's last-step
// state against a hand-written recurrence, conv_ae gradients against central finite differences
// (fp64), and located config errors.
#include "Config.h"
#include "Model.h"
#include "Objective.h"
#include "TestUtil.h"

#include <repshape/regularizers/CpuKernels.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>

namespace repshape {
namespace {

Config configOf(const std::string& type, const std::vector<std::string>& layers, const std::string& objective) {
  Config config;
  config.path = "test.toml";
  config.model.type = type;
  config.model.layers = layers;
  config.train.objective = objective;
  return config;
}

int64_t numel(Network& network) {
  int64_t n = 0;
  for (const auto& p : network->parameters()) n += p.numel();
  return n;
}

// The conv_ae of jobs/kagebaeck-cifar-ae.toml.
const std::vector<std::string> kKagebaeck = {"conv:32:5:2:2", "conv:32:5:2:2", "fc:100", "fc:84"};

TEST(ConvAutoencoder, MirrorsTheEncoderWithClosedFormParameters) {
  const Config config = configOf("conv_ae", kKagebaeck, "mse");
  const ModelPlan plan = planModel(config, {3, 32, 32}, 10);
  std::vector<std::string> names;
  for (const auto& l : plan.layers) names.push_back(l.name);
  EXPECT_EQ(names, (std::vector<std::string>{"conv1", "conv2", "fc1", "code", "dec1", "dec2", "dec3", "out"}));
  EXPECT_EQ(plan.layers[1].outShape, (std::vector<int64_t>{32, 8, 8}));
  EXPECT_EQ(plan.layers[3].width, 84);
  EXPECT_EQ(plan.layers[5].outShape, (std::vector<int64_t>{2048}));
  EXPECT_EQ(plan.layers[6].outShape, (std::vector<int64_t>{32, 16, 16}));
  EXPECT_EQ(plan.layers[7].outShape, (std::vector<int64_t>{3, 32, 32}));
  // conv (3·25+1)·32 + (32·25+1)·32; fc 2049·100 + 101·84; mirror 85·100 + 101·2048;
  // deconv 32·32·25+32 + 32·3·25+3.
  const int64_t expected = 76 * 32 + 801 * 32 + 2049 * 100 + 101 * 84 + 85 * 100 + 101 * 2048 + 25632 + 2403;
  EXPECT_EQ(plan.parameters, expected);
  EXPECT_EQ(plan.parameters, 484831);  // "roughly 500,000" (Kågebäck §3.4)
  Network network(config.model, plan);
  EXPECT_EQ(numel(network), expected);
  network->setCaptureLayers({"code"});
  std::vector<torch::Tensor> captured;
  const auto out = network->forward(torch::rand({2, 3, 32, 32}), ForwardContext{}, &captured);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 3072}));
  EXPECT_EQ(captured[0].sizes(), (std::vector<int64_t>{2, 84}));
  EXPECT_FALSE(network->isReluLayer("code"));  // the code is linear
  EXPECT_TRUE(network->isReluLayer("dec1"));
}

TEST(ConvAutoencoder, OddSizesAreRestoredByOutputPadding) {
  // 7x7 → (7+2−3)/2+1 = 4 → the transposed conv needs output_padding 0; 8x8 → 4 needs 1.
  for (int64_t side : {7, 8}) {
    const Config config = configOf("conv_ae", {"conv:3:3:2:1", "fc:5"}, "mse");
    const ModelPlan plan = planModel(config, {2, side, side}, 10);
    Network network(config.model, plan);
    EXPECT_EQ(network->forward(torch::rand({3, 2, side, side}), ForwardContext{}).sizes(),
              (std::vector<int64_t>{3, 2 * side * side}));
  }
}

// Autograd gradients of Σ task loss against central differences (fp64) at ~5 entries per tensor.
// training: the forward of a training step (an MLP then takes the fused chain, FusedMlp.h).
void expectGradientsMatchFiniteDifferences(Network& network, const torch::Tensor& x, const torch::Tensor& y,
                                           const std::string& objective, bool training = false) {
  network->to(torch::kDouble);
  ForwardContext context;
  context.training = training;
  auto loss = [&] { return taskLossSum(objective, network->forward(x, context), x, y); };
  network->zero_grad();
  loss().backward();
  torch::NoGradGuard noGrad;
  int checked = 0;
  for (auto& item : network->named_parameters()) {
    const std::string& name = item.key();
    const auto flat = item.value().view({-1});
    const auto grad = item.value().grad().view({-1});
    for (int64_t i = 0; i < flat.numel(); i += std::max<int64_t>(1, flat.numel() / 5)) {
      const double saved = flat[i].item<double>();
      const double eps = 1e-6;
      flat[i] = saved + eps;
      const double up = loss().item<double>();
      flat[i] = saved - eps;
      const double down = loss().item<double>();
      flat[i] = saved;
      const double numeric = (up - down) / (2 * eps);
      EXPECT_NEAR(grad[i].item<double>(), numeric, 1e-6 * std::max(1.0, std::abs(numeric))) << name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 30);
}

TEST(ConvAutoencoder, GradientsMatchFiniteDifferences) {
  torch::manual_seed(3);
  const Config config = configOf("conv_ae", {"conv:3:3:2:1", "conv:2:3:2:0", "fc:6", "fc:3"}, "mse");
  Network network(config.model, planModel(config, {2, 9, 9}, 10));
  expectGradientsMatchFiniteDifferences(network, torch::rand({4, 2, 9, 9}, torch::kDouble), {}, "mse");
}

// The same MLP twice with equal parameters: layer by layer (REPSHAPE_FUSED_MLP=0) and fused.
std::pair<Network, Network> layeredAndFused(const Config& config, const ModelPlan& plan) {
  ::setenv("REPSHAPE_FUSED_MLP", "0", 1);
  Network layered(config.model, plan);
  ::unsetenv("REPSHAPE_FUSED_MLP");
  Network fused(config.model, plan);
  torch::NoGradGuard noGrad;
  for (auto& item : fused->named_parameters()) item.value().copy_(layered->named_parameters()[item.key()]);
  return {layered, fused};
}

// The fused Linear+ReLU chain (FusedMlp.h) against the layer-by-layer autograd graph of the same
// network (REPSHAPE_FUSED_MLP=0): logits, captured activations and every parameter gradient of a
// loss that also reaches two hidden layers (as penalties do) and a weight (as l2w does). fp64 to
// 1e-12 and fp32 to its rounding, through both compiled versions of the raw element loops
// (baseline x86-64 and AVX2, cpu::useBaselineKernels).
TEST(FusedMlp, MatchesTheLayerByLayerGraph) {
  struct Case {
    std::string activation;
    c10::ScalarType dtype;
    bool baseline;
  };
  const Case cases[] = {{"relu", torch::kDouble, false}, {"linear", torch::kDouble, false},
                        {"relu", torch::kDouble, true},  {"relu", torch::kFloat, false},
                        {"relu", torch::kFloat, true},   {"linear", torch::kFloat, false}};
  for (const Case& c : cases) {
    const std::string& activation = c.activation;
    cpu::useBaselineKernels(c.baseline);
    const double rtol = c.dtype == torch::kDouble ? 1e-12 : 1e-5, atol = c.dtype == torch::kDouble ? 1e-12 : 1e-6;
    torch::manual_seed(5);
    Config config = configOf("mlp", {}, "ce");
    config.model.hidden = {7, 6, 5};
    config.model.activation = activation;
    const ModelPlan plan = planModel(config, {1, 3, 4}, 3);
    auto [layered, fused] = layeredAndFused(config, plan);
    layered->to(c.dtype);
    fused->to(c.dtype);
    layered->setCaptureLayers({"h3", "h2"});
    fused->setCaptureLayers({"h3", "h2"});
    const torch::Tensor x = torch::randn({9, 1, 3, 4}, c.dtype), y = torch::randint(0, 3, {9});
    const torch::Tensor r2 = torch::randn({9, 6}, c.dtype), r3 = torch::randn({9, 5}, c.dtype);
    ForwardContext context;
    context.training = true;
    std::vector<torch::Tensor> logits, captured[2];
    Network* networks[2] = {&layered, &fused};
    for (int k = 0; k < 2; ++k) {
      Network& net = *networks[k];
      logits.push_back(net->forward(x, context, &captured[k]));
      const torch::Tensor loss = taskLossSum("ce", logits.back(), x, y) + (captured[k][1] * r2).sum() +
                                 (captured[k][0].pow(2) * r3).sum() + net->weightMatrices()[0].second.pow(2).sum();
      net->zero_grad();
      loss.backward();
    }
    ASSERT_TRUE(logits[1].grad_fn());
    EXPECT_NE(logits[1].grad_fn()->name().find("FusedMlp"), std::string::npos) << logits[1].grad_fn()->name();
    EXPECT_EQ(logits[0].grad_fn()->name().find("FusedMlp"), std::string::npos) << logits[0].grad_fn()->name();
    const std::string where = activation + " " + c10::toString(c.dtype) + (c.baseline ? " baseline" : "");
    EXPECT_TRUE(torch::allclose(logits[1], logits[0], rtol, atol)) << where;
    for (int k = 0; k < 2; ++k) EXPECT_TRUE(torch::allclose(captured[1][k], captured[0][k], rtol, atol)) << where << k;
    for (const auto& item : layered->named_parameters()) {
      const torch::Tensor expected = item.value().grad(), got = fused->named_parameters()[item.key()].grad();
      ASSERT_TRUE(got.defined()) << item.key();
      EXPECT_GT(expected.abs().max().item<double>(), 0.0) << item.key();
      EXPECT_TRUE(torch::allclose(got, expected, rtol * 100, atol))
          << where << " " << item.key() << ": max |diff| " << (got - expected).abs().max().item<double>();
    }
  }
  cpu::useBaselineKernels(false);
}

// The raw loops keep ReLU's and threshold_backward's NaN rules: with a NaN in one input row (fp32,
// the raw path), logits and every parameter gradient have NaN exactly where the layer-by-layer
// graph has them, and equal values elsewhere.
TEST(FusedMlp, NaNInputsPropagateAsInTheLayerByLayerGraph) {
  torch::manual_seed(7);
  Config config = configOf("mlp", {}, "ce");
  config.model.hidden = {6, 5};
  const ModelPlan plan = planModel(config, {4}, 3);
  auto [layered, fused] = layeredAndFused(config, plan);
  torch::Tensor x = torch::randn({5, 4});
  x[2][1] = std::numeric_limits<float>::quiet_NaN();
  ForwardContext context;
  context.training = true;
  std::vector<torch::Tensor> logits;
  Network* networks[2] = {&layered, &fused};
  for (Network* net : networks) {
    std::vector<torch::Tensor> captured;
    logits.push_back((*net)->forward(x, context, &captured));
    (logits.back().nan_to_num(0.0) * torch::arange(1, 16).view({5, 3})).sum().backward();
  }
  ASSERT_NE(logits[1].grad_fn()->name().find("FusedMlp"), std::string::npos);
  EXPECT_TRUE(logits[1][2].isnan().all().item<bool>());
  EXPECT_TRUE(torch::allclose(logits[1], logits[0], 1e-5, 1e-6, /*equal_nan=*/true));
  for (const auto& item : layered->named_parameters()) {
    const torch::Tensor expected = item.value().grad(), got = fused->named_parameters()[item.key()].grad();
    EXPECT_TRUE(torch::equal(got.isnan(), expected.isnan())) << item.key();
    EXPECT_TRUE(torch::allclose(got, expected, 1e-4, 1e-5, /*equal_nan=*/true)) << item.key();
  }
}

// crossEntropySum (the trainer's task loss) against F::cross_entropy with reduction sum: values and
// gradients, fp32 and fp64, one class, no rows, logits far from zero; a NaN logit reaches the loss,
// a label out of range is an error.
TEST(CrossEntropySum, MatchesAtenValuesAndGradients) {
  namespace F = torch::nn::functional;
  torch::manual_seed(5);
  struct Case {
    int64_t n, k;
    double scale, shift;
    c10::ScalarType dtype;
  };
  const Case cases[] = {{37, 10, 3.0, 0.0, torch::kFloat32}, {37, 10, 3.0, 0.0, torch::kFloat64},
                        {5, 1, 1.0, 0.0, torch::kFloat32},   {0, 10, 1.0, 0.0, torch::kFloat32},
                        {64, 100, 30.0, 80.0, torch::kFloat32}, {16, 7, 1e4, -1e5, torch::kFloat64}};
  for (const Case& c : cases) {
    const torch::Tensor base = (torch::randn({c.n, c.k}, torch::kFloat64) * c.scale + c.shift).to(c.dtype);
    const torch::Tensor y = torch::randint(0, c.k, {c.n}, torch::kLong);
    const torch::Tensor mine = base.clone().requires_grad_(true), theirs = base.clone().requires_grad_(true);
    const torch::Tensor a = crossEntropySum(mine, y);
    const torch::Tensor b = F::cross_entropy(theirs, y, F::CrossEntropyFuncOptions().reduction(torch::kSum));
    (a * 0.37).backward();
    (b * 0.37).backward();
    const double tol = c.dtype == torch::kFloat64 ? 1e-12 : 2e-6;
    const std::string where = "n " + std::to_string(c.n) + " k " + std::to_string(c.k);
    EXPECT_EQ(a.scalar_type(), c.dtype) << where;
    EXPECT_NEAR(a.item<double>(), b.item<double>(), tol * std::max(1.0, std::abs(b.item<double>()))) << where;
    ASSERT_EQ(mine.grad().sizes(), theirs.grad().sizes()) << where;
    if (c.n > 0) {
      EXPECT_LT((mine.grad() - theirs.grad()).abs().max().item<double>(), tol) << where;
    }
  }
  torch::Tensor x = torch::zeros({3, 4});
  x[1][2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(crossEntropySum(x, torch::tensor({0, 1, 2}, torch::kLong)).item<double>()));
  EXPECT_THROW(crossEntropySum(torch::zeros({2, 4}), torch::tensor({0, 4}, torch::kLong)), c10::Error);
  EXPECT_THROW(crossEntropySum(torch::zeros({2, 4}), torch::tensor({-1, 0}, torch::kLong)), c10::Error);
}

// stepLoss (the trainer's loss: task sum / rows + Σ λ·Ω) against the ATen ops it replaces on the
// CPU, `taskSum / rows` then `+ Ω.to(T) * λ` per term: value and every gradient bit for bit (the
// node computes the same rounded expressions), fp32 and fp64 task sums, fp64 and fp32 values, no
// term, an upstream gradient other than 1 (the terms' gradients then to one rounding of fp32); a
// value without a gradient; non-scalars take ATen's path.
TEST(StepLoss, EqualsAtenOpsBitForBit) {
  torch::manual_seed(7);
  const auto bits = [](const torch::Tensor& t) {
    return t.scalar_type() == torch::kFloat64 ? t.view(torch::kInt64).item<int64_t>()
                                              : static_cast<int64_t>(t.view(torch::kInt32).item<int32_t>());
  };
  for (const auto taskType : {torch::kFloat32, torch::kFloat64})
    for (const int64_t terms : {0, 1, 3})
      for (const double upstream : {1.0, 0.37}) {
        const int64_t rows = 37 + terms;
        const torch::Tensor taskBase = (torch::rand({}, torch::kFloat64) * 300).to(taskType);
        std::vector<torch::Tensor> base;
        std::vector<double> weights;
        for (int64_t i = 0; i < terms; ++i) {
          base.push_back((torch::rand({}, torch::kFloat64) * 1e3).to(i == 1 ? torch::kFloat32 : torch::kFloat64));
          weights.push_back(torch::rand({}, torch::kFloat64).item<double>() * 0.1);
        }
        const auto leaves = [&](std::vector<torch::Tensor>& values) {
          for (const auto& b : base) values.push_back(b.clone().requires_grad_(true));
          return taskBase.clone().requires_grad_(true);
        };
        std::vector<torch::Tensor> mineValues, theirValues;
        const torch::Tensor mineTask = leaves(mineValues), theirTask = leaves(theirValues);
        const torch::Tensor mine = stepLoss(mineTask, rows, mineValues, weights);
        torch::Tensor theirs = theirTask / static_cast<double>(rows);
        for (int64_t i = 0; i < terms; ++i) theirs = theirs + theirValues[i].to(theirs.dtype()) * weights[i];
        const std::string where = std::string(c10::toString(taskType)) + " terms " + std::to_string(terms) +
                                  " upstream " + std::to_string(upstream);
        ASSERT_NE(mine.grad_fn(), nullptr) << where;
        EXPECT_NE(mine.grad_fn()->name().find("StepLossFn"), std::string::npos) << mine.grad_fn()->name();
        EXPECT_EQ(mine.scalar_type(), taskType) << where;
        EXPECT_EQ(bits(mine), bits(theirs)) << where << ": " << mine.item<double>() << " vs " << theirs.item<double>();
        (mine * upstream).backward();
        (theirs * upstream).backward();
        EXPECT_EQ(bits(mineTask.grad()), bits(theirTask.grad())) << where;
        for (int64_t i = 0; i < terms; ++i) {
          EXPECT_EQ(mineValues[i].grad().scalar_type(), base[i].scalar_type()) << where;
          // g·λ with g ≠ 1 rounds differently across LibTorch versions (fp64 in 1.13, T in 2.x).
          if (upstream == 1.0 || taskType == torch::kFloat64)
            EXPECT_EQ(bits(mineValues[i].grad()), bits(theirValues[i].grad())) << where << " term " << i;
          else
            EXPECT_NEAR(mineValues[i].grad().item<double>(), theirValues[i].grad().item<double>(),
                        2e-7 * std::abs(theirValues[i].grad().item<double>())) << where << " term " << i;
        }
      }
  // A value that needs no gradient (a constant term) and a non-scalar (ATen's ops).
  const torch::Tensor task = torch::tensor(12.5f).requires_grad_(true);
  const torch::Tensor loss = stepLoss(task, 10, {torch::tensor(3.0, torch::kFloat64)}, {0.5});
  loss.backward();
  EXPECT_FLOAT_EQ(loss.item<float>(), 1.25f + 1.5f);
  EXPECT_FLOAT_EQ(task.grad().item<float>(), 0.1f);
  const torch::Tensor vector = torch::ones({2}).requires_grad_(true);
  const torch::Tensor viaAten = stepLoss(vector, 4, {}, {});
  EXPECT_EQ(viaAten.grad_fn()->name().find("StepLossFn"), std::string::npos) << viaAten.grad_fn()->name();
  EXPECT_THROW(stepLoss(task, 10, {torch::tensor(1.0)}, {}), c10::Error);
}

TEST(FusedMlp, GradientsMatchFiniteDifferences) {
  torch::manual_seed(6);
  Config config = configOf("mlp", {}, "ce");
  config.model.hidden = {7, 6};
  Network network(config.model, planModel(config, {8}, 3));
  expectGradientsMatchFiniteDifferences(network, torch::randn({5, 8}, torch::kDouble), torch::tensor({0, 2, 1, 1, 0}),
                                        "ce", /*training=*/true);
}

TEST(Lstm, GradientsMatchFiniteDifferences) {
  torch::manual_seed(4);
  Config config = configOf("lstm", {}, "binary");
  config.model.lstmHidden = 4;
  config.model.lstmLayers = 2;
  config.model.hidden = {3};
  config.model.activation = "tanh";
  Network network(config.model, planModel(config, {6, 4}, 2));
  auto x = torch::zeros({3, 6, 4}, torch::kDouble);  // lengths 6, 4, 2
  for (int64_t n = 0; n < 3; ++n) x[n].narrow(0, 0, 6 - 2 * n).copy_(torch::randn({6 - 2 * n, 4}, torch::kDouble));
  expectGradientsMatchFiniteDifferences(network, x, torch::tensor({0, 1, 1}), "binary");
}

TEST(Lstm, PlanAndParametersFollowTheClosedForm) {
  Config config = configOf("lstm", {}, "binary");
  config.model.lstmHidden = 6;
  config.model.lstmLayers = 2;
  config.model.hidden = {5};
  const ModelPlan plan = planModel(config, {9, 4}, 2);
  ASSERT_EQ(plan.layers.size(), 3u);
  EXPECT_EQ(plan.layers[0].name, "lstm");
  EXPECT_EQ(plan.layers[1].name, "fc1");
  EXPECT_EQ(plan.layers[2].outShape, (std::vector<int64_t>{1}));
  // Layer 1: 4H(F+H) + 2·4H; layer 2: 4H(H+H) + 2·4H; fc1 (6+1)·5; out (5+1)·1.
  const int64_t expected = 24 * (4 + 6) + 48 + 24 * 12 + 48 + 35 + 6;
  EXPECT_EQ(plan.parameters, expected);
  Network network(config.model, plan);
  EXPECT_EQ(numel(network), expected);
}

TEST(Lstm, LastValidStepMatchesAHandWrittenRecurrence) {
  torch::manual_seed(1);
  Config config = configOf("lstm", {}, "binary");
  config.model.lstmHidden = 5;
  config.model.hidden = {3};
  const int64_t steps = 7;
  Network network(config.model, planModel(config, {steps, 4}, 2));
  network->setCaptureLayers({"lstm"});
  // Three sequences of 7, 3 and 1 rows, zero-padded; a middle row may itself be all zero.
  const std::vector<int64_t> lengths = {7, 3, 1};
  auto x = torch::zeros({3, steps, 4});
  for (int64_t n = 0; n < 3; ++n) x[n].narrow(0, 0, lengths[n]).copy_(torch::randn({lengths[n], 4}));
  x[0][2].zero_();
  std::vector<torch::Tensor> captured;
  network->forward(x, ForwardContext{}, &captured);
  std::map<std::string, torch::Tensor> p;
  for (const auto& item : network->named_parameters()) p[item.key()] = item.value().detach().to(torch::kDouble);
  for (int64_t n = 0; n < 3; ++n) {
    auto h = torch::zeros({5}, torch::kDouble), c = torch::zeros({5}, torch::kDouble);
    for (int64_t t = 0; t < lengths[n]; ++t) {
      const auto xt = x[n][t].to(torch::kDouble);
      const auto gates = p["lstm.weight_ih_l0"].mv(xt) + p["lstm.bias_ih_l0"] + p["lstm.weight_hh_l0"].mv(h) +
                         p["lstm.bias_hh_l0"];
      const auto g = gates.chunk(4);  // input, forget, cell, output (PyTorch order)
      c = torch::sigmoid(g[1]) * c + torch::sigmoid(g[0]) * torch::tanh(g[2]);
      h = torch::sigmoid(g[3]) * torch::tanh(c);
    }
    EXPECT_TRUE(torch::allclose(captured[0][n].to(torch::kDouble), h, 1e-5, 1e-6))
        << "sequence " << n << ": " << captured[0][n] << " vs " << h;
  }
  const auto weights = network->weightMatrices();
  ASSERT_EQ(weights.size(), 4u);  // lstm ih, hh, fc1, out
  EXPECT_EQ(weights[0].first, "lstm.weight_ih_l0");
  EXPECT_EQ(weights[0].second.sizes(), (std::vector<int64_t>{20, 4}));
}

TEST(Lstm, NeedsSequenceInput) {
  const Config config = configOf("lstm", {}, "binary");
  try {
    planModel(config, {3, 32, 32}, 2);
    FAIL() << "an lstm on images was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.type: \"lstm\" reads sequences [T, F]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[3, 32, 32]"), std::string::npos) << e.what();
  }
}

TEST(Vgg, RomanovNetworkPlansWithTheVgg16ConvBase) {
  std::vector<std::string> layers;
  for (const auto& block : std::vector<std::vector<int>>{{64, 64}, {128, 128}, {256, 256, 256}, {512, 512, 512}, {512, 512, 512}}) {
    for (int c : block) layers.push_back("conv:" + std::to_string(c) + ":3:1:1");
    layers.push_back("pool:2");
  }
  for (const char* l : {"conv:256:3:1:1", "conv:128:3:1:1", "conv:8:1:1:0", "fc:15"}) layers.push_back(l);
  const ModelPlan plan = planModel(configOf("cnn", layers, "binary"), {3, 32, 32}, 2);
  // VGG-16's conv base has 14,714,688 parameters (Simonyan & Zisserman; Keras' VGG16 without top).
  const int64_t head = (512 * 9 + 1) * 256 + (256 * 9 + 1) * 128 + (128 + 1) * 8 + (8 + 1) * 15 + (15 + 1);
  EXPECT_EQ(plan.parameters, 14714688 + head);
  EXPECT_EQ(plan.layers[plan.layers.size() - 3].outShape, (std::vector<int64_t>{8, 1, 1}));
  EXPECT_EQ(plan.layers[plan.layers.size() - 2].name, "fc1");
}

// Located errors of the new model types, through loadConfig.
class ModelConfigTest : public ::testing::Test {
 protected:
  std::filesystem::path dir_ = test::tempDir("models");
  std::string errorOf(const std::string& text) {
    try {
      loadConfig(test::writeFile(dir_ / "m.toml", text));
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "";
  }
};

TEST_F(ModelConfigTest, ConvAutoencoderErrorsAreLocated) {
  EXPECT_NE(errorOf("[model]\ntype = \"conv_ae\"\nlayers = [\"conv:8:3\", \"pool:2\", \"fc:4\"]\n[train]\nobjective = \"mse\"\n")
                .find("m.toml:3: model.layers[1]: 'pool:2': a conv_ae encoder has conv and fc layers only"),
            std::string::npos);
  EXPECT_NE(errorOf("[model]\ntype = \"conv_ae\"\nlayers = [\"fc:4\", \"conv:8:3\"]\n[train]\nobjective = \"mse\"\n")
                .find("m.toml:3: model.layers[1]: 'conv:8:3': the last conv_ae encoder layer is the code"),
            std::string::npos);
  EXPECT_NE(errorOf("[model]\ntype = \"conv_ae\"\nlayers = [\"fc:4\"]\n[train]\nobjective = \"binary\"\n")
                .find("m.toml:5: train.objective: model.type = \"conv_ae\" reconstructs its input; set train.objective = \"mse\""),
            std::string::npos);
  EXPECT_NE(errorOf("[model]\ntype = \"lstm\"\nlstm_hidden = 0\n").find("m.toml:3: model.lstm_hidden"), std::string::npos);
  // Layer names of the new types are what penalties may target.
  EXPECT_NE(errorOf("[model]\ntype = \"lstm\"\nhidden = [15]\n[[regularizer]]\nname = \"cr\"\ntargets = [\"fc2\"]\n")
                .find("no layer named 'fc2' (layers: lstm, fc1, out)"),
            std::string::npos);
  EXPECT_EQ(errorOf("[model]\ntype = \"conv_ae\"\nlayers = [\"conv:8:3:2\", \"fc:4\"]\n[train]\nobjective = \"mse\"\n"
                    "[[regularizer]]\nname = \"lsigma\"\ntargets = [\"code\", \"dec1\"]\n"),
            "");
}

}  // namespace
}  // namespace repshape

namespace repshape {
namespace {

// The shipped specs of these models need data that is not on this machine: `--list` works without
// it, `--run` stops before any work (exit 2, no results directory) saying where the files go.
TEST(ModelSpecs, ListWithoutDataAndRunStopsWithWhereToPutTheFiles) {
  const auto dir = test::tempDir("model-specs");
  const std::string env = "REPSHAPE_DATA_DIR=" + (dir / "no-data").string() + " ";
  struct Case {
    const char* spec;
    int cells;
    const char* hint;
  };
  for (const Case& c : {Case{"romanov-strokes", 15, "put de Jong's stroke sequences and the MNIST label files there"},
                        Case{"romanov-cifar", 15, "extract the CIFAR-10 binary version (cifar-10-binary.tar.gz) there"},
                        Case{"kagebaeck-cifar-ae", 110, "extract the CIFAR-10 binary version"}}) {
    const std::string spec = std::string(REPSHAPE_SOURCE_DIR) + "/jobs/specs/" + c.spec + ".toml";
    const std::string results = (dir / c.spec).string();
    const auto list = test::runCommand(env + REPSHAPE_BIN " grid " + spec + " --results " + results + " --list");
    EXPECT_EQ(list.exitCode, 0) << list.output;
    std::size_t lines = 0;
    for (std::size_t at = 0; (at = list.output.find("trial=", at)) != std::string::npos; ++at) ++lines;
    EXPECT_EQ(lines, static_cast<std::size_t>(c.cells)) << list.output;
    const auto run = test::runCommand(env + REPSHAPE_BIN " grid " + spec + " --results " + results + " --run");
    EXPECT_EQ(run.exitCode, 2) << run.output;
    EXPECT_NE(run.output.find("data.dir: " + (dir / "no-data").string()), std::string::npos) << run.output;
    EXPECT_NE(run.output.find("directory not found"), std::string::npos) << run.output;
    EXPECT_NE(run.output.find(c.hint), std::string::npos) << run.output;
    EXPECT_FALSE(std::filesystem::exists(results)) << c.spec << ": --run created its results before failing";
  }
}

}  // namespace
}  // namespace repshape
