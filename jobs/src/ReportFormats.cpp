// Report renderers: Markdown, tidy CSV (one row per cell), LaTeX, and one self-contained HTML page
// with the tables and an inline SVG plot per column (no external tool or asset).
#include "detail/Figures.h"
#include "detail/Report.h"
#include "detail/Text.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

namespace repshape::jobs::detail {

namespace {

constexpr int kDigits = 2;

std::string legend(const ReportData& d) {
  std::string s = d.metric + ": mean ± std (n−1) over trials" +
                  (d.selectAxis.empty() ? std::string() : " of the phase-2 cells (" + d.selectAxis + " chosen on validation)") +
                  "; best per column in bold, † = range overlaps the best (Choi's green)";
  if (!d.paperSource.empty()) s += "; paper: " + d.paperSource;
  return s;
}

std::string csvField(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string texEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '_' || c == '%' || c == '&' || c == '#') out += std::string("\\") + c;
    else out += c;
  }
  return out;
}

std::string numberOrEmpty(const nlohmann::json& result, const std::string& metric) {
  const auto v = metricOf(result, metric);
  if (!v) return "";
  std::ostringstream out;
  out.precision(12);
  out << *v;
  return out.str();
}

}  // namespace

std::string renderMarkdown(const ReportData& d) {
  std::ostringstream out;
  // "| | col1 | col2 |" and its rule: the header of both tables.
  auto header = [&] {
    out << "| |";
    for (const auto& c : d.columns) out << " " << c << " |";
    out << "\n|---|";
    for (std::size_t i = 0; i < d.columns.size(); ++i) out << "---|";
    out << "\n";
  };
  out << "## " << d.name << ": " << d.metric << "\n\n";
  header();
  for (const auto& row : d.rows) {
    out << "| " << row << " |";
    for (const auto& column : d.columns) {
      const Entry* e = d.at(row, column);
      if (!e) {
        out << " |";
        continue;
      }
      std::string text = entryText(*e, kDigits);
      if (e->best) text = "**" + text + "**";
      if (e->overlaps) text += " †";
      if (e->hasPaper) text += " (paper " + fixed(e->paperMean, 2) + " ± " + fixed(e->paperStd, 2) + ")";
      const std::string note = countsNote(*e);
      if (!note.empty()) text += " [" + note + "]";
      out << " " << text << " |";
    }
    out << "\n";
  }
  out << "\n" << legend(d) << ".\n";
  if (!d.selectAxis.empty()) {
    out << "\nSelected " << d.selectAxis << ":\n\n";
    header();
    for (const auto& row : d.rows) {
      out << "| " << row << " |";
      for (const auto& column : d.columns) {
        const Entry* e = d.at(row, column);
        std::string s;
        if (e)
          for (const auto& v : e->selected) s += (s.empty() ? "" : ", ") + v;
        out << " " << (e && e->selected.empty() ? "–" : s) << " |";
      }
      out << "\n";
    }
  }
  std::map<std::string, int> states;
  for (const auto& c : d.cells) ++states[c.status];
  out << "\nCells: " << d.cells.size();
  for (const auto& [state, n] : states) out << ", " << state << " " << n;
  out << "\n";
  return out.str();
}

std::string renderCsv(const ReportData& d) {
  std::vector<std::string> axes;
  for (const auto& c : d.cells)
    for (auto it = c.axes.begin(); it != c.axes.end(); ++it)
      if (std::find(axes.begin(), axes.end(), it.key()) == axes.end()) axes.push_back(it.key());
  std::ostringstream out;
  out << "cell,phase,trial";
  for (const auto& a : axes) out << "," << csvField(a);
  if (!d.selectAxis.empty()) out << ",selected_" << csvField(d.selectAxis);
  out << ",status,test_error,validation_error,train_error,test_loss,steps,wall_s,reason\n";
  for (const auto& c : d.cells) {
    out << csvField(c.id) << "," << c.phase << "," << c.trial;
    for (const auto& a : axes) out << "," << (c.axes.contains(a) ? csvField(c.axes[a].get<std::string>()) : "");
    if (!d.selectAxis.empty()) out << "," << csvField(c.selected);
    const std::string reason = c.result.is_object() ? c.result.value("reason", std::string()) : std::string();
    out << "," << c.status << "," << numberOrEmpty(c.result, "test.error") << ","
        << numberOrEmpty(c.result, "validation.error") << "," << numberOrEmpty(c.result, "train.error") << ","
        << numberOrEmpty(c.result, "test.loss") << "," << numberOrEmpty(c.result, "steps") << ","
        << numberOrEmpty(c.result, "wall_s") << "," << csvField(reason) << "\n";
  }
  return out.str();
}

std::string renderTex(const ReportData& d) {
  std::ostringstream out;
  out << "% " << texEscape(legend(d)) << "\n\\begin{tabular}{l" << std::string(d.columns.size(), 'c') << "}\n\\hline\n";
  for (const auto& c : d.columns) out << " & " << texEscape(c);
  out << " \\\\\n\\hline\n";
  for (const auto& row : d.rows) {
    out << texEscape(row);
    for (const auto& column : d.columns) {
      const Entry* e = d.at(row, column);
      out << " & ";
      if (!e || e->values.empty()) {
        out << "--";
        continue;
      }
      std::string text = "$" + fixed(e->mean, kDigits) + " \\pm " + fixed(e->std, kDigits) + "$";
      if (e->best) text = "\\textbf{" + text + "}";
      if (e->overlaps) text += "$^\\dagger$";
      if (e->hasPaper) text += " {\\small(" + fixed(e->paperMean, 2) + ")}";
      const std::string note = countsNote(*e);
      if (!note.empty()) text += " {\\scriptsize[" + note + "]}";
      out << text;
    }
    out << " \\\\\n";
  }
  out << "\\hline\n\\end{tabular}\n";
  return out.str();
}

namespace {

// One column as a dot plot: a row per regularizer, mean ± std as a bar, the paper's value as a ring.
std::string svgPlot(const ReportData& d, const std::string& column) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& row : d.rows) {
    const Entry* e = d.at(row, column);
    if (!e) continue;
    if (!e->values.empty()) lo = std::min(lo, e->mean - e->std), hi = std::max(hi, e->mean + e->std);
    if (e->hasPaper) lo = std::min(lo, e->paperMean - e->paperStd), hi = std::max(hi, e->paperMean + e->paperStd);
  }
  if (!std::isfinite(lo)) return "<p>no finished cells</p>";
  if (hi - lo < 1e-9) lo -= 1.0, hi += 1.0;
  const double pad = 0.05 * (hi - lo);
  lo -= pad, hi += pad;
  const int left = 140, width = 360, rowHeight = 22, top = 10;
  const int height = top + rowHeight * static_cast<int>(d.rows.size()) + 30;
  auto x = [&](double v) { return left + (v - lo) / (hi - lo) * width; };
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << left + width + 20 << "' height='" << height
      << "' role='img' aria-label='" << xmlEscape(d.metric + " " + column) << "'>";
  svg << "<rect x='0' y='0' width='100%' height='100%' fill='#fff'/>";
  for (std::size_t i = 0; i < d.rows.size(); ++i) {
    const double y = top + rowHeight * (i + 0.5);
    svg << "<text x='" << left - 8 << "' y='" << y + 4 << "' text-anchor='end' font-size='12'>"
        << xmlEscape(d.rows[i]) << "</text>";
    svg << "<line x1='" << left << "' x2='" << left + width << "' y1='" << y << "' y2='" << y << "' stroke='#eee'/>";
    const Entry* e = d.at(d.rows[i], column);
    if (!e) continue;
    if (e->hasPaper)
      svg << "<circle cx='" << x(e->paperMean) << "' cy='" << y << "' r='5' fill='none' stroke='#888'/>";
    if (e->values.empty()) continue;
    const char* colour = e->best ? "#c0392b" : e->overlaps ? "#27ae60" : "#2c3e50";
    svg << "<line x1='" << x(e->mean - e->std) << "' x2='" << x(e->mean + e->std) << "' y1='" << y << "' y2='" << y
        << "' stroke='" << colour << "' stroke-width='3'/>";
    svg << "<circle cx='" << x(e->mean) << "' cy='" << y << "' r='4' fill='" << colour << "'/>";
  }
  const int axisY = top + rowHeight * static_cast<int>(d.rows.size()) + 4;
  svg << "<line x1='" << left << "' x2='" << left + width << "' y1='" << axisY << "' y2='" << axisY << "' stroke='#000'/>";
  for (int k = 0; k <= 4; ++k) {
    const double v = lo + (hi - lo) * k / 4.0;
    svg << "<text x='" << x(v) << "' y='" << axisY + 16 << "' text-anchor='middle' font-size='11'>" << fixed(v, 2)
        << "</text>";
  }
  svg << "</svg>";
  return svg.str();
}

}  // namespace

std::string renderHtml(const ReportData& d, const std::vector<RenderedFigure>& figures) {
  std::ostringstream out;
  out << "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>" << xmlEscape(d.name)
      << "</title>\n<style>body{font-family:sans-serif;margin:24px}table{border-collapse:collapse;margin:12px 0}"
         "td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}"
         ".best{font-weight:bold}.overlap{background:#c8f7c5}.paper{color:#777;font-size:85%}"
         ".note{color:#a00;font-size:85%}figure{display:inline-block;margin:8px}figure.figure{display:block}</style></head><body>\n";
  out << "<h1>" << xmlEscape(d.name) << "</h1>\n<p>" << xmlEscape(legend(d)) << ".</p>\n";
  out << "<table id='results'><tr><th></th>";
  for (const auto& c : d.columns) out << "<th>" << xmlEscape(c) << "</th>";
  out << "</tr>\n";
  for (const auto& row : d.rows) {
    out << "<tr><td>" << xmlEscape(row) << "</td>";
    for (const auto& column : d.columns) {
      const Entry* e = d.at(row, column);
      if (!e) {
        out << "<td></td>";
        continue;
      }
      out << "<td class='" << (e->best ? "best" : e->overlaps ? "overlap" : "") << "'>"
          << xmlEscape(entryText(*e, kDigits)) << (e->overlaps ? " †" : "");
      if (e->hasPaper)
        out << "<br><span class='paper'>paper " << fixed(e->paperMean, 2) << " ± " << fixed(e->paperStd, 2) << "</span>";
      const std::string note = countsNote(*e);
      if (!note.empty()) out << "<br><span class='note'>" << xmlEscape(note) << "</span>";
      out << "</td>";
    }
    out << "</tr>\n";
  }
  out << "</table>\n<h2>Per column</h2>\n";
  for (const auto& column : d.columns)
    out << "<figure><figcaption>" << xmlEscape(column) << "</figcaption>" << svgPlot(d, column) << "</figure>\n";
  if (!figures.empty()) out << "<h2>Figures</h2>\n";
  for (const auto& f : figures) {
    out << "<figure class='figure' id='figure-" << xmlEscape(f.name) << "'><figcaption>" << xmlEscape(f.title)
        << "</figcaption>\n" << (f.kind == "table" ? f.html : f.svg);
    if (f.kind != "table" && !f.markdown.empty()) out << "<pre>" << xmlEscape(f.markdown) << "</pre>";
    out << "</figure>\n";
  }
  std::map<std::string, int> states;
  for (const auto& c : d.cells) ++states[c.status];
  out << "<p>Cells: " << d.cells.size();
  for (const auto& [state, n] : states) out << ", " << xmlEscape(state) << " " << n;
  out << "</p>\n</body></html>\n";
  return out.str();
}

}  // namespace repshape::jobs::detail
