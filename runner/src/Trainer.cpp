#include "Trainer.h"

#include "Checkpoint.h"
#include "CommReducer.h"
#include "FusedAdam.h"
#include "Objective.h"
#include "OutputFiles.h"
#include "StopSignals.h"
#include "data/ByteImages.h"

#include <repshape/regularizers/Environment.h>

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <csignal>
#include <cmath>
#include <optional>
#include <string>

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
  return std::make_unique<FusedAdam>(
      params, torch::optim::AdamOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weightDecay));
}

// REPSHAPE_BYTE_INPUTS=0 gathers batches from the float training set even where an exact byte copy
// exists (ByteImages.h): for A/B benchmarks and the test that both give the same run.
bool byteInputsAllowed() { return environmentChoice("REPSHAPE_BYTE_INPUTS", {"1", "0"}) == "1"; }

std::string penaltyKey(const reg::PenaltyValue& v) { return v.name + "@" + v.target; }

// Phases of a step, timed on every rank (StepRecord::phaseSeconds), in step order.
enum Phase : int { kForward, kPenalty, kBackward, kGradComm, kControl, kOptimizer, kPhases };
constexpr const char* kPhaseNames[kPhases] = {"forward", "penalty", "backward", "grad_comm", "control", "optimizer"};

// Slots of the per-step control all-reduce (SUM over ranks, fp64).
enum ControlSlot : int64_t { kTaskLossSum, kNonFiniteLoss, kStopInt, kStopTerm, kStopUsr2, kControlSlots };

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

Shard shardOf(int64_t globalRows, int rank, int world) {
  const int64_t base = globalRows / world, extra = globalRows % world;
  Shard s;
  s.begin = rank * base + std::min<int64_t>(rank, extra);
  s.end = s.begin + base + (rank < extra ? 1 : 0);
  return s;
}

Trainer::Trainer(const Config& config, const data::DataSplits& data, const ModelPlan& plan, dist::Communicator& comm)
    : config_(config),
      data_(data),
      comm_(comm),
      device_(config.train.device == "cuda" ? comm.device() : torch::Device(torch::kCPU)),
      penalties_(config.regularizers, data.numClasses) {
  // Identical initial parameters on every rank: same seed, then a broadcast from rank 0 for safety
  // (different devices or library builds may not draw identical numbers).
  torch::manual_seed(config.train.seed);
  network_ = Network(config.model, plan);
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

int64_t Trainer::totalSteps() const {
  const int64_t n = data_.train.size();
  const int64_t batchesPerEpoch = (n + config_.train.batchSize - 1) / config_.train.batchSize;
  return config_.train.steps > 0 ? config_.train.steps : config_.train.epochs * batchesPerEpoch;
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

std::string Trainer::nonFiniteParameter() const {
  torch::NoGradGuard noGrad;
  for (const auto& item : network_->named_parameters())
    if (!torch::isfinite(item.value()).all().item<bool>()) return "parameter " + item.key();
  return "";
}

bool Trainer::gradientsFinite(const std::vector<torch::Tensor>& parameters) const {
  // Gradients are summed across ranks, so this answer is the same on every rank.
  std::vector<torch::Tensor> grads;
  for (const auto& p : parameters) grads.push_back(p.grad());
  return gradientNormFinite(grads);
}

RunReport Trainer::run(const RunOptions& options) {
  const auto& train = config_.train;
  const int rank = comm_.rank(), world = comm_.size();
  const bool writer = rank == 0;
  const auto start = Clock::now();

  const torch::Tensor inputs = data_.train.inputs.to(device_);
  const torch::Tensor labels = data_.train.labels.to(device_);
  const int64_t n = data_.train.size();
  TORCH_CHECK(n > 0, "the training set is empty");
  // On the CPU, images that are bytes / 255 (IDX, CIFAR) are gathered from an exact byte copy:
  // the same batches, a quarter of the memory traffic.
  std::optional<data::ByteImages> byteInputs;
  const bool bytesAllowed = byteInputsAllowed();
  if (inputs.is_cpu() && bytesAllowed) byteInputs = data::ByteImages::encode(inputs);
  const int64_t batchesPerEpoch = (n + train.batchSize - 1) / train.batchSize;
  RunReport report;
  report.steps = totalSteps();

  RunInfo info;
  info.outDir = options.outDir;
  info.configPath = config_.path;
  info.rank = rank;
  info.worldSize = world;
  info.backend = comm_.backendName();
  info.totalSteps = report.steps;
  info.layers = captureLayers_;
  for (RunSink* sink : options.sinks) sink->onStart(info);

  // One walk of the module tree per run, not per step.
  const std::vector<torch::Tensor> parameters = network_->parameters();
  auto optimizer = makeOptimizer(config_.optim, parameters);
  dist::GradientAllReducer gradients(comm_, parameters);
  CommReducer reducer(comm_, "penalty");

  int64_t samplesSinceLog = 0, stepsSinceLog = 0;
  double phaseSinceLog[kPhases] = {};
  auto lastLog = Clock::now();
  RunOutcome& outcome = report.outcome;
  int64_t stepsDone = 0;

  Checkpointer checkpoints(options.outDir, options.checkpointEvery, comm_);
  if (!options.resumeFrom.empty()) {
    // Every rank loads the same files: the W ranks of this run continue the one-process trajectory
    // whatever the world size that wrote them (Checkpoint.h).
    const CheckpointState state = loadCheckpoint(options.resumeFrom, network_, *optimizer, device_);
    TORCH_CHECK(state.step >= 0 && state.step <= report.steps, "checkpoint ", options.resumeFrom, " is at step ",
                state.step, " but this run has ", report.steps, " steps");
    stepsDone = state.step;
    if (writer)
      std::printf("repshape: resuming from %s (step %lld of %lld, written by %d rank(s))\n", options.resumeFrom.c_str(),
                  static_cast<long long>(state.step), static_cast<long long>(report.steps), state.worldSize);
  }
  const int64_t firstStep = stepsDone;

  torch::Tensor permutation;
  network_->train();
  for (int64_t step = firstStep; step < report.steps; ++step) {
    const auto stepStart = Clock::now();
    auto phaseStart = stepStart;
    const auto endPhase = [&](Phase phase) {
      const auto now = Clock::now();
      phaseSinceLog[phase] += std::chrono::duration<double>(now - phaseStart).count();
      phaseStart = now;
    };
    const int64_t epoch = step / batchesPerEpoch, batch = step % batchesPerEpoch;
    if (batch == 0 || step == firstStep) {
      // One global permutation per epoch from (seed, epoch): identical on every rank.
      auto generator = at::make_generator<at::CPUGeneratorImpl>(train.seed * 1000003ULL + epoch);
      permutation = at::randperm(n, generator, torch::TensorOptions().dtype(torch::kLong)).to(device_);
    }
    if (options.fault) dist::maybeInjectFault(*options.fault, rank, step);
    const int64_t globalBegin = batch * train.batchSize;
    const int64_t globalRows = std::min(train.batchSize, n - globalBegin);
    const Shard shard = shardOf(globalRows, rank, world);
    const torch::Tensor index = permutation.narrow(0, globalBegin + shard.begin, shard.size());
    const torch::Tensor x = byteInputs ? byteInputs->gather(index) : inputs.index_select(0, index);
    const torch::Tensor y = labels.index_select(0, index);

    const dist::CommCounters before = comm_.counters();
    std::vector<torch::Tensor> captured;
    const torch::Tensor logits = network_->forward(x, context(true, globalRows, shard.begin, step), &captured);
    // Σ over this rank's rows / global rows: summed gradients give the global-batch mean.
    const torch::Tensor taskSum = taskLossSum(config_.train.objective, logits, x, y);  // Objective.h
    endPhase(kForward);

    std::vector<reg::PenaltyValue> values;
    std::vector<torch::Tensor> terms;  // λ·Ω in this rank's loss
    std::vector<double> termWeights;
    if (!penalties_.empty()) {
      reg::PenaltyBatch penaltyBatch;
      for (std::size_t i = 0; i < penalties_.activationTargets().size(); ++i)
        penaltyBatch.activations.emplace_back(captureLayers_[i], captured[i]);
      penaltyBatch.labels = y;
      penaltyBatch.globalRows = globalRows;  // the per-layer path choice (StatisticsPath)
      if (penalties_.needsProbabilities()) penaltyBatch.probabilities = classProbabilities(config_.train.objective, logits);
      penaltyBatch.weights = network_->weightMatrices();
      penaltyBatch.splitClassWise = world > 1;  // shares summed in the control all-reduce below
      values = penalties_.compute(penaltyBatch, reducer);
      for (const auto& v : values) {
        // Parameter-only terms are identical on every rank: count them once (SPEC §4).
        if (!v.parameterOnly || rank == 0) {
          terms.push_back(v.value);
          termWeights.push_back(v.weight);
        }
      }
    }
    const torch::Tensor loss = stepLoss(taskSum, globalRows, terms, termWeights);  // Objective.h
    const dist::CommCounters afterStats = comm_.counters();
    endPhase(kPenalty);

    // Gradients to none (as PyTorch 2's zero_grad): backward hands each parameter its fresh
    // gradient instead of zeroing a buffer and adding into it; with several ranks the all-reduce
    // copies it into its bucket once (cheaper than a memset plus an in-place add), and a parameter
    // no rank reached keeps no gradient, so the optimizer skips it on every world size alike.
    for (const auto& p : parameters) p.mutable_grad().reset();
    loss.backward();
    endPhase(kBackward);
    gradients.allReduce();
    endPhase(kGradComm);
    if (step == 0 && writer && !options.gradientDump.empty()) writeGradients(options.gradientDump);

    // Control: [Σ task loss, # ranks with a non-finite local loss, # ranks with SIGINT, SIGTERM,
    // SIGUSR2, then every split class-wise penalty's share (PenaltyValue::rankShare)].
    const double localTask = taskSum.item<double>();
    const int stop = pendingStopSignal();
    std::vector<double> controlValues = {localTask, std::isfinite(localTask) ? 0.0 : 1.0,
                                         stop == SIGINT ? 1.0 : 0.0, stop == SIGTERM ? 1.0 : 0.0,
                                         stop == SIGUSR2 ? 1.0 : 0.0};
    for (const auto& v : values)
      if (v.rankShare) controlValues.push_back(v.value.item<double>());
    torch::Tensor control = torch::tensor(controlValues, torch::kDouble);
    if (world > 1) {
      control = control.to(comm_.device());
      comm_.allReduce(control, dist::ReduceOp::Sum, "control");
      control = control.cpu();
    }
    const auto c = control.accessor<double, 1>();
    // Σ λ·Ω as reported, in the loss's arithmetic (Objective.h): the whole penalties, then the split ones.
    const bool fp32Loss = taskSum.scalar_type() == torch::kFloat32;
    double penalty = 0.0;
    for (const auto& v : values)
      if (!v.rankShare) penalty = addWeightedTerm(penalty, v.value.item<double>(), v.weight, fp32Loss);
    int64_t shareSlot = kControlSlots;
    for (auto& v : values)
      if (v.rankShare) {  // the penalty's value: the sum of the ranks' shares
        const double value = c[shareSlot++];
        v.value = torch::tensor(value, torch::kDouble);
        penalty = addWeightedTerm(penalty, value, v.weight, fp32Loss);
      }
    const double taskLoss = c[kTaskLossSum] / static_cast<double>(globalRows);

    // Divergence: decided from values identical on every rank (global sums, reduced penalties,
    // summed gradients), checked before the update so the parameters stay the last finite ones.
    std::string term;
    if (c[kNonFiniteLoss] > 0 || !std::isfinite(taskLoss)) term = "loss";
    if (!std::isfinite(penalty))
      for (const auto& v : values)
        if (!std::isfinite(v.value.item<double>())) {
          term = "penalty " + penaltyKey(v);
          break;
        }
    if (term.empty() && !gradientsFinite(parameters)) term = "gradient";
    if (!term.empty()) {
      const std::string parameter = nonFiniteParameter();  // an earlier update overflowed
      if (!parameter.empty()) term = parameter;
    }
    endPhase(kControl);
    if (term.empty()) optimizer->step();
    endPhase(kOptimizer);
    const dist::CommCounters afterGrads = comm_.counters();
    samplesSinceLog += globalRows;
    ++stepsSinceLog;
    stepsDone = step + 1;

    const bool signalled = c[kStopInt] > 0 || c[kStopTerm] > 0 || c[kStopUsr2] > 0;
    const bool stopping = !term.empty() || signalled;
    const bool regularLog = (step + 1) % train.logEvery == 0 || step + 1 == report.steps;
    // A stop forces a log line the uninterrupted run would not write: the checkpoint's steps.jsonl
    // offset is taken before it, so a resumed run's log equals the uninterrupted one.
    if (!regularLog && signalled) checkpoints.pinStepsLogOffset();
    if (regularLog || stopping) {
      StepRecord record;
      record.step = step + 1;
      record.totalSteps = report.steps;
      record.epoch = epoch;
      record.taskLoss = taskLoss;
      record.penalty = penalty;
      record.loss = taskLoss + penalty;
      for (const auto& v : values) {
        record.penalties.emplace_back(penaltyKey(v), v.value.item<double>());
        record.weights.emplace_back(penaltyKey(v), v.weight);
      }
      record.statsBytes = afterStats.bytes - before.bytes;
      record.gradBytes = afterGrads.bytes - afterStats.bytes;
      record.statsCommSeconds = afterStats.seconds - before.seconds;
      record.gradCommSeconds = afterGrads.seconds - afterStats.seconds;
      record.stepSeconds = secondsSince(stepStart);
      record.samplesPerSecond = samplesSinceLog / std::max(secondsSince(lastLog), 1e-9);
      record.elapsedSeconds = secondsSince(start);
      for (int phase = 0; phase < kPhases; ++phase) {
        record.phaseSeconds.emplace_back(kPhaseNames[phase], phaseSinceLog[phase] / static_cast<double>(stepsSinceLog));
        phaseSinceLog[phase] = 0.0;
      }
      lastLog = Clock::now();
      samplesSinceLog = 0;
      stepsSinceLog = 0;
      for (RunSink* sink : options.sinks) sink->onStep(record);
    }
    // Evaluation during training (eval.every): curves before the end. Every rank reaches it at the
    // same step (its collectives are matched); the final evaluation covers the last step.
    if (config_.eval.every > 0 && (step + 1) % config_.eval.every == 0 && step + 1 != report.steps && !stopping) {
      network_->eval();
      EvalRecord evaluation;
      evaluation.step = step + 1;
      if (data_.validation.size() > 0) evaluation.validation = evaluate(data_.validation, nullptr);
      evaluation.test = evaluate(data_.test, &evaluation.layers);
      for (RunSink* sink : options.sinks) sink->onEvaluation(evaluation);
      network_->train();
    }
    if (!term.empty()) {
      outcome.status = "diverged";
      outcome.exitCode = 4;
      outcome.step = step + 1;
      outcome.term = term;
      outcome.reason = "non-finite " + term + " at step " + std::to_string(step + 1);
      break;
    }
    // Checkpoints after the step's line is in steps.jsonl (its size is the resume offset).
    const bool preempted = c[kStopUsr2] > 0;
    if (preempted || (signalled && options.checkpointEvery > 0) || (!signalled && checkpoints.due(step + 1))) {
      const int64_t nextEpoch = (step + 1) / batchesPerEpoch;
      const std::string where = checkpoints.save(step + 1, nextEpoch, network_, *optimizer, device_);
      if (writer && signalled) std::printf("repshape: checkpoint %s\n", where.c_str());
      for (RunSink* sink : options.sinks) sink->onCheckpoint(step + 1);
    }
    if (preempted) {
      outcome.status = "preempted";
      outcome.exitCode = 75;
      outcome.step = step + 1;
      outcome.reason = "SIGUSR2 (scheduler warning): checkpointed after step " + std::to_string(step + 1) + " of " +
                       std::to_string(report.steps) + "; --resume continues";
      break;
    }
    if (c[kStopInt] > 0 || c[kStopTerm] > 0) {
      const bool term15 = c[kStopTerm] > 0;
      outcome.status = "interrupted";
      outcome.exitCode = term15 ? 143 : 130;
      outcome.step = step + 1;
      outcome.reason = std::string(term15 ? "SIGTERM" : "SIGINT") + ": stopped after step " + std::to_string(step + 1) +
                       " of " + std::to_string(report.steps);
      break;
    }
  }
  report.trainSeconds = secondsSince(start);
  report.epochs = static_cast<double>(stepsDone) / static_cast<double>(batchesPerEpoch);
  if (outcome.status == "ok") outcome.step = stepsDone;

  // Evaluation of a finished run: every split sharded across ranks, global sums; metrics on test.
  if (outcome.status == "ok") {
    network_->eval();
    EvalRecord evaluation;
    evaluation.step = stepsDone;
    evaluation.final = true;
    evaluation.train = evaluate(data_.train, nullptr);
    if (data_.validation.size() > 0) evaluation.validation = evaluate(data_.validation, nullptr);
    evaluation.test = evaluate(data_.test, &evaluation.layers);
    for (RunSink* sink : options.sinks) sink->onEvaluation(evaluation);
    report.evaluation = std::move(evaluation);
  }
  outcome.wallSeconds = secondsSince(start);
  return report;
}

}  // namespace repshape
