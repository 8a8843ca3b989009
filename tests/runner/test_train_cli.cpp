// `repshape train` end to end, through the real binary: output files, accuracy on Fashion-MNIST,
// byte-reproducible logs, and bad input rejected with exit code 2 before anything is written.
#include "TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>

namespace repshape {
namespace {

namespace fs = std::filesystem;

const std::string kBin = REPSHAPE_BIN;
const std::string kSource = REPSHAPE_SOURCE_DIR;

std::size_t countLines(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

TEST(TrainCli, FashionMlpWritesThreeFilesAndLearns) {
  const fs::path out = test::tempDir("fashion") / "run";
  const auto run = test::runCommand(kBin + " train " + kSource + "/jobs/fashion-mlp.toml --out " + out.string());
  ASSERT_EQ(run.exitCode, 0) << run.output;
  ASSERT_TRUE(fs::exists(out / "config.resolved.toml"));
  const std::string steps = test::readFile(out / "steps.jsonl");
  const std::string result = test::readFile(out / "result.json");
  // 10 000 samples, batch 100, 5 epochs → 500 steps, one line each.
  EXPECT_EQ(countLines(steps), 500u);
  for (const char* key : {"\"step\":", "\"epoch\":", "\"loss\":", "\"task_loss\":", "\"penalty\":", "\"samples_per_s\":"})
    EXPECT_NE(steps.find(key), std::string::npos) << key;
  const double first = test::jsonNumber(steps, "task_loss");
  const double last = test::jsonNumber(steps, "task_loss", steps.rfind("{\"step\""));
  EXPECT_GT(first, 2.0);  // ≈ ln 10 at initialisation
  EXPECT_LT(last, first);
  const double testError = test::jsonNumber(result, "error", result.find("\"test\""));
  EXPECT_LT(testError, 20.0) << result;
  EXPECT_GT(testError, 5.0) << result;  // a sanity bound: 10 000 samples cannot reach 5 %
  EXPECT_NE(result.find("\"git_commit\":"), std::string::npos);
  EXPECT_NE(result.find("\"h3\":{"), std::string::npos) << result;  // metrics of the penalty target
  // The resolved config reproduces the run: it parses and names every section.
  const std::string resolved = test::readFile(out / "config.resolved.toml");
  for (const char* section : {"[data]", "[model]", "[optim]", "[train]", "[eval]", "[[regularizer]]"})
    EXPECT_NE(resolved.find(section), std::string::npos) << section;
}

TEST(TrainCli, SameSeedGivesByteIdenticalSteps) {
  const fs::path dir = test::tempDir("determinism");
  const std::string common = kBin + " train " + kSource +
                             "/jobs/fashion-mlp.toml --set data.train_size=2000 --set train.epochs=1"
                             " --set train.timings=false --set model.dropout=0.2 --out ";
  ASSERT_EQ(test::runCommand(common + (dir / "a").string()).exitCode, 0);
  ASSERT_EQ(test::runCommand(common + (dir / "b").string()).exitCode, 0);
  const std::string a = test::readFile(dir / "a" / "steps.jsonl");
  EXPECT_EQ(countLines(a), 20u);
  EXPECT_EQ(a, test::readFile(dir / "b" / "steps.jsonl"));
  // A different seed gives a different trajectory (the comparison above can fail).
  ASSERT_EQ(test::runCommand(common + (dir / "c").string() + " --set train.seed=2").exitCode, 0);
  EXPECT_NE(a, test::readFile(dir / "c" / "steps.jsonl"));
  // Fashion-MNIST's batches come from the exact byte copy (data/ByteImages.h) unless
  // REPSHAPE_BYTE_INPUTS=0 asks for the floats: the same run either way, to the last bit.
  ASSERT_EQ(test::runCommand("REPSHAPE_BYTE_INPUTS=0 " + common + (dir / "d").string()).exitCode, 0);
  EXPECT_EQ(a, test::readFile(dir / "d" / "steps.jsonl"));
  const auto invalid = test::runCommand("REPSHAPE_BYTE_INPUTS=yes " + common + (dir / "e").string());
  EXPECT_NE(invalid.exitCode, 0);
  EXPECT_NE(invalid.output.find("REPSHAPE_BYTE_INPUTS='yes'"), std::string::npos) << invalid.output;
  // Tensors come from the caching CPU allocator (CachingCpuAllocator.h) unless REPSHAPE_CPU_CACHE=0:
  // reused blocks hold old data, which no step may read, so both runs agree to the last bit.
  ASSERT_EQ(test::runCommand("REPSHAPE_CPU_CACHE=0 " + common + (dir / "f").string()).exitCode, 0);
  EXPECT_EQ(a, test::readFile(dir / "f" / "steps.jsonl"));
  const auto badCache = test::runCommand("REPSHAPE_CPU_CACHE=on " + common + (dir / "g").string());
  EXPECT_EQ(badCache.exitCode, 2);  // bad input, before any work
  EXPECT_NE(badCache.output.find("REPSHAPE_CPU_CACHE='on': expected 1 or 0"), std::string::npos) << badCache.output;
}

struct BadInput {
  const char* name;
  std::string configText;  // written to bad.toml
  std::string extraArgs;
  std::string expected;    // substring of the message
};

class TrainCliBadInput : public ::testing::TestWithParam<BadInput> {};

TEST_P(TrainCliBadInput, ExitsTwoWithLocationAndWritesNothing) {
  const BadInput& bad = GetParam();
  const fs::path dir = test::tempDir(std::string("bad-") + bad.name);
  // A malformed IDX file for the data cases: wrong magic number.
  fs::create_directories(dir / "idx");
  test::writeFile(dir / "idx" / "train-images-idx3-ubyte", std::string("\x00\x00\x08\x07garbage", 11));
  test::writeFile(dir / "idx" / "train-labels-idx1-ubyte", std::string("\x00\x00\x08\x07garbage", 11));
  auto substitute = [&](std::string text) {
    for (std::size_t at; (at = text.find("@DIR@")) != std::string::npos;) text.replace(at, 5, dir.string());
    return text;
  };
  const std::string text = substitute(bad.configText), expected = substitute(bad.expected);
  const std::string config = test::writeFile(dir / "bad.toml", text);
  const fs::path out = dir / "out";
  const auto run = test::runCommand(kBin + " train " + config + " --out " + out.string() + " " + bad.extraArgs);
  EXPECT_EQ(run.exitCode, 2) << run.output;
  EXPECT_NE(run.output.find(expected), std::string::npos) << run.output;
  EXPECT_FALSE(fs::exists(out)) << "nothing may be written for bad input";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TrainCliBadInput,
    ::testing::Values(
        BadInput{"unknown-key", "[train]\nepochs = 1\nbatchsize = 10\n", "",
                 "bad.toml:3: train.batchsize: unknown key (did you mean 'batch_size'?)"},
        BadInput{"wrong-type", "[model]\nhidden = [10, \"x\"]\n", "", "bad.toml:2: model.hidden: expected an integer, got a string"},
        BadInput{"out-of-range", "[model]\ndropout = 1.5\n", "", "bad.toml:2: model.dropout: expected a number in [0, 1], got 1.5"},
        BadInput{"bad-set", "[train]\nepochs = 1\n", "--set train.seeds=3", "bad.toml: --set: train.seeds: unknown key (did you mean 'seed'?)"},
        BadInput{"bad-set-value", "[[regularizer]]\nname = \"cr\"\ntargets = [\"h1\"]\n", "--set regularizer.weight=-1",
                 "bad.toml: --set: regularizer[0].weight: expected a number in [0, inf], got -1"},
        BadInput{"missing-data", "[data]\nsource = \"idx\"\ndir = \"@DIR@/nowhere\"\n", "", "@DIR@/nowhere"},
        BadInput{"malformed-data", "[data]\nsource = \"idx\"\ndir = \"@DIR@/idx\"\n", "", "@DIR@/idx/train-"},
        BadInput{"missing-config", "", "--set x.y=1 extra.toml", "not expected: extra.toml"},
        BadInput{"bad-fault", "[train]\nepochs = 1\n", "--fault rank=1,kind=explode", "explode"}),
    [](const ::testing::TestParamInfo<BadInput>& info) {
      std::string name = info.param.name;
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

}  // namespace
}  // namespace repshape
