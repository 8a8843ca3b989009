#include "Trainer.h"

#include "CommReducer.h"
#include "Json.h"
#include "OutputFiles.h"

#include <repshape/BuildInfo.h>

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <fstream>

namespace repshape {

namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::unique_ptr<torch::optim::Optimizer> makeOptimizer(const OptimConfig& c, std::vector<torch::Tensor> params) {
  if (c.name == "sgd")
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(c.lr).momentum(c.momentum).weight_decay(c.weightDecay));
  if (c.name == "rmsprop")
    return std::make_unique<torch::optim::RMSprop>(
        params, torch::optim::RMSpropOptions(c.lr).alpha(c.alpha).eps(c.eps).momentum(c.momentum).weight_decay(c.weightDecay));
  return std::make_unique<torch::optim::Adam>(
      params, torch::optim::AdamOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weightDecay));
}

std::string penaltyKey(const reg::PenaltyValue& v) { return v.name + "@" + v.target; }

}  // namespace

void Trainer::writeGradients(const std::string& path) {
  std::string text;
  char buffer[32];
  for (const auto& p : network_->parameters()) {
    const torch::Tensor g = p.grad().defined() ? p.grad().detach().to(torch::kDouble).cpu().flatten()
                                               : torch::zeros({p.numel()}, torch::kDouble);
    const double* values = g.data_ptr<double>();
    for (int64_t i = 0; i < g.numel(); ++i) {
      std::snprintf(buffer, sizeof buffer, "%.12g\n", values[i]);
      text += buffer;
    }
  }
  writeFileAtomically(path, text);
}

namespace {

}  // namespace

Shard shardOf(int64_t globalRows, int rank, int world) {
  const int64_t base = globalRows / world, extra = globalRows % world;
  Shard s;
  s.begin = rank * base + std::min<int64_t>(rank, extra);
  s.end = s.begin + base + (rank < extra ? 1 : 0);
  return s;
}

Trainer::Trainer(const Config& config, const data::DataSplits& data, dist::Communicator& comm)
    : config_(config),
      data_(data),
      comm_(comm),
      device_(config.train.device == "cuda" ? comm.device() : torch::Device(torch::kCPU)),
      penalties_(config.regularizers, data.numClasses) {
  // Identical initial parameters on every rank: same seed, then a broadcast from rank 0 for safety
  // (different devices or library builds may not draw identical numbers).
  torch::manual_seed(config.train.seed);
  network_ = Network(config.model, data.sampleShape, data.numClasses);
  network_->to(device_);
  if (comm_.size() > 1) {
    torch::NoGradGuard noGrad;
    for (auto& p : network_->parameters()) comm_.broadcast(p, 0, "initial parameters");
    for (auto& b : network_->buffers()) comm_.broadcast(b, 0, "initial buffers");
  }
  captureLayers_ = penalties_.activationTargets();
  for (const auto& layer : config.eval.layers)
    if (std::find(captureLayers_.begin(), captureLayers_.end(), layer) == captureLayers_.end())
      captureLayers_.push_back(layer);
  network_->setCaptureLayers(captureLayers_);
}

ForwardContext Trainer::context(bool training, int64_t globalBatch, int64_t rowOffset, int64_t step) const {
  ForwardContext ctx;
  ctx.training = training;
  ctx.globalBatch = globalBatch;
  ctx.rowOffset = rowOffset;
  ctx.step = step;
  ctx.seed = config_.train.seed;
  dist::Communicator* comm = &comm_;
  // Batch norm normalises this rank's rows with global moments: Sum backward (see Communicator.h).
  ctx.sumAcrossRanks = [comm](const torch::Tensor& t) {
    return dist::allReduceSum(*comm, t, dist::ReduceBackward::Sum, "batchnorm.moments");
  };
  return ctx;
}

void Trainer::run(const std::string& outDir, const dist::FaultSpec* fault, const std::string& gradientDump) {
  const auto& train = config_.train;
  const int rank = comm_.rank(), world = comm_.size();
  const bool writer = rank == 0;
  const auto start = Clock::now();

  const torch::Tensor inputs = data_.train.inputs.to(device_);
  const torch::Tensor labels = data_.train.labels.to(device_);
  const int64_t n = data_.train.size();
  TORCH_CHECK(n > 0, "the training set is empty");
  const int64_t batchesPerEpoch = (n + train.batchSize - 1) / train.batchSize;
  const int64_t totalSteps = train.steps > 0 ? train.steps : train.epochs * batchesPerEpoch;

  auto optimizer = makeOptimizer(config_.optim, network_->parameters());
  dist::GradientAllReducer gradients(comm_, network_->parameters());
  CommReducer reducer(comm_, "penalty");

  std::ofstream steps;
  if (writer) steps.open(outDir + "/steps.jsonl", std::ios::trunc);
  int64_t samplesSinceLog = 0;
  auto lastLog = Clock::now();

  torch::Tensor permutation;
  network_->train();
  for (int64_t step = 0; step < totalSteps; ++step) {
    const int64_t epoch = step / batchesPerEpoch, batch = step % batchesPerEpoch;
    if (batch == 0) {
      // One global permutation per epoch from (seed, epoch): identical on every rank.
      auto generator = at::make_generator<at::CPUGeneratorImpl>(train.seed * 1000003ULL + epoch);
      permutation = at::randperm(n, generator, torch::TensorOptions().dtype(torch::kLong)).to(device_);
    }
    if (fault) dist::maybeInjectFault(*fault, rank, step);
    const int64_t globalBegin = batch * train.batchSize;
    const int64_t globalRows = std::min(train.batchSize, n - globalBegin);
    const Shard shard = shardOf(globalRows, rank, world);
    const torch::Tensor index = permutation.narrow(0, globalBegin + shard.begin, shard.size());
    const torch::Tensor x = inputs.index_select(0, index), y = labels.index_select(0, index);

    const dist::CommCounters before = comm_.counters();
    std::vector<torch::Tensor> captured;
    const torch::Tensor logits = network_->forward(x, context(true, globalRows, shard.begin, step), &captured);
    // Σ over this rank's rows / global rows: summed gradients give the global-batch mean.
    const torch::Tensor taskSum = torch::nn::functional::cross_entropy(
        logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    torch::Tensor loss = taskSum / static_cast<double>(globalRows);

    std::vector<reg::PenaltyValue> values;
    torch::Tensor penaltyTotal = torch::zeros({}, logits.options());
    if (!penalties_.empty()) {
      reg::PenaltyBatch penaltyBatch;
      for (std::size_t i = 0; i < penalties_.activationTargets().size(); ++i)
        penaltyBatch.activations.emplace_back(captureLayers_[i], captured[i]);
      penaltyBatch.labels = y;
      if (penalties_.needsProbabilities()) penaltyBatch.probabilities = torch::softmax(logits, 1);
      penaltyBatch.weights = network_->weightMatrices();
      values = penalties_.compute(penaltyBatch, reducer);
      for (const auto& v : values) {
        const torch::Tensor weighted = v.value.to(loss.dtype()) * v.weight;
        penaltyTotal = penaltyTotal + weighted.detach();
        // Parameter-only terms are identical on every rank: count them once (SPEC §4).
        if (!v.parameterOnly || rank == 0) loss = loss + weighted;
      }
    }
    const dist::CommCounters afterStats = comm_.counters();

    optimizer->zero_grad();
    loss.backward();
    gradients.allReduce();
    if (step == 0 && writer && !gradientDump.empty()) writeGradients(gradientDump);
    optimizer->step();
    const dist::CommCounters afterGrads = comm_.counters();
    samplesSinceLog += globalRows;

    if ((step + 1) % train.logEvery != 0 && step + 1 != totalSteps) continue;
    // The logged task loss is global: one small sum on logged steps only.
    torch::Tensor logged = taskSum.detach().to(torch::kDouble).reshape({1});
    if (world > 1) comm_.allReduce(logged, dist::ReduceOp::Sum, "log.task_loss");
    const double taskLoss = logged.item<double>() / static_cast<double>(globalRows);
    if (!writer) continue;
    const double penalty = penaltyTotal.item<double>();
    JsonWriter line;
    line.beginObject()
        .field("step", step + 1)
        .field("epoch", epoch)
        .field("loss", taskLoss + penalty)
        .field("task_loss", taskLoss)
        .field("penalty", penalty);
    if (!values.empty()) {
      line.key("penalties").beginObject();
      for (const auto& v : values) line.field(penaltyKey(v), v.value.item<double>());
      line.endObject();
    }
    line.field("stats_bytes", afterStats.bytes - before.bytes).field("grad_bytes", afterGrads.bytes - afterStats.bytes);
    if (train.timings) {
      const double elapsed = secondsSince(lastLog);
      line.field("samples_per_s", samplesSinceLog / std::max(elapsed, 1e-9))
          .field("stats_comm_s", afterStats.seconds - before.seconds)
          .field("grad_comm_s", afterGrads.seconds - afterStats.seconds);
      lastLog = Clock::now();
      samplesSinceLog = 0;
    }
    line.endObject();
    steps << line.str() << '\n';
  }
  if (writer) steps.close();
  const double trainSeconds = secondsSince(start);

  // Evaluation: every split sharded across ranks, global sums; metrics on the test set.
  network_->eval();
  std::string layersJson;
  const EvalSplitResult trainResult = evaluate(data_.train, false, nullptr);
  std::optional<EvalSplitResult> validation;
  if (data_.validation.size() > 0) validation = evaluate(data_.validation, false, nullptr);
  const EvalSplitResult test = evaluate(data_.test, true, &layersJson);

  if (!writer) return;
  auto split = [](JsonWriter& w, const char* name, const EvalSplitResult& r) {
    w.key(name).beginObject().field("error", r.error).field("loss", r.loss).field("samples", r.samples).endObject();
  };
  JsonWriter result;
  result.beginObject()
      .field("repshape_version", kVersion)
      .field("git_commit", kGitCommit)
      .field("config", config_.path)
      .field("world_size", world)
      .field("backend", comm_.backendName())
      .field("device", device_.str())
      .field("steps", totalSteps)
      .field("epochs", static_cast<double>(totalSteps) / static_cast<double>(batchesPerEpoch))
      .field("train_wall_s", trainSeconds)
      .field("wall_s", secondsSince(start));
  split(result, "train", trainResult);
  if (validation) split(result, "validation", *validation);
  else result.key("validation").null();
  split(result, "test", test);
  result.key("layers").raw(layersJson.empty() ? "{}" : layersJson);
  result.endObject();
  writeFileAtomically(outDir + "/result.json", result.str() + "\n");
}

}  // namespace repshape
