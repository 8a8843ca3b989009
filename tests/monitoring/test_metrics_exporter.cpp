// MetricsExporter / GridMonitor on their own (no trainer): records go in, a real HTTP scrape of
// /metrics comes out with the values put in, `promtool check metrics` accepts the page, the file_sd
// target is written and removed, and bad addresses / unwritable target dirs / dead pushgateways
// behave as issue 11 asks.
#include "HttpGet.h"
#include "MetricsExporter.h"
#include "TestUtil.h"

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <map>
#include <regex>
#include <set>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace repshape {
namespace {

using Labels = std::map<std::string, std::string>;

// One sample of the text exposition format: name{k="v",...} value.
struct Sample {
  std::string name;
  Labels labels;
  double value = std::nan("");
};

std::vector<Sample> parsePage(const std::string& page) {
  std::vector<Sample> samples;
  std::istringstream lines(page);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    Sample s;
    const auto brace = line.find('{');
    const auto space = line.rfind(' ');
    s.name = line.substr(0, brace == std::string::npos ? space : brace);
    if (brace != std::string::npos) {
      const std::string body = line.substr(brace + 1, line.rfind('}') - brace - 1);
      for (std::size_t at = 0; at < body.size();) {
        const auto eq = body.find("=\"", at);
        const auto close = body.find('"', eq + 2);
        s.labels[body.substr(at, eq - at)] = body.substr(eq + 2, close - eq - 2);
        at = close + 2;  // past `",`
      }
    }
    s.value = std::strtod(line.c_str() + space + 1, nullptr);
    samples.push_back(std::move(s));
  }
  return samples;
}

// The value of the one sample named `name` whose labels include `labels`; NaN if none, fails if several.
double valueOf(const std::string& page, const std::string& name, const Labels& labels = {}) {
  double found = std::nan("");
  int matches = 0;
  for (const auto& s : parsePage(page)) {
    if (s.name != name) continue;
    bool all = true;
    for (const auto& [k, v] : labels) all = all && s.labels.count(k) && s.labels.at(k) == v;
    if (all) found = s.value, ++matches;
  }
  EXPECT_LE(matches, 1) << name;
  return found;
}

SplitResult split(double error, double loss, int64_t samples) {
  SplitResult s;
  s.error = error;
  s.loss = loss;
  s.samples = samples;
  return s;
}

StepRecord stepRecord(int64_t step) {
  StepRecord r;
  r.step = step;
  r.totalSteps = 100;
  r.epoch = 2;
  r.taskLoss = 0.75;
  r.penalty = 0.125;  // 0.5 * 0.25
  r.loss = 0.875;
  r.penalties = {{"cw-cr@h2", 0.25}, {"l2w@", 3.0}};
  r.weights = {{"cw-cr@h2", 0.5}, {"l2w@", 1e-4}};
  r.statsBytes = 4096;
  r.gradBytes = 81920;
  r.statsCommSeconds = 0.002;
  r.gradCommSeconds = 0.003;
  r.stepSeconds = 0.012;  // falls in the (0.008, 0.016] bucket
  r.samplesPerSecond = 8000;
  r.elapsedSeconds = 3.5;
  return r;
}

class MetricsExporterTest : public ::testing::Test {
 protected:
  std::filesystem::path dir_ = test::tempDir("metrics");
  MetricsOptions options(const std::string& cell = "lambda=0.1,trial=0") {
    MetricsOptions o;
    o.listen = "127.0.0.1:0";
    o.targetsDir = (dir_ / "targets").string();
    o.grid = "choi";
    o.cell = cell;
    return o;
  }
};

TEST_F(MetricsExporterTest, ServesTheRecordsItWasFed) {
  std::string targetFile;
  {
    MetricsExporter exporter(options(), 1);
    ASSERT_FALSE(exporter.boundAddress().empty());
    RunInfo info;
    info.rank = 1;
    info.worldSize = 2;
    info.backend = "mpi";
    info.totalSteps = 100;
    exporter.onStart(info);
    exporter.onStep(stepRecord(10));
    exporter.onStep(stepRecord(20));
    EvalRecord eval;
    eval.step = 20;
    eval.validation = split(12.5, 0.4, 500);
    eval.test = split(10.0, 0.35, 1000);
    eval.layers = {{"h2", {{"mapc", 0.3}, {"tdv@4", 0.9}, {"ud@0.9", 7.0}, {"stable_rank", 2.5}}}};
    exporter.onEvaluation(eval);
    exporter.onCheckpoint(20);

    const auto response = test::httpGet(exporter.boundAddress());
    ASSERT_EQ(response.status, 200);
    const std::string& page = response.body;
    const Labels me = {{"grid", "choi"}, {"cell", "lambda=0.1,trial=0"}, {"rank", "1"}};
    EXPECT_EQ(valueOf(page, "repshape_train_loss", me), 0.875);
    EXPECT_EQ(valueOf(page, "repshape_train_task_loss", me), 0.75);
    EXPECT_EQ(valueOf(page, "repshape_train_steps_total", me), 20.0);
    EXPECT_EQ(valueOf(page, "repshape_train_planned_steps", me), 100.0);
    EXPECT_EQ(valueOf(page, "repshape_train_penalty", {{"regularizer", "cw-cr"}, {"layer", "h2"}}), 0.25);
    EXPECT_EQ(valueOf(page, "repshape_train_penalty", {{"regularizer", "l2w"}, {"layer", "all"}}), 3.0);
    EXPECT_EQ(valueOf(page, "repshape_train_penalty_weight", {{"regularizer", "cw-cr"}}), 0.5);
    EXPECT_EQ(valueOf(page, "repshape_train_step_duration_seconds_count", me), 2.0);
    EXPECT_EQ(valueOf(page, "repshape_train_step_duration_seconds_bucket", {{"le", "0.008"}}), 0.0);
    EXPECT_EQ(valueOf(page, "repshape_train_step_duration_seconds_bucket", {{"le", "0.016"}}), 2.0);
    EXPECT_EQ(valueOf(page, "repshape_stats_allreduce_bytes", me), 4096.0);
    EXPECT_EQ(valueOf(page, "repshape_grad_allreduce_seconds", me), 0.003);
    EXPECT_EQ(valueOf(page, "repshape_train_samples_per_second"), 8000.0);
    EXPECT_EQ(valueOf(page, "repshape_eval_validation_error_ratio"), 0.125);
    EXPECT_EQ(valueOf(page, "repshape_eval_test_loss"), 0.35);
    EXPECT_TRUE(std::isnan(valueOf(page, "repshape_eval_train_error_ratio")));  // not evaluated
    EXPECT_EQ(valueOf(page, "repshape_layer_mapc", {{"layer", "h2"}}), 0.3);
    EXPECT_EQ(valueOf(page, "repshape_layer_tdv_at_4", {{"layer", "h2"}}), 0.9);
    EXPECT_EQ(valueOf(page, "repshape_layer_ud_at_0_9", {{"layer", "h2"}}), 7.0);
    EXPECT_EQ(valueOf(page, "repshape_checkpoints_written_total"), 1.0);
    EXPECT_EQ(valueOf(page, "repshape_run_status", {{"status", "running"}}), 1.0);
    EXPECT_EQ(valueOf(page, "repshape_run_status", {{"status", "ok"}}), 0.0);
    EXPECT_EQ(valueOf(page, "repshape_build_info", {{"backend", "mpi"}}), 1.0);
    for (const auto& s : parsePage(page)) {  // bounded labels only: never a step or value
      EXPECT_EQ(s.labels.count("step"), 0u) << s.name;
      EXPECT_EQ(s.labels.at("rank"), "1") << s.name;
    }

    RunOutcome outcome;
    outcome.status = "diverged";
    outcome.exitCode = 4;
    outcome.step = 23;
    outcome.wallSeconds = 4.25;
    exporter.onEnd(outcome);
    const std::string after = test::httpGet(exporter.boundAddress()).body;
    EXPECT_EQ(valueOf(after, "repshape_run_status", {{"status", "diverged"}}), 1.0);
    EXPECT_EQ(valueOf(after, "repshape_run_status", {{"status", "running"}}), 0.0);
    EXPECT_EQ(valueOf(after, "repshape_run_exit_code"), 4.0);
    EXPECT_EQ(valueOf(after, "repshape_train_steps_total"), 23.0);

    // Every family's name and HELP/TYPE lines are valid exposition (Prometheus's own linter).
    if (test::runCommand("command -v promtool").exitCode != 0) {
      if (std::getenv("CI")) FAIL() << "promtool is missing in CI (deploy/install-deps.sh installs prometheus)";
      std::fprintf(stderr, "promtool not installed: skipping `promtool check metrics`\n");
    } else {
      test::writeFile(dir_ / "page.txt", after);
      const auto check = test::runCommand("promtool check metrics < " + (dir_ / "page.txt").string());
      EXPECT_EQ(check.exitCode, 0) << check.output;
      EXPECT_EQ(check.output, "") << "promtool lint findings:\n" << check.output;
    }

    targetFile = exporter.targetFile();
    EXPECT_EQ(targetFile, (dir_ / "targets" / "lambda=0.1,trial=0-rank1.json").string());
    const auto target = nlohmann::json::parse(test::readFile(targetFile));
    ASSERT_EQ(target.size(), 1u);
    EXPECT_EQ(target[0]["targets"][0], exporter.boundAddress());
    EXPECT_EQ(target[0]["labels"]["grid"], "choi");
    EXPECT_EQ(target[0]["labels"]["cell"], "lambda=0.1,trial=0");
    EXPECT_EQ(target[0]["labels"]["rank"], "1");
  }
  EXPECT_FALSE(std::filesystem::exists(targetFile)) << "the target file outlived the exporter";
}

TEST_F(MetricsExporterTest, TargetFileCarriesSlurmIds) {
  ::setenv("SLURM_JOB_ID", "4242", 1);
  ::setenv("SLURM_ARRAY_TASK_ID", "7", 1);
  MetricsExporter exporter(options("c"), 0);
  ::unsetenv("SLURM_JOB_ID");
  ::unsetenv("SLURM_ARRAY_TASK_ID");
  const auto target = nlohmann::json::parse(test::readFile(exporter.targetFile()));
  EXPECT_EQ(target[0]["labels"]["slurm_job_id"], "4242");
  EXPECT_EQ(target[0]["labels"]["slurm_array_task_id"], "7");
  EXPECT_FALSE(target[0]["labels"].contains("slurm_array_job_id"));
}

TEST_F(MetricsExporterTest, OccupiedMalformedAndUnwritableAreErrors) {
  MetricsExporter first(options("a"), 0);
  MetricsOptions taken = options("b");
  taken.listen = first.boundAddress();
  try {
    MetricsExporter second(taken, 0);
    FAIL() << "a second exporter bound the taken address " << taken.listen;
  } catch (const MetricsError& e) {
    EXPECT_NE(std::string(e.what()).find(taken.listen), std::string::npos) << e.what();
  }
  for (const std::string bad : {"localhost:0", "127.0.0.1", "127.0.0.1:70000", "127.0.0.1:x", "1.2.3:80", ":80"}) {
    EXPECT_NE(checkListenAddress(bad), "") << bad;
    MetricsOptions o = options("c");
    o.listen = bad;
    EXPECT_THROW(MetricsExporter(o, 0), MetricsError) << bad;
  }
  EXPECT_EQ(checkListenAddress("0.0.0.0:9100"), "");
  EXPECT_EQ(checkListenAddress("[::1]:0"), "");
  EXPECT_EQ(checkPushgatewayAddress("pushgw.cluster:9091"), "");
  EXPECT_NE(checkPushgatewayAddress("127.0.0.1:0"), "");
  EXPECT_NE(checkPushgatewayAddress("http://h:9091/x"), "");

  // Under a regular file no directory can be made (root ignores permission bits, not this).
  test::writeFile(dir_ / "plain", "x");
  MetricsOptions unwritable = options("d");
  unwritable.targetsDir = (dir_ / "plain" / "targets").string();
  try {
    MetricsExporter e(unwritable, 0);
    FAIL() << "wrote a target under a regular file";
  } catch (const MetricsError& e) {
    EXPECT_NE(std::string(e.what()).find("metrics.targets_dir"), std::string::npos) << e.what();
  }
}

// A pushgateway that refuses connections, and one that accepts but never answers: each costs at
// most the push timeout, warns once, and the exporter keeps serving.
TEST_F(MetricsExporterTest, DeadPushgatewayWarnsOnceAndNeverBlocks) {
  const int silent = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(silent, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(silent, 4), 0);  // the kernel completes the handshake; nobody ever reads
  socklen_t length = sizeof addr;
  ::getsockname(silent, reinterpret_cast<sockaddr*>(&addr), &length);
  const int silentPort = ntohs(addr.sin_port);
  int closedPort = 0;  // bound and closed again: nothing listens there
  {
    const int probe = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(probe, reinterpret_cast<sockaddr*>(&any), sizeof any);
    socklen_t size = sizeof any;
    ::getsockname(probe, reinterpret_cast<sockaddr*>(&any), &size);
    closedPort = ntohs(any.sin_port);
    ::close(probe);
  }

  for (const int port : {closedPort, silentPort}) {
    MetricsOptions o = options("push");
    o.pushgateway = "127.0.0.1:" + std::to_string(port);
    o.pushTimeoutSeconds = 0.5;
    MetricsExporter exporter(o, 0);
    ::testing::internal::CaptureStderr();
    const auto start = std::chrono::steady_clock::now();
    exporter.onStart(RunInfo{});
    exporter.onStep(stepRecord(1));
    exporter.onEnd(RunOutcome{});
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::string warnings = ::testing::internal::GetCapturedStderr();
    EXPECT_LT(seconds, 2.0) << "port " << port;
    std::size_t count = 0;
    for (auto at = warnings.find("warning"); at != std::string::npos; at = warnings.find("warning", at + 1)) ++count;
    EXPECT_EQ(count, 1u) << warnings;
    EXPECT_NE(warnings.find(o.pushgateway), std::string::npos) << warnings;
    EXPECT_EQ(test::httpGet(exporter.boundAddress()).status, 200);
  }
  ::close(silent);
}

TEST_F(MetricsExporterTest, GridMonitorServesCellsByState) {
  GridMonitor monitor("127.0.0.1:0", "choi", (dir_ / "targets").string());
  monitor.setCells({{"pending", 8}, {"running", 2}});
  monitor.setCells({{"running", 3}, {"ok", 6}, {"failed", 1}});
  const std::string page = test::httpGet(monitor.boundAddress()).body;
  EXPECT_EQ(valueOf(page, "repshape_grid_cells", {{"grid", "choi"}, {"state", "pending"}}), 0.0);
  EXPECT_EQ(valueOf(page, "repshape_grid_cells", {{"state", "running"}}), 3.0);
  EXPECT_EQ(valueOf(page, "repshape_grid_cells", {{"state", "ok"}}), 6.0);
  EXPECT_EQ(valueOf(page, "repshape_grid_cells", {{"state", "failed"}}), 1.0);
  const auto target = nlohmann::json::parse(test::readFile(monitor.targetFile()));
  EXPECT_EQ(target[0]["labels"]["grid"], "choi");
  EXPECT_EQ(target[0]["targets"][0], monitor.boundAddress());

  // The dashboard's grid panels use names this page serves (the run-level names are checked
  // against a real training's page in monitoring_e2e.py).
  const auto dashboard =
      nlohmann::json::parse(test::readFile(std::string(REPSHAPE_SOURCE_DIR) + "/deploy/grafana/dashboards/repshape.json"));
  std::set<std::string> gridNames;
  const std::regex name("repshape_grid_[a-z0-9_]+");
  for (const auto& panel : dashboard["panels"])
    for (const auto& t : panel["targets"]) {
      const std::string expr = t["expr"];
      for (auto it = std::sregex_iterator(expr.begin(), expr.end(), name); it != std::sregex_iterator(); ++it)
        gridNames.insert(it->str());
    }
  ASSERT_FALSE(gridNames.empty()) << "the dashboard shows no grid progress";
  std::set<std::string> served;
  for (const auto& s : parsePage(page)) served.insert(s.name);
  for (const auto& n : gridNames) EXPECT_TRUE(served.count(n)) << n << " is in the dashboard but not served";
}

TEST(LayerMetricName, IsAValidPrometheusName) {
  EXPECT_EQ(layerMetricName("mapc"), "repshape_layer_mapc");
  EXPECT_EQ(layerMetricName("tdv@4"), "repshape_layer_tdv_at_4");
  EXPECT_EQ(layerMetricName("ud_eig@0.95"), "repshape_layer_ud_eig_at_0_95");
  EXPECT_EQ(layerMetricName("mi-x"), "repshape_layer_mi_x");
}

}  // namespace
}  // namespace repshape
