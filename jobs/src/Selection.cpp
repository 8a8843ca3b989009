// Validation selection (Choi App. D.1, SPEC §5): per (regularizer, condition) group, the
// selection-axis value whose phase-1 cells have the lowest mean validation metric, among values
// whose phase-1 cells all finished `ok` with a finite metric. A diverged or failed value is never
// selected. Ties keep the earlier value in spec order.
#include <repshape/jobs/Jobs.h>

#include <cmath>
#include <limits>

namespace repshape::jobs {

std::map<std::string, SelectionResult> selectValues(const GridSpec& spec, const std::vector<Cell>& cells,
                                                    const std::string& results) {
  std::map<std::string, SelectionResult> out;
  if (!spec.select) return out;
  struct Candidate {
    std::string value;
    double sum = 0.0;
    int64_t count = 0;
    bool usable = true;
  };
  std::map<std::string, std::vector<Candidate>> byGroup;
  for (const Cell& cell : cells) {
    if (cell.phase != Phase::Search) continue;
    SelectionResult& sel = out[cell.group];
    if (sel.group.empty()) {
      sel.group = cell.group;
      sel.decided = true;
    }
    auto& candidates = byGroup[cell.group];
    auto it = std::find_if(candidates.begin(), candidates.end(),
                           [&](const Candidate& c) { return c.value == cell.selectValue; });
    if (it == candidates.end()) it = candidates.insert(candidates.end(), Candidate{cell.selectValue});
    const nlohmann::json result = readJsonFile(cellDir(results, cell.id) + "/result.json");
    const std::string status = result.is_object() ? result.value("status", std::string("ok")) : "pending";
    const std::optional<double> metric = metricOf(result, spec.select->metric);
    nlohmann::json entry{{"cell", cell.id}, {"value", cell.selectValue}, {"status", status}};
    entry[spec.select->metric] = metric ? nlohmann::json(*metric) : nlohmann::json(nullptr);
    sel.candidates.push_back(entry);
    if (!isFinalStatus(status)) {
      sel.decided = false;
      continue;
    }
    if (status != "ok" || !metric || !std::isfinite(*metric)) {
      it->usable = false;
      continue;
    }
    it->sum += *metric;
    ++it->count;
  }
  for (auto& [group, sel] : out) {
    if (!sel.decided) continue;
    double best = std::numeric_limits<double>::infinity();
    for (const auto& c : byGroup[group]) {
      if (!c.usable || c.count == 0) continue;
      const double mean = c.sum / static_cast<double>(c.count);
      if (mean < best) best = mean, sel.selected = c.value;
    }
    if (sel.selected.empty()) sel.reason = "no " + spec.select->axis + " value finished ok (diverged or failed)";
  }
  return out;
}

void writeSelection(const std::string& results, const std::map<std::string, SelectionResult>& selections) {
  nlohmann::ordered_json doc = nlohmann::ordered_json::object();
  for (const auto& [group, sel] : selections) {
    nlohmann::ordered_json entry{{"decided", sel.decided}};
    entry["selected"] = sel.selected.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(sel.selected);
    if (!sel.reason.empty()) entry["reason"] = sel.reason;
    entry["candidates"] = sel.candidates;
    doc[group.empty() ? "(all)" : group] = entry;
  }
  writeFileAtomically(results + "/selection.json", doc.dump(1) + "\n");
}

}  // namespace repshape::jobs
