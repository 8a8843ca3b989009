// `[[report.figure]]` parsing and validation (every error `spec:line: report.figure[i].key: what`,
// before anything is created), and the figure's JSON form in grid.json (what `repshape report`
// reads back; see FigureSpec in Jobs.h for the kinds).
#include "detail/Figures.h"
#include "detail/Text.h"

#include <algorithm>
#include <set>

namespace repshape::jobs::detail {

namespace {

const std::vector<std::string> kKinds = {"line", "scatter", "curve", "table", "heatmap", "spectrum", "histogram"};

struct FigureCtx {
  std::string file, prefix;
  [[noreturn]] void fail(const toml::node& n, const std::string& key, const std::string& what) const {
    throw SpecError(Origin{file, static_cast<int64_t>(n.source().begin.line)}.str() + ": " + prefix + "." + key +
                    ": " + what);
  }
};

// A string or an array of strings (none empty).
std::vector<std::string> strings(const toml::node& n, const std::string& key, const FigureCtx& ctx) {
  std::vector<std::string> out;
  if (n.is_string()) {
    out.push_back(*n.value<std::string>());
  } else if (const toml::array* a = n.as_array()) {
    for (const auto& item : *a) {
      if (!item.is_string()) ctx.fail(item, key, "expected strings");
      out.push_back(*item.value<std::string>());
    }
  } else {
    ctx.fail(n, key, "expected a string or an array of strings");
  }
  if (out.empty()) ctx.fail(n, key, "must not be empty");
  for (const auto& s : out)
    if (s.empty()) ctx.fail(n, key, "empty name");
  return out;
}

std::vector<double> numbers(const toml::node& n, const std::string& key, const FigureCtx& ctx) {
  const toml::array* a = n.as_array();
  if (!a) ctx.fail(n, key, "expected an array of numbers");
  std::vector<double> out;
  for (const auto& item : *a) {
    if (!item.is_number()) ctx.fail(item, key, "expected numbers");
    out.push_back(*item.value<double>());
  }
  return out;
}

const Axis* axisNamed(const std::vector<Axis>& axes, const std::string& name) {
  for (const auto& a : axes)
    if (a.name == name) return &a;
  return nullptr;
}

std::string axisNames(const std::vector<Axis>& axes) {
  std::string list;
  for (const auto& a : axes) list += (list.empty() ? "" : ", ") + a.name;
  return list;
}

void requireAxis(const toml::node& n, const std::string& key, const std::string& name, const std::vector<Axis>& axes,
                 const FigureCtx& ctx) {
  if (!axisNamed(axes, name)) ctx.fail(n, key, "no axis named '" + name + "' (axes: " + axisNames(axes) + ")");
}

void requireValue(const toml::node& n, const std::string& key, const Axis& axis, const std::string& value,
                  const FigureCtx& ctx) {
  if (std::none_of(axis.values.begin(), axis.values.end(), [&](const AxisValue& v) { return v.name == value; }))
    ctx.fail(n, key, "axis '" + axis.name + "' has no value '" + value + "'");
}

FigureSpec parseFigure(const toml::table& t, std::size_t index, const std::vector<Axis>& axes, const std::string& file) {
  FigureCtx ctx{file, "report.figure[" + std::to_string(index) + "]"};
  FigureSpec f;
  f.origin = {file, static_cast<int64_t>(t.source().begin.line)};
  const toml::node* kind = t.get("kind");
  if (!kind || !kind->is_string()) ctx.fail(kind ? *kind : t, "kind", "missing: one of line, scatter, curve, table, heatmap, spectrum, histogram");
  f.kind = *kind->value<std::string>();
  if (std::find(kKinds.begin(), kKinds.end(), f.kind) == kKinds.end()) {
    const std::string hint = nearest(f.kind, kKinds);
    ctx.fail(*kind, "kind", "unknown kind '" + f.kind + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                                "; expected line, scatter, curve, table, heatmap, spectrum or histogram");
  }
  std::vector<std::string> allowed = {"name", "kind", "title", "where"};
  if (f.kind == "line") allowed.insert(allowed.end(), {"x", "y", "series"});
  if (f.kind == "scatter") allowed.insert(allowed.end(), {"x", "y", "label", "paper_r"});
  if (f.kind == "curve") allowed.insert(allowed.end(), {"y", "series"});
  if (f.kind == "table") allowed.insert(allowed.end(), {"rows", "metrics", "paper"});
  if (f.kind == "heatmap" || f.kind == "spectrum" || f.kind == "histogram") allowed.insert(allowed.end(), {"layers", "series"});
  for (auto&& [key, node] : t) {
    const std::string k(key.str());
    if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
    const std::string hint = nearest(k, allowed);
    ctx.fail(node, k, "unknown key for kind '" + f.kind + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
  }
  auto required = [&](const char* key) -> const toml::node& {
    const toml::node* n = t.get(key);
    if (!n) ctx.fail(t, key, "missing (kind '" + f.kind + "' needs it)");
    return *n;
  };
  auto single = [&](const char* key) {
    const toml::node& n = required(key);
    const auto v = strings(n, key, ctx);
    if (v.size() != 1) ctx.fail(n, key, "expected one name, got " + std::to_string(v.size()));
    return v[0];
  };
  auto optionalAxis = [&](const char* key) -> std::string {
    const toml::node* n = t.get(key);
    if (!n) return "";
    const std::string name = single(key);
    requireAxis(*n, key, name, axes, ctx);
    return name;
  };

  const toml::node* name = t.get("name");
  if (!name || !name->is_string()) ctx.fail(name ? *name : t, "name", "missing: a file name stem such as \"error-vs-size\"");
  f.name = *name->value<std::string>();
  if (f.name.empty() || f.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
                            std::string::npos)
    ctx.fail(*name, "name", "'" + f.name + "': use letters, digits, '-' and '_' (it names the figure's file)");
  if (const toml::node* title = t.get("title")) {
    if (!title->is_string()) ctx.fail(*title, "title", "expected a string");
    f.title = *title->value<std::string>();
  }
  if (f.title.empty()) f.title = f.name;
  if (const toml::node* where = t.get("where")) {
    if (!where->is_table()) ctx.fail(*where, "where", "expected { axis = value or [values], … }");
    for (auto&& [key, node] : *where->as_table()) {
      const std::string axisName(key.str());
      const Axis* axis = axisNamed(axes, axisName);
      if (!axis) ctx.fail(node, "where." + axisName, "no axis named '" + axisName + "' (axes: " + axisNames(axes) + ")");
      for (const auto& v : strings(node, "where." + axisName, ctx)) {
        requireValue(node, "where." + axisName, *axis, v, ctx);
        f.where[axisName].push_back(v);
      }
    }
  }

  if (f.kind == "line") {
    f.x = {single("x")};
    requireAxis(*t.get("x"), "x", f.x[0], axes, ctx);
    f.y = strings(required("y"), "y", ctx);
    f.series = optionalAxis("series");
    if (f.series == f.x[0]) ctx.fail(*t.get("series"), "series", "the series axis is the x axis '" + f.x[0] + "'");
  } else if (f.kind == "scatter") {
    f.x = strings(required("x"), "x", ctx);
    f.y = {single("y")};
    f.label = optionalAxis("label");
    if (const toml::node* r = t.get("paper_r")) {
      f.paperR = numbers(*r, "paper_r", ctx);
      if (f.paperR.size() != f.x.size())
        ctx.fail(*r, "paper_r", "expected one r per x metric (" + std::to_string(f.x.size()) + "), got " +
                                    std::to_string(f.paperR.size()));
    }
  } else if (f.kind == "curve") {
    f.y = strings(required("y"), "y", ctx);
    for (const auto& y : f.y)
      if (std::count(y.begin(), y.end(), '*') != 1)
        ctx.fail(*t.get("y"), "y", "'" + y + "': a curve's metric needs exactly one '*' (e.g. layers.fc1.ami@k=*)");
    f.series = optionalAxis("series");
  } else if (f.kind == "table") {
    f.rows = single("rows");
    requireAxis(*t.get("rows"), "rows", f.rows, axes, ctx);
    f.metrics = strings(required("metrics"), "metrics", ctx);
    if (const toml::node* paper = t.get("paper")) {
      if (!paper->is_table()) ctx.fail(*paper, "paper", "expected { row = [one number per metric], … }");
      for (auto&& [key, node] : *paper->as_table()) {
        const std::string row(key.str());
        requireValue(node, "paper." + row, *axisNamed(axes, f.rows), row, ctx);
        auto values = numbers(node, "paper." + row, ctx);
        if (values.size() != f.metrics.size())
          ctx.fail(node, "paper." + row, "expected " + std::to_string(f.metrics.size()) + " numbers (one per metric), got " +
                                             std::to_string(values.size()));
        f.paper[row] = std::move(values);
      }
    }
  } else {
    f.layers = strings(required("layers"), "layers", ctx);
    f.series = optionalAxis("series");
  }
  return f;
}

}  // namespace

std::vector<FigureSpec> parseFigures(const toml::node& node, const std::vector<Axis>& axes, const std::string& file) {
  FigureCtx ctx{file, "report"};
  if (!node.is_array_of_tables()) ctx.fail(node, "figure", "expected [[report.figure]] tables");
  std::vector<FigureSpec> figures;
  std::set<std::string> names;
  std::size_t index = 0;
  for (const auto& entry : *node.as_array()) {
    FigureSpec f = parseFigure(*entry.as_table(), index++, axes, file);
    if (!names.insert(f.name).second)
      throw SpecError(f.origin.str() + ": report.figure[" + std::to_string(index - 1) + "].name: duplicate figure name '" +
                      f.name + "'");
    figures.push_back(std::move(f));
  }
  return figures;
}

nlohmann::ordered_json figureToJson(const FigureSpec& f) {
  nlohmann::ordered_json j{{"name", f.name}, {"kind", f.kind}, {"title", f.title}, {"x", f.x}, {"y", f.y},
                           {"series", f.series}, {"label", f.label}, {"rows", f.rows}, {"where", f.where},
                           {"metrics", f.metrics}, {"layers", f.layers}, {"paper", f.paper}, {"paper_r", f.paperR}};
  return j;
}

FigureSpec figureFromJson(const nlohmann::json& j) {
  FigureSpec f;
  f.name = j.value("name", std::string());
  f.kind = j.value("kind", std::string());
  f.title = j.value("title", f.name);
  f.x = j.value("x", std::vector<std::string>());
  f.y = j.value("y", std::vector<std::string>());
  f.series = j.value("series", std::string());
  f.label = j.value("label", std::string());
  f.rows = j.value("rows", std::string());
  f.where = j.value("where", std::map<std::string, std::vector<std::string>>());
  f.metrics = j.value("metrics", std::vector<std::string>());
  f.layers = j.value("layers", std::vector<std::string>());
  f.paper = j.value("paper", std::map<std::string, std::vector<double>>());
  f.paperR = j.value("paper_r", std::vector<double>());
  return f;
}

}  // namespace repshape::jobs::detail
