// Grid spec parsing: every table and key is checked (unknown keys name the nearest valid one) and
// every error carries `spec:line: key: what`, before anything is created.
#include <repshape/jobs/Jobs.h>

#include "detail/Figures.h"
#include "detail/Text.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace repshape::jobs {

namespace {

namespace fs = std::filesystem;

struct Ctx {
  std::string file;
  Origin at(const toml::node& node) const { return {file, static_cast<int64_t>(node.source().begin.line)}; }
  Origin at(const toml::key& key) const { return {file, static_cast<int64_t>(key.source().begin.line)}; }
  [[noreturn]] void fail(const Origin& o, const std::string& key, const std::string& what) const {
    throw SpecError(o.str() + ": " + key + ": " + what);
  }
  [[noreturn]] void fail(const toml::node& n, const std::string& key, const std::string& what) const {
    fail(at(n), key, what);
  }
};

void checkKeys(const toml::table& table, const std::string& prefix, const std::vector<std::string>& allowed,
               const Ctx& ctx) {
  for (auto&& [key, node] : table) {
    const std::string name(key.str());
    if (std::find(allowed.begin(), allowed.end(), name) != allowed.end()) continue;
    const std::string hint = detail::nearest(name, allowed);
    ctx.fail(ctx.at(key), prefix.empty() ? name : prefix + "." + name,
             "unknown key" + (hint.empty() ? std::string() : " (did you mean '" + hint + "'?)"));
  }
}

const toml::table* tableAt(const toml::table& parent, const char* key, const std::string& path, const Ctx& ctx) {
  const toml::node* node = parent.get(key);
  if (!node) return nullptr;
  if (!node->is_table()) ctx.fail(*node, path, "expected a table");
  return node->as_table();
}

std::string stringAt(const toml::table& t, const char* key, const std::string& path, const Ctx& ctx,
                     const std::string& fallback = "") {
  const toml::node* node = t.get(key);
  if (!node) return fallback;
  if (!node->is_string()) ctx.fail(*node, path, "expected a string");
  const std::string value = *node->value<std::string>();
  if (value.empty()) ctx.fail(*node, path, "must not be empty");
  return value;
}

int64_t intAt(const toml::table& t, const char* key, const std::string& path, const Ctx& ctx, int64_t fallback,
              int64_t lo) {
  const toml::node* node = t.get(key);
  if (!node) return fallback;
  if (!node->is_integer()) ctx.fail(*node, path, "expected an integer");
  const int64_t v = *node->value<int64_t>();
  if (v < lo) ctx.fail(*node, path, "expected an integer >= " + std::to_string(lo) + ", got " + std::to_string(v));
  return v;
}

// `set = { "model.hidden" = [8], regularizer.0.name = "cr" }`: quoted dotted keys and nested
// (dotted, unquoted) keys both become `--set` paths.
void flattenSet(const toml::table& table, const std::string& prefix, const Ctx& ctx, std::vector<Override>& out) {
  for (auto&& [key, node] : table) {
    const std::string path = prefix.empty() ? std::string(key.str()) : prefix + "." + std::string(key.str());
    if (node.is_table()) {
      flattenSet(*node.as_table(), path, ctx, out);
      continue;
    }
    Override o;
    o.key = path;
    o.holder.insert_or_assign("v", node);
    o.origin = ctx.at(node);
    if (o.origin.line == 0) o.origin = ctx.at(key);
    out.push_back(std::move(o));
  }
}

std::vector<Override> setAt(const toml::table& t, const char* key, const std::string& path, const Ctx& ctx) {
  std::vector<Override> out;
  if (const toml::table* set = tableAt(t, key, path, ctx)) flattenSet(*set, "", ctx, out);
  return out;
}

Axis parseAxis(const toml::table& t, std::size_t index, const Ctx& ctx) {
  const std::string prefix = "axis[" + std::to_string(index) + "]";
  checkKeys(t, prefix, {"name", "key", "default", "values"}, ctx);
  Axis axis;
  axis.origin = ctx.at(t);
  axis.name = stringAt(t, "name", prefix + ".name", ctx);
  if (axis.name.empty()) ctx.fail(t, prefix + ".name", "missing: every [[axis]] needs a name");
  if (axis.name.find_first_of(".= ") != std::string::npos || axis.name == "trial" || axis.name == "phase")
    ctx.fail(*t.get("name"), prefix + ".name", "'" + axis.name + "' is reserved or has '.', '=' or ' '");
  const std::string where = "axis '" + axis.name + "'";
  axis.key = stringAt(t, "key", where + ".key", ctx);
  const toml::node* values = t.get("values");
  if (!values) ctx.fail(t, where + ".values", "missing");
  if (!values->is_array()) ctx.fail(*values, where + ".values", "expected an array");
  if (values->as_array()->empty()) ctx.fail(*values, where + ".values", "empty axis: give at least one value");
  for (const auto& item : *values->as_array()) {
    AxisValue v;
    v.origin = ctx.at(item);
    if (!axis.key.empty()) {
      // Keyed axis: each value is a config value for `key`; its id part is `name=value`.
      if (item.is_table() || item.is_array())
        ctx.fail(item, where + ".values", "a keyed axis takes plain values (key = \"" + axis.key + "\")");
      Override o;
      o.key = axis.key;
      o.holder.insert_or_assign("v", item);
      o.origin = v.origin;
      v.name = o.valueText();
      v.label = axis.name + "=" + v.name;
      v.set.push_back(std::move(o));
    } else {
      if (!item.is_table())
        ctx.fail(item, where + ".values", "expected { name = \"…\", set = { … } } (or give the axis a key)");
      const toml::table& vt = *item.as_table();
      checkKeys(vt, where + ".values", {"name", "set", "skip"}, ctx);
      v.name = stringAt(vt, "name", where + ".values.name", ctx);
      if (v.name.empty()) ctx.fail(item, where + ".values.name", "missing: every value needs a name");
      if (v.name.find_first_of(". ") != std::string::npos)
        ctx.fail(*vt.get("name"), where + ".values.name", "'" + v.name + "' has '.' or ' ' (ids join names with '.')");
      v.label = v.name;
      v.set = setAt(vt, "set", where + "." + v.name + ".set", ctx);
      if (const toml::node* skip = vt.get("skip")) {
        if (!skip->is_array()) ctx.fail(*skip, where + "." + v.name + ".skip", "expected an array of axis names");
        for (const auto& s : *skip->as_array()) {
          if (!s.is_string()) ctx.fail(s, where + "." + v.name + ".skip", "expected axis names");
          v.skip.push_back(*s.value<std::string>());
        }
      }
    }
    for (const auto& other : axis.values)
      if (other.name == v.name) ctx.fail(v.origin, where, "duplicate value '" + v.name + "'");
    axis.values.push_back(std::move(v));
  }
  axis.defaultValue = stringAt(t, "default", where + ".default", ctx);
  if (!axis.defaultValue.empty() &&
      std::none_of(axis.values.begin(), axis.values.end(), [&](const AxisValue& v) { return v.name == axis.defaultValue; }))
    ctx.fail(*t.get("default"), where + ".default", "'" + axis.defaultValue + "' is not one of its values");
  return axis;
}

void parseReport(const toml::table& t, GridSpec& spec, const Ctx& ctx) {
  checkKeys(t, "report", {"rows", "columns", "metric", "paper_source", "paper", "figure"}, ctx);
  spec.report.rows = stringAt(t, "rows", "report.rows", ctx);
  spec.report.columns = stringAt(t, "columns", "report.columns", ctx);
  spec.report.metric = stringAt(t, "metric", "report.metric", ctx, spec.report.metric);
  spec.report.paperSource = stringAt(t, "paper_source", "report.paper_source", ctx);
  for (const char* key : {"rows", "columns"}) {
    const std::string name = key == std::string("rows") ? spec.report.rows : spec.report.columns;
    if (name.empty()) continue;
    if (std::none_of(spec.axes.begin(), spec.axes.end(), [&](const Axis& a) { return a.name == name; }))
      ctx.fail(*t.get(key), std::string("report.") + key, "no axis named '" + name + "'");
  }
  if (const toml::node* figures = t.get("figure")) spec.report.figures = detail::parseFigures(*figures, spec.axes, ctx.file);
  const toml::table* paper = tableAt(t, "paper", "report.paper", ctx);
  if (!paper) return;
  for (auto&& [row, rowNode] : *paper) {
    const std::string rowPath = "report.paper." + std::string(row.str());
    if (!rowNode.is_table()) ctx.fail(rowNode, rowPath, "expected { column = [mean, std], … }");
    for (auto&& [column, value] : *rowNode.as_table()) {
      const std::string path = rowPath + "." + std::string(column.str());
      const toml::array* pair = value.as_array();
      if (!pair || pair->size() != 2 || !pair->get(0)->is_number() || !pair->get(1)->is_number())
        ctx.fail(value, path, "expected [mean, std]");
      spec.report.paper[std::string(row.str())][std::string(column.str())] =
          PaperValue{*pair->get(0)->value<double>(), *pair->get(1)->value<double>()};
    }
  }
}

}  // namespace

GridSpec loadGridSpec(const std::string& path) {
  Ctx ctx{path};
  std::ifstream in(path, std::ios::binary);
  if (!in) throw SpecError(path + ": cannot open grid spec");
  std::stringstream buffer;
  buffer << in.rdbuf();
  GridSpec spec;
  spec.path = path;
  spec.text = buffer.str();
  toml::table root;
  try {
    root = toml::parse(spec.text, path);
  } catch (const toml::parse_error& e) {
    throw SpecError(path + ":" + std::to_string(e.source().begin.line) + ": " + std::string(e.description()));
  }
  checkKeys(root, "", {"grid", "base", "axis", "select", "report"}, ctx);
  const toml::table* grid = tableAt(root, "grid", "grid", ctx);
  if (!grid) throw SpecError(path + ": grid: missing [grid] table (name, base, trials)");
  checkKeys(*grid, "grid", {"name", "base", "trials", "seed", "set"}, ctx);
  spec.name = stringAt(*grid, "name", "grid.name", ctx, fs::path(path).stem().string());
  spec.trials = intAt(*grid, "trials", "grid.trials", ctx, 1, 1);
  spec.trialsOrigin = grid->get("trials") ? ctx.at(*grid->get("trials")) : ctx.at(*grid);
  spec.seed = intAt(*grid, "seed", "grid.seed", ctx, 1, 0);
  spec.set = setAt(*grid, "set", "grid.set", ctx);

  const toml::node* baseFile = grid->get("base");
  const toml::table* inlineBase = tableAt(root, "base", "base", ctx);
  if (baseFile && inlineBase) ctx.fail(*baseFile, "grid.base", "give a base file or an inline [base], not both");
  if (baseFile) {
    if (!baseFile->is_string()) ctx.fail(*baseFile, "grid.base", "expected a file name relative to the spec");
    const fs::path file = fs::path(path).parent_path() / *baseFile->value<std::string>();
    spec.basePath = file.lexically_normal().string();
    if (!fs::is_regular_file(file)) ctx.fail(*baseFile, "grid.base", "no such file " + spec.basePath);
    try {
      spec.base = toml::parse_file(spec.basePath);
    } catch (const toml::parse_error& e) {
      throw SpecError(spec.basePath + ":" + std::to_string(e.source().begin.line) + ": " +
                      std::string(e.description()));
    }
  } else if (inlineBase) {
    spec.base = *inlineBase;
  } else {
    ctx.fail(*grid, "grid.base", "missing: name a training config file or give inline [base.*] sections");
  }

  if (const toml::node* axes = root.get("axis")) {
    if (!axes->is_array_of_tables()) ctx.fail(*axes, "axis", "expected [[axis]] tables");
    std::size_t index = 0;
    for (const auto& entry : *axes->as_array()) {
      Axis axis = parseAxis(*entry.as_table(), index++, ctx);
      for (const auto& other : spec.axes)
        if (other.name == axis.name) ctx.fail(axis.origin, "axis", "duplicate axis name '" + axis.name + "'");
      spec.axes.push_back(std::move(axis));
    }
  }
  for (const auto& axis : spec.axes)
    for (const auto& value : axis.values)
      for (const auto& skipped : value.skip)
        if (skipped == axis.name ||
            std::none_of(spec.axes.begin(), spec.axes.end(), [&](const Axis& a) { return a.name == skipped; }))
          ctx.fail(value.origin, "axis '" + axis.name + "'." + value.name + ".skip", "no other axis named '" + skipped + "'");

  if (const toml::table* select = tableAt(root, "select", "select", ctx)) {
    checkKeys(*select, "select", {"axis", "metric", "trials", "search", "final"}, ctx);
    Selection s;
    s.origin = ctx.at(*select);
    s.axis = stringAt(*select, "axis", "select.axis", ctx);
    if (s.axis.empty()) ctx.fail(*select, "select.axis", "missing: the axis searched on validation");
    if (std::none_of(spec.axes.begin(), spec.axes.end(), [&](const Axis& a) { return a.name == s.axis; }))
      ctx.fail(*select->get("axis"), "select.axis", "no axis named '" + s.axis + "'");
    s.metric = stringAt(*select, "metric", "select.metric", ctx, s.metric);
    s.trials = intAt(*select, "trials", "select.trials", ctx, 1, 1);
    s.search = setAt(*select, "search", "select.search", ctx);
    s.final = setAt(*select, "final", "select.final", ctx);
    if (!select->get("final")) {
      Override o = parseOverride("data.validation_size=0", s.origin);
      s.final.push_back(std::move(o));
    }
    spec.select = std::move(s);
  }
  if (const toml::table* report = tableAt(root, "report", "report", ctx)) parseReport(*report, spec, ctx);
  return spec;
}

}  // namespace repshape::jobs
