// `repshape report`: the papers' layout from a results directory (complete or partial). Rows are
// the values of the axes other than the column and selection axes, columns the column axis; an
// entry is the mean ± sample std (n−1) of the metric over the trials of the phase-2 (or plain)
// cells that finished ok. Best mean of a column in bold; entries whose mean ± std range overlaps
// the best one's are marked (Choi's green). Missing, failed and diverged trials are counted.
#include <repshape/jobs/Jobs.h>

#include "detail/Report.h"
#include "detail/Text.h"

#include <cmath>
#include <filesystem>

namespace repshape::jobs {

namespace detail {

namespace {

bool higherIsBetter(const std::string& metric) {
  for (const char* s : {"ami", "nmi", "accuracy"})
    if (metric.size() >= std::strlen(s) && metric.compare(metric.size() - std::strlen(s), std::string::npos, s) == 0)
      return true;
  return false;
}

}  // namespace

ReportData loadReport(const std::string& results) {
  const nlohmann::json grid = readJsonFile(results + "/grid.json");
  const nlohmann::json index = readJsonFile(results + "/cells.json");
  if (!grid.is_object() || !index.is_array())
    throw SpecError(results + ": not a grid results directory (no grid.json / cells.json; run `repshape grid … --run`)");
  ReportData d;
  d.name = grid.value("name", std::string("grid"));
  const nlohmann::json report = grid.value("report", nlohmann::json::object());
  d.metric = report.value("metric", std::string("test.error"));
  d.columnAxis = report.value("columns", std::string());
  d.paperSource = report.value("paper_source", std::string());
  d.higherBetter = higherIsBetter(d.metric);
  const std::string selectAxis = grid.contains("select") ? grid["select"].value("axis", std::string()) : "";
  d.selectAxis = selectAxis;
  for (const auto& axis : grid["axes"]) {
    const std::string name = axis["name"];
    if (name == d.columnAxis) {
      for (const auto& v : axis["values"]) d.columns.push_back(v.get<std::string>());
    } else if (name != selectAxis) {
      d.rowAxes.push_back(name);
    }
  }
  if (d.columns.empty()) d.columns.push_back("all");

  std::map<std::pair<std::string, std::string>, Entry> entries;
  for (const auto& c : index) {
    CellRow row;
    row.id = c["id"];
    row.phase = c["phase"];
    row.trial = c["trial"];
    row.axes = c["axes"];
    row.result = readJsonFile(cellDir(results, row.id) + "/result.json");
    row.status = row.result.is_object() ? row.result.value("status", std::string("ok")) : "missing";
    if (row.result.is_object() && row.result.contains("cell")) row.selected = row.result["cell"].value("selected", "");
    d.cells.push_back(row);
    if (row.phase == "search") continue;
    std::string rowKey;
    for (const auto& a : d.rowAxes)
      if (row.axes.contains(a)) rowKey += (rowKey.empty() ? "" : ".") + row.axes[a].get<std::string>();
    if (rowKey.empty()) rowKey = d.name;
    const std::string column = d.columnAxis.empty() ? "all" : row.axes.value(d.columnAxis, std::string("all"));
    if (std::find(d.rows.begin(), d.rows.end(), rowKey) == d.rows.end()) d.rows.push_back(rowKey);
    Entry& e = entries[{rowKey, column}];
    ++e.expected;
    const std::optional<double> value = metricOf(row.result, d.metric);
    if (row.status == "ok" && value && std::isfinite(*value)) e.values.push_back(*value);
    else if (row.status == "failed") ++e.failed;
    else if (row.status == "diverged") ++e.diverged;
    else ++e.missing;
    if (!row.selected.empty() && std::find(e.selected.begin(), e.selected.end(), row.selected) == e.selected.end())
      e.selected.push_back(row.selected);
  }
  // Rows in the spec's value order of the row axes (cells.json lists plain cells before phase-2 ones).
  std::map<std::string, std::vector<std::size_t>> order;
  for (const auto& c : d.cells) {
    std::string rowKey;
    std::vector<std::size_t> rank;
    for (const auto& a : d.rowAxes) {
      if (!c.axes.contains(a)) continue;
      const std::string v = c.axes[a];
      rowKey += (rowKey.empty() ? "" : ".") + v;
      for (const auto& axis : grid["axes"])
        if (axis["name"] == a)
          for (std::size_t i = 0; i < axis["values"].size(); ++i)
            if (axis["values"][i] == v) rank.push_back(i);
    }
    order.emplace(rowKey.empty() ? d.name : rowKey, rank);
  }
  std::stable_sort(d.rows.begin(), d.rows.end(),
                   [&](const std::string& a, const std::string& b) { return order[a] < order[b]; });
  for (auto& [key, e] : entries) {
    if (e.values.empty()) continue;
    double sum = 0.0;
    for (double v : e.values) sum += v;
    e.mean = sum / static_cast<double>(e.values.size());
    double squares = 0.0;
    for (double v : e.values) squares += (v - e.mean) * (v - e.mean);
    e.std = e.values.size() > 1 ? std::sqrt(squares / static_cast<double>(e.values.size() - 1)) : 0.0;
  }
  for (const auto& column : d.columns) {
    const Entry* best = nullptr;
    for (const auto& row : d.rows) {
      auto it = entries.find({row, column});
      if (it == entries.end() || it->second.values.empty()) continue;
      if (!best || (d.higherBetter ? it->second.mean > best->mean : it->second.mean < best->mean)) best = &it->second;
    }
    for (const auto& row : d.rows) {
      auto it = entries.find({row, column});
      if (it == entries.end() || !best || it->second.values.empty()) continue;
      Entry& e = it->second;
      e.best = &e == best;
      e.overlaps = !e.best && e.mean - e.std <= best->mean + best->std && e.mean + e.std >= best->mean - best->std;
    }
  }
  const nlohmann::json paper = report.value("paper", nlohmann::json::object());
  for (auto& [key, e] : entries) {
    if (paper.contains(key.first) && paper[key.first].contains(key.second)) {
      e.hasPaper = true;
      e.paperMean = paper[key.first][key.second][0];
      e.paperStd = paper[key.first][key.second][1];
    }
  }
  d.entries = std::move(entries);
  return d;
}

std::string entryText(const Entry& e, int digits) {
  if (e.values.empty()) return "–";
  return fixed(e.mean, digits) + " ± " + fixed(e.std, digits);
}

std::string countsNote(const Entry& e) {
  std::string note;
  const int n = static_cast<int>(e.values.size());
  if (n == e.expected) return note;
  note = std::to_string(n) + "/" + std::to_string(e.expected);
  if (e.failed) note += ", " + std::to_string(e.failed) + " failed";
  if (e.diverged) note += ", " + std::to_string(e.diverged) + " diverged";
  if (e.missing) note += ", " + std::to_string(e.missing) + " missing";
  return note;
}

}  // namespace detail

std::string renderReport(const std::string& results, const std::string& format) {
  const detail::ReportData data = detail::loadReport(results);
  if (format == "md") {
    std::string text = detail::renderMarkdown(data);
    for (const auto& f : renderFigures(results))
      text += "\n## Figure " + f.name + ": " + f.title + "\n" + f.markdown;
    return text;
  }
  if (format == "csv") return detail::renderCsv(data);
  if (format == "tex") return detail::renderTex(data);
  if (format == "html") return detail::renderHtml(data, renderFigures(results));
  throw SpecError("--format " + format + ": expected md, csv, tex or html");
}

}  // namespace repshape::jobs
