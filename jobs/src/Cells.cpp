// Cells: deterministic expansion of a spec, each cell's config document, and the results directory.
#include <repshape/jobs/Jobs.h>

#include "detail/Figures.h"
#include "detail/Text.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <unistd.h>

namespace repshape::jobs {

namespace fs = std::filesystem;

std::string Override::valueText() const {
  const toml::node& v = value();
  if (const auto* s = v.as_string()) return s->get();
  if (const auto* d = v.as_floating_point()) {
    // Shortest text that reads back as the same double: 0.1, not 0.10000000000000001 (ids).
    // Plain decimals between 1e-5 and 1e15 (10, not 1e+01), exponents outside (1e+30).
    const double x = d->get();
    char buffer[64];
    for (int digits = 1; digits <= 17; ++digits) {
      std::snprintf(buffer, sizeof buffer, "%.*g", digits, x);
      if (std::strtod(buffer, nullptr) == x) break;
    }
    if (std::strchr(buffer, 'e') && std::fabs(x) >= 1e-5 && std::fabs(x) < 1e15) {
      for (int decimals = 0; decimals <= 20; ++decimals) {
        std::snprintf(buffer, sizeof buffer, "%.*f", decimals, x);
        if (std::strtod(buffer, nullptr) == x) break;
      }
    }
    return buffer;
  }
  std::ostringstream out;
  v.visit([&](const auto& n) { out << n; });
  return out.str();
}

Override parseOverride(const std::string& text, const Origin& origin) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    throw SpecError(origin.str() + ": '" + text + "': expected section.key=value");
  Override o;
  o.key = text.substr(0, eq);
  o.origin = origin;
  const std::string valueText = text.substr(eq + 1);
  try {
    toml::table parsed = toml::parse("v = " + valueText, std::string_view("--set"));
    o.holder.insert_or_assign("v", std::move(*parsed.get("v")));
  } catch (const toml::parse_error&) {
    o.holder.insert_or_assign("v", valueText);  // a bare word is a string, as `train --set`
  }
  return o;
}

namespace {

std::vector<std::string> splitKey(const std::string& key) {
  std::vector<std::string> parts;
  std::stringstream stream(key);
  for (std::string part; std::getline(stream, part, '.');) parts.push_back(part);
  return parts;
}

bool isIndex(const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; }

void applyOne(toml::table& root, const Override& o) {
  auto fail = [&](const std::string& what) { throw SpecError(o.origin.str() + ": " + o.key + ": " + what); };
  const std::vector<std::string> parts = splitKey(o.key);
  if (parts.empty() || std::any_of(parts.begin(), parts.end(), [](const std::string& p) { return p.empty(); }))
    fail("expected section.key");
  toml::table* table = &root;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    toml::node* child = table->get(parts[i]);
    if (child && child->is_array_of_tables()) {
      toml::array& tables = *child->as_array();
      std::size_t index = 0;
      if (i + 2 < parts.size() && isIndex(parts[i + 1])) index = std::stoul(parts[++i]);
      else if (tables.size() != 1)
        fail(parts[i] + " has " + std::to_string(tables.size()) + " entries; name one as " + parts[i] + ".N.key");
      if (index >= tables.size()) fail(parts[i] + " has no entry " + std::to_string(index));
      table = tables.get(index)->as_table();
      continue;
    }
    if (!child) child = &table->insert_or_assign(parts[i], toml::table{}).first->second;
    if (!child->is_table()) fail(parts[i] + " is not a table");
    table = child->as_table();
  }
  const toml::node* current = table->get(parts.back());
  const toml::array* replacement = o.value().as_array();
  // `regularizer = []` removes the [[regularizer]] tables (an empty array is not an array of tables).
  if (current && current->is_array_of_tables() && replacement && replacement->empty()) {
    table->erase(parts.back());
    return;
  }
  table->insert_or_assign(parts.back(), o.value());
}

std::string joinId(const std::vector<std::string>& parts) {
  std::string id;
  for (const auto& p : parts) id += (id.empty() ? "" : ".") + p;
  return id;
}

Override seedOverride(const GridSpec& spec, int64_t trial) {
  Override o;
  o.key = "train.seed";
  o.holder.insert_or_assign("v", spec.seed + trial - 1);
  o.origin = spec.trialsOrigin;
  return o;
}

const Axis* axisNamed(const GridSpec& spec, const std::string& name) {
  for (const auto& a : spec.axes)
    if (a.name == name) return &a;
  return nullptr;
}

}  // namespace

void applyOverrides(toml::table& config, const std::vector<Override>& overrides) {
  for (const auto& o : overrides) applyOne(config, o);
}

const char* phaseName(Phase phase) {
  switch (phase) {
    case Phase::Search: return "search";
    case Phase::Final: return "final";
    default: return "plain";
  }
}

std::vector<Cell> expandCells(const GridSpec& spec) {
  // Full product over the axes in spec order (last axis fastest), then each combination drops the
  // axes its values skip; combinations that become identical are kept once.
  std::vector<std::vector<std::size_t>> combos{{}};
  for (const auto& axis : spec.axes) {
    std::vector<std::vector<std::size_t>> next;
    for (const auto& c : combos)
      for (std::size_t v = 0; v < axis.values.size(); ++v) {
        next.push_back(c);
        next.back().push_back(v);
      }
    combos = std::move(next);
  }
  const std::string selectAxis = spec.select ? spec.select->axis : "";
  std::vector<Cell> cells, finals;
  std::set<std::string> seen, groups;
  auto add = [&](std::vector<Cell>& into, Cell cell) {
    if (!seen.insert(cell.id).second) return false;
    into.push_back(std::move(cell));
    return true;
  };
  for (const auto& combo : combos) {
    std::set<std::string> skipped;
    for (std::size_t a = 0; a < spec.axes.size(); ++a)
      for (const auto& s : spec.axes[a].values[combo[a]].skip) skipped.insert(s);
    Cell base;
    std::vector<std::string> labels, groupLabels;
    for (const auto& o : spec.set) base.overrides.push_back(o);
    bool searched = false;
    for (std::size_t a = 0; a < spec.axes.size(); ++a) {
      const Axis& axis = spec.axes[a];
      if (skipped.count(axis.name)) continue;
      const AxisValue& value = axis.values[combo[a]];
      base.axes.emplace_back(axis.name, value.name);
      const bool inId = value.name != axis.defaultValue;
      if (inId) labels.push_back(value.label);
      if (axis.name == selectAxis) {
        searched = true;
        base.selectValue = value.name;
      } else {
        if (inId) groupLabels.push_back(value.label);
        for (const auto& o : value.set) base.overrides.push_back(o);
      }
      if (axis.name == selectAxis) continue;
    }
    if (!searched) {
      // Without the selection axis (e.g. a baseline) a cell trains on the full set directly.
      if (spec.select)
        for (const auto& o : spec.select->final) base.overrides.push_back(o);
      for (int64_t t = 1; t <= spec.trials; ++t) {
        Cell cell = base;
        cell.phase = Phase::Plain;
        cell.trial = t;
        cell.overrides.push_back(seedOverride(spec, t));
        auto parts = labels;
        parts.push_back("trial=" + std::to_string(t));
        cell.id = joinId(parts);
        if (!add(cells, cell) && t == 1) break;  // a skip made this combination a duplicate
      }
      continue;
    }
    const Axis& axis = *axisNamed(spec, selectAxis);
    const AxisValue& value = *std::find_if(axis.values.begin(), axis.values.end(),
                                           [&](const AxisValue& v) { return v.name == base.selectValue; });
    const std::string group = joinId(groupLabels);
    for (int64_t t = 1; t <= spec.select->trials; ++t) {
      Cell cell = base;
      cell.phase = Phase::Search;
      cell.trial = t;
      cell.group = group;
      for (const auto& o : value.set) cell.overrides.push_back(o);
      for (const auto& o : spec.select->search) cell.overrides.push_back(o);
      cell.overrides.push_back(seedOverride(spec, t));
      auto parts = labels;
      parts.push_back("trial=" + std::to_string(t));
      cell.id = joinId(parts);
      add(cells, cell);
    }
    if (!groups.insert(group).second) continue;
    for (int64_t t = 1; t <= spec.trials; ++t) {
      Cell cell = base;
      cell.phase = Phase::Final;
      cell.trial = t;
      cell.group = group;
      cell.selectValue.clear();
      cell.axes.erase(std::remove_if(cell.axes.begin(), cell.axes.end(),
                                     [&](const auto& p) { return p.first == selectAxis; }),
                      cell.axes.end());
      for (const auto& o : spec.select->final) cell.overrides.push_back(o);
      cell.overrides.push_back(seedOverride(spec, t));
      auto parts = groupLabels;
      parts.push_back("phase=final");
      parts.push_back("trial=" + std::to_string(t));
      cell.id = joinId(parts);
      add(finals, cell);
    }
  }
  if (seen.size() != cells.size() + finals.size()) throw SpecError(spec.path + ": axis: duplicate cell ids");
  cells.insert(cells.end(), finals.begin(), finals.end());
  return cells;
}

Cell withSelection(const GridSpec& spec, const Cell& finalCell, const std::string& value) {
  Cell cell = finalCell;
  cell.selectValue = value;
  const Axis& axis = *axisNamed(spec, spec.select->axis);
  for (const auto& v : axis.values)
    if (v.name == value) {
      // Before the phase and seed overrides, as in the phase-1 cell.
      auto at = cell.overrides.end() - static_cast<std::ptrdiff_t>(spec.select->final.size() + 1);
      cell.overrides.insert(at, v.set.begin(), v.set.end());
    }
  return cell;
}

toml::table cellConfig(const GridSpec& spec, const Cell& cell, const std::vector<Override>& extra) {
  toml::table config = spec.base;
  applyOverrides(config, cell.overrides);
  applyOverrides(config, extra);
  return config;
}

std::string toTomlText(const toml::table& table) {
  std::ostringstream out;
  out << table << "\n";
  return out.str();
}

Origin originOf(const GridSpec& spec, const Cell& cell, const std::vector<Override>& extra, const std::string& key) {
  // regularizer[0].weight → regularizer.0.weight
  std::string dotted;
  for (char c : key) {
    if (c == '[') dotted += '.';
    else if (c != ']') dotted += c;
  }
  auto related = [&](const std::string& k) {
    return k == dotted || dotted.rfind(k + ".", 0) == 0 || k.rfind(dotted + ".", 0) == 0;
  };
  for (auto it = extra.rbegin(); it != extra.rend(); ++it)
    if (related(it->key)) return it->origin;
  for (auto it = cell.overrides.rbegin(); it != cell.overrides.rend(); ++it)
    if (related(it->key)) return it->origin;
  if (!spec.basePath.empty()) {
    const toml::node_view<const toml::node> node = spec.base.at_path(key);
    if (node) return Origin{spec.basePath, static_cast<int64_t>(node.node()->source().begin.line)};
    return Origin{spec.basePath, 0};
  }
  return Origin{spec.path, 0};
}

// ---- results directory ----

bool isFinalStatus(const std::string& status) {
  return status == "ok" || status == "diverged" || status == "failed";
}

std::string cellDir(const std::string& results, const std::string& id) { return results + "/cells/" + id; }

nlohmann::json readJsonFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return nullptr;
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    return nullptr;
  }
}

CellState readCellState(const std::string& results, const Cell& cell) {
  CellState s;
  s.result = readJsonFile(cellDir(results, cell.id) + "/result.json");
  if (detail::isLocked(detail::lockPath(results, cell.id))) s.state = "running";
  else if (s.result.is_object()) s.state = s.result.value("status", std::string("ok"));
  else if (fs::exists(cellDir(results, cell.id))) s.state = "partial";
  else s.state = "pending";
  return s;
}

namespace {

// `rest` below `node`: a key may itself hold dots or '@' ("ud@0.9", "ami@k=5"), so every key that
// is `rest` or a prefix of it followed by '.' is tried (backtracking; result.json trees are small).
const nlohmann::json* findMetric(const nlohmann::json& node, const std::string& rest) {
  if (!node.is_object()) return nullptr;
  if (auto it = node.find(rest); it != node.end() && it->is_number()) return &*it;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string& key = it.key();
    if (rest.size() > key.size() + 1 && rest.compare(0, key.size(), key) == 0 && rest[key.size()] == '.')
      if (const nlohmann::json* found = findMetric(*it, rest.substr(key.size() + 1))) return found;
  }
  return nullptr;
}

}  // namespace

std::optional<double> metricOf(const nlohmann::json& result, const std::string& metric) {
  if (!result.is_object() || metric.empty()) return std::nullopt;
  const nlohmann::json* node = findMetric(result, metric);
  if (!node || !node->is_number()) return std::nullopt;
  return node->get<double>();
}

void writeFileAtomically(const std::string& path, const std::string& content) {
  const std::string temporary = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << content;
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + temporary + ": " + std::strerror(errno));
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0)
    throw std::runtime_error("cannot rename " + temporary + " to " + path + ": " + std::strerror(errno));
}

void writeSnapshot(const std::string& results, const GridSpec& spec, const std::vector<Cell>& cells) {
  fs::create_directories(results + "/cells");
  fs::create_directories(results + "/inputs");
  fs::create_directories(results + "/locks");
  writeFileAtomically(results + "/grid.toml", spec.text);
  nlohmann::ordered_json grid;
  grid["name"] = spec.name;
  grid["spec"] = fs::absolute(spec.path).string();
  grid["trials"] = spec.trials;
  grid["axes"] = nlohmann::ordered_json::array();
  for (const auto& a : spec.axes) {
    nlohmann::ordered_json axis{{"name", a.name}, {"values", nlohmann::ordered_json::array()}};
    for (const auto& v : a.values) axis["values"].push_back(v.name);
    grid["axes"].push_back(axis);
  }
  if (spec.select) grid["select"] = {{"axis", spec.select->axis}, {"metric", spec.select->metric}};
  nlohmann::ordered_json report{{"rows", spec.report.rows}, {"columns", spec.report.columns},
                                {"metric", spec.report.metric}, {"paper_source", spec.report.paperSource}};
  report["paper"] = nlohmann::ordered_json::object();
  for (const auto& [row, columns] : spec.report.paper)
    for (const auto& [column, value] : columns) report["paper"][row][column] = {value.mean, value.std};
  report["figures"] = nlohmann::ordered_json::array();
  for (const auto& figure : spec.report.figures) report["figures"].push_back(detail::figureToJson(figure));
  grid["report"] = report;
  writeFileAtomically(results + "/grid.json", grid.dump(1) + "\n");

  nlohmann::ordered_json index = nlohmann::ordered_json::array();
  for (std::size_t i = 0; i < cells.size(); ++i) {
    const Cell& c = cells[i];
    nlohmann::ordered_json entry{{"index", i}, {"id", c.id}, {"phase", phaseName(c.phase)}, {"trial", c.trial}};
    entry["axes"] = nlohmann::ordered_json::object();
    for (const auto& [axis, value] : c.axes) entry["axes"][axis] = value;
    if (!c.group.empty() || c.phase != Phase::Plain) entry["group"] = c.group;
    if (c.phase == Phase::Search) entry["select_value"] = c.selectValue;
    index.push_back(entry);
  }
  writeFileAtomically(results + "/cells.json", index.dump(1) + "\n");
}


}  // namespace repshape::jobs
