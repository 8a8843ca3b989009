// `repshape grid SPEC.toml --results DIR (--list | --run | --cell ID)`: expands a grid spec into
// cells, validates every cell's config with the trainer's own loadConfig before anything runs
// (errors located at the spec line that set the key, exit 2, nothing created), then hands the
// cells to the jobs scheduler, which runs each as `repshape train` in its own process.
#include "Commands.h"
#include "Config.h"
#include "MetricsExporter.h"
#include "data/Data.h"

#include <repshape/jobs/Jobs.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <unistd.h>

namespace repshape {

namespace {

namespace fs = std::filesystem;

std::string selfExecutable() {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  return error ? std::string("repshape") : self.string();
}

// loadConfig on a temporary file holding the cell's config; messages name the file `<cell>`.
std::optional<std::string> validateConfig(const std::string& text, std::string& resolved) {
  char path[] = "/tmp/repshape-grid-cell-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return std::string("<cell>: cannot create a temporary file");
  ::close(fd);
  std::ofstream(path) << text;
  std::optional<std::string> error;
  try {
    resolved = toToml(loadConfig(path, {}));
  } catch (const ConfigError& e) {
    std::string message = e.what();
    for (std::size_t at; (at = message.find(path)) != std::string::npos;) message.replace(at, std::strlen(path), "<cell>");
    error = message;
  }
  ::unlink(path);
  return error;
}

// validateConfig, then the data: a cell whose files are not on this machine (CIFAR, pen strokes)
// stops `--run` / `--cell` before any work with the loader's message (where to put the files);
// `--list` does not need the data.
std::optional<std::string> validateConfigAndData(const std::string& text, std::string& resolved) {
  if (auto error = validateConfig(text, resolved)) return error;
  char path[] = "/tmp/repshape-grid-cell-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return std::string("<cell>: cannot create a temporary file");
  ::close(fd);
  std::ofstream(path) << resolved;
  std::optional<std::string> error;
  try {
    data::checkDataAvailable(loadConfig(path, {}).data);
  } catch (const ConfigError& e) {
    error = std::string("<cell>: ") + e.what();  // "data.dir: DIR: directory not found …; put … there"
  }
  ::unlink(path);
  return error;
}

bool setsKey(const std::vector<jobs::Override>& overrides, const std::string& key) {
  for (const auto& o : overrides)
    if (o.key == key) return true;
  return false;
}

}  // namespace

std::optional<std::string> validateCellConfig(const std::string& text, std::string& resolved) {
  return validateConfig(text, resolved);  // shared with `repshape slurm` (Commands.h)
}

int runGrid(int argc, char** argv) {
  CLI::App app{"Expand a grid spec into cells and run them (resumable; one process per cell)", "repshape grid"};
  std::string specPath, results;
  bool list = false, run = false, metrics = false;
  std::string onlyCell;
  int parallel = 1, ranks = 1;
  int64_t limit = 0;
  std::vector<std::string> sets, faults;
  app.add_option("spec", specPath, "grid spec (TOML)")->required();
  app.add_option("--results", results, "results directory (RESULTS/cells/<id>/…)")->required();
  app.add_flag("--list", list, "print every cell and its state");
  app.add_flag("--run", run, "run pending cells (finished cells are skipped)");
  app.add_option("--cell", onlyCell, "run one cell (what a Slurm array task calls)");
  std::vector<std::string> where;
  app.add_option("--where", where, "AXIS=V1[,V2…]: only cells with one of these values (repeatable)");
  app.add_option("--parallel", parallel, "cells at once")->check(CLI::Range(1, 1024));
  app.add_option("--ranks-per-cell", ranks, "mpirun -np R per cell")->check(CLI::Range(1, 1024));
  app.add_option("--limit-cells", limit, "start at most K cells")->check(CLI::NonNegativeNumber);
  app.add_option("--set", sets, "section.key=value for every cell (after the spec)");
  app.add_flag("--metrics", metrics, "cells export Prometheus metrics (metrics.grid/cell/targets_dir)");
  app.add_option("--fault-cell", faults, "ID:FAULT passes --fault FAULT to that cell (tests)");
  if (const int code = parseCommandLine(app, argc, argv); code >= 0) return code;
  if (int(list) + int(run) + int(!onlyCell.empty()) != 1) {
    std::fprintf(stderr, "repshape grid: error: give exactly one of --list, --run, --cell ID\n");
    return 2;
  }
  try {
    const jobs::GridSpec spec = jobs::loadGridSpec(specPath);
    const std::vector<jobs::Cell> cells = jobs::expandCells(spec);
    if (list) {
      jobs::listCells(spec, results, stdout);
      return 0;
    }
    jobs::RunOptions options;
    options.results = results;
    options.executable = selfExecutable();
    options.parallel = parallel;
    options.ranksPerCell = ranks;
    options.limitCells = limit;
    options.onlyCell = onlyCell;
    for (const auto& w : where) {
      const auto eq = w.find('=');
      const std::string axis = w.substr(0, eq);
      const auto known = std::find_if(spec.axes.begin(), spec.axes.end(), [&](const jobs::Axis& a) { return a.name == axis; });
      if (eq == std::string::npos || known == spec.axes.end())
        throw jobs::SpecError("--where '" + w + "': expected AXIS=VALUE[,VALUE…] with an axis of " + specPath);
      std::stringstream values(w.substr(eq + 1));
      for (std::string v; std::getline(values, v, ',');) {
        if (std::none_of(known->values.begin(), known->values.end(), [&](const jobs::AxisValue& a) { return a.name == v; }))
          throw jobs::SpecError("--where '" + w + "': axis '" + axis + "' has no value '" + v + "'");
        options.where[axis].push_back(v);
      }
    }
    for (const auto& s : sets) options.extra.push_back(jobs::parseOverride(s, jobs::Origin{"--set", 0}));
    // Threads per rank follow the cores shared by N cells of R ranks, unless the spec or --set says.
    if (!setsKey(spec.set, "train.threads") && !setsKey(options.extra, "train.threads")) {
      const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
      const int threads = std::max(1, static_cast<int>(cores) / (parallel * ranks));
      options.extra.push_back(jobs::parseOverride("train.threads=" + std::to_string(threads), {"automatic threads", 0}));
    }
    std::unique_ptr<GridMonitor> monitor;
    bool validated = false;
    if (metrics) {
      // SPEC contract 3: cells serve /metrics on ephemeral ports, labelled with the grid and cell;
      // file_sd targets in RESULTS/targets; the grid's cell counts on the runner's own endpoint.
      const std::string targets = fs::absolute(results).string() + "/targets";
      if (!setsKey(spec.set, "metrics.listen") && !setsKey(options.extra, "metrics.listen"))
        options.extra.push_back(jobs::parseOverride("metrics.listen=127.0.0.1:0", {"--metrics", 0}));
      options.extra.push_back(jobs::parseOverride("metrics.grid=" + spec.name, {"--metrics", 0}));
      options.extra.push_back(jobs::parseOverride("metrics.targets_dir=" + fs::absolute(results).string() + "/targets",
                                                  {"--metrics", 0}));
      for (const auto& c : cells) options.cellTrainArgs[c.id] = {"--set", "metrics.cell=" + c.id};
      if (run) {
        jobs::validateGrid(spec, cells, options, validateConfigAndData);  // before the monitor creates files
        validated = true;
        fs::create_directories(targets);
        monitor = std::make_unique<GridMonitor>("127.0.0.1:0", spec.name, targets);
        std::printf("[grid %s] metrics: grid cell counts on http://%s/metrics, cell targets in %s\n", spec.name.c_str(),
                    monitor->boundAddress().c_str(), targets.c_str());
        std::fflush(stdout);
        options.onCounts = [&monitor](const std::map<std::string, int64_t>& counts) { monitor->setCells(counts); };
      }
    }
    for (const auto& f : faults) {
      const auto colon = f.find(':');
      if (colon == std::string::npos) throw jobs::SpecError("--fault-cell '" + f + "': expected ID:FAULT");
      auto& args = options.cellTrainArgs[f.substr(0, colon)];
      args.push_back("--fault");
      args.push_back(f.substr(colon + 1));
    }
    if (!validated) jobs::validateGrid(spec, cells, options, validateConfigAndData);
    return jobs::runCells(spec, cells, options, validateConfigAndData);
  } catch (const jobs::SpecError& e) {
    std::fprintf(stderr, "repshape: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "repshape grid: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace repshape
