// The data behind each `[[report.figure]]` (kinds in Jobs.h, FigureSpec): computed from the
// cells' result.json and covariance-<layer>.json files only, then drawn by Svg.cpp. Cells are the
// phase-2 (or plain) cells that finished ok and match the figure's `where`; values of one point
// are the mean and sample std (n−1) over its cells.
#include "detail/Figures.h"
#include "detail/Report.h"
#include "detail/Text.h"

#include <cmath>
#include <cstdlib>
#include <sstream>

namespace repshape::jobs::detail {

namespace {

using Axes = std::map<std::string, std::vector<std::string>>;  // axis → values in spec order

struct Stats {
  double mean = NAN, std = NAN;
  std::size_t n = 0;
};

Stats stats(const std::vector<double>& v) {
  Stats s;
  s.n = v.size();
  if (v.empty()) return s;
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  double squares = 0;
  for (double x : v) squares += (x - s.mean) * (x - s.mean);
  s.std = v.size() > 1 ? std::sqrt(squares / static_cast<double>(v.size() - 1)) : 0.0;
  return s;
}

std::string value(const CellRow& c, const std::string& axis) {
  return c.axes.is_object() && c.axes.contains(axis) ? c.axes[axis].get<std::string>() : std::string();
}

std::vector<const CellRow*> matching(const ReportData& d, const FigureSpec& f) {
  std::vector<const CellRow*> out;
  for (const auto& c : d.cells) {
    if (c.phase == "search" || c.status != "ok") continue;
    bool keep = true;
    for (const auto& [axis, values] : f.where)
      keep = keep && std::find(values.begin(), values.end(), value(c, axis)) != values.end();
    if (keep) out.push_back(&c);
  }
  return out;
}

// The values of `axis` the figure shows: the spec's order, restricted by `where`; {""} for none.
std::vector<std::string> shown(const Axes& axes, const FigureSpec& f, const std::string& axis) {
  if (axis.empty()) return {""};
  std::vector<std::string> out;
  const auto it = axes.find(axis);
  if (it == axes.end()) return out;
  for (const auto& v : it->second) {
    const auto w = f.where.find(axis);
    if (w == f.where.end() || std::find(w->second.begin(), w->second.end(), v) != w->second.end()) out.push_back(v);
  }
  return out;
}

std::string cell(const Stats& s) {
  if (s.n == 0) return "–";
  std::ostringstream out;
  out.precision(4);
  out << s.mean;
  if (s.n > 1) out << " ± " << s.std;
  return out.str();
}

// The Markdown rule under a header of one label column and `columns` value columns.
std::string rule(std::size_t columns) {
  std::string out = "|---|";
  for (std::size_t i = 0; i < columns; ++i) out += "---|";
  return out + "\n";
}

std::string num(double v) {
  if (!std::isfinite(v)) return "–";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.4g", v);
  return buffer;
}

// Every numeric leaf of a result.json as (dotted path, value), for curve patterns.
void flatten(const nlohmann::json& node, const std::string& prefix, std::vector<std::pair<std::string, double>>& out) {
  if (node.is_number()) out.emplace_back(prefix, node.get<double>());
  if (!node.is_object()) return;
  for (auto it = node.begin(); it != node.end(); ++it) flatten(*it, prefix.empty() ? it.key() : prefix + "." + it.key(), out);
}

nlohmann::json covarianceFile(const std::string& results, const CellRow& c, const std::string& layer) {
  return readJsonFile(cellDir(results, c.id) + "/covariance-" + layer + ".json");
}

RenderedFigure lineFigure(const ReportData& d, const Axes& axes, const FigureSpec& f) {
  RenderedFigure out;
  const auto cells = matching(d, f);
  const auto xs = shown(axes, f, f.x[0]);
  const auto series = shown(axes, f, f.series);
  std::vector<PlotPanel> panels;
  std::ostringstream md;
  for (const auto& metric : f.y) {
    PlotPanel p{metric, f.x[0], metric, "", xs, {}};
    md << "\n" << metric << " (mean ± std over cells):\n\n| " << (f.series.empty() ? "" : f.series) << " |";
    for (const auto& x : xs) md << " " << x << " |";
    md << "\n" << rule(xs.size());
    for (const auto& s : series) {
      PlotSeries line{s, {}, {}, {}, {}, true};
      md << "| " << (s.empty() ? "all" : s) << " |";
      for (std::size_t i = 0; i < xs.size(); ++i) {
        std::vector<double> values;
        for (const CellRow* c : cells)
          if (value(*c, f.x[0]) == xs[i] && (f.series.empty() || value(*c, f.series) == s))
            if (const auto v = metricOf(c->result, metric); v && std::isfinite(*v)) values.push_back(*v);
        const Stats st = stats(values);
        md << " " << cell(st) << " |";
        if (st.n == 0) continue;
        line.x.push_back(static_cast<double>(i));
        line.y.push_back(st.mean);
        line.err.push_back(st.std);
      }
      md << "\n";
      if (line.x.empty()) p.note += (p.note.empty() ? "no data: " : ", ") + (s.empty() ? std::string("all") : s);
      p.series.push_back(std::move(line));
    }
    panels.push_back(std::move(p));
  }
  out.svg = svgPanels(f.title, panels);
  out.markdown = md.str();
  return out;
}

RenderedFigure scatterFigure(const ReportData& d, const Axes& axes, const FigureSpec& f) {
  RenderedFigure out;
  const auto cells = matching(d, f);
  std::vector<std::string> groups;
  if (f.label.empty()) {
    for (const CellRow* c : cells) groups.push_back(c->id);
  } else {
    groups = shown(axes, f, f.label);
  }
  std::vector<PlotPanel> panels;
  std::ostringstream md;
  md << "\n| " << (f.label.empty() ? "cell" : f.label) << " | " << f.y[0] << " |";
  for (const auto& x : f.x) md << " " << x << " |";
  md << "\n" << rule(f.x.size() + 1);
  std::vector<std::vector<double>> xMeans(f.x.size()), yMeans(f.x.size());
  std::vector<std::vector<std::string>> labels(f.x.size());
  for (const auto& g : groups) {
    std::vector<double> ys;
    std::vector<std::vector<double>> xv(f.x.size());
    for (const CellRow* c : cells) {
      if ((f.label.empty() ? c->id : value(*c, f.label)) != g) continue;
      const auto y = metricOf(c->result, f.y[0]);
      if (y && std::isfinite(*y)) ys.push_back(*y);
      for (std::size_t k = 0; k < f.x.size(); ++k)
        if (const auto x = metricOf(c->result, f.x[k]); x && std::isfinite(*x)) xv[k].push_back(*x);
    }
    const Stats sy = stats(ys);
    md << "| " << g << " | " << cell(sy) << " |";
    for (std::size_t k = 0; k < f.x.size(); ++k) {
      const Stats sx = stats(xv[k]);
      md << " " << cell(sx) << " |";
      if (sx.n == 0 || sy.n == 0) continue;
      xMeans[k].push_back(sx.mean);
      yMeans[k].push_back(sy.mean);
      labels[k].push_back(g);
    }
    md << "\n";
  }
  md << "\n";
  for (std::size_t k = 0; k < f.x.size(); ++k) {
    const double r = pearson(xMeans[k], yMeans[k]);
    std::string note = "Pearson r = " + num(r) + " over " + std::to_string(xMeans[k].size()) + " points";
    if (k < f.paperR.size()) note += " (paper " + num(f.paperR[k]) + ")";
    md << "- " << f.x[k] << " vs " << f.y[0] << ": " << note << "\n";
    PlotPanel p{f.x[k] + ": r = " + num(r), f.x[k], f.y[0], note, {}, {}};
    p.series.push_back(PlotSeries{"", xMeans[k], yMeans[k], {}, labels[k], false});
    panels.push_back(std::move(p));
  }
  out.svg = svgPanels(f.title, panels);
  out.markdown = md.str();
  return out;
}

RenderedFigure curveFigure(const ReportData& d, const Axes& axes, const FigureSpec& f) {
  RenderedFigure out;
  const auto cells = matching(d, f);
  std::vector<PlotPanel> panels;
  std::ostringstream md;
  for (const auto& pattern : f.y) {
    const std::string prefix = pattern.substr(0, pattern.find('*')), suffix = pattern.substr(pattern.find('*') + 1);
    PlotPanel p{pattern, "", pattern, "", {}, {}};
    p.xLabel = "the value of '*'";
    md << "\n" << pattern << ":\n\n";
    for (const auto& s : shown(axes, f, f.series)) {
      std::map<double, std::vector<double>> byX;
      for (const CellRow* c : cells) {
        if (!f.series.empty() && value(*c, f.series) != s) continue;
        std::vector<std::pair<std::string, double>> leaves;
        flatten(c->result, "", leaves);
        for (const auto& [key, v] : leaves) {
          if (key.size() <= prefix.size() + suffix.size() || key.compare(0, prefix.size(), prefix) != 0 ||
              key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0 || !std::isfinite(v))
            continue;
          const std::string middle = key.substr(prefix.size(), key.size() - prefix.size() - suffix.size());
          char* end = nullptr;
          const double x = std::strtod(middle.c_str(), &end);
          if (end && *end == '\0' && std::isfinite(x)) byX[x].push_back(v);
        }
      }
      PlotSeries line{s, {}, {}, {}, {}, true};
      md << "- " << (s.empty() ? "all" : s) << ":";
      for (const auto& [x, values] : byX) {
        const Stats st = stats(values);
        line.x.push_back(x), line.y.push_back(st.mean), line.err.push_back(st.std);
        md << " " << num(x) << " → " << cell(st) << ";";
      }
      md << (byX.empty() ? " no matching keys" : "") << "\n";
      p.series.push_back(std::move(line));
    }
    panels.push_back(std::move(p));
  }
  out.svg = svgPanels(f.title, panels);
  out.markdown = md.str();
  return out;
}

RenderedFigure tableFigure(const ReportData& d, const Axes& axes, const FigureSpec& f) {
  RenderedFigure out;
  const auto cells = matching(d, f);
  std::ostringstream md, html;
  md << "\n| " << f.rows << " |";
  html << "<table class='figure'><tr><th>" << xmlEscape(f.rows) << "</th>";
  for (const auto& m : f.metrics) md << " " << m << " |", html << "<th>" << xmlEscape(m) << "</th>";
  md << "\n" << rule(f.metrics.size());
  html << "</tr>\n";
  for (const auto& row : shown(axes, f, f.rows)) {
    md << "| " << row << " |";
    html << "<tr><td>" << xmlEscape(row) << "</td>";
    const auto paper = f.paper.find(row);
    for (std::size_t k = 0; k < f.metrics.size(); ++k) {
      std::vector<double> values;
      for (const CellRow* c : cells)
        if (value(*c, f.rows) == row)
          if (const auto v = metricOf(c->result, f.metrics[k]); v && std::isfinite(*v)) values.push_back(*v);
      const std::string text = cell(stats(values));
      const std::string paperText = paper == f.paper.end() ? "" : " (paper " + num(paper->second[k]) + ")";
      md << " " << text << paperText << " |";
      html << "<td data-metric='" << xmlEscape(f.metrics[k]) << "'>" << xmlEscape(text)
           << (paperText.empty() ? "" : "<br><span class='paper'>" + xmlEscape(paperText) + "</span>") << "</td>";
    }
    md << "\n";
    html << "</tr>\n";
  }
  html << "</table>\n";
  out.markdown = md.str();
  out.html = html.str();
  return out;
}

RenderedFigure matrixFigure(const ReportData& d, const Axes& axes, const FigureSpec& f, const std::string& results) {
  RenderedFigure out;
  const auto cells = matching(d, f);
  std::vector<HeatmapPanel> heatmaps;
  std::vector<PlotPanel> panels;
  std::ostringstream md;
  for (const auto& layer : f.layers) {
    PlotPanel p{layer, f.kind == "spectrum" ? "eigenvalue index" : "|ρ| (bin centre)",
                f.kind == "spectrum" ? "eigenvalue of the covariance" : "fraction of unit pairs", "", {}, {}};
    for (const auto& s : shown(axes, f, f.series)) {
      const std::string name = layer + (s.empty() ? "" : " — " + s);
      std::vector<nlohmann::json> files;
      for (const CellRow* c : cells)
        if (f.series.empty() || value(*c, f.series) == s)
          if (auto file = covarianceFile(results, *c, layer); file.is_object() && file.contains("covariance"))
            files.push_back(std::move(file));
      if (files.empty()) {
        md << "- " << name << ": no covariance-" << layer << ".json (eval.save_covariance = true)\n";
        p.note += (p.note.empty() ? "missing: " : ", ") + (s.empty() ? layer : s);
        continue;
      }
      if (f.kind == "heatmap") {
        heatmaps.push_back({name, files[0]["covariance"].get<std::vector<std::vector<double>>>()});
        md << "- " << name << ": " << heatmaps.back().matrix.size() << " units (first of " << files.size() << " cells)\n";
      } else if (f.kind == "spectrum") {
        std::vector<std::vector<double>> spectra;
        for (const auto& file : files) spectra.push_back(file.value("eigenvalues", std::vector<double>()));
        PlotSeries line{s, {}, {}, {}, {}, true};
        for (std::size_t i = 0; i < spectra[0].size(); ++i) {
          std::vector<double> values;
          for (const auto& e : spectra)
            if (i < e.size()) values.push_back(e[i]);
          const Stats st = stats(values);
          line.x.push_back(static_cast<double>(i + 1)), line.y.push_back(st.mean), line.err.push_back(st.std);
        }
        md << "- " << name << ":";
        for (double v : line.y) md << " " << num(v);
        md << "\n";
        p.series.push_back(std::move(line));
      } else {
        constexpr int kBins = 20;
        std::vector<double> counts(kBins, 0.0);
        double sum = 0;
        std::size_t pairs = 0;
        for (const auto& file : files) {
          const auto c = file["covariance"].get<std::vector<std::vector<double>>>();
          for (std::size_t i = 0; i < c.size(); ++i)
            for (std::size_t j = i + 1; j < c.size(); ++j) {
              if (!(c[i][i] > 1e-12 && c[j][j] > 1e-12)) continue;  // a dead unit has no correlation
              const double rho = std::min(1.0, std::fabs(c[i][j]) / std::sqrt(c[i][i] * c[j][j]));
              counts[std::min(kBins - 1, static_cast<int>(rho * kBins))] += 1;
              sum += rho, ++pairs;
            }
        }
        PlotSeries line{s + " (mean " + num(pairs ? sum / static_cast<double>(pairs) : NAN) + ")", {}, {}, {}, {}, true};
        for (int b = 0; b < kBins; ++b) {
          line.x.push_back((b + 0.5) / kBins);
          line.y.push_back(pairs ? counts[b] / static_cast<double>(pairs) : NAN);
        }
        md << "- " << name << ": mean |ρ| = " << num(pairs ? sum / static_cast<double>(pairs) : NAN) << " over " << pairs
           << " unit pairs of " << files.size() << " cells\n";
        p.series.push_back(std::move(line));
      }
    }
    if (f.kind != "heatmap") panels.push_back(std::move(p));
  }
  out.svg = f.kind == "heatmap" ? svgHeatmaps(f.title, heatmaps) : svgPanels(f.title, panels);
  out.markdown = md.str();
  return out;
}

}  // namespace

}  // namespace repshape::jobs::detail

namespace repshape::jobs {

std::vector<RenderedFigure> renderFigures(const std::string& results) {
  using namespace detail;
  const ReportData d = loadReport(results);
  const nlohmann::json grid = readJsonFile(results + "/grid.json");
  Axes axes;
  for (const auto& a : grid["axes"]) axes[a["name"].get<std::string>()] = a["values"].get<std::vector<std::string>>();
  std::vector<RenderedFigure> out;
  const nlohmann::json report = grid.value("report", nlohmann::json::object());
  for (const auto& j : report.value("figures", nlohmann::json::array())) {
    const FigureSpec f = figureFromJson(j);
    RenderedFigure r;
    if (f.kind == "line") r = lineFigure(d, axes, f);
    else if (f.kind == "scatter") r = scatterFigure(d, axes, f);
    else if (f.kind == "curve") r = curveFigure(d, axes, f);
    else if (f.kind == "table") r = tableFigure(d, axes, f);
    else r = matrixFigure(d, axes, f, results);
    r.name = f.name, r.kind = f.kind, r.title = f.title;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace repshape::jobs
