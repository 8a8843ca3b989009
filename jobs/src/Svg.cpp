// Plain SVG drawing for the report's figures: x/y panels (lines, points, ± bars, categorical or
// numeric x) and matrix heatmaps, laid out three panels to a row. Coordinates are pixels; every
// data point carries its values as attributes (data-x, data-y, data-v) for tests and readers.
#include "detail/Figures.h"
#include "detail/Text.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace repshape::jobs::detail {

namespace {

constexpr int kPanelWidth = 400, kPanelHeight = 300;       // one panel, pixels
constexpr int kLeft = 64, kRight = 16, kTop = 28, kBottom = 52;  // plot area margins inside a panel
constexpr int kPerRow = 3;
const char* const kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string number(double v) {
  std::ostringstream out;
  out.precision(10);
  out << v;
  return out.str();
}

std::string tick(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3g", v);
  return buffer;
}

// [lo, hi] widened by 5% (and around a single value) so no point sits on the frame.
std::pair<double, double> range(double lo, double hi) {
  if (!(lo <= hi)) return {0.0, 1.0};
  if (hi - lo < 1e-12 * std::max(1.0, std::fabs(hi))) {
    const double pad = std::max(std::fabs(hi) * 0.1, 1e-6);
    return {lo - pad, hi + pad};
  }
  const double pad = (hi - lo) * 0.05;
  return {lo - pad, hi + pad};
}

std::string header(int width, int height, const std::string& title) {
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height
      << "' font-family='sans-serif' font-size='11'>\n<rect x='0' y='0' width='100%' height='100%' fill='#fff'/>\n"
      << "<text x='8' y='18' font-size='14' font-weight='bold'>" << xmlEscape(title) << "</text>\n";
  return svg.str();
}

void drawPanel(std::ostringstream& svg, const PlotPanel& p, int ox, int oy) {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (const auto& s : p.series)
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      const double e = s.err.empty() || !std::isfinite(s.err[i]) ? 0.0 : s.err[i];
      xlo = std::min(xlo, s.x[i]), xhi = std::max(xhi, s.x[i]);
      ylo = std::min(ylo, s.y[i] - e), yhi = std::max(yhi, s.y[i] + e);
    }
  const bool categorical = !p.xTicks.empty();
  if (categorical) xlo = -0.5, xhi = static_cast<double>(p.xTicks.size()) - 0.5;
  const auto [x0, x1] = categorical ? std::pair{xlo, xhi} : range(xlo, xhi);
  const auto [y0, y1] = range(ylo, yhi);
  const double w = kPanelWidth - kLeft - kRight, h = kPanelHeight - kTop - kBottom;
  auto px = [&](double x) { return ox + kLeft + (x - x0) / (x1 - x0) * w; };
  auto py = [&](double y) { return oy + kTop + h - (y - y0) / (y1 - y0) * h; };
  svg << "<g class='panel' data-x0='" << number(x0) << "' data-x1='" << number(x1) << "' data-y0='" << number(y0)
      << "' data-y1='" << number(y1) << "' data-px0='" << ox + kLeft << "' data-pw='" << w << "' data-py0='"
      << oy + kTop + h << "' data-ph='" << h << "'>\n";
  svg << "<text x='" << ox + kLeft << "' y='" << oy + kTop - 8 << "' font-weight='bold'>" << xmlEscape(p.title) << "</text>\n";
  svg << "<rect x='" << ox + kLeft << "' y='" << oy + kTop << "' width='" << w << "' height='" << h
      << "' fill='none' stroke='#000'/>\n";
  for (int i = 0; i <= 4; ++i) {  // y ticks and grid
    const double v = y0 + (y1 - y0) * i / 4.0;
    svg << "<line x1='" << ox + kLeft << "' x2='" << ox + kLeft + w << "' y1='" << py(v) << "' y2='" << py(v)
        << "' stroke='#eee'/><text x='" << ox + kLeft - 4 << "' y='" << py(v) + 4 << "' text-anchor='end'>" << tick(v)
        << "</text>\n";
  }
  if (categorical) {
    // Numeric values (λ = 0.002683) shortened to 2 significant digits so that nine of them fit.
    const bool many = p.xTicks.size() > 6;
    for (std::size_t i = 0; i < p.xTicks.size(); ++i) {
      std::string label = p.xTicks[i];
      char* end = nullptr;
      const double v = std::strtod(label.c_str(), &end);
      if (!label.empty() && end && *end == '\0') {
        char buffer[32];
        std::snprintf(buffer, sizeof buffer, "%.2g", v);
        label = buffer;
      }
      svg << "<text x='" << px(static_cast<double>(i)) << "' y='" << oy + kTop + h + 14 << "' text-anchor='middle'"
          << (many ? " font-size='9'" : "") << ">" << xmlEscape(label) << "</text>\n";
    }
  } else {
    for (int i = 0; i <= 4; ++i) {
      const double v = x0 + (x1 - x0) * i / 4.0;
      svg << "<text x='" << px(v) << "' y='" << oy + kTop + h + 14 << "' text-anchor='middle'>" << tick(v) << "</text>\n";
    }
  }
  svg << "<text x='" << ox + kLeft + w / 2 << "' y='" << oy + kTop + h + 30 << "' text-anchor='middle'>"
      << xmlEscape(p.xLabel) << "</text>\n";
  svg << "<text transform='translate(" << ox + 12 << "," << oy + kTop + h / 2 << ") rotate(-90)' text-anchor='middle'>"
      << xmlEscape(p.yLabel) << "</text>\n";
  for (std::size_t k = 0; k < p.series.size(); ++k) {
    const PlotSeries& s = p.series[k];
    const char* colour = kColours[k % (sizeof kColours / sizeof *kColours)];
    std::string path;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      path += (path.empty() ? "M" : " L") + number(px(s.x[i])) + "," + number(py(s.y[i]));
    }
    if (s.line && !path.empty())
      svg << "<path d='" << path << "' fill='none' stroke='" << colour << "' stroke-width='1.5'/>\n";
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      if (!s.err.empty() && std::isfinite(s.err[i]) && s.err[i] > 0)
        svg << "<line x1='" << px(s.x[i]) << "' x2='" << px(s.x[i]) << "' y1='" << py(s.y[i] - s.err[i]) << "' y2='"
            << py(s.y[i] + s.err[i]) << "' stroke='" << colour << "'/>\n";
      svg << "<circle class='pt' data-series='" << xmlEscape(s.name) << "' data-x='" << number(s.x[i]) << "' data-y='"
          << number(s.y[i]) << "' cx='" << number(px(s.x[i])) << "' cy='" << number(py(s.y[i])) << "' r='3' fill='"
          << colour << "'/>\n";
      if (i < s.labels.size())
        svg << "<text x='" << px(s.x[i]) + 5 << "' y='" << py(s.y[i]) - 4 << "' font-size='9'>" << xmlEscape(s.labels[i])
            << "</text>\n";
    }
    if (!s.name.empty()) {  // legend, top right, one line per series
      const double ly = oy + kTop + 12 + 13.0 * static_cast<double>(k);
      svg << "<circle cx='" << ox + kLeft + w - 150 << "' cy='" << ly - 4 << "' r='3' fill='" << colour << "'/><text x='"
          << ox + kLeft + w - 144 << "' y='" << ly << "'>" << xmlEscape(s.name) << "</text>\n";
    }
  }
  if (!p.note.empty())
    svg << "<text x='" << ox + kLeft << "' y='" << oy + kTop + h + 44 << "' fill='#a00'>" << xmlEscape(p.note) << "</text>\n";
  svg << "</g>\n";
}

// Diverging blue (negative) - white - red (positive) at `t` in [-1, 1].
std::string colourAt(double t) {
  t = std::clamp(t, -1.0, 1.0);
  const int fade = static_cast<int>(std::lround(255.0 * (1.0 - std::fabs(t))));
  char buffer[16];
  if (t >= 0) std::snprintf(buffer, sizeof buffer, "#ff%02x%02x", fade, fade);
  else std::snprintf(buffer, sizeof buffer, "#%02x%02xff", fade, fade);
  return buffer;
}

}  // namespace

std::string xmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '\'') out += "&#39;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  const std::size_t n = std::min(a.size(), b.size());
  if (n < 2) return NAN;
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < n; ++i) ma += a[i], mb += b[i];
  ma /= static_cast<double>(n), mb /= static_cast<double>(n);
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  if (saa <= 0 || sbb <= 0) return NAN;
  return sab / std::sqrt(saa * sbb);
}

std::string svgPanels(const std::string& title, const std::vector<PlotPanel>& panels) {
  const int columns = std::max(1, std::min<int>(kPerRow, static_cast<int>(panels.size())));
  const int rows = std::max<int>(1, (static_cast<int>(panels.size()) + kPerRow - 1) / kPerRow);
  std::ostringstream svg;
  svg << header(columns * kPanelWidth, rows * kPanelHeight + 24, title);
  for (std::size_t i = 0; i < panels.size(); ++i)
    drawPanel(svg, panels[i], static_cast<int>(i % kPerRow) * kPanelWidth, 24 + static_cast<int>(i / kPerRow) * kPanelHeight);
  svg << "</svg>\n";
  return svg.str();
}

std::string svgHeatmaps(const std::string& title, const std::vector<HeatmapPanel>& panels) {
  constexpr int kSide = 240, kPad = 40;
  const int columns = std::max(1, std::min<int>(kPerRow, static_cast<int>(panels.size())));
  const int rows = std::max<int>(1, (static_cast<int>(panels.size()) + kPerRow - 1) / kPerRow);
  std::ostringstream svg;
  svg << header(columns * (kSide + kPad * 2), rows * (kSide + kPad * 2) + 24, title);
  for (std::size_t p = 0; p < panels.size(); ++p) {
    const auto& m = panels[p].matrix;
    const int ox = static_cast<int>(p % kPerRow) * (kSide + kPad * 2) + kPad;
    const int oy = 24 + static_cast<int>(p / kPerRow) * (kSide + kPad * 2) + kPad;
    double scale = 0;
    for (const auto& row : m)
      for (double v : row)
        if (std::isfinite(v)) scale = std::max(scale, std::fabs(v));
    const std::size_t n = m.size();
    svg << "<g class='heatmap' data-scale='" << number(scale) << "'>\n<text x='" << ox << "' y='" << oy - 8
        << "' font-weight='bold'>" << xmlEscape(panels[p].title) << "</text>\n";
    const double cell = n ? static_cast<double>(kSide) / static_cast<double>(n) : 0.0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < m[i].size(); ++j)
        svg << "<rect class='hm' data-i='" << i << "' data-j='" << j << "' data-v='" << number(m[i][j]) << "' x='"
            << ox + cell * static_cast<double>(j) << "' y='" << oy + cell * static_cast<double>(i) << "' width='"
            << cell << "' height='" << cell << "' fill='" << (scale > 0 ? colourAt(m[i][j] / scale) : "#fff") << "'/>\n";
    svg << "<text x='" << ox << "' y='" << oy + kSide + 16 << "'>" << n << " units; colour scale ±" << tick(scale)
        << " (blue negative, red positive)</text>\n</g>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace repshape::jobs::detail
