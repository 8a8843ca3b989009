// `repshape train` and `repshape version`: validate everything (arguments, config, data, model
// shapes, resources, the output directory) before any work starts or anything is written, then
// train on however many ranks the launcher started, and record how the run ended (SPEC §7).
#include "Commands.h"
#include "CachingCpuAllocator.h"
#include "Checkpoint.h"
#include "Config.h"
#include "MetricsExporter.h"
#include "Objective.h"
#include "OutputFiles.h"
#include "ProgressPrinter.h"
#include "ResultFile.h"
#include "RunDirectory.h"
#include "StepsLog.h"
#include "StopSignals.h"
#include "Trainer.h"
#include "data/Data.h"

#include <repshape/BuildInfo.h>
#include <repshape/distributed/Communicator.h>

#include <torch/version.h>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <dlfcn.h>
#include <unistd.h>

namespace repshape {

namespace {

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string out;
  std::string fault;
  std::string gradientDump;
  bool overwrite = false;
  bool resume = false;
  bool quiet = false;
  std::string metricsListen;  // overrides [metrics] listen when given
};

// ATen's set_num_threads does not reach OpenBLAS's own thread pool, which defaults to every core:
// on small per-step GEMMs those threads contend with the other ranks (measured: the Choi MLP step
// 1.6x faster with one BLAS thread). Looked up at run time so other BLAS builds still link.
void setBlasThreads(int threads) {
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(threads);
}

dist::Backend backendOf(const std::string& name) {
  if (name == "single") return dist::Backend::Single;
  if (name == "mpi") return dist::Backend::Mpi;
  if (name == "nccl") return dist::Backend::Nccl;
  return dist::Backend::Auto;
}

// Checks that need the data or the environment, located at the config key they concern.
void validateRun(const Config& config, const data::DataSplits& data, const ModelPlan& plan) {
  if (data.numClasses < 1) throw ConfigError(config.where("data.source") + ": data: the source has no classes");
  validateObjective(config, data.numClasses, data.description);
  const int world = launcherWorldSize();
  if (world > 1 && config.distributed.backend == "single")
    throw ConfigError(config.where("distributed.backend") + ": distributed.backend: \"single\" but the launcher started " +
                      std::to_string(world) + " ranks; every rank would train alone and write the same files "
                      "(use \"auto\" or \"mpi\")");
  // Parameters, their gradients and two optimizer moments, plus ~3 activation copies per sample
  // (forward values, gradients, masks) of this rank's share of the batch, in fp32.
  const double batchRows = std::ceil(
      static_cast<double>(std::max({std::min(config.train.batchSize, data.train.size()), config.eval.batchSize})) /
      std::max(world, 1));
  const double bytes = 4.0 * (4.0 * static_cast<double>(plan.parameters) +
                              3.0 * batchRows * static_cast<double>(plan.activationsPerSample));
  const double physical = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGE_SIZE));
  const double share = physical / std::max(launcherLocalSize(), 1);
  if (physical > 0 && bytes > 0.8 * share) {
    char text[256];
    std::snprintf(text, sizeof text,
                  "the model needs about %.1f GiB per rank (%lld parameters, %lld activations per sample, batch %lld "
                  "per rank) but this machine has %.1f GiB for each of its %d local rank(s)",
                  bytes / (1 << 30), static_cast<long long>(plan.parameters),
                  static_cast<long long>(plan.activationsPerSample), static_cast<long long>(batchRows),
                  share / (1 << 30), std::max(launcherLocalSize(), 1));
    const std::string& type = config.model.type;
    const std::string key = type == "mlp" ? "model.hidden" : type == "lstm" ? "model.lstm_hidden" : "model.layers";
    throw ConfigError(config.where(key) + ": " + key + ": " + text);
  }
}

// The last logged step, for the record of a run that fails mid-training.
struct StepTracker final : RunSink {
  int64_t step = 0;
  void onStep(const StepRecord& record) override { step = record.step; }
};

// Starts this rank's Prometheus exporter before any work (issue 11). A malformed or taken address
// or an unwritable targets directory is bad input on any rank, so every rank learns of it (one MAX
// all-reduce) and all exit 2 together; the failing rank says why.
int startMetrics(const Config& config, const std::string& outDir, dist::Communicator& comm,
                 std::unique_ptr<MetricsExporter>& exporter) {
  if (config.metrics.listen.empty() && config.metrics.pushgateway.empty()) return 0;
  MetricsOptions options;
  options.listen = config.metrics.listen;
  options.pushgateway = config.metrics.pushgateway;
  options.targetsDir = config.metrics.targetsDir;
  options.grid = config.metrics.grid;
  options.cell = config.metrics.cell.empty() ? std::filesystem::path(outDir).lexically_normal().filename().string()
                                             : config.metrics.cell;
  if (options.cell.empty() || options.cell == ".") options.cell = std::filesystem::path(outDir).parent_path().filename().string();
  double failed = 0.0;
  try {
    exporter = std::make_unique<MetricsExporter>(options, comm.rank());
  } catch (const MetricsError& e) {
    const std::string what = e.what(), key = what.substr(0, what.find(':'));  // "metrics.listen: …"
    std::fprintf(stderr, "repshape[rank %d]: error: %s: %s\n", comm.rank(), config.where(key).c_str(), what.c_str());
    failed = 1.0;
  }
  if (comm.size() > 1) {
    torch::Tensor flag = torch::tensor({failed}, torch::kDouble).to(comm.device());
    comm.allReduce(flag, dist::ReduceOp::Max, "metrics.start");
    failed = flag.cpu().item<double>();
  }
  return failed > 0 ? 2 : 0;
}

// loadData, with errors about data.relabel / data.pca_dims located at the line that set them.
data::DataSplits loadLocatedData(const Config& config) {
  try {
    return data::loadData(config.data, config.train.seed);
  } catch (const data::DataError& e) {
    const std::string message = e.what();
    for (const char* key : {"data.relabel", "data.pca_dims"})
      if (message.rfind(key, 0) == 0 && config.locations.count(key))
        throw data::DataError(config.where(key) + ": " + message);
    throw;
  }
}

}  // namespace

int runVersion() {
  std::printf("repshape %s (commit %s)\nlibtorch %d.%d.%d, nccl backend %s\n", kVersion, kGitCommit,
              TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH, kWithNccl ? "built" : "not built");
  return 0;
}

int runTrain(int argc, char** argv) {
  TrainArgs args;
  CLI::App app{"Train one model, data-parallel on however many ranks the launcher started.", "repshape train"};
  app.add_option("config", args.config, "training config (TOML)")->required();
  app.add_option("--set", args.overrides,
                 "override one key: section.key=value (TOML value; bare words are strings; "
                 "regularizer.N.key addresses the N-th [[regularizer]])")
      ->take_all()
      ->allow_extra_args(false);
  app.add_option("--out", args.out, "run directory (default runs/<config name>)");
  auto* overwrite = app.add_flag("--overwrite", args.overwrite, "replace the results of an earlier run in --out");
  app.add_flag("--resume", args.resume, "continue the run in --out from its newest checkpoint")->excludes(overwrite);
  app.add_flag("-q,--quiet", args.quiet, "no progress lines (the final summary is still printed)");
  app.add_option("--metrics-listen", args.metricsListen,
                 "serve Prometheus /metrics on HOST:PORT (\"127.0.0.1:0\": an ephemeral port); overrides metrics.listen");
  app.add_option("--fault", args.fault, "inject a fault: rank=R,step=S,kind=crash|stall (tests of the failure paths)");
  app.add_option("--dump-gradients", args.gradientDump,
                 "write the summed parameter gradients of step 1 (tests of SPEC §4)");
  if (int code = parseCommandLine(app, argc, argv); code >= 0) return code;
  if (args.out.empty()) args.out = "runs/" + std::filesystem::path(args.config).stem().string();

  // Everything the user gave is checked before any work starts and before anything is written.
  Config config;
  data::DataSplits data;
  dist::FaultSpec fault;
  ModelPlan plan;
  std::string resumeFrom;          // newest complete checkpoint with --resume
  CheckpointState resumeState;
  try {
    config = loadConfig(args.config, args.overrides);
    if (!args.metricsListen.empty()) {
      if (const std::string problem = checkListenAddress(args.metricsListen); !problem.empty())
        throw ConfigError("--metrics-listen: " + problem);
      config.metrics.listen = args.metricsListen;
    }
    fault = dist::parseFault(args.fault);
    checkRunDirectory(args.out, args.overwrite, args.resume);
    if (args.resume) {
      const auto latest = latestCheckpoint(args.out);
      if (!latest)
        throw ConfigError("--resume: " + args.out + "/checkpoints holds no complete checkpoint (none with a DONE marker)");
      resumeFrom = *latest;
      try {
        resumeState = readCheckpointState(resumeFrom);
      } catch (const std::runtime_error& e) {
        throw ConfigError(std::string("--resume: ") + e.what());
      }
    }
    torch::set_num_threads(static_cast<int>(config.train.threads));
    setBlasThreads(static_cast<int>(config.train.threads));
    data = loadLocatedData(config);
    plan = planModel(config, data.sampleShape, data.numClasses);
    validateRun(config, data, plan);
    installCachingCpuAllocator();  // after the data: its load-time temporaries go back to glibc
  } catch (const ConfigError& e) {
    return inputError(e.what());
  } catch (const std::invalid_argument& e) {  // --fault text
    return inputError(e.what());
  } catch (const c10::Error& e) {
    return inputError(e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    return inputError(args.config + ": out of memory while loading the data");
  }

  std::unique_ptr<dist::Communicator> comm;
  try {
    dist::CommOptions options;
    options.backend = backendOf(config.distributed.backend);
    options.timeoutSeconds = config.distributed.timeoutSeconds;
    comm = dist::makeCommunicator(options);
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "repshape[rank %d]: cannot start the communicator: %s\n", launcherRank(), e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "repshape[rank %d]: cannot start the communicator: %s\n", launcherRank(), e.what());
    return 1;
  }

  std::unique_ptr<MetricsExporter> metrics;
  if (const int code = startMetrics(config, args.out, *comm, metrics); code != 0) return code;

  const auto start = std::chrono::steady_clock::now();
  const bool writer = comm->rank() == 0;
  ResultContext context{config.path, comm->size(), comm->backendName(),
                        config.train.device == "cuda" ? comm->device().str() : "cpu"};
  RunReport report;
  report.steps = config.train.steps;
  // Any fatal error from here on (an exception, a collective past its deadline) is recorded as a
  // failed run by rank 0 before the job ends.
  const std::string outDir = args.out;
  StepTracker tracker;
  auto recordFailure = [&, outDir](int exitCode, const std::string& message) {
    if (!writer) return;
    RunReport failed = report;
    failed.outcome.step = tracker.step;
    failed.outcome.status = "failed";
    failed.outcome.exitCode = exitCode;
    failed.outcome.reason = message;
    failed.outcome.wallSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    writeResult(outDir, context, failed);
  };
  dist::setFatalErrorHook(recordFailure);
  installStopSignals();

  std::vector<std::unique_ptr<RunSink>> sinks;
  std::vector<RunSink*> sinkList;
  try {
    if (writer) {
      prepareRunDirectory(args.out, args.overwrite);
      writeFileAtomically(args.out + "/config.resolved.toml", toToml(config));
      std::printf("repshape %s: %s on %d rank(s) [%s], %s: %lld train / %lld validation / %lld test samples\n",
                  kVersion, args.config.c_str(), comm->size(), comm->backendName().c_str(),
                  data.description.c_str(), static_cast<long long>(data.train.size()),
                  static_cast<long long>(data.validation.size()), static_cast<long long>(data.test.size()));
      std::fflush(stdout);
    }
    sinks.push_back(std::make_unique<StepsLog>(args.out + "/steps.jsonl", config.train.timings,
                                               resumeFrom.empty() ? -1 : resumeState.stepsLogBytes));
    const bool terminal = ::isatty(STDOUT_FILENO) == 1;
    sinks.push_back(std::make_unique<ProgressPrinter>(args.quiet ? 0.0 : config.train.progressSeconds,
                                                      terminal && !args.quiet));
    if (metrics) sinks.push_back(std::move(metrics));
    for (auto& sink : sinks) sinkList.push_back(sink.get());
    sinkList.push_back(&tracker);

    Trainer trainer(config, data, plan, *comm);
    report.steps = trainer.totalSteps();
    RunOptions options;
    options.outDir = args.out;
    options.fault = fault.enabled() ? &fault : nullptr;
    options.gradientDump = args.gradientDump;
    options.sinks = sinkList;
    options.checkpointEvery = config.train.checkpointEvery;
    options.resumeFrom = resumeFrom;
    report = trainer.run(options);
  } catch (const std::exception& e) {
    const auto* torchError = dynamic_cast<const c10::Error*>(&e);
    std::string what = torchError ? torchError->what_without_backtrace() : e.what();
    if (dynamic_cast<const std::bad_alloc*>(&e)) what = "out of memory (std::bad_alloc)";
    what = what.substr(0, what.find('\n'));  // one line, never a frame dump
    const std::string message = "repshape[rank " + std::to_string(comm->rank()) + "]: error: " + what;
    std::fprintf(stderr, "%s\n", message.c_str());
    RunOutcome failed;
    failed.status = "failed";
    failed.exitCode = 1;
    failed.reason = message;
    for (RunSink* sink : sinkList) sink->onEnd(failed);
    dist::runFatalErrorHook(1, message);  // rank 0 writes result.json (failed)
    if (comm->size() > 1) comm->abort(1, message);  // never leave the other ranks waiting
    return 1;
  }
  for (RunSink* sink : sinkList) sink->onEnd(report.outcome);
  if (writer) {
    writeCovariances(args.out, report);  // before result.json: a finished cell has all its files
    writeResult(args.out, context, report);
  }
  dist::setFatalErrorHook({});
  return report.outcome.exitCode;
}

}  // namespace repshape
