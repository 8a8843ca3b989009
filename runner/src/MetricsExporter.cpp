#include "MetricsExporter.h"

#include "Json.h"
#include "MetricsHttpServer.h"
#include "OutputFiles.h"

#include <repshape/BuildInfo.h>

#include <prometheus/counter.h>
#include <prometheus/gateway.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <thread>

#include <unistd.h>

namespace repshape {

namespace {

// Run statuses of SPEC §7 plus "running" (pushed at the start): one-hot, so alerts and ratios
// are plain sums (`repshape_run_status{status="failed"}`).
const char* const kStatuses[] = {"running", "ok", "diverged", "failed", "interrupted", "preempted"};

bool parsePort(const std::string& text, int lo, int& port) {
  if (text.empty() || text.size() > 5 || text.find_first_not_of("0123456789") != std::string::npos) return false;
  port = std::stoi(text);
  return port >= lo && port <= 65535;
}

bool isIpv4(const std::string& host) {
  int parts = 0;
  std::size_t begin = 0;
  while (true) {
    const std::size_t dot = host.find('.', begin);
    const std::string part = host.substr(begin, dot == std::string::npos ? std::string::npos : dot - begin);
    if (part.empty() || part.size() > 3 || part.find_first_not_of("0123456789") != std::string::npos ||
        std::stoi(part) > 255)
      return false;
    ++parts;
    if (dot == std::string::npos) break;
    begin = dot + 1;
  }
  return parts == 4;
}

// Splits "HOST:PORT" / "[V6]:PORT" at the last colon.
bool splitHostPort(const std::string& address, std::string& host, std::string& port) {
  const std::size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  host = address.substr(0, colon);
  port = address.substr(colon + 1);
  return true;
}

std::string hostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

// Serves the registries on `listen`; a taken or unusable address is bad input (MetricsError).
std::unique_ptr<MetricsHttpServer> serve(const std::string& listen,
                                         std::vector<std::shared_ptr<prometheus::Registry>> registries,
                                         std::string& bound) {
  const std::string problem = checkListenAddress(listen);
  if (!problem.empty()) throw MetricsError("metrics.listen: " + problem);
  auto page = [registries] {
    std::vector<prometheus::MetricFamily> families;
    for (const auto& registry : registries) {
      auto collected = registry->Collect();
      families.insert(families.end(), collected.begin(), collected.end());
    }
    return prometheus::TextSerializer().Serialize(families);
  };
  std::unique_ptr<MetricsHttpServer> server;
  try {
    server = std::make_unique<MetricsHttpServer>(listen, page);
  } catch (const std::exception& e) {
    throw MetricsError("metrics.listen: cannot serve /metrics: " + std::string(e.what()));
  }
  std::string host, port;
  splitHostPort(listen, host, port);
  // A wildcard bind is scraped through this host's name.
  if (host == "0.0.0.0" || host == "[::]") host = hostName();
  bound = host + ":" + std::to_string(server->port());
  return server;
}

// Writes a file_sd target file atomically (Prometheus watches the directory: never a torn file).
std::string writeTarget(const std::string& dir, const std::string& stem, const std::string& address,
                        const std::map<std::string, std::string>& labels) {
  std::string name = stem;
  for (char& c : name)
    if (c == '/' || c == '\\') c = '_';
  const std::string path = dir + "/" + name + ".json";
  JsonWriter json;
  json.beginArray().beginObject();
  json.key("targets").beginArray().value(address).endArray();
  json.key("labels").beginObject();
  for (const auto& [key, value] : labels) json.field(key, value);
  json.endObject().endObject().endArray();
  try {
    createDirectories(dir);
    writeFileAtomically(path, json.str() + "\n");
  } catch (const std::exception& e) {
    throw MetricsError("metrics.targets_dir: cannot write the Prometheus target file " + path + ": " + e.what());
  }
  return path;
}

void removeQuietly(const std::string& path) {
  if (!path.empty()) std::remove(path.c_str());
}

// Pushgateway grouping values go into the URL path: base64url with the `@base64` key suffix keeps
// any cell id (slashes, spaces, '=') intact.
std::string base64Url(const std::string& text) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  int bits = 0;
  uint32_t buffer = 0;
  for (unsigned char c : text) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 6) out += kAlphabet[(buffer >> (bits -= 6)) & 63];
  }
  if (bits > 0) out += kAlphabet[(buffer << (6 - bits)) & 63];
  while (out.size() % 4) out += '=';
  return out.empty() ? "=" : out;
}

}  // namespace

std::string checkListenAddress(const std::string& address) {
  std::string host, port;
  int number = 0;
  if (!splitHostPort(address, host, port))
    return "expected \"HOST:PORT\" (e.g. \"127.0.0.1:0\" for an ephemeral port), got \"" + address + "\"";
  if (!parsePort(port, 0, number)) return "port must be 0..65535, got \"" + port + "\" in \"" + address + "\"";
  const bool v6 = host.size() > 2 && host.front() == '[' && host.back() == ']';
  if (!v6 && !isIpv4(host))
    return "host must be an IPv4 address or [IPv6] literal (e.g. 127.0.0.1), got \"" + host + "\"";
  return "";
}

std::string checkPushgatewayAddress(const std::string& address) {
  std::string host, port;
  int number = 0;
  if (!splitHostPort(address, host, port))
    return "expected \"HOST:PORT\" (e.g. \"127.0.0.1:9091\"), got \"" + address + "\"";
  if (!parsePort(port, 1, number)) return "port must be 1..65535, got \"" + port + "\" in \"" + address + "\"";
  if (host.find_first_of("/ ?#@") != std::string::npos) return "host must be a name or address, got \"" + host + "\"";
  return "";
}

std::string layerMetricName(const std::string& metric) {
  std::string name = "repshape_layer_";
  for (char c : metric) {
    if (c == '@') name += "_at_";
    else if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') name += c;
    else name += '_';
  }
  return name;
}

MetricsExporter::MetricsExporter(MetricsOptions options, int rank)
    : options_(std::move(options)),
      rank_(rank),
      registry_(std::make_shared<prometheus::Registry>()),
      live_(std::make_shared<prometheus::Registry>()) {
  if (options_.cell.empty()) options_.cell = "run";
  if (!options_.grid.empty()) constantLabels_["grid"] = options_.grid;
  constantLabels_["cell"] = options_.cell;
  constantLabels_["rank"] = std::to_string(rank_);

  auto labels = prometheus::Labels(constantLabels_.begin(), constantLabels_.end());
  steps_ = &prometheus::BuildCounter()
                .Name("repshape_train_steps_total")
                .Help("Training steps completed (updated at logged steps)")
                .Labels(labels)
                .Register(*live_)
                .Add({});
  checkpoints_ = &prometheus::BuildCounter()
                      .Name("repshape_checkpoints_written_total")
                      .Help("Checkpoints written by this run")
                      .Labels(labels)
                      .Register(*registry_)
                      .Add({});
  // Step wall time, 1 ms .. ~65 s in powers of two; observed at logged steps.
  prometheus::Histogram::BucketBoundaries buckets;
  for (double b = 0.001; b < 70.0; b *= 2.0) buckets.push_back(b);
  stepDuration_ = &prometheus::BuildHistogram()
                       .Name("repshape_train_step_duration_seconds")
                       .Help("Wall time of one training step on this rank (logged steps)")
                       .Labels(labels)
                       .Register(*live_)
                       .Add({}, buckets);
  setStatus("running");
  gauge("repshape_run_exit_code", "Exit code of the run (SPEC 7); -1 while running").Set(-1.0);

  if (!options_.listen.empty()) {
    server_ = serve(options_.listen, {registry_, live_}, bound_);
    if (!options_.targetsDir.empty()) writeTargetFile();
  }
}

MetricsExporter::~MetricsExporter() { removeQuietly(targetFile_); }

void MetricsExporter::writeTargetFile() {
  std::map<std::string, std::string> labels = constantLabels_;
  // Slurm ids let a scrape be matched to its job (`sacct -j`); only present under Slurm.
  for (const auto& [env, label] : {std::pair{"SLURM_JOB_ID", "slurm_job_id"},
                                   std::pair{"SLURM_ARRAY_JOB_ID", "slurm_array_job_id"},
                                   std::pair{"SLURM_ARRAY_TASK_ID", "slurm_array_task_id"}})
    if (const char* value = std::getenv(env)) labels[label] = value;
  targetFile_ = writeTarget(options_.targetsDir, options_.cell + "-rank" + std::to_string(rank_), bound_, labels);
}

prometheus::Gauge& MetricsExporter::gauge(const std::string& name, const std::string& help,
                                          const std::map<std::string, std::string>& labels, bool live) {
  // Cached: a registry lookup per value would cost ~3 us; a hash lookup costs ~0.1 us.
  std::string key = name;
  for (const auto& [k, v] : labels) key += '\x1f' + k + '\x1f' + v;
  if (const auto it = gauges_.find(key); it != gauges_.end()) return *it->second;
  // Registry::Add returns the existing family for the same name and constant labels.
  auto& family = prometheus::BuildGauge()
                     .Name(name)
                     .Help(help)
                     .Labels(prometheus::Labels(constantLabels_.begin(), constantLabels_.end()))
                     .Register(live ? *live_ : *registry_);
  prometheus::Gauge& gauge = family.Add(prometheus::Labels(labels.begin(), labels.end()));
  gauges_.emplace(std::move(key), &gauge);
  return gauge;
}

void MetricsExporter::setStatus(const std::string& status) {
  for (const char* s : kStatuses)
    gauge("repshape_run_status", "1 for the run's current status, 0 for the others", {{"status", s}})
        .Set(status == s ? 1.0 : 0.0);
}

void MetricsExporter::onStart(const RunInfo& info) {
  gauge("repshape_build_info", "Always 1; the build's version, git commit and communication backend",
        {{"version", kVersion}, {"commit", kGitCommit}, {"backend", info.backend}})
      .Set(1.0);
  gauge("repshape_train_planned_steps", "Steps this run will train", {}, true).Set(static_cast<double>(info.totalSteps));
  gauge("repshape_run_world_size", "Ranks of this run").Set(info.worldSize);
  if (!bound_.empty() && rank_ == 0)
    std::printf("repshape: metrics on http://%s/metrics%s%s\n", bound_.c_str(),
                targetFile_.empty() ? "" : ", target ", targetFile_.c_str());
  // A rerun of this cell deletes the previous run's pushed group first: no stale outcome while it runs.
  if (rank_ == 0) push("start");
}

void MetricsExporter::onStep(const StepRecord& r) {
  if (r.step > lastStep_) steps_->Increment(static_cast<double>(r.step - lastStep_));
  lastStep_ = std::max(lastStep_, r.step);
  gauge("repshape_train_planned_steps", "Steps this run will train", {}, true).Set(static_cast<double>(r.totalSteps));
  gauge("repshape_train_epoch", "Current epoch (0-based)", {}, true).Set(static_cast<double>(r.epoch));
  gauge("repshape_train_loss", "Training loss of the last logged step: task loss + sum of weighted penalties", {}, true)
      .Set(r.loss);
  gauge("repshape_train_task_loss", "Task loss (mean over the global batch) of the last logged step", {}, true).Set(r.taskLoss);
  gauge("repshape_train_weighted_penalty", "Sum of lambda * penalty of the last logged step", {}, true).Set(r.penalty);
  auto split = [](const std::string& key) {
    const std::size_t at = key.find('@');
    std::string layer = at == std::string::npos ? "" : key.substr(at + 1);
    return std::map<std::string, std::string>{{"regularizer", key.substr(0, at)},
                                              {"layer", layer.empty() ? "all" : layer}};
  };
  for (const auto& [key, value] : r.penalties)
    gauge("repshape_train_penalty", "Unweighted penalty value of a regularizer on a layer (last logged step)",
          split(key), true)
        .Set(value);
  for (const auto& [key, value] : r.weights)
    gauge("repshape_train_penalty_weight", "Loss weight lambda of a regularizer on a layer", split(key), true).Set(value);
  stepDuration_->Observe(r.stepSeconds);
  gauge("repshape_train_samples_per_second", "Global samples per second since the previous logged step", {}, true)
      .Set(r.samplesPerSecond);
  gauge("repshape_stats_allreduce_seconds", "Seconds this rank spent in the statistics all-reduce (last logged step)", {}, true)
      .Set(r.statsCommSeconds);
  gauge("repshape_grad_allreduce_seconds", "Seconds this rank spent in the gradient all-reduce (last logged step)", {}, true)
      .Set(r.gradCommSeconds);
  for (const auto& [phase, seconds] : r.phaseSeconds)
    gauge("repshape_step_phase_seconds", "Mean seconds per step this rank spent in a phase of the step since the previous logged step",
          {{"phase", phase}}, true)
        .Set(seconds);
  gauge("repshape_stats_allreduce_bytes", "Bytes this rank all-reduced for statistics (last logged step)", {}, true)
      .Set(static_cast<double>(r.statsBytes));
  gauge("repshape_grad_allreduce_bytes", "Bytes this rank all-reduced for gradients (last logged step)", {}, true)
      .Set(static_cast<double>(r.gradBytes));
  gauge("repshape_run_elapsed_seconds", "Seconds since the run started", {}, true).Set(r.elapsedSeconds);
}

void MetricsExporter::onEvaluation(const EvalRecord& r) {
  gauge("repshape_eval_step", "Training step of the last evaluation").Set(static_cast<double>(r.step));
  auto split = [&](const char* name, const std::optional<SplitResult>& s) {
    if (!s) return;
    gauge(std::string("repshape_eval_") + name + "_error_ratio",
          std::string("Classification error on the ") + name + " split (0..1) at the last evaluation")
        .Set(s->error / 100.0);
    gauge(std::string("repshape_eval_") + name + "_loss",
          std::string("Mean loss on the ") + name + " split at the last evaluation")
        .Set(s->loss);
  };
  split("train", r.train);
  split("validation", r.validation);
  split("test", r.test);
  for (const auto& [layer, metrics] : r.layers)
    for (const auto& [metric, value] : metrics)
      gauge(layerMetricName(metric), "Representation metric " + metric + " of a layer on the test set (SPEC 3)",
            {{"layer", layer}})
          .Set(value);
}

void MetricsExporter::onCheckpoint(int64_t) { checkpoints_->Increment(); }

void MetricsExporter::onEnd(const RunOutcome& outcome) {
  setStatus(outcome.status);
  gauge("repshape_run_exit_code", "Exit code of the run (SPEC 7); -1 while running").Set(outcome.exitCode);
  gauge("repshape_run_wall_seconds", "Wall time of the run").Set(outcome.wallSeconds);
  gauge("repshape_run_steps", "Steps the run completed (diverged: the step that went non-finite)")
      .Set(static_cast<double>(outcome.step));
  if (outcome.step > lastStep_) steps_->Increment(static_cast<double>(outcome.step - lastStep_));
  lastStep_ = std::max(lastStep_, outcome.step);
  if (rank_ == 0) push("end");
}

void MetricsExporter::push(const char* when) {
  if (options_.pushgateway.empty()) return;
  std::string host, port;
  splitHostPort(options_.pushgateway, host, port);
  prometheus::Labels grouping;
  if (!options_.grid.empty()) grouping["grid@base64"] = base64Url(options_.grid);
  grouping["cell@base64"] = base64Url(options_.cell);
  // Shared with a detached thread: an unreachable host must not hold up the run (curl has no
  // timeout here), so the push is abandoned after pushTimeoutSeconds.
  auto gateway = std::make_shared<prometheus::Gateway>("http://" + host, port, "repshape", grouping);
  gateway->RegisterCollectable(registry_);  // the outcome only: live step series are not pushed
  const bool start = std::string(when) == "start";
  auto result = std::make_shared<std::promise<int>>();
  std::future<int> done = result->get_future();
  std::thread([gateway, result, start] {
    int code = -1;
    try {
      // prometheus-cpp 1.0: PushAdd() sends PUT (replaces the whole group), Push() sends POST.
      code = start ? gateway->DeleteForInstance() : gateway->PushAdd();
    } catch (...) {
    }
    result->set_value(code);
  }).detach();
  std::string problem;
  if (done.wait_for(std::chrono::duration<double>(options_.pushTimeoutSeconds)) != std::future_status::ready)
    problem = "no answer within " + std::to_string(options_.pushTimeoutSeconds) + " s";
  else if (const int code = done.get(); code < 200 || code >= 300)
    problem = code < 0 ? "connection failed (curl error " + std::to_string(-code) + ")" : "HTTP status " + std::to_string(code);
  if (problem.empty() || pushWarned_) return;
  pushWarned_ = true;  // one warning per run: monitoring never stops training
  std::fprintf(stderr, "repshape[rank %d]: warning: cannot push metrics to the pushgateway %s at the %s: %s; training goes on\n",
               rank_, options_.pushgateway.c_str(), when, problem.c_str());
}

GridMonitor::GridMonitor(const std::string& listen, const std::string& grid, const std::string& targetsDir)
    : grid_(grid), registry_(std::make_shared<prometheus::Registry>()) {
  cells_ = &prometheus::BuildGauge()
                .Name("repshape_grid_cells")
                .Help("Cells of a grid in each state (pending, running, ok, diverged, failed, ...)")
                .Register(*registry_);
  server_ = serve(listen, {registry_}, bound_);
  if (!targetsDir.empty()) targetFile_ = writeTarget(targetsDir, grid + "-grid", bound_, {{"grid", grid}});
}

GridMonitor::~GridMonitor() { removeQuietly(targetFile_); }

void GridMonitor::setCells(const std::map<std::string, int64_t>& countsByState) {
  for (auto& [state, gauge] : byState_)
    if (!countsByState.count(state)) gauge->Set(0.0);
  for (const auto& [state, count] : countsByState) {
    auto it = byState_.find(state);
    if (it == byState_.end()) it = byState_.emplace(state, &cells_->Add({{"grid", grid_}, {"state", state}})).first;
    it->second->Set(static_cast<double>(count));
  }
}

}  // namespace repshape
