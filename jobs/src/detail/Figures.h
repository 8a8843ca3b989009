#pragma once
// Report figures: the spec's [[report.figure]] (FigureSpec.cpp), the data of each kind from the
// cells (Figures.cpp) and plain SVG drawing (Svg.cpp; no external tool or asset).

#include <repshape/jobs/Jobs.h>

#include <string>
#include <vector>

namespace repshape::jobs::detail {

std::vector<FigureSpec> parseFigures(const toml::node& node, const std::vector<Axis>& axes, const std::string& file);
nlohmann::ordered_json figureToJson(const FigureSpec& figure);
FigureSpec figureFromJson(const nlohmann::json& json);

// Pearson's r of paired samples; NaN for fewer than 2 pairs or a constant side.
double pearson(const std::vector<double>& a, const std::vector<double>& b);

// One line / point set of a panel. `err` (same length as y, or empty): ± bars.
struct PlotSeries {
  std::string name;
  std::vector<double> x, y, err;
  std::vector<std::string> labels;  // scatter: a text beside each point
  bool line = true;
};

// An x/y panel; with `xTicks` the x values are the tick indices 0..n-1 (categorical axis).
struct PlotPanel {
  std::string title, xLabel, yLabel, note;
  std::vector<std::string> xTicks;
  std::vector<PlotSeries> series;
};

// A matrix panel (covariance heatmap): symmetric colour scale around 0, ±max|value|.
struct HeatmapPanel {
  std::string title;
  std::vector<std::vector<double>> matrix;
};

// Standalone SVG documents. Every plotted point is `<circle class='pt' data-series data-x data-y
// cx cy>` and every heatmap entry `<rect class='hm' data-i data-j data-v>`, so tests read the
// values back.
std::string svgPanels(const std::string& title, const std::vector<PlotPanel>& panels);
std::string svgHeatmaps(const std::string& title, const std::vector<HeatmapPanel>& panels);
std::string xmlEscape(const std::string& s);

}  // namespace repshape::jobs::detail
