// bench_penalties: cost of each penalty (forward + backward) relative to one training step of the
// Choi MNIST MLP (784 → 6×100 ReLU → 10, batch 100, Adam, one thread, penalty on hidden layer 5,
// K = 10), measured side by side (baseline and penalised steps interleaved, medians), and the
// penalty alone at N = 500, M = 512, K = 100. Not a test: run by hand (or tests/bench/run-all.sh),
//   build/tests/bench/bench_penalties [--iters 300] [--batch 100] [--only "cw-cr,rr exact"] [--no-wide]
// Under callgrind (load-independent instruction counts: the machine is shared), --callgrind dumps
// one profile per phase (base-<case>, pen-<case>; the step's Ir is the dump's total / iters):
//   valgrind --tool=callgrind --collect-atstart=no build/tests/bench/bench_penalties --callgrind
//     --iters 20 --no-wide --only cw-cr        (one command line)
#include <repshape/regularizers/Regularizers.h>

#include <torch/torch.h>
#include <valgrind/callgrind.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
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

struct Mlp {
  std::vector<torch::nn::Linear> layers;  // h1..h6, out
  std::vector<Tensor> parameters;
  Mlp() {
    int64_t in = 784;
    for (int i = 0; i < 6; ++i) {
      layers.emplace_back(in, 100);
      in = 100;
    }
    layers.emplace_back(100, 10);
    for (auto& l : layers)
      for (auto& p : l->parameters()) parameters.push_back(p);
  }
  // Logits [B, 10]; hidden5 receives the post-ReLU output of hidden layer 5 [B, 100].
  Tensor forward(const Tensor& x, Tensor* hidden5) {
    Tensor h = x;
    for (std::size_t i = 0; i + 1 < layers.size(); ++i) {
      h = torch::relu(layers[i]->forward(h));
      if (i == 4) *hidden5 = h;
    }
    return layers.back()->forward(h);
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

std::vector<Case> cases() {
  return {{"lsigma", spec("lsigma", "h5")},
          {"cr", spec("cr", "h5")},
          {"cw-cr", spec("cw-cr", "h5")},
          {"vr", spec("vr", "h5")},
          {"cw-vr", spec("cw-vr", "h5")},
          {"l1r", spec("l1r", "h5")},
          {"rr", spec("rr", "h5")},
          {"rr exact", spec("rr", "h5", "exact")},
          {"cw-rr", spec("cw-rr", "h5")},
          {"cw-rr exact", spec("cw-rr", "h5", "exact")},
          {"corr", spec("corr", "h5")},
          {"xcov", spec("xcov", "h5")},
          {"lmulti", spec("lmulti", "h5")},
          {"lmulti-unsup", spec("lmulti-unsup", "h5")},
          {"lsingle", spec("lsingle", "h6")},
          {"l1w", spec("l1w", "")},
          {"l2w", spec("l2w", "")}};
}

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

}  // namespace

int main(int argc, char** argv) {
  int iters = 300;
  int64_t batchSize = 100;
  std::string only;
  bool wideCase = true, callgrind = false;
  for (int i = 1; i < argc; ++i) {
    const bool hasValue = i + 1 < argc;
    if (std::strcmp(argv[i], "--iters") == 0 && hasValue) iters = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--batch") == 0 && hasValue) batchSize = std::atoll(argv[++i]);
    else if (std::strcmp(argv[i], "--only") == 0 && hasValue) only = "," + std::string(argv[++i]) + ",";
    else if (std::strcmp(argv[i], "--no-wide") == 0) wideCase = false;
    else if (std::strcmp(argv[i], "--callgrind") == 0) callgrind = true;
    else {
      std::fprintf(stderr, "bench_penalties: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  torch::set_num_threads(1);
  torch::manual_seed(0);
  reg::LocalReducer reducer;

  Mlp mlp;
  torch::optim::Adam adam(mlp.parameters, torch::optim::AdamOptions(1e-4));
  const Tensor x = torch::rand({batchSize, 784});
  const Tensor y = torch::randint(0, 10, {batchSize}, torch::kLong);
  std::vector<std::pair<std::string, Tensor>> weights;
  for (std::size_t i = 0; i < mlp.layers.size(); ++i)
    weights.emplace_back(i + 1 < mlp.layers.size() ? "h" + std::to_string(i + 1) : "out", mlp.layers[i]->weight);

  // One optimizer step; set == nullptr: the baseline.
  auto step = [&](const reg::PenaltySet* set) {
    const auto t0 = Clock::now();
    Tensor hidden5;
    const Tensor logits = mlp.forward(x, &hidden5);
    Tensor loss = torch::nn::functional::cross_entropy(logits, y);
    if (set) {
      reg::PenaltyBatch batch;
      batch.activations = {{"h5", hidden5}};
      batch.labels = y;
      if (set->needsProbabilities()) batch.probabilities = torch::softmax(logits, 1);
      batch.weights = weights;
      for (const auto& v : set->compute(batch, reducer)) loss = loss + v.weight * 1e-3 * v.value;
    }
    adam.zero_grad();
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

  for (int i = 0; i < 30; ++i) step(nullptr);  // warm-up
  std::printf("Choi MNIST MLP step (784-6x100-10, batch %lld, Adam, 1 thread), penalty on h5, K=10; %d interleaved "
              "steps per row, medians\n",
              static_cast<long long>(batchSize), iters);
  std::printf("%-14s %10s %10s %8s | %12s %10s\n", "penalty", "base ms", "pen ms", "ratio", "N500/M512 ms",
              "x MLP step");
  double baseAll = 0;
  std::vector<double> allBase;
  for (const auto& c : cases()) {
    if (!only.empty() && only.find("," + c.label + ",") == std::string::npos) continue;
    const reg::PenaltySet set({c.spec}, 10);
    for (int i = 0; i < 10; ++i) step(&set);
    std::vector<double> base, pen;
    if (callgrind) {  // not interleaved: one dump per phase
      std::string label = c.label;
      std::replace(label.begin(), label.end(), ' ', '_');
      // Named strings: the dump macro expands to several statements, a temporary would be gone.
      const std::string baseName = "base-" + label, penName = "pen-" + label;
      CALLGRIND_TOGGLE_COLLECT;
      for (int i = 0; i < iters; ++i) step(nullptr);
      CALLGRIND_TOGGLE_COLLECT;
      CALLGRIND_DUMP_STATS_AT(baseName.c_str());
      CALLGRIND_TOGGLE_COLLECT;
      for (int i = 0; i < iters; ++i) step(&set);
      CALLGRIND_TOGGLE_COLLECT;
      CALLGRIND_DUMP_STATS_AT(penName.c_str());
      std::printf("%-14s dumped base-%s and pen-%s (%d steps each)\n", c.label.c_str(), label.c_str(), label.c_str(),
                  iters);
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
  std::printf("ratio = penalised step / baseline step (target <= 1.15 for activation penalties); "
              "x MLP step = wide penalty fwd+bwd / median baseline step\n");
  return 0;
}
