#include "TestSupport.h"

#include "ArrayIO.h"

#include <cstdlib>
#include <filesystem>

#include <unistd.h>
#include <fstream>

namespace repshape::test {

using torch::Tensor;

PenaltyData makePenaltyData(uint64_t seed) {
  torch::manual_seed(seed);
  PenaltyData d;
  const int64_t n = 37, m = 6;
  // Correlated units with different means and scales.
  const Tensor mix = torch::randn({m, m}, torch::kFloat64) * 0.6 + torch::eye(m, torch::kFloat64);
  d.z = torch::randn({n, m}, torch::kFloat64).mm(mix) + torch::linspace(-1.0, 1.5, m, torch::kFloat64);
  std::vector<int64_t> labels;
  for (int k : {0, 1, 2, 3})
    for (int i = 0; i < (k == 0 ? 15 : k == 1 ? 10 : k == 2 ? 1 : 11); ++i) labels.push_back(k);
  d.labels = torch::tensor(labels, torch::kLong).index_select(0, torch::randperm(n, torch::kLong));
  d.probs = torch::softmax(torch::randn({n, 3}, torch::kFloat64), 1);
  d.w = torch::randn({5, m}, torch::kFloat64);
  return d;
}

const std::vector<std::string>& referenceCases() {
  static const std::vector<std::string> cases = {
      "lsigma", "cr", "cr:normalized=true", "decov", "cw-cr", "cw-cr:normalized=true", "vr", "vr:normalized=true",
      "cw-vr", "cw-vr:normalized=true", "l1r", "l1r:normalized=true", "rr", "rr:normalized=true",
      "rr:method=exact", "cw-rr", "cw-rr:method=exact", "cw-rr:normalized=true", "corr", "xcov",
      "lsingle:margin=1.5", "lsingle:margin=0.3", "lmulti", "lmulti:margin=0.5", "lmulti-unsup:margin=2",
      "l1w", "l2w"};
  return cases;
}

bool onWeights(const reg::PenaltySpec& spec) {
  return spec.name == "lsingle" || spec.name == "l1w" || spec.name == "l2w";
}

reg::PenaltySpec parseCase(const std::string& text) {
  reg::PenaltySpec spec;
  const auto colon = text.find(':');
  spec.name = text.substr(0, colon);
  std::string rest = colon == std::string::npos ? "" : text.substr(colon + 1);
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string item = rest.substr(0, comma);
    rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    const auto eq = item.find('=');
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "margin") spec.margin = std::stod(value);
    else if (key == "normalized") spec.normalized = value == "true";
    else if (key == "method") spec.method = value;
    else throw std::invalid_argument("test case key " + key);
  }
  spec.targets = {onWeights(spec) ? "w" : "z"};
  return spec;
}

std::string scratchDir(const std::string& name) {
  // Per process: CTest runs each test case as its own process, several at once.
  const std::string dir =
      std::string(REPSHAPE_BINARY_DIR) + "/test-scratch/" + name + "-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string fileStem(const std::string& spec) {
  std::string s = spec;
  for (char& c : s)
    if (c == ':' || c == ',' || c == '=' || c == '/') c = '_';
  return s;
}

void runReference(const std::string& dir, const PenaltyData& data, const std::vector<std::string>& cases) {
  io::writeCsv(dir + "/z.csv", data.z);
  io::writeCsv(dir + "/labels.csv", data.labels);
  io::writeCsv(dir + "/probs.csv", data.probs);
  io::writeCsv(dir + "/w.csv", data.w);
  std::ofstream(dir + "/classes.txt") << data.classes << "\n";
  std::ofstream out(dir + "/cases.txt");
  for (const auto& c : cases) out << c << "\n";
  out.close();
  const std::string command = std::string(REPSHAPE_REFERENCE_PYTHON) + " " + REPSHAPE_SOURCE_DIR +
                              "/tests/regularizers/reference.py " + dir;
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
}

std::map<std::string, double> readReferenceValues(const std::string& dir) {
  std::map<std::string, double> values;
  std::ifstream in(dir + "/ref_values.txt");
  std::string spec;
  double v = 0;
  while (in >> spec >> v) values[spec] = v;
  return values;
}

Tensor penaltyValue(const reg::PenaltySpec& spec, const Tensor& z, const Tensor& labels, const Tensor& probs,
                    const Tensor& w, int classes, reg::Reducer& reducer, reg::StatisticsPath path) {
  reg::PenaltyBatch batch;
  batch.activations = {{"z", z}};
  batch.labels = labels;
  batch.probabilities = probs;
  batch.weights = {{"w", w}};
  reg::PenaltySet set({spec}, classes);
  set.setStatisticsPath(path);
  return set.compute(batch, reducer).at(0).value;
}

namespace {

class Recorder final : public reg::Reducer {
 public:
  Recorder(FakeRanks& owner, int rank) : owner_(owner), rank_(rank) {}
  Tensor sum(const Tensor& flat) override { return record("sum", flat); }
  Tensor max(const Tensor& flat) override { return record("max", flat); }
  Tensor gatherRows(const Tensor& rows, std::vector<int64_t>* rowCounts = nullptr) override {
    if (rowCounts != nullptr) *rowCounts = {};  // unknown while recording: no split shares here
    return record("gather", rows);
  }
  int worldSize() const override { return owner_.worldSize(); }

 private:
  Tensor record(const char* kind, const Tensor& t) {
    owner_.calls_[rank_].push_back({kind, t.detach().clone()});
    return t;
  }
  FakeRanks& owner_;
  int rank_;
};

class Replayer final : public reg::Reducer {
 public:
  Replayer(FakeRanks& owner, int rank) : owner_(owner), rank_(rank) {}
  // Value: the global sum; backward: identity on this rank's part.
  Tensor sum(const Tensor& flat) override { return flat + (owner_.global(next()) - flat).detach(); }
  // Value: the global max; gradient only where this rank holds the max.
  Tensor max(const Tensor& flat) override {
    const Tensor g = owner_.global(next());
    return torch::where(flat.detach() == g, flat, g);
  }
  // All ranks' rows in rank order; only this rank's slice is live.
  Tensor gatherRows(const Tensor& rows, std::vector<int64_t>* rowCounts = nullptr) override {
    const std::size_t index = next();
    std::vector<Tensor> parts;
    for (int r = 0; r < owner_.worldSize(); ++r)
      parts.push_back(r == rank_ ? rows : owner_.calls_[r].at(index).input);
    if (rowCounts != nullptr) {
      rowCounts->clear();
      for (const Tensor& part : parts) rowCounts->push_back(part.size(0));
    }
    return torch::cat(parts);
  }
  int worldSize() const override { return owner_.worldSize(); }

 private:
  std::size_t next() { return call_++; }
  FakeRanks& owner_;
  int rank_;
  std::size_t call_ = 0;
};

}  // namespace

std::unique_ptr<reg::Reducer> FakeRanks::recorder(int rank) { return std::make_unique<Recorder>(*this, rank); }
std::unique_ptr<reg::Reducer> FakeRanks::replayer(int rank) { return std::make_unique<Replayer>(*this, rank); }

Tensor FakeRanks::global(std::size_t index) const {
  const std::string kind = calls_.at(0).at(index).kind;
  Tensor result = calls_[0][index].input;
  for (std::size_t r = 1; r < calls_.size(); ++r) {
    const auto& call = calls_[r].at(index);
    EXPECT_EQ(call.kind, kind) << "ranks disagree on collective " << index;
    EXPECT_EQ(call.input.sizes(), result.sizes()) << "ranks disagree on the shape of collective " << index;
    result = kind == "sum" ? result + call.input : torch::maximum(result, call.input);
  }
  return result;
}

}  // namespace repshape::test
