// train.objective (cross_entropy | binary | mse), data.relabel and data.pca_dims through the real
// binary: the Kågebäck models learn, mse is reported as `mse`, clustering scores use the original
// labels, and every new key's bad input stops with exit 2 and a file:line location.
#include "Config.h"
#include "TestUtil.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace repshape {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kBin = REPSHAPE_BIN;
const std::string kSource = REPSHAPE_SOURCE_DIR;

class Objectives : public ::testing::Test {
 protected:
  fs::path dir_ = test::tempDir("objectives");
  // Runs `repshape train CONFIG --set …` into a fresh directory; returns (exit code, output, result).
  struct Run {
    int exitCode;
    std::string output;
    json result;
    fs::path out;
  };
  Run train(const std::string& config, const std::vector<std::string>& sets, const std::string& name) {
    Run run;
    run.out = dir_ / name;
    std::string command = "timeout 120 " + kBin + " train " + config + " -q --out " + run.out.string();
    for (const auto& s : sets) command += " --set '" + s + "'";
    const auto r = test::runCommand(command);
    run.exitCode = r.exitCode;
    run.output = r.output;
    if (fs::exists(run.out / "result.json")) run.result = json::parse(test::readFile(run.out / "result.json"));
    return run;
  }
  std::string configErrorOf(const std::string& text) {
    try {
      loadConfig(test::writeFile(dir_ / "c.toml", text));
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "";
  }
};

TEST_F(Objectives, LinearAutoencoderReconstructsAndReportsMse) {
  // Kågebäck §3.2 without a penalty: a linear AE with a 10-unit code can reconstruct x exactly.
  const Run run = train(kSource + "/jobs/kagebaeck-linear-ae.toml",
                        {"regularizer.weight=0", "train.epochs=5", "data.samples=2000", "optim.lr=0.01"}, "ae");
  ASSERT_EQ(run.exitCode, 0) << run.output;
  const json& test = run.result["test"];
  ASSERT_TRUE(test.contains("mse")) << run.result.dump();
  EXPECT_FALSE(test.contains("error"));
  // The per-sample mean over the 10 outputs, averaged over samples: the loss itself.
  EXPECT_DOUBLE_EQ(test["mse"].get<double>(), test["loss"].get<double>());
  EXPECT_LT(test["mse"].get<double>(), 0.05) << run.result.dump();
  // x = Ωz has per-coordinate variance Σ_i Ω²_ji σ²_i ≈ 2.8 on average: untrained, the net is far off.
  const Run untrained = train(kSource + "/jobs/kagebaeck-linear-ae.toml",
                              {"regularizer.weight=0", "train.epochs=0", "data.samples=2000"}, "ae0");
  ASSERT_EQ(untrained.exitCode, 0) << untrained.output;
  EXPECT_GT(untrained.result["test"]["mse"].get<double>(), 0.5) << untrained.result.dump();
  EXPECT_GT(run.result["layers"]["h1"]["tdv@4"].get<double>(), 0.0);
}

TEST_F(Objectives, XorLogisticNetworkLearnsWithOneOutputUnit) {
  const Run run = train(kSource + "/jobs/kagebaeck-xor.toml", {"train.epochs=15"}, "xor");
  ASSERT_EQ(run.exitCode, 0) << run.output;
  EXPECT_EQ(run.result["test"]["error"].get<double>(), 0.0) << run.result.dump();
  EXPECT_LT(run.result["test"]["loss"].get<double>(), 0.2);
  const std::string resolved = test::readFile(run.out / "config.resolved.toml");
  EXPECT_NE(resolved.find("objective = 'binary'"), std::string::npos) << resolved;
}

TEST_F(Objectives, ClusteringScoresUseTheOriginalLabels) {
  // Same seed and hidden layers; the relabelled run has 2 output units instead of 10, drawn after
  // h1's weights, so h1 is identical. AMI/NMI (against the original 10 classes) must agree, while
  // the MI bound with the task labels must not.
  const std::string config = test::writeFile(dir_ / "factors.toml", R"(
[data]
source = "factors"
samples = 300
test_samples = 200
factors = 6
input_dim = 12
[model]
hidden = [8]
activation = "tanh"
[train]
epochs = 0
[eval]
layers = ["h1"]
clustering = { n_init = 2 }
mi = { sigma2 = 0.1 }
)");
  const Run fine = train(config, {}, "fine");
  const Run grouped = train(config, {"data.relabel=[[0,1,2,3,4],[5,6,7,8,9]]"}, "grouped");
  ASSERT_EQ(fine.exitCode, 0) << fine.output;
  ASSERT_EQ(grouped.exitCode, 0) << grouped.output;
  const json& a = fine.result["layers"]["h1"];
  const json& b = grouped.result["layers"]["h1"];
  EXPECT_DOUBLE_EQ(a["ami"].get<double>(), b["ami"].get<double>());
  EXPECT_DOUBLE_EQ(a["nmi"].get<double>(), b["nmi"].get<double>());
  EXPECT_DOUBLE_EQ(a["kmeans_inertia"].get<double>(), b["kmeans_inertia"].get<double>());  // k = 10 both
  EXPECT_GT(std::abs(a["mi_y_upper"].get<double>() - b["mi_y_upper"].get<double>()), 1e-6);
}

TEST_F(Objectives, ConfigErrorsAreLocated) {
  const std::string base = "[data]\nsource = \"xor\"\n";
  std::string e = configErrorOf(base + "relabel = [[0, 1], []]\n");
  EXPECT_NE(e.find("c.toml:3: data.relabel[1]: an empty group"), std::string::npos) << e;
  e = configErrorOf(base + "relabel = [[0, 1],\n  [2, 1]]\n");
  EXPECT_NE(e.find("c.toml:4: data.relabel[1]: class 1 is already in group 0"), std::string::npos) << e;
  e = configErrorOf(base + "relabel = [0, 1]\n");
  EXPECT_NE(e.find("c.toml:3: data.relabel[0]: expected an array, got an integer"), std::string::npos) << e;
  e = configErrorOf(base + "pca_dims = -2\n");
  EXPECT_NE(e.find("c.toml:3: data.pca_dims: expected an integer in [0"), std::string::npos) << e;
  e = configErrorOf(base + "[train]\nobjective = \"bce\"\n");
  EXPECT_NE(e.find("c.toml:4: train.objective: expected one of \"cross_entropy\", \"binary\", \"mse\""),
            std::string::npos) << e;
}

TEST_F(Objectives, DataDependentErrorsExitTwoLocatedAndWriteNothing) {
  const std::string config = test::writeFile(dir_ / "bad.toml", R"(
[data]
source = "factors"
samples = 100
test_samples = 20
input_dim = 12

[model]
hidden = [4]

[train]
objective = "binary"
)");
  struct Case {
    std::vector<std::string> sets;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{}, "bad.toml:12: train.objective: \"binary\" trains one sigmoid unit on labels 0/1, but the data has 10 classes"},
      {{"data.relabel=[[0,1,2],[3,4,5,6,7,8]]"}, "bad.toml: --set: data.relabel: class 9 of data.source = \"factors\""},
      {{"data.relabel=[[0,1,2,3,4],[5,6,7,8,9,10]]"}, "data.relabel[1]: class 10 but data.source = \"factors\" has 10 classes"},
      {{"data.relabel=[[0,1,2,3,4],[5,6,7,8,9]]", "data.pca_dims=13"}, "bad.toml: --set: data.pca_dims = 13: "},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Run run = train(config, cases[i].sets, "bad" + std::to_string(i));
    EXPECT_EQ(run.exitCode, 2) << run.output;
    EXPECT_NE(run.output.find(cases[i].expected), std::string::npos) << run.output;
    EXPECT_FALSE(fs::exists(run.out)) << "bad input must not create " << run.out;
  }
  // xcov needs class probabilities: a located error with objective = "mse".
  const std::string withXcov = test::writeFile(dir_ / "xcov.toml", R"(
[data]
source = "xor"
samples = 50
[model]
hidden = [4]
[train]
objective = "mse"

[[regularizer]]
name = "xcov"
targets = ["h1"]
)");
  const Run run = train(withXcov, {}, "xcov");
  EXPECT_EQ(run.exitCode, 2) << run.output;
  EXPECT_NE(run.output.find("xcov.toml:10: regularizer[0].name: \"xcov\" needs class probabilities"), std::string::npos)
      << run.output;
  // The same config trains with cross_entropy (the check is about the objective, not xcov).
  EXPECT_EQ(train(withXcov, {"train.objective=cross_entropy", "train.epochs=1"}, "xcov-ok").exitCode, 0);
}

}  // namespace
}  // namespace repshape
