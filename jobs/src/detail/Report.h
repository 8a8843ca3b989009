#pragma once
// The report's table, computed once from RESULTS and rendered in several formats.

#include <repshape/jobs/Jobs.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace repshape::jobs::detail {

struct Entry {
  std::vector<double> values;  // the metric of each ok trial
  int expected = 0, failed = 0, diverged = 0, missing = 0;
  double mean = 0.0, std = 0.0;  // std: sample (n−1); 0 for one trial
  bool best = false, overlaps = false;
  bool hasPaper = false;
  double paperMean = 0.0, paperStd = 0.0;
  std::vector<std::string> selected;  // selection-axis values chosen for this entry's cells
};

struct CellRow {
  std::string id, phase, status, selected;
  int64_t trial = 0;
  nlohmann::json axes, result;
};

struct ReportData {
  std::string name, metric, columnAxis, selectAxis, paperSource;
  bool higherBetter = false;
  std::vector<std::string> rowAxes, rows, columns;
  std::map<std::pair<std::string, std::string>, Entry> entries;  // (row, column)
  std::vector<CellRow> cells;                                     // every cell, cells.json order
  const Entry* at(const std::string& row, const std::string& column) const {
    auto it = entries.find({row, column});
    return it == entries.end() ? nullptr : &it->second;
  }
};

ReportData loadReport(const std::string& results);
std::string entryText(const Entry& e, int digits);
std::string countsNote(const Entry& e);  // "3/5, 1 failed, 1 missing"; "" when complete

std::string renderMarkdown(const ReportData& d);
std::string renderCsv(const ReportData& d);
std::string renderTex(const ReportData& d);
std::string renderHtml(const ReportData& d, const std::vector<RenderedFigure>& figures = {});

}  // namespace repshape::jobs::detail
