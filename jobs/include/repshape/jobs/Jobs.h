#pragma once
// repshape::jobs — grids of training runs (SPEC §5, §7). A grid spec (TOML) names a base training
// config, trials and axes of config overrides; it expands deterministically into cells, each one
// `repshape train` run in RESULTS/cells/<id>/. This library works on TOML tables and result.json
// files only: it never links the runner. The runner validates every cell's config (loadConfig)
// through the `Validator` callback and launches cells as child processes.
//
// Results layout (shared with the Slurm and Prometheus issues):
//   RESULTS/grid.toml         verbatim copy of the spec        RESULTS/grid.json   spec summary (report)
//   RESULTS/cells.json        cell index, array-index order   RESULTS/selection.json  phase-2 choices
//   RESULTS/inputs/<id>.toml  each cell's full input config   RESULTS/grid.lock   pid + host of the runner
//   RESULTS/cells/<id>/{config.resolved.toml, steps.jsonl, result.json}

#include <toml++/toml.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace repshape::jobs {

// Bad user input (spec, arguments, results directory of another spec): `file:line: key: what`,
// exit code 2, nothing created.
class SpecError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Where a value was written: a spec line, or "--set" for the command line.
struct Origin {
  std::string file;
  int64_t line = 0;  // 0: unknown / command line
  std::string str() const { return line > 0 ? file + ":" + std::to_string(line) : file; }
};

// One config override in `--set` syntax: `model.hidden`, `regularizer.0.weight`; a top-level key
// with an array value replaces the array (`regularizer = []` removes every [[regularizer]]).
struct Override {
  std::string key;
  toml::table holder;  // {"v" = value}: toml::node itself is abstract
  Origin origin;
  const toml::node& value() const { return *holder.get("v"); }
  std::string valueText() const;
};

// Parses `key=value` (value in TOML; a bare word that is not TOML is a string), as `train --set`.
Override parseOverride(const std::string& text, const Origin& origin);
// Applies overrides to a config document in order (throws SpecError located at the override).
void applyOverrides(toml::table& config, const std::vector<Override>& overrides);

struct AxisValue {
  std::string name;                // id part: the name, or `axis=value` for keyed axes
  std::string label;               // what the id shows for this value
  std::vector<Override> set;
  std::vector<std::string> skip;   // axes not applied to cells with this value (a baseline has no λ)
  Origin origin;
};

struct Axis {
  std::string name;
  std::string key;                  // keyed axis: `values = [0.01, 0.1]` each sets this config key
  std::string defaultValue;         // left out of ids: appending an axis whose value is its default keeps ids
  std::vector<AxisValue> values;
  Origin origin;
};

// Validation selection (Choi App. D.1): cells of the selection axis train on train-minus-validation
// (phase 1, `trials` trials each); per group of the other axes the value with the lowest `metric`
// among non-diverged ok cells is retrained on the full set (`final` overrides) for every trial.
struct Selection {
  std::string axis;
  std::string metric = "validation.error";
  int64_t trials = 1;
  std::vector<Override> search;  // phase-1 overrides (e.g. data.validation_size)
  std::vector<Override> final;   // phase-2 overrides (default: data.validation_size = 0)
  Origin origin;
};

struct PaperValue {
  double mean = 0.0, std = 0.0;
};

// A figure of the report (`[[report.figure]]`, Figures.cpp). Cells are the phase-2 (or plain)
// cells that finished ok and match `where`; trials (and axes neither plotted nor fixed) are averaged.
//   line:      x = one axis (categorical, spec order); y = metrics (one panel each); series = axis
//   scatter:   x = metrics (one panel each), y = one metric; a point per `label` value (mean over
//              its cells), Pearson r printed; paper_r = the paper's r per x metric
//   curve:     y = metric patterns with one '*' matched against result.json keys
//              (`layers.fc1.ami@k=*`): x = the number the '*' stands for; series = axis
//   table:     rows = axis; metrics = columns (mean ± std); paper = { row = [one per metric] }
//   heatmap, spectrum, histogram: layers = names of covariance-<layer>.json in the cell directories
//              (eval.save_covariance): the matrix of the first matching trial / its eigenvalues
//              (mean over trials) / |ρ_ij| (i < j) pooled over trials; series = axis
struct FigureSpec {
  std::string name, kind, title;
  std::vector<std::string> x, y;
  std::string series, label, rows;  // axis names
  std::map<std::string, std::vector<std::string>> where;  // axis → accepted values
  std::vector<std::string> metrics, layers;
  std::map<std::string, std::vector<double>> paper;       // table: row value → one number per metric
  std::vector<double> paperR;                             // scatter: one per x metric
  Origin origin;
};

struct ReportSpec {
  std::string rows, columns;      // axis names (rows may be several axes joined; default: all others)
  std::string metric = "test.error";
  std::string paperSource;
  std::map<std::string, std::map<std::string, PaperValue>> paper;  // row value → column value → number
  std::vector<FigureSpec> figures;
};

struct GridSpec {
  std::string path;      // the spec file
  std::string name;
  std::string basePath;  // base training config file ("" when inline `[base]`)
  toml::table base;      // the base config document
  int64_t trials = 1;
  int64_t seed = 1;      // trial t sets train.seed = seed + t - 1
  Origin trialsOrigin;
  std::vector<Override> set;  // applied to every cell (then the command's --set)
  std::vector<Axis> axes;
  std::optional<Selection> select;
  ReportSpec report;
  std::string text;      // the spec file's text (snapshot)
};

GridSpec loadGridSpec(const std::string& path);

enum class Phase { Plain, Search, Final };
const char* phaseName(Phase phase);

struct Cell {
  std::string id;
  Phase phase = Phase::Plain;
  int64_t trial = 1;
  std::vector<std::pair<std::string, std::string>> axes;  // (axis, value name), spec order, skipped axes absent
  std::string group;        // Search/Final: the ids' shared part without the selection axis
  std::string selectValue;  // Search: its selection-axis value; Final: the selected one once known
  std::vector<Override> overrides;  // in order: spec set, axis values, phase, trial seed
};

// All cells in a deterministic order: plain and phase-1 cells in axis order, then phase-2 cells.
// Phase-2 cells carry no selection-axis override until `withSelection`. Throws SpecError on
// duplicate ids.
std::vector<Cell> expandCells(const GridSpec& spec);
// The phase-2 cell with the chosen selection-axis value's overrides applied.
Cell withSelection(const GridSpec& spec, const Cell& finalCell, const std::string& value);
// The cell's full input config: base, then `extra` (the command's --set), then the cell's overrides.
toml::table cellConfig(const GridSpec& spec, const Cell& cell, const std::vector<Override>& extra);
std::string toTomlText(const toml::table& table);
// Where a config key (`regularizer[0].weight` or `model.hidden`) of this cell came from.
Origin originOf(const GridSpec& spec, const Cell& cell, const std::vector<Override>& extra, const std::string& key);

// ---- Results directory --------------------------------------------------------------------------

struct CellState {
  std::string state;  // pending | waiting | running | ok | diverged | failed | interrupted | preempted | partial
  nlohmann::json result;  // result.json, null when absent
};

bool isFinalStatus(const std::string& status);  // ok, diverged, failed
std::string cellDir(const std::string& results, const std::string& id);
CellState readCellState(const std::string& results, const Cell& cell);
nlohmann::json readJsonFile(const std::string& path);  // null when absent or unreadable
void writeFileAtomically(const std::string& path, const std::string& content);
// A metric `test.error` / `validation.error` / `layers.h5.mapc` of a result.json; nullopt if absent.
std::optional<double> metricOf(const nlohmann::json& result, const std::string& metric);

// Writes grid.toml, grid.json and cells.json (the array index of a cell is its Slurm array index).
void writeSnapshot(const std::string& results, const GridSpec& spec, const std::vector<Cell>& cells);

// ---- Validation selection -------------------------------------------------------------------------

struct SelectionResult {
  std::string group;
  bool decided = false;    // every phase-1 cell of the group finished
  std::string selected;    // the chosen value, "" if none finished ok
  std::string reason;      // why nothing was selected
  nlohmann::json candidates = nlohmann::json::array();
};

// Per group, the selection from the phase-1 cells' results (diverged/failed never selected).
std::map<std::string, SelectionResult> selectValues(const GridSpec& spec, const std::vector<Cell>& cells,
                                                    const std::string& results);
void writeSelection(const std::string& results, const std::map<std::string, SelectionResult>& selections);

// ---- Scheduler --------------------------------------------------------------------------------------

struct RunOptions {
  std::string results;
  std::string executable;      // the repshape binary
  int parallel = 1;            // cells at once
  int ranksPerCell = 1;        // mpirun -np R when > 1
  int64_t limitCells = 0;      // > 0: start at most this many cells
  std::string onlyCell;        // --cell ID
  // --where AXIS=V1,V2: only cells whose AXIS has one of these values (a column, some rows).
  std::map<std::string, std::vector<std::string>> where;
  std::vector<Override> extra; // the command's --set, then automatic ones (threads, metrics)
  std::vector<std::string> trainArgs;  // appended to every `repshape train` (e.g. --fault for tests)
  std::map<std::string, std::vector<std::string>> cellTrainArgs;  // per cell id (tests)
  // Called whenever the cell counts change: ok, diverged, failed, running, pending (the runner's
  // Prometheus GridMonitor; the jobs library itself exports nothing).
  std::function<void(const std::map<std::string, int64_t>&)> onCounts;
};

// Returns a message when `config` is invalid (runner: loadConfig + toToml). On success fills
// `resolved` with the config.resolved.toml text the child will write.
using Validator = std::function<std::optional<std::string>(const std::string& configText, std::string& resolved)>;

// Validates every cell (phase-2 cells with every candidate value) and rewraps errors to the spec's
// lines; refuses a results directory whose finished cells differ from this spec. Throws SpecError.
void validateGrid(const GridSpec& spec, const std::vector<Cell>& cells, const RunOptions& options,
                  const Validator& validator);

// Locks RESULTS (grid.lock: pid + host; a lock of a dead runner is taken over with a message),
// refuses a results directory whose finished cells differ from this spec, writes the snapshot and
// runs pending cells. Returns the exit code (0 done or limit reached, 130 interrupted); throws
// SpecError when refused.
int runCells(const GridSpec& spec, const std::vector<Cell>& cells, const RunOptions& options,
             const Validator& validator);
// Prints each cell and its state; `where` (AXIS → values, as --where) keeps only matching cells.
void listCells(const GridSpec& spec, const std::string& results, std::FILE* out,
               const std::map<std::string, std::vector<std::string>>& where = {});
// True when `cell` has, for every axis of `where`, one of its values (--where).
bool matchesWhere(const Cell& cell, const std::map<std::string, std::vector<std::string>>& where);

// ---- Report -------------------------------------------------------------------------------------------

// Renders the phase-2 (or plain) cells of RESULTS as md | csv | tex | html. Throws SpecError when
// RESULTS holds no grid.
std::string renderReport(const std::string& results, const std::string& format);

// The spec's figures from RESULTS: `svg` for plots, `markdown` for tables and correlations (both
// for a table figure's HTML). Throws SpecError when RESULTS holds no grid.
struct RenderedFigure {
  std::string name, kind, title;
  std::string svg;       // standalone SVG document ("" for kind table)
  std::string markdown;  // table / Pearson r / notes (what was missing)
  std::string html;      // a table figure's HTML table ("" otherwise)
};
std::vector<RenderedFigure> renderFigures(const std::string& results);

}  // namespace repshape::jobs
