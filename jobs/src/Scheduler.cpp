// The local scheduler: validates every cell, locks RESULTS, refuses a changed spec, runs pending
// cells N at a time (each its own process group), materialises phase-2 cells as soon as their
// phase-1 cells end, and reports progress. Resumable: finished cells (final status) are skipped.
#include <repshape/jobs/Jobs.h>

#include "detail/Launch.h"
#include "detail/Text.h"

#include <csignal>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

namespace repshape::jobs {

namespace fs = std::filesystem;
using detail::RunningCell;

namespace {

volatile std::sig_atomic_t gStopSignal = 0;
void onGridStopSignal(int sig) { gStopSignal = sig; }

// `<cell>:12: model.hiden: unknown key` → located at the spec line that set the key.
std::string rewrap(const GridSpec& spec, const Cell& cell, const std::vector<Override>& extra, const std::string& message) {
  static const std::regex located(R"(^<cell>(?::\d+)?: (?:--set: )?([A-Za-z0-9_.\[\]-]+): (.*)$)");
  std::smatch m;
  if (std::regex_match(message, m, located)) {
    const Origin origin = originOf(spec, cell, extra, m[1].str());
    return origin.str() + ": " + m[1].str() + ": " + m[2].str() + " (cell " + cell.id + ")";
  }
  return spec.path + ": cell " + cell.id + ": " + std::regex_replace(message, std::regex("<cell>:?\\s*"), "");
}

// A resolved config without the keys that may differ between runs of the same cell.
std::string comparable(const std::string& resolved) {
  try {
    toml::table t = toml::parse(resolved);
    if (toml::table* train = t["train"].as_table()) train->erase("threads");
    t.erase("metrics");
    return toTomlText(t);
  } catch (const toml::parse_error&) {
    return resolved;
  }
}

std::string readText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

const Axis* selectAxis(const GridSpec& spec) {
  for (const auto& a : spec.axes)
    if (spec.select && a.name == spec.select->axis) return &a;
  return nullptr;
}

void checkCell(const GridSpec& spec, const Cell& cell, const RunOptions& options, const Validator& validator,
               std::string* resolvedOut) {
  std::string resolved;
  toml::table config = cellConfig(spec, cell, options.extra);
  if (auto error = validator(toTomlText(config), resolved)) throw SpecError(rewrap(spec, cell, options.extra, *error));
  if (resolvedOut) *resolvedOut = resolved;
}

// RESULTS of an earlier run: every finished cell this spec keeps must have the same resolved config.
void checkUnchanged(const GridSpec& spec, const std::vector<Cell>& cells, const RunOptions& options,
                    const Validator& validator) {
  const auto selections = selectValues(spec, cells, options.results);
  for (const Cell& c : cells) {
    const CellState state = readCellState(options.results, c);
    if (!state.result.is_object() || !isFinalStatus(state.result.value("status", std::string("ok")))) continue;
    Cell cell = c;
    if (cell.phase == Phase::Final) {
      // The value it ran with; without the runner's record, the one its phase-1 results select.
      const auto info = state.result.value("cell", nlohmann::json::object());
      const auto it = selections.find(c.group);
      const std::string current = it == selections.end() ? std::string() : it->second.selected;
      cell = withSelection(spec, c, info.value("selected", current));
    }
    std::string resolved;
    checkCell(spec, cell, options, validator, &resolved);
    const std::string before = readText(cellDir(options.results, c.id) + "/config.resolved.toml");
    if (!before.empty() && comparable(before) != comparable(resolved))
      throw SpecError(options.results + ": cell " + c.id +
                      " finished with a different config than this spec gives it (compare " +
                      cellDir(options.results, c.id) +
                      "/config.resolved.toml); use another --results directory or remove that cell");
  }
}

struct Counts {
  int ok = 0, diverged = 0, failed = 0, other = 0;
  int finished() const { return ok + diverged + failed; }
  void add(const std::string& status) {
    if (status == "ok") ++ok;
    else if (status == "diverged") ++diverged;
    else if (status == "failed") ++failed;
    else ++other;
  }
};

std::string clock(double seconds) {
  const long s = static_cast<long>(seconds + 0.5);
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%02ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buffer;
}

}  // namespace

void validateGrid(const GridSpec& spec, const std::vector<Cell>& cells, const RunOptions& options,
                  const Validator& validator) {
  const Axis* axis = selectAxis(spec);
  for (const Cell& cell : cells) {
    if (cell.phase != Phase::Final) {
      checkCell(spec, cell, options, validator, nullptr);
    } else if (cell.trial == 1) {
      // A phase-2 cell may receive any value of the selection axis: check them all.
      for (const auto& v : axis->values) checkCell(spec, withSelection(spec, cell, v.name), options, validator, nullptr);
    }
  }
  if (fs::exists(options.results) && !fs::is_empty(options.results) && !fs::exists(options.results + "/grid.json"))
    throw SpecError(options.results + ": exists and is not a grid results directory (no grid.json)");
}

int runCells(const GridSpec& spec, const std::vector<Cell>& allCells, const RunOptions& options,
             const Validator& validator) {
  const std::string& results = options.results;
  const bool existed = fs::exists(results + "/grid.json");
  fs::create_directories(results + "/locks");
  const int gridLock = options.onlyCell.empty() ? detail::lockFile(results + "/grid.lock", false) : -2;
  if (gridLock == -1) {
    const std::string holder = readText(results + "/grid.lock");
    throw SpecError(results + ": another grid runner is using this directory (grid.lock: " +
                    (holder.empty() ? std::string("?") : holder.substr(0, holder.find('\n'))) + ")");
  }
  if (gridLock >= 0) {
    const std::string previous = readText(results + "/grid.lock");
    if (!previous.empty())
      std::fprintf(stderr, "grid: taking over the stale lock of a runner that is gone (%s)\n",
                   previous.substr(0, previous.find('\n')).c_str());
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    const std::string me = "pid " + std::to_string(::getpid()) + " host " + host + "\n";
    ::ftruncate(gridLock, 0);
    ::pwrite(gridLock, me.data(), me.size(), 0);
  }
  struct LockGuard {
    int fd;
    std::string path;
    ~LockGuard() {
      if (fd >= 0) {
        ::ftruncate(fd, 0);  // an empty lock file: a clean exit, not a stale lock
        detail::unlockFile(fd);
      }
    }
  } guard{gridLock, results + "/grid.lock"};
  if (existed) checkUnchanged(spec, allCells, options, validator);
  if (gridLock >= 0 || !existed) writeSnapshot(results, spec, allCells);

  auto selected = [&](const Cell& c) {
    if (!options.onlyCell.empty()) return c.id == options.onlyCell;
    return matchesWhere(c, options.where);
  };
  std::map<std::string, nlohmann::json> finalExtra;  // group → {selected, candidates}
  std::set<std::string> queuedFinal, stale;
  std::deque<Cell> todo;
  Counts counts;
  int total = 0;
  auto selectionExtra = [&](const SelectionResult& s) {
    return nlohmann::json{{"select_metric", spec.select->metric}, {"candidates", s.candidates}};
  };
  // Phase-2 cells of groups whose phase-1 cells all finished, with the selected value; finished ones
  // that ran with another value (the spec gained phase-1 cells) are rerun.
  auto refreshSelection = [&](bool enqueue) {
    if (!spec.select) return;
    const auto selections = selectValues(spec, allCells, results);
    writeSelection(results, selections);
    for (const Cell& c : allCells) {
      if (c.phase != Phase::Final || queuedFinal.count(c.id)) continue;
      const auto it = selections.find(c.group);
      if (it == selections.end() || !it->second.decided || it->second.selected.empty()) continue;
      if (!selected(c)) continue;
      queuedFinal.insert(c.id);
      finalExtra[c.group] = selectionExtra(it->second);
      const CellState st = readCellState(results, c);
      if (st.result.is_object() && isFinalStatus(st.state)) {
        const nlohmann::json info = st.result.value("cell", nlohmann::json());
        if (info.is_null()) {
          detail::completeCellInfo(results, withSelection(spec, c, it->second.selected), finalExtra[c.group]);
          continue;
        }
        if (info.value("selected", std::string()) == it->second.selected) continue;
        // The spec gained phase-1 cells and the choice changed: this trial reruns with the new one.
        std::printf("[grid %s] %s ran with %s=%s, now %s is selected: rerunning\n", spec.name.c_str(), c.id.c_str(),
                    spec.select->axis.c_str(), info.value("selected", std::string()).c_str(),
                    it->second.selected.c_str());
        stale.insert(c.id);
      }
      if (enqueue) todo.push_back(withSelection(spec, c, it->second.selected));
    }
  };
  for (const Cell& c : allCells) {
    if (!selected(c)) continue;
    ++total;
    if (c.phase == Phase::Final) continue;
    const CellState st = readCellState(results, c);
    if (isFinalStatus(st.state)) {
      detail::completeCellInfo(results, c, nlohmann::json::object());
      counts.add(st.state);
    } else {
      todo.push_back(c);
    }
  }
  refreshSelection(true);
  for (const Cell& c : allCells)
    if (c.phase == Phase::Final && queuedFinal.count(c.id) && !stale.count(c.id)) {
      const CellState st = readCellState(results, c);
      if (isFinalStatus(st.state)) counts.add(st.state);
    }
  if (!options.onlyCell.empty() && total == 0) throw SpecError("--cell " + options.onlyCell + ": no such cell in " + spec.path);
  if (!options.onlyCell.empty() && todo.empty() && counts.finished() == 0)
    throw SpecError("--cell " + options.onlyCell + ": a phase-2 cell runs once its group's phase-1 cells finished");

  gStopSignal = 0;
  struct sigaction action {}, oldInt {}, oldTerm {};
  action.sa_handler = onGridStopSignal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, &oldInt);
  ::sigaction(SIGTERM, &action, &oldTerm);

  const bool tty = ::isatty(1);
  const double start = detail::nowSeconds();
  std::vector<RunningCell> running;
  int64_t started = 0;
  int forwarded = 0;
  double finishedSeconds = 0.0;
  int finishedHere = 0;
  auto publish = [&]() {
    if (!options.onCounts) return;
    const int64_t active = static_cast<int64_t>(running.size());
    options.onCounts({{"ok", counts.ok}, {"diverged", counts.diverged}, {"failed", counts.failed},
                      {"running", active}, {"pending", total - counts.finished() - active}});
  };
  auto progress = [&]() {
    if (!tty) return;
    const double elapsed = detail::nowSeconds() - start;
    const int left = total - counts.finished();
    std::string eta = "?";
    if (finishedHere > 0)
      eta = clock(finishedSeconds / finishedHere * left / std::max<std::size_t>(1, std::max<int>(options.parallel, 1)));
    std::printf("\r\033[K[grid %s] %d/%d done: ok %d, diverged %d, failed %d; running %zu; elapsed %s, ETA %s",
                spec.name.c_str(), counts.finished(), total, counts.ok, counts.diverged, counts.failed,
                running.size(), clock(elapsed).c_str(), eta.c_str());
    std::fflush(stdout);
  };

  while (true) {
    if (gStopSignal && forwarded < 2) {
      // First signal: ask every cell to stop at a step boundary; second: kill them.
      const int sig = forwarded == 0 ? SIGINT : SIGKILL;
      for (const auto& r : running) ::kill(-r.pid, sig);
      if (forwarded == 0) std::fprintf(stderr, "\ngrid: stopping %zu running cell(s)\n", running.size());
      ++forwarded;
      gStopSignal = forwarded == 1 ? 0 : gStopSignal;
    }
    const bool stopping = forwarded > 0;
    while (!stopping && !todo.empty() && static_cast<int>(running.size()) < std::max(1, options.parallel) &&
           (options.limitCells <= 0 || started < options.limitCells)) {
      Cell cell = todo.front();
      todo.pop_front();
      RunningCell r;
      if (!detail::launchCell(spec, cell, options, r)) {
        std::fprintf(stderr, "grid: %s is being run by another process; skipped\n", cell.id.c_str());
        continue;
      }
      running.push_back(std::move(r));
      ++started;
      publish();
    }
    if (running.empty()) break;
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      progress();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    auto it = std::find_if(running.begin(), running.end(), [&](const RunningCell& r) { return r.pid == pid; });
    if (it == running.end()) continue;
    RunningCell done = std::move(*it);
    running.erase(it);
    const nlohmann::json extra =
        done.cell.phase == Phase::Final ? finalExtra[done.cell.group] : nlohmann::json::object();
    const nlohmann::json result = detail::finalizeCell(results, done.cell, status, stopping, extra);
    detail::unlockFile(done.lockFd);
    const std::string state = result.value("status", std::string("failed"));
    counts.add(state);
    const double seconds = detail::nowSeconds() - done.startSeconds;
    if (isFinalStatus(state)) finishedSeconds += seconds, ++finishedHere;
    const auto metric = metricOf(result, done.cell.phase == Phase::Search && spec.select ? spec.select->metric
                                                                                         : spec.report.metric);
    if (tty) std::printf("\r\033[K");
    std::printf("[grid %s] %d/%d %-8s %s%s (%.1f s)%s%s\n", spec.name.c_str(), counts.finished(), total,
                state.c_str(), done.cell.id.c_str(),
                metric ? (" " + (done.cell.phase == Phase::Search ? spec.select->metric : spec.report.metric) + "=" +
                          detail::fixed(*metric, 2)).c_str()
                       : "",
                seconds, result.contains("reason") ? ": " : "",
                result.contains("reason") ? result["reason"].get<std::string>().c_str() : "");
    std::fflush(stdout);
    if (done.cell.phase == Phase::Search && !stopping) refreshSelection(true);
    publish();
  }
  ::sigaction(SIGINT, &oldInt, nullptr);
  ::sigaction(SIGTERM, &oldTerm, nullptr);
  if (tty) std::printf("\r\033[K");
  const int pending = total - counts.finished();
  std::printf("[grid %s] %d cells: ok %d, diverged %d, failed %d, not finished %d (%s)\n", spec.name.c_str(), total,
              counts.ok, counts.diverged, counts.failed, pending, clock(detail::nowSeconds() - start).c_str());
  std::fflush(stdout);
  if (forwarded > 0) return 130;
  return 0;
}

bool matchesWhere(const Cell& c, const std::map<std::string, std::vector<std::string>>& where) {
  for (const auto& [axis, values] : where) {
    const auto it = std::find_if(c.axes.begin(), c.axes.end(), [&](const auto& p) { return p.first == axis; });
    if (it == c.axes.end() || std::find(values.begin(), values.end(), it->second) == values.end()) return false;
  }
  return true;
}

void listCells(const GridSpec& spec, const std::string& results, std::FILE* out,
               const std::map<std::string, std::vector<std::string>>& where) {
  const std::vector<Cell> cells = expandCells(spec);
  const auto selections = selectValues(spec, cells, results);
  std::map<std::string, int> counts;
  std::size_t listed = 0;
  for (const Cell& c : cells) {
    if (!matchesWhere(c, where)) continue;
    ++listed;
    CellState st = readCellState(results, c);
    std::string note;
    if (c.phase == Phase::Final && st.state == "pending") {
      const auto it = selections.find(c.group);
      if (it == selections.end() || !it->second.decided) st.state = "waiting";
      else if (it->second.selected.empty()) st.state = "blocked", note = it->second.reason;
      else note = spec.select->axis + "=" + it->second.selected + " selected";
    }
    if (st.state == "partial" || st.state == "interrupted" || st.state == "preempted") note = "reruns";
    if (st.result.is_object() && st.result.contains("reason")) note = st.result["reason"].get<std::string>();
    ++counts[st.state];
    std::fprintf(out, "%-11s %s%s%s\n", st.state.c_str(), c.id.c_str(), note.empty() ? "" : "  # ", note.c_str());
  }
  if (where.empty()) std::fprintf(out, "# %zu cells:", cells.size());
  else std::fprintf(out, "# %zu of %zu cells (--where):", listed, cells.size());
  for (const auto& [state, n] : counts) std::fprintf(out, " %s %d", state.c_str(), n);
  std::fprintf(out, "\n");
}

}  // namespace repshape::jobs
