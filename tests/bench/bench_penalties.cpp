// bench_penalties: cost of each penalty (forward + backward) relative to one training step of the
// Choi MNIST MLP (784 → 6×100 ReLU → 10, batch 100, one thread, penalty on hidden layer 5, K = 10;
// the step as `repshape train` takes it: FusedMlp, FusedAdam, the caching CPU allocator, gradients
// set to none, its loss node stepLoss over the fused cross-entropy; --aten-loss: ATen's `/ rows`
// and `+ Ω.to(T) * λ` per term, as the trainer added them before stepLoss) or, with --model cnn,
// the Choi CIFAR-10 CNN (penalty on fc1, width 128), measured side by side (baseline and penalised
// steps interleaved, medians), and the
// penalty alone at N = 500, M = 512, K = 100. Not a test: run by hand (or tests/bench/run-all.sh),
//   build/tests/bench/bench_penalties [--iters 300] [--batch 100] [--only "cw-cr,rr exact"] [--no-wide]
//     [--model mlp|cnn] [--warmup STEPS] [--aten-loss]
// Under callgrind (load-independent instruction counts: the machine is shared), --callgrind dumps
// one profile per phase (base-<case>, pen-<case>; the step's Ir is the dump's total / iters):
//   valgrind --tool=callgrind --collect-atstart=no build/tests/bench/bench_penalties --callgrind
//     --iters 20 --no-wide --only cw-cr        (one command line)
#include <repshape/regularizers/Regularizers.h>

#include "BlasThreads.h"
#include "CachingCpuAllocator.h"
#include "FusedAdam.h"
#include "FusedMlp.h"
#include "Objective.h"

#include <torch/torch.h>
#include <valgrind/callgrind.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using torch::Tensor;
namespace reg = repshape::reg;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// The model of one step: logits [B, 10] from x; *hidden receives the penalised layer's post-ReLU
// output [B, width]; weights: every weight matrix (l1w, l2w, lsingle), named.
struct Net {
  virtual ~Net() = default;
  virtual Tensor forward(const Tensor& x, Tensor* hidden) = 0;
  std::vector<Tensor> parameters;
  std::vector<std::pair<std::string, Tensor>> weights;
};

// Choi MNIST MLP (784 → 6×100 ReLU → 10); penalised layer h5.
struct Mlp : Net {
  std::vector<torch::nn::Linear> layers;  // h1..h6, out
  Mlp() {
    int64_t in = 784;
    for (int i = 0; i < 6; ++i) {
      layers.emplace_back(in, 100);
      in = 100;
    }
    layers.emplace_back(100, 10);
    for (std::size_t i = 0; i < layers.size(); ++i) {
      for (auto& p : layers[i]->parameters()) parameters.push_back(p);
      weights.emplace_back(i + 1 < layers.size() ? "h" + std::to_string(i + 1) : "out", layers[i]->weight);
    }
  }
  // As `repshape train` runs this model: one FusedMlp node (runner/src/FusedMlp.h).
  Tensor forward(const Tensor& x, Tensor* hidden5) override {
    std::vector<repshape::FusedMlpLayer> chain;
    for (std::size_t i = 0; i < layers.size(); ++i)
      chain.push_back({layers[i]->weight, layers[i]->bias, i + 1 < layers.size()});
    const std::vector<Tensor> outputs = repshape::fusedMlpForward(x, chain);  // [logits, h1, …, h6]
    *hidden5 = outputs[5];
    return outputs[0];
  }
};

// Choi CIFAR-10 CNN (jobs/choi-cifar-cnn.toml, paper Table 7): 3×3 convolutions (pad 1) with 32,
// 64, 128, 128 filters, ReLU, 2×2 max-pooling after the 2nd, 3rd and 4th, fc1 (2048 → 128, ReLU,
// the penalised layer), out (128 → 10). Input [B, 3, 32, 32].
struct Cnn : Net {
  std::vector<torch::nn::Conv2d> convs;
  torch::nn::Linear fc1{2048, 128}, out{128, 10};
  Cnn() {
    const int64_t channels[] = {3, 32, 64, 128, 128};
    for (int i = 0; i < 4; ++i)
      convs.emplace_back(torch::nn::Conv2dOptions(channels[i], channels[i + 1], 3).padding(1));
    for (std::size_t i = 0; i < convs.size(); ++i) {
      for (auto& p : convs[i]->parameters()) parameters.push_back(p);
      weights.emplace_back("conv" + std::to_string(i + 1), convs[i]->weight);
    }
    for (auto* l : {&fc1, &out})
      for (auto& p : (*l)->parameters()) parameters.push_back(p);
    weights.emplace_back("fc1", fc1->weight);
    weights.emplace_back("out", out->weight);
  }
  Tensor forward(const Tensor& x, Tensor* hiddenFc1) override {
    Tensor h = x;
    for (std::size_t i = 0; i < convs.size(); ++i) {
      h = torch::relu(convs[i]->forward(h));
      if (i >= 1) h = torch::max_pool2d(h, 2);
    }
    *hiddenFc1 = torch::relu(fc1->forward(h.flatten(1)));
    return out->forward(*hiddenFc1);
  }
};

reg::PenaltySpec spec(const std::string& name, const std::string& target, const std::string& method = "holder") {
  reg::PenaltySpec s;
  s.name = name;
  s.method = method;
  if (!target.empty()) s.targets = {target};
  return s;
}

struct Case {
  std::string label;
  reg::PenaltySpec spec;
};

// act: the penalised activations; layer: lsingle's weight.
std::vector<Case> cases(const std::string& act, const std::string& layer) {
  return {{"lsigma", spec("lsigma", act)},
          {"cr", spec("cr", act)},
          {"cw-cr", spec("cw-cr", act)},
          {"vr", spec("vr", act)},
          {"cw-vr", spec("cw-vr", act)},
          {"l1r", spec("l1r", act)},
          {"rr", spec("rr", act)},
          {"rr exact", spec("rr", act, "exact")},
          {"cw-rr", spec("cw-rr", act)},
          {"cw-rr exact", spec("cw-rr", act, "exact")},
          {"corr", spec("corr", act)},
          {"xcov", spec("xcov", act)},
          {"lmulti", spec("lmulti", act)},
          {"lmulti-unsup", spec("lmulti-unsup", act)},
          {"lsingle", spec("lsingle", layer)},
          {"l1w", spec("l1w", "")},
          {"l2w", spec("l2w", "")}};
}

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

}  // namespace

int main(int argc, char** argv) {
  int iters = 300;
  int64_t batchSize = 100;
  std::string only;
  bool wideCase = true, callgrind = false, atenLoss = false;
  std::string model = "mlp";
  int warmup = -1;  // default: 30 steps for the MLP, 3 for the CNN
  for (int i = 1; i < argc; ++i) {
    const bool hasValue = i + 1 < argc;
    if (std::strcmp(argv[i], "--iters") == 0 && hasValue) iters = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--batch") == 0 && hasValue) batchSize = std::atoll(argv[++i]);
    else if (std::strcmp(argv[i], "--only") == 0 && hasValue) only = "," + std::string(argv[++i]) + ",";
    else if (std::strcmp(argv[i], "--no-wide") == 0) wideCase = false;
    else if (std::strcmp(argv[i], "--callgrind") == 0) callgrind = true;
    else if (std::strcmp(argv[i], "--aten-loss") == 0) atenLoss = true;
    else if (std::strcmp(argv[i], "--model") == 0 && hasValue) model = argv[++i];
    else if (std::strcmp(argv[i], "--warmup") == 0 && hasValue) warmup = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "bench_penalties: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  repshape::bench::setThreads(1);  // ATen and OpenBLAS
  repshape::installCachingCpuAllocator();  // as `repshape train` (REPSHAPE_CPU_CACHE=0: glibc)
  torch::manual_seed(0);
  reg::LocalReducer reducer;

  if (model != "mlp" && model != "cnn") {
    std::fprintf(stderr, "bench_penalties: --model %s: expected mlp or cnn\n", model.c_str());
    return 2;
  }
  const bool cnn = model == "cnn";
  if (warmup < 0) warmup = cnn ? 3 : 30;
  std::unique_ptr<Net> net;
  if (cnn) net = std::make_unique<Cnn>();
  else net = std::make_unique<Mlp>();
  const std::string act = cnn ? "fc1" : "h5";  // the penalised layer
  repshape::FusedAdam adam(net->parameters, torch::optim::AdamOptions(1e-4));  // the trainer's optimizer
  const Tensor x = cnn ? torch::rand({batchSize, 3, 32, 32}) : torch::rand({batchSize, 784});
  const Tensor y = torch::randint(0, 10, {batchSize}, torch::kLong);
  const auto& weights = net->weights;

  // One optimizer step; set == nullptr: the baseline.
  auto step = [&](const reg::PenaltySet* set) {
    const auto t0 = Clock::now();
    Tensor hidden;
    const Tensor logits = net->forward(x, &hidden);
    const Tensor taskSum = repshape::crossEntropySum(logits, y);
    Tensor loss = atenLoss ? taskSum / static_cast<double>(batchSize) : Tensor();
    std::vector<Tensor> values;
    std::vector<double> lambdas;
    if (set) {
      reg::PenaltyBatch batch;
      batch.activations = {{act, hidden}};
      batch.labels = y;
      if (set->needsProbabilities()) batch.probabilities = torch::softmax(logits, 1);
      batch.weights = weights;
      for (const auto& v : set->compute(batch, reducer)) {
        if (atenLoss) loss = loss + v.value.to(loss.dtype()) * (v.weight * 1e-3);
        values.push_back(v.value);
        lambdas.push_back(v.weight * 1e-3);
      }
    }
    if (!atenLoss) loss = repshape::stepLoss(taskSum, batchSize, values, lambdas);  // as the trainer
    for (auto& p : net->parameters) p.mutable_grad().reset();  // as the trainer: gradients to none
    loss.backward();
    adam.step();
    return seconds(t0, Clock::now());
  };

  // The wide case: penalty forward + backward alone.
  const int64_t wideN = 500, wideM = 512, wideK = 100;
  const Tensor wideZ = torch::relu(torch::randn({wideN, wideM}));
  const Tensor wideY = torch::randint(0, wideK, {wideN}, torch::kLong);
  const Tensor wideP = torch::softmax(torch::randn({wideN, wideK}), 1);
  const Tensor wideW = torch::randn({wideM, wideM}) * 0.05;
  auto wide = [&](const reg::PenaltySpec& s) {
    reg::PenaltySpec ws = s;
    if (!ws.targets.empty()) ws.targets = {s.name == "lsingle" ? "w" : "z"};
    const reg::PenaltySet set({ws}, static_cast<int>(wideK));
    std::vector<double> times;
    const auto start = Clock::now();
    while (times.size() < 15 && (times.size() < 3 || seconds(start, Clock::now()) < 5.0)) {
      const Tensor z = wideZ.detach().requires_grad_(true);
      const Tensor w = wideW.detach().requires_grad_(true);
      const auto t0 = Clock::now();
      reg::PenaltyBatch batch;
      batch.activations = {{"z", z}};
      batch.labels = wideY;
      batch.probabilities = wideP;
      batch.weights = {{"w", w}};
      Tensor total = torch::zeros({});
      for (const auto& v : set.compute(batch, reducer)) total = total + v.value;
      total.backward();
      times.push_back(seconds(t0, Clock::now()));
    }
    return median(times);
  };

  for (int i = 0; i < warmup; ++i) step(nullptr);
  std::printf("%s step (batch %lld, Adam, 1 thread), penalty on %s, K=10; %d interleaved steps per row, medians\n",
              cnn ? "Choi CIFAR-10 CNN (conv 32-64-128-128, fc 128)" : "Choi MNIST MLP (784-6x100-10)",
              static_cast<long long>(batchSize), act.c_str(), iters);
  std::printf("%-14s %10s %10s %8s | %12s %10s\n", "penalty", "base ms", "pen ms", "ratio", "N500/M512 ms",
              "x MLP step");
  double baseAll = 0;
  std::vector<double> allBase;
  // The CNN step is ~50× the MLP's: under callgrind its baseline is dumped once ("base") rather
  // than per case (the same instructions every step: no penalty, same data).
  const bool baseOnce = callgrind && cnn;
  if (baseOnce) {
    CALLGRIND_TOGGLE_COLLECT;
    for (int i = 0; i < iters; ++i) step(nullptr);
    CALLGRIND_TOGGLE_COLLECT;
    CALLGRIND_DUMP_STATS_AT("base");
    std::printf("dumped base (%d steps)\n", iters);
  }
  for (const auto& c : cases(act, cnn ? "fc1" : "h6")) {
    if (!only.empty() && only.find("," + c.label + ",") == std::string::npos) continue;
    const reg::PenaltySet set({c.spec}, 10);
    for (int i = 0; i < (cnn ? 0 : 10); ++i) step(&set);  // CNN: a first call's one-off costs are < 0.1 % of its step
    std::vector<double> base, pen;
    if (callgrind) {  // not interleaved: one dump per phase
      std::string label = c.label;
      std::replace(label.begin(), label.end(), ' ', '_');
      // Named strings: the dump macro expands to several statements, a temporary would be gone.
      const std::string baseName = "base-" + label, penName = "pen-" + label;
      if (!baseOnce) {
        CALLGRIND_TOGGLE_COLLECT;
        for (int i = 0; i < iters; ++i) step(nullptr);
        CALLGRIND_TOGGLE_COLLECT;
        CALLGRIND_DUMP_STATS_AT(baseName.c_str());
      }
      CALLGRIND_TOGGLE_COLLECT;
      for (int i = 0; i < iters; ++i) step(&set);
      CALLGRIND_TOGGLE_COLLECT;
      CALLGRIND_DUMP_STATS_AT(penName.c_str());
      std::printf("%-14s dumped %s%s (%d steps each)\n", c.label.c_str(), baseOnce ? "" : (baseName + " and ").c_str(),
                  penName.c_str(), iters);
      continue;
    }
    for (int i = 0; i < iters; ++i) {
      base.push_back(step(nullptr));
      pen.push_back(step(&set));
    }
    const double b = median(base), p = median(pen);
    allBase.insert(allBase.end(), base.begin(), base.end());
    baseAll = median(allBase);
    const double w = wideCase ? wide(c.spec) : 0.0;
    std::printf("%-14s %10.3f %10.3f %8.3f | %12.2f %10.2f\n", c.label.c_str(), b * 1e3, p * 1e3, p / b, w * 1e3,
                w / baseAll);
    std::fflush(stdout);
  }
  std::printf("ratio = penalised step / baseline step (issue 12 targets: MLP <= 1.10, cw-cr and cw-rr <= 1.20, rr exact and "
              "lmulti at batch 512 <= 1.30; CNN <= 1.05); "
              "x MLP step = wide penalty fwd+bwd / median baseline step\n");
  return 0;
}
