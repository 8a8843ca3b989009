#pragma once
// Prometheus monitoring of one run (a RunSink) and of a grid (GridMonitor).
//
// Topology: pull, one /metrics endpoint per rank on its own (ephemeral by default) port. Every rank
// already holds the global values the trainer computed, so no extra collective is needed, and the
// per-rank values (step time, all-reduce seconds and bytes) arrive unaveraged: a straggler shows as
// its own series. Each rank writes a Prometheus file_sd target `TARGETS/<cell>-rank<r>.json` with
// labels grid, cell, rank and the Slurm job / array ids, and removes it at a clean exit. At the end
// rank 0 pushes the outcome to a Pushgateway (job=repshape, grid, cell; PUT replaces the group so a
// rerun leaves no stale values; the start of a rerun deletes it). Monitoring never stops a run: after the endpoint is up, every
// problem is one warning on stderr.
//
// Metric updates happen only in the sink callbacks, i.e. at logged steps, from host values the
// trainer already has: no device synchronisation of their own.

#include "RunSink.h"

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace repshape {

class MetricsHttpServer;

// The endpoint cannot be served or its target file cannot be written: bad input, exit code 2.
class MetricsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct MetricsOptions {
  std::string listen;       // "HOST:PORT" to serve /metrics ("127.0.0.1:0": ephemeral); "" = none
  std::string pushgateway;  // "HOST:PORT"; "" = no push
  std::string targetsDir;   // file_sd target files go here; "" = none
  std::string grid;         // label value; "" = not part of a grid (label omitted)
  std::string cell;         // label value; callers default it to the run directory's name
  double pushTimeoutSeconds = 5.0;  // a push that takes longer is abandoned with one warning
};

// Checks "HOST:PORT" as `[metrics] listen` takes it (HOST: an IPv4 literal or a bracketed IPv6
// literal, PORT 0..65535). Returns "" when valid, else what is wrong.
std::string checkListenAddress(const std::string& address);
// Checks "HOST:PORT" as `[metrics] pushgateway` takes it (HOST: a name or literal, PORT 1..65535).
std::string checkPushgatewayAddress(const std::string& address);

// Metric name of a representation metric of the evaluator: "tdv@4" → "repshape_layer_tdv_at_4".
std::string layerMetricName(const std::string& metric);

class MetricsExporter : public RunSink {
 public:
  // Serves /metrics on options.listen now (throws MetricsError when the address is taken or
  // malformed) and writes the target file (throws MetricsError when that is impossible), so that
  // bad input stops before any training work.
  MetricsExporter(MetricsOptions options, int rank);
  ~MetricsExporter() override;  // removes the target file; never throws
  MetricsExporter(const MetricsExporter&) = delete;
  MetricsExporter& operator=(const MetricsExporter&) = delete;

  void onStart(const RunInfo& info) override;
  void onStep(const StepRecord& record) override;
  void onEvaluation(const EvalRecord& record) override;
  void onEnd(const RunOutcome& outcome) override;
  void onCheckpoint(int64_t step) override;

  std::string boundAddress() const { return bound_; }   // "127.0.0.1:40123", "" when not serving
  std::string targetFile() const { return targetFile_; }  // "" when none was written
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

 private:
  prometheus::Gauge& gauge(const std::string& name, const std::string& help,
                           const std::map<std::string, std::string>& labels = {}, bool live = false);
  void writeTargetFile();
  void setStatus(const std::string& status);
  void push(const char* when);

  MetricsOptions options_;
  int rank_ = 0;
  std::map<std::string, std::string> constantLabels_;  // grid, cell, rank
  std::shared_ptr<prometheus::Registry> registry_;  // outcome: served and pushed at the end
  std::shared_ptr<prometheus::Registry> live_;      // per-step series: served only
  std::unique_ptr<MetricsHttpServer> server_;
  std::string bound_, targetFile_;
  prometheus::Counter* steps_ = nullptr;
  prometheus::Counter* checkpoints_ = nullptr;
  prometheus::Histogram* stepDuration_ = nullptr;
  std::unordered_map<std::string, prometheus::Gauge*> gauges_;  // name + labels → gauge
  int64_t lastStep_ = 0;
  bool pushWarned_ = false;
};

// repshape_grid_cells{grid,state}: how many cells of a grid are in each state, served on its own
// endpoint (and file_sd target `TARGETS/<grid>-grid.json`) by the grid scheduler.
class GridMonitor {
 public:
  GridMonitor(const std::string& listen, const std::string& grid, const std::string& targetsDir = "");
  ~GridMonitor();
  // Sets every given state's count; states given before and missing now drop to 0.
  void setCells(const std::map<std::string, int64_t>& countsByState);
  std::string boundAddress() const { return bound_; }
  std::string targetFile() const { return targetFile_; }

 private:
  std::string grid_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsHttpServer> server_;
  prometheus::Family<prometheus::Gauge>* cells_ = nullptr;
  std::map<std::string, prometheus::Gauge*> byState_;
  std::string bound_, targetFile_;
};

}  // namespace repshape
