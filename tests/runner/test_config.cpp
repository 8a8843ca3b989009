// Config parsing: typed values, defaults, --set overrides, and errors that say file:line: key: what.
#include "Config.h"
#include "TestUtil.h"

#include <gtest/gtest.h>

namespace repshape {
namespace {

class ConfigTest : public ::testing::Test {
 protected:
  std::filesystem::path dir_ = test::tempDir("config");
  std::string write(const std::string& text) { return test::writeFile(dir_ / "c.toml", text); }
  // The error message of loading `text`, or "" when it loads.
  std::string errorOf(const std::string& text, const std::vector<std::string>& overrides = {}) {
    try {
      loadConfig(write(text), overrides);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "";
  }
};

constexpr const char* kValid = R"(
[data]
source = "xor"
samples = 64

[model]
hidden = [4, 4]
activation = "sigmoid"

[optim]
name = "sgd"
lr = 0.5
momentum = 0.9

[train]
epochs = 3
batch_size = 8
seed = 7

[eval]
clustering = { k = 2, n_init = 3 }

[[regularizer]]
name = "decov"
weight = 0.2
targets = ["h1", "h2"]
)";

TEST_F(ConfigTest, ParsesTypedValuesAndDefaults) {
  const Config c = loadConfig(write(kValid));
  EXPECT_EQ(c.data.source, "xor");
  EXPECT_EQ(c.data.samples, 64);
  EXPECT_EQ(c.model.hidden, (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(c.optim.name, "sgd");
  EXPECT_DOUBLE_EQ(c.optim.momentum, 0.9);
  EXPECT_EQ(c.train.epochs, 3);
  EXPECT_EQ(c.train.seed, 7u);
  EXPECT_EQ(c.train.threads, 1);  // default
  ASSERT_TRUE(c.eval.clustering.has_value());
  EXPECT_EQ(c.eval.clustering->k, 2);
  EXPECT_EQ(c.eval.clustering->nInit, 3);
  EXPECT_EQ(c.eval.clustering->normalization, "arithmetic");
  EXPECT_FALSE(c.eval.mi.has_value());
  ASSERT_EQ(c.regularizers.size(), 1u);
  EXPECT_EQ(c.regularizers[0].name, "cr");  // decov is an alias (SPEC §2)
  EXPECT_EQ(c.regularizers[0].targets, (std::vector<std::string>{"h1", "h2"}));
}

TEST_F(ConfigTest, ResolvedTomlRoundTrips) {
  const Config c = loadConfig(write(kValid));
  const std::string resolved = toToml(c);
  const Config again = loadConfig(test::writeFile(dir_ / "resolved.toml", resolved));
  EXPECT_EQ(toToml(again), resolved);
  EXPECT_NE(resolved.find("threads = 1"), std::string::npos) << resolved;  // defaults are written out
}

TEST_F(ConfigTest, UnknownKeyNamesFileLineAndNearestKey) {
  const std::string error = errorOf("[optim]\nname = \"adam\"\nlearning_rat = 0.1\n");
  EXPECT_NE(error.find("c.toml:3: optim.learning_rat: unknown key"), std::string::npos) << error;
  const std::string typo = errorOf("[train]\nbatch_sise = 10\n");
  EXPECT_NE(typo.find("c.toml:2: train.batch_sise: unknown key (did you mean 'batch_size'?)"), std::string::npos) << typo;
}

TEST_F(ConfigTest, UnknownSectionSuggestsNearest) {
  const std::string error = errorOf("[trian]\nepochs = 1\n");
  EXPECT_NE(error.find("c.toml:1: trian: unknown section (did you mean [train]?)"), std::string::npos) << error;
}

TEST_F(ConfigTest, WrongTypeSaysWhatWasExpected) {
  const std::string error = errorOf("[train]\n\nepochs = \"ten\"\n");
  EXPECT_NE(error.find("c.toml:3: train.epochs: expected an integer, got a string"), std::string::npos) << error;
}

TEST_F(ConfigTest, OutOfRangeSaysRangeAndValue) {
  const std::string error = errorOf("[optim]\nlr = -0.1\n");
  EXPECT_NE(error.find("c.toml:2: optim.lr: expected a number in (0, 10], got -0.1"), std::string::npos) << error;
  const std::string batch = errorOf("[train]\nbatch_size = 0\n");
  EXPECT_NE(batch.find("c.toml:2: train.batch_size: expected an integer in [1, 10000000], got 0"), std::string::npos) << batch;
}

TEST_F(ConfigTest, BadChoiceSuggestsNearest) {
  const std::string error = errorOf("[optim]\nname = \"adma\"\n");
  EXPECT_NE(error.find("c.toml:2: optim.name: expected one of"), std::string::npos) << error;
  EXPECT_NE(error.find("did you mean \"adam\""), std::string::npos) << error;
}

TEST_F(ConfigTest, RegularizerErrorsNameTheEntry) {
  const std::string name = errorOf("[[regularizer]]\nname = \"cw-crr\"\ntargets = [\"h1\"]\n");
  EXPECT_NE(name.find("c.toml:2: regularizer[0].name: expected one of"), std::string::npos) << name;
  EXPECT_NE(name.find("did you mean \"cw-cr\""), std::string::npos) << name;
  const std::string target = errorOf("[model]\nhidden = [5]\n[[regularizer]]\nname = \"cr\"\ntargets = [\"h2\"]\n");
  EXPECT_NE(target.find("c.toml:5: regularizer[0].targets: no layer named 'h2' (layers: h1, out)"), std::string::npos)
      << target;
}

TEST_F(ConfigTest, SyntaxErrorHasLine) {
  const std::string error = errorOf("[train]\nepochs = = 3\n");
  EXPECT_NE(error.find("c.toml:2: "), std::string::npos) << error;
}

TEST_F(ConfigTest, MissingFileIsAnError) {
  EXPECT_THROW(loadConfig((dir_ / "absent.toml").string()), ConfigError);
}

TEST_F(ConfigTest, SetOverridesValuesAndRegularizers) {
  const Config c = loadConfig(write(kValid), {"train.epochs=5", "optim.name=adam", "regularizer.weight=0.5",
                                              "eval.mi.sigma2=0.2", "data.dir=/tmp/x"});
  EXPECT_EQ(c.train.epochs, 5);
  EXPECT_EQ(c.optim.name, "adam");  // a bare word is a string
  EXPECT_DOUBLE_EQ(c.regularizers[0].weight, 0.5);
  ASSERT_TRUE(c.eval.mi.has_value());
  EXPECT_DOUBLE_EQ(c.eval.mi->sigma2, 0.2);
  EXPECT_EQ(c.data.dir, "/tmp/x");
}

TEST_F(ConfigTest, SetErrorsAreChecked) {
  EXPECT_NE(errorOf(kValid, {"train.epoch=5"}).find("c.toml: --set: train.epoch: unknown key (did you mean 'epochs'?)"),
            std::string::npos)
      << errorOf(kValid, {"train.epoch=5"});
  EXPECT_NE(errorOf(kValid, {"train.epochs=-1"}).find("train.epochs: expected an integer in [0, 100000], got -1"),
            std::string::npos);
  EXPECT_NE(errorOf(kValid, {"epochs"}).find("expected section.key=value"), std::string::npos);
  EXPECT_NE(errorOf(kValid, {"regularizer.3.weight=1"}).find("regularizer has no entry 3"), std::string::npos);
}

TEST_F(ConfigTest, CnnLayerNames) {
  ModelConfig m;
  m.type = "cnn";
  m.layers = {"conv:32:3", "conv:32:3", "pool:2", "fc:128"};
  EXPECT_EQ(modelLayerNames(m), (std::vector<std::string>{"conv1", "conv2", "pool1", "fc1"}));
}

}  // namespace
}  // namespace repshape
