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

}  // namespace
}  // namespace repshape::jobs
