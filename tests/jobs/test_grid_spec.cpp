// Grid spec parsing and cell expansion (jobs library only, no processes): counts and ids of a spec
// with restricted axes, ids stable when an axis is appended, and located spec errors.
#include <repshape/jobs/Jobs.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

namespace repshape::jobs {
namespace {

namespace fs = std::filesystem;

class GridSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("repshape-gridspec-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "base.toml") << "[data]\nsource = \"factors\"\n[model]\nhidden = [8, 8]\n"
                                         "[[regularizer]]\nname = \"cr\"\nweight = 0.1\ntargets = [\"h2\"]\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& text) {
    const fs::path p = dir_ / ("spec" + std::to_string(++n_) + ".toml");
    std::ofstream(p) << text;
    return p.string();
  }
  std::vector<std::string> ids(const std::string& text) {
    std::vector<std::string> out;
    for (const auto& c : expandCells(loadGridSpec(write(text)))) out.push_back(c.id);
    return out;
  }
  std::string error(const std::string& text) {
    try {
      const auto spec = loadGridSpec(write(text));
      expandCells(spec);
    } catch (const SpecError& e) {
      return e.what();
    }
    return "(no error)";
  }
  fs::path dir_;
  int n_ = 0;
};

const char* kRestricted = R"([grid]
base = "base.toml"
trials = 2
[select]
axis = "lambda"
[[axis]]
name = "regularizer"
values = [
  { name = "baseline", set = { regularizer = [] }, skip = ["lambda"] },
  { name = "cr" },
  { name = "vr", set = { "regularizer.0.name" = "vr" } },
]
[[axis]]
name = "condition"
values = [{ name = "1k", set = { "data.train_size" = 1000 } }, { name = "5k", set = { data.train_size = 5000 } }]
[[axis]]
name = "lambda"
key = "regularizer.0.weight"
values = [0.01, 1.0, 100, 10.0, 1e30]
)";

TEST_F(GridSpecTest, RestrictedAxesCountsAndIds) {
  const GridSpec spec = loadGridSpec(write(kRestricted));
  const auto cells = expandCells(spec);
  // baseline: 2 conditions x 2 trials (no lambda); cr, vr: 2 x 3 lambdas (phase 1, 1 trial) + 2 x 2 finals.
  int plain = 0, search = 0, finals = 0;
  std::set<std::string> unique;
  for (const auto& c : cells) {
    unique.insert(c.id);
    plain += c.phase == Phase::Plain;
    search += c.phase == Phase::Search;
    finals += c.phase == Phase::Final;
  }
  EXPECT_EQ(plain, 4);
  EXPECT_EQ(search, 20);
  EXPECT_EQ(finals, 8);
  EXPECT_EQ(unique.size(), cells.size());
  EXPECT_EQ(cells.front().id, "baseline.1k.trial=1");
  EXPECT_TRUE(unique.count("cr.5k.lambda=0.01.trial=1"));
  EXPECT_TRUE(unique.count("vr.1k.lambda=100.trial=1"));
  EXPECT_TRUE(unique.count("vr.1k.lambda=10.trial=1"));  // shortest plain text of a float
  EXPECT_TRUE(unique.count("vr.1k.lambda=1.trial=1"));
  EXPECT_TRUE(unique.count("vr.1k.lambda=1e+30.trial=1"));
  EXPECT_TRUE(unique.count("vr.5k.phase=final.trial=2"));
  EXPECT_FALSE(unique.count("baseline.1k.lambda=0.01.trial=1"));

  // The config of a cell: base, then axis values, phase and seed.
  const Cell& vr = *std::find_if(cells.begin(), cells.end(), [](const Cell& c) { return c.id == "vr.1k.lambda=100.trial=1"; });
  const toml::table config = cellConfig(spec, vr, {});
  EXPECT_EQ(config.at_path("regularizer[0].name").value<std::string>(), "vr");
  EXPECT_EQ(config.at_path("regularizer[0].weight").value<int64_t>(), 100);
  EXPECT_EQ(config.at_path("data.train_size").value<int64_t>(), 1000);
  EXPECT_EQ(config.at_path("train.seed").value<int64_t>(), 1);
  const Cell& baseline = cells.front();
  EXPECT_FALSE(cellConfig(spec, baseline, {}).contains("regularizer"));
  EXPECT_EQ(cellConfig(spec, baseline, {}).at_path("data.validation_size").value<int64_t>(), 0);
  // A phase-2 cell receives the chosen lambda, its trial's seed and the full training set.
  const Cell& final2 = *std::find_if(cells.begin(), cells.end(), [](const Cell& c) { return c.id == "cr.5k.phase=final.trial=2"; });
  const toml::table chosen = cellConfig(spec, withSelection(spec, final2, "1"), {});
  EXPECT_DOUBLE_EQ(*chosen.at_path("regularizer[0].weight").value<double>(), 1.0);
  EXPECT_EQ(chosen.at_path("train.seed").value<int64_t>(), 2);
  EXPECT_EQ(chosen.at_path("data.train_size").value<int64_t>(), 5000);
}

TEST_F(GridSpecTest, IdsStableWhenAnAxisIsAppended) {
  const auto before = ids(kRestricted);
  const auto after = ids(std::string(kRestricted) +
                         "[[axis]]\nname = \"optimizer\"\ndefault = \"adam\"\n"
                         "values = [{ name = \"adam\" }, { name = \"sgd\", set = { \"optim.name\" = \"sgd\" } }]\n");
  EXPECT_EQ(after.size(), 2 * before.size());
  const std::set<std::string> all(after.begin(), after.end());
  for (const auto& id : before) EXPECT_TRUE(all.count(id)) << id << " changed when an axis was appended";
  EXPECT_TRUE(all.count("cr.1k.sgd.lambda=0.01.trial=1") || all.count("cr.1k.lambda=0.01.sgd.trial=1"));
}

TEST_F(GridSpecTest, LocatedErrors) {
  const std::string unknown = error("[grid]\nbase = \"base.toml\"\ntrails = 2\n");
  EXPECT_EQ(unknown, (dir_ / ("spec" + std::to_string(n_) + ".toml")).string() +
                         ":3: grid.trails: unknown key (did you mean 'trials'?)");
  EXPECT_NE(error("[grid]\nbase = \"base.toml\"\n[[axis]]\nname = \"a\"\nvalues = []\n").find(":5: axis 'a'.values: empty axis"),
            std::string::npos);
  EXPECT_NE(error("[grid]\nbase = \"base.toml\"\n[[axis]]\nname = \"a\"\nvalues = [{ name = \"x\" }]\n"
                  "[[axis]]\nname = \"a\"\nvalues = [{ name = \"y\" }]\n")
                .find(":6: axis: duplicate axis name 'a'"),
            std::string::npos);
  EXPECT_NE(error("[grid]\nbase = \"base.toml\"\n[[axis]]\nname = \"a\"\nvalues = [{ name = \"x\" },\n { name = \"x\" }]\n")
                .find(":6: axis 'a': duplicate value 'x'"),
            std::string::npos);
  EXPECT_NE(error("[grid]\nbase = \"missing.toml\"\n").find(":2: grid.base: no such file"), std::string::npos);
  EXPECT_NE(error("[grid]\nbase = \"base.toml\"\n[select]\naxis = \"lambda\"\n").find(":4: select.axis: no axis named 'lambda'"),
            std::string::npos);
}

// Report metrics address result.json keys that hold dots and '@' (ud@0.9, ami@k=5): every key that
// is a prefix of the rest of the path is tried, so nothing depends on where the dots are.
TEST(MetricOf, KeysWithDotsAndAt) {
  const auto result = nlohmann::json::parse(R"({"test": {"error": 2.5}, "layers": {"h1": {"ud@0.9": 3,
      "tdv@4": 0.75, "ami@k=5": 0.4, "ud_eig@0.99": 2}, "h1.5": {"mapc": 0.1}, "a": {"b.c": {"d": 7}}}})");
  EXPECT_EQ(metricOf(result, "test.error"), 2.5);
  EXPECT_EQ(metricOf(result, "layers.h1.ud@0.9"), 3.0);
  EXPECT_EQ(metricOf(result, "layers.h1.tdv@4"), 0.75);
  EXPECT_EQ(metricOf(result, "layers.h1.ami@k=5"), 0.4);
  EXPECT_EQ(metricOf(result, "layers.h1.ud_eig@0.99"), 2.0);
  EXPECT_EQ(metricOf(result, "layers.h1.5.mapc"), 0.1);  // a layer name with a dot
  EXPECT_EQ(metricOf(result, "layers.a.b.c.d"), 7.0);  // "a" → "b.c" → "d"
  EXPECT_EQ(metricOf(result, "layers.h1.ud@0.5"), std::nullopt);
  EXPECT_EQ(metricOf(result, "layers.h1"), std::nullopt);  // an object, not a number
  EXPECT_EQ(metricOf(result, ""), std::nullopt);
}

TEST_F(GridSpecTest, FiguresParsedAndLocated) {
  const std::string axes = "[grid]\nbase = \"base.toml\"\n[[axis]]\nname = \"regularizer\"\n"
                           "values = [{ name = \"none\" }, { name = \"cr\" }]\n[[axis]]\nname = \"lambda\"\n"
                           "key = \"regularizer.0.weight\"\nvalues = [0.1, 1.0]\n";  // 9 lines
  const GridSpec spec = loadGridSpec(write(axes +
      "[[report.figure]]\nname = \"t\"\nkind = \"line\"\nx = \"lambda\"\ny = [\"layers.h1.ud@0.9\", \"test.mse\"]\n"
      "series = \"regularizer\"\nwhere = { regularizer = [\"cr\"] }\n"
      "[[report.figure]]\nname = \"s\"\nkind = \"scatter\"\nx = [\"a.b\", \"c\"]\ny = \"test.error\"\nlabel = \"regularizer\"\n"
      "paper_r = [0.84, 0.78]\n"
      "[[report.figure]]\nname = \"tab\"\nkind = \"table\"\nrows = \"regularizer\"\nmetrics = [\"x\", \"y\"]\n"
      "paper = { cr = [1, 2.5] }\n"));
  ASSERT_EQ(spec.report.figures.size(), 3u);
  const FigureSpec& line = spec.report.figures[0];
  EXPECT_EQ(line.kind, "line");
  EXPECT_EQ(line.x, std::vector<std::string>{"lambda"});
  EXPECT_EQ(line.y, (std::vector<std::string>{"layers.h1.ud@0.9", "test.mse"}));
  EXPECT_EQ(line.where.at("regularizer"), std::vector<std::string>{"cr"});
  EXPECT_EQ(line.origin.line, 10);
  EXPECT_EQ(spec.report.figures[1].paperR, (std::vector<double>{0.84, 0.78}));
  EXPECT_EQ(spec.report.figures[2].paper.at("cr"), (std::vector<double>{1.0, 2.5}));

  auto located = [&](const std::string& figure, const std::string& expected) {
    const std::string message = error(axes + "[[report.figure]]\n" + figure);
    EXPECT_NE(message.find(expected), std::string::npos) << message << "\n  expected: " << expected;
  };
  located("name = \"f\"\nkind = \"lines\"\n", ":12: report.figure[0].kind: unknown kind 'lines' (did you mean 'line'?)");
  located("name = \"f\"\nkind = \"line\"\nx = \"lamda\"\ny = \"test.error\"\n", ":13: report.figure[0].x: no axis named 'lamda'");
  located("name = \"f\"\nkind = \"line\"\nx = \"lambda\"\n", ":10: report.figure[0].y: missing (kind 'line' needs it)");
  located("name = \"f\"\nkind = \"line\"\nx = \"lambda\"\ny = \"e\"\nwhere = { regularizer = \"l1\" }\n",
          ":15: report.figure[0].where.regularizer: axis 'regularizer' has no value 'l1'");
  located("name = \"f\"\nkind = \"scatter\"\nx = [\"a\", \"b\"]\ny = \"e\"\npaper_r = [0.8]\n",
          ":15: report.figure[0].paper_r: expected one r per x metric (2), got 1");
  located("name = \"f\"\nkind = \"table\"\nrows = \"regularizer\"\nmetrics = [\"a\"]\npaper = { cr = [1, 2] }\n",
          ":15: report.figure[0].paper.cr: expected 1 numbers (one per metric), got 2");
  located("name = \"f\"\nkind = \"curve\"\ny = \"layers.fc1.ami\"\n", ":13: report.figure[0].y: 'layers.fc1.ami': a curve's metric needs exactly one '*'");
  located("name = \"f\"\nkind = \"heatmap\"\nlayer = [\"h1\"]\n", ":13: report.figure[0].layer: unknown key for kind 'heatmap' (did you mean 'layers'?)");
  located("name = \"a b\"\nkind = \"heatmap\"\nlayers = [\"h1\"]\n", ":11: report.figure[0].name: 'a b': use letters");
  located("name = \"f\"\nkind = \"spectrum\"\nlayers = [\"h1\"]\n[[report.figure]]\nname = \"f\"\nkind = \"histogram\"\nlayers = [\"h1\"]\n",
          ":14: report.figure[1].name: duplicate figure name 'f'");
}

TEST_F(GridSpecTest, WhereMatchesCells) {
  const GridSpec spec = loadGridSpec(write(kRestricted));
  int matched = 0;
  for (const auto& c : expandCells(spec)) matched += matchesWhere(c, {{"condition", {"5k"}}, {"regularizer", {"cr", "baseline"}}});
  EXPECT_EQ(matched, 2 + 5 + 2);  // baseline: 2 trials; cr: 5 lambdas (phase 1) + 2 finals
}

}  // namespace
}  // namespace repshape::jobs
