// `repshape slurm SPEC.toml --results DIR …`: the grid's unfinished cells as Slurm job arrays
// (jobs/include/repshape/jobs/Slurm.h writes the scripts). Everything is checked before anything is
// written or submitted: the results directory, the cells, GPUs on a CPU build, sbatch itself.
#include "Commands.h"
#include "Config.h"
#include "OutputFiles.h"
#include "RunDirectory.h"

#include <repshape/BuildInfo.h>
#include <repshape/jobs/Jobs.h>
#include <repshape/jobs/Slurm.h>

#include <CLI/CLI.hpp>

#include <array>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>

#include <unistd.h>

namespace repshape {

namespace fs = std::filesystem;

namespace {

struct SlurmArgs {
  std::string spec, results;
  jobs::SlurmOptions options;
  std::vector<std::string> overrides;
  int trials = 1;
  bool submit = false;
};

bool onPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string rest = path ? path : "";
  while (!rest.empty()) {
    const auto colon = rest.find(':');
    const std::string dir = rest.substr(0, colon);
    if (!dir.empty() && ::access((fs::path(dir) / program).c_str(), X_OK) == 0) return true;
    if (colon == std::string::npos) break;
    rest = rest.substr(colon + 1);
  }
  return false;
}

// stdout of `command` and its exit status (-1 when it could not start).
std::pair<int, std::string> capture(const std::string& command) {
  std::string text;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return {-1, text};
  std::array<char, 4096> buffer{};
  while (std::size_t n = std::fread(buffer.data(), 1, buffer.size(), pipe)) text.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text};
}

// The cells of SPEC. A training config (no [grid] table) is a grid of --trials seeds: cells
// "trial=0" … each `train SPEC --set train.seed=<seed + k>` (the grid's own cells replace this
// when SPEC is a grid spec).
std::vector<jobs::SlurmCell> cellsOf(const SlurmArgs& args, const Config& config) {
  std::vector<jobs::SlurmCell> cells;
  const std::string spec = fs::absolute(args.spec).lexically_normal().string();
  for (int trial = 0; trial < args.trials; ++trial) {
    jobs::SlurmCell cell;
    cell.id = "trial=" + std::to_string(trial);
    cell.arguments = {"train", spec};
    for (const auto& o : args.overrides) cell.arguments.insert(cell.arguments.end(), {"--set", o});
    if (args.trials > 1)
      cell.arguments.insert(cell.arguments.end(), {"--set", "train.seed=" + std::to_string(config.train.seed + trial)});
    if (args.options.gpusPerRank > 0)
      cell.arguments.insert(cell.arguments.end(), {"--set", "train.device=cuda", "--set", "distributed.backend=nccl"});
    cells.push_back(std::move(cell));
  }
  return cells;
}

bool finished(const std::string& status, bool retryFailed) {
  return status == "ok" || status == "diverged" || (status == "failed" && !retryFailed);
}

bool isGridSpec(const std::string& path) {
  try {
    return toml::parse_file(path).contains("grid");
  } catch (const toml::parse_error&) {
    return false;  // loadConfig / loadGridSpec report the syntax error with its location
  }
}

// The cells of a grid spec (jobs/Jobs.h), validated like `repshape grid`. Phase-1 and plain cells
// run `repshape train RESULTS/inputs/<id>.toml` under srun (checkpoints, preemption, resume);
// phase-2 cells wait for them (`finals`, a dependent array) and run `repshape grid SPEC --cell ID`,
// which selects the value from the phase-1 results and trains (mpirun inside the allocation).
void gridCells(const SlurmArgs& args, std::vector<jobs::SlurmCell>& first, std::vector<jobs::SlurmCell>& finals,
               std::vector<std::string>& finishedIds) {
  const jobs::GridSpec spec = jobs::loadGridSpec(args.spec);
  const std::vector<jobs::Cell> cells = jobs::expandCells(spec);
  jobs::RunOptions options;
  options.results = args.options.results;
  options.executable = args.options.binary;
  options.ranksPerCell = args.options.ranksPerCell;
  for (const auto& s : args.overrides) options.extra.push_back(jobs::parseOverride(s, jobs::Origin{"--set", 0}));
  bool threadsSet = false;
  for (const auto& o : spec.set) threadsSet = threadsSet || o.key == "train.threads";
  for (const auto& o : options.extra) threadsSet = threadsSet || o.key == "train.threads";
  if (!threadsSet)
    options.extra.push_back(jobs::parseOverride("train.threads=" + std::to_string(args.options.cpusPerRank), {"--cpus-per-rank", 0}));
  if (args.options.gpusPerRank > 0)
    for (const char* o : {"train.device=cuda", "distributed.backend=nccl"}) options.extra.push_back(jobs::parseOverride(o, {"--gpus-per-rank", 0}));
  jobs::validateGrid(spec, cells, options, validateCellConfig);
  createDirectories(options.results + "/inputs");
  jobs::writeSnapshot(options.results, spec, cells);
  const std::string specPath = fs::absolute(args.spec).lexically_normal().string();
  for (const auto& cell : cells) {
    const std::string status = runStatus(jobs::cellDir(options.results, cell.id));
    if (finished(status, args.options.retryFailed)) {
      finishedIds.push_back(cell.id);
      continue;
    }
    jobs::SlurmCell slurmCell;
    slurmCell.id = cell.id;
    if (cell.phase == jobs::Phase::Final) {
      slurmCell.arguments = {"grid", specPath, "--results", options.results, "--cell", cell.id, "--ranks-per-cell",
                             std::to_string(args.options.ranksPerCell)};
      for (const auto& s : args.overrides) slurmCell.arguments.insert(slurmCell.arguments.end(), {"--set", s});
      finals.push_back(std::move(slurmCell));
      continue;
    }
    const std::string input = options.results + "/inputs/" + cell.id + ".toml";
    writeFileAtomically(input, "# grid " + spec.name + ", cell " + cell.id + " (generated by repshape slurm)\n" +
                                   jobs::toTomlText(jobs::cellConfig(spec, cell, options.extra)));
    slurmCell.arguments = {"train", input, "--quiet"};
    first.push_back(std::move(slurmCell));
  }
}


std::string submissionName() {
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::gmtime(&now));
  return std::string("submit-") + stamp + "-" + std::to_string(::getpid());
}

}  // namespace

int runSlurm(int argc, char** argv) {
  SlurmArgs args;
  auto& o = args.options;
  CLI::App app{"Write (and with --submit, submit) Slurm job arrays that run the unfinished cells of SPEC.",
               "repshape slurm"};
  app.add_option("spec", args.spec, "grid spec or training config (TOML)")->required();
  app.add_option("--results", args.results, "results directory, shared by every node")->required();
  app.add_option("--ranks-per-cell", o.ranksPerCell, "srun tasks (data-parallel ranks) per cell")->check(CLI::PositiveNumber);
  app.add_option("--gpus-per-rank", o.gpusPerRank, "GPUs per rank (--gpus-per-task; NCCL backend)")->check(CLI::NonNegativeNumber);
  app.add_option("--cpus-per-rank", o.cpusPerRank, "CPUs per rank (--cpus-per-task)")->check(CLI::PositiveNumber);
  app.add_option("--cells-per-task", o.cellsPerTask, "cells one array task runs in turn")->check(CLI::PositiveNumber);
  app.add_option("--throttle", o.throttle, "at most N tasks of an array at once (%N)")->check(CLI::NonNegativeNumber);
  app.add_option("--partition", o.partition, "sbatch --partition");
  app.add_option("--time", o.time, "sbatch --time (the USR2 warning comes --warning seconds before)");
  app.add_option("--account", o.account, "sbatch --account");
  app.add_option("--extra", o.extra, "extra \"#SBATCH …\" line (repeatable)");
  app.add_option("--warning", o.warningSeconds, "seconds before the time limit at which USR2 checkpoints")->check(CLI::PositiveNumber);
  app.add_option("--name", o.name, "job name");
  app.add_option("--set", args.overrides, "override one config key in every cell (section.key=value)");
  app.add_option("--trials", args.trials, "a training config as SPEC: this many seeds")->check(CLI::PositiveNumber);
  app.add_flag("--retry-failed", o.retryFailed, "also run cells whose result.json says failed");
  app.add_flag("--submit", args.submit, "submit with sbatch and print the job ids (default: print the sbatch lines)");
  if (int code = parseCommandLine(app, argc, argv); code >= 0) return code;

  for (const auto& line : o.extra)
    if (line.rfind("#SBATCH", 0) != 0) return inputError("--extra '" + line + "': expected a line starting with #SBATCH");
  if (o.gpusPerRank > 0 && !kWithNccl)
    return inputError("--gpus-per-rank " + std::to_string(o.gpusPerRank) +
                      ": this repshape is a CPU build (no NCCL backend); build it with CUDA and NCCL on the cluster");
  if (args.submit && !onPath("sbatch")) return inputError("--submit: sbatch is not on PATH (is Slurm installed / the module loaded?)");

  o.results = fs::absolute(args.results).lexically_normal().string();
  o.binary = fs::canonical("/proc/self/exe").string();
  std::error_code error;
  fs::path existing = o.results;
  while (!existing.empty() && !fs::exists(existing, error) && existing != existing.parent_path()) existing = existing.parent_path();
  if (!fs::is_directory(existing, error) || ::access(existing.c_str(), W_OK | X_OK) != 0)
    return inputError("--results " + o.results + ": " + existing.string() + " is not a writable directory");

  // Everything is validated before anything is written (a grid's inputs/ and snapshot are written
  // by gridCells only after validateGrid accepted every cell).
  std::vector<jobs::SlurmCell> first, finals;
  std::vector<std::string> finishedIds;
  try {
    if (isGridSpec(args.spec)) {
      if (args.trials != 1) return inputError("--trials: a grid spec sets its trials in [grid]");
      gridCells(args, first, finals, finishedIds);
    } else {
      const Config config = loadConfig(args.spec, args.overrides);
      for (auto& cell : cellsOf(args, config)) {
        if (finished(runStatus(o.results + "/cells/" + cell.id), o.retryFailed)) finishedIds.push_back(cell.id);
        else first.push_back(std::move(cell));
      }
    }
  } catch (const ConfigError& e) {
    return inputError(e.what());
  } catch (const jobs::SpecError& e) {
    return inputError(e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "repshape slurm: error: %s\n", e.what());
    return 1;
  }
  const std::size_t total = first.size() + finals.size() + finishedIds.size();
  if (total == 0) return inputError(args.spec + ": the spec has no cells");
  if (first.empty() && finals.empty()) {
    std::printf("repshape slurm: all %zu cells of %s are finished in %s; nothing to submit\n", total, args.spec.c_str(),
                o.results.c_str());
    return 0;
  }
  if (onPath("scontrol")) {
    const auto [status, text] = capture("scontrol show config 2>/dev/null");
    if (status == 0) o.maxArraySize = jobs::parseMaxArraySize(text, o.maxArraySize);
  }

  const std::string submission = o.results + "/slurm/" + submissionName();
  std::vector<jobs::SlurmArray> arrays, finalArrays;
  try {
    if (!first.empty()) arrays = jobs::planArrays(first, o, submission);
    if (!finals.empty()) finalArrays = jobs::planArrays(finals, o, submission + "/phase2");
    createDirectories(submission + (finals.empty() ? "" : "/phase2"));
    createDirectories(o.results + "/slurm/logs");
    createDirectories(o.results + "/cells");
    for (const auto* group : {&arrays, &finalArrays})
      for (const auto& array : *group) {
        writeFileAtomically(array.cellsFile, array.cellsText);
        writeFileAtomically(array.scriptFile, array.scriptText);
        fs::permissions(array.scriptFile, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
      }
  } catch (const std::invalid_argument& e) {
    return inputError(e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "repshape slurm: error: %s\n", e.what());
    return 1;
  }
  std::printf("repshape slurm: %zu of %zu cells to run (%zu finished) in %zu array(s)%s of <= %lld tasks; files in %s\n",
              first.size() + finals.size(), total, finishedIds.size(), arrays.size() + finalArrays.size(),
              finalArrays.empty() ? "" : " (phase 2 after phase 1)", static_cast<long long>(o.maxArraySize), submission.c_str());

  // Phase-2 arrays start once every phase-1 array has ended, however it ended (afterany): their
  // tasks select from whatever phase-1 results exist.
  std::vector<std::string> firstIds, allIds;
  auto submitGroup = [&](const std::vector<jobs::SlurmArray>& group, const std::string& dependency) -> bool {
    for (const auto& array : group) {
      const std::string command = "sbatch --parsable" + (dependency.empty() ? "" : " --dependency=" + dependency) + " " +
                                  jobs::shellQuote(array.scriptFile);
      if (!args.submit) {
        std::printf("%s\n", command.c_str());
        continue;
      }
      const auto [status, text] = capture(command);
      const std::string id = text.substr(0, text.find_first_of(";\n"));
      if (status != 0 || id.empty()) {
        std::string before;
        for (const auto& j : allIds) before += " " + j;
        std::fprintf(stderr, "repshape slurm: error: `%s` failed (exit %d)%s%s\n", command.c_str(), status,
                     allIds.empty() ? "" : "; submitted before it:", before.c_str());
        return false;
      }
      std::printf("submitted array %s%d: job %s (%d tasks, %zu cells)\n", &group == &finalArrays ? "phase2-" : "",
                  array.index, id.c_str(), array.tasks, array.cells.size());
      allIds.push_back(id);
      if (&group == &arrays) firstIds.push_back(id);
    }
    return true;
  };
  if (!submitGroup(arrays, "")) return 1;
  std::string dependency;
  for (const auto& id : firstIds) dependency += (dependency.empty() ? "afterany:" : ":") + id;
  if (!args.submit && !arrays.empty()) dependency = "afterany:<the job ids above>";
  if (!submitGroup(finalArrays, dependency)) return 1;
  if (args.submit) {
    std::string text;
    for (const auto& id : allIds) text += id + "\n";
    writeFileAtomically(submission + "/jobs", text);
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace repshape
