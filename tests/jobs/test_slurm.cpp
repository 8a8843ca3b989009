// Slurm array planning (jobs/src/Slurm.cpp) without a cluster: chunking below MaxArraySize, the
// array-index → cell mapping, script options, quoting that bash reads back.
#include <repshape/jobs/Slurm.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <string>

namespace repshape::jobs {
namespace {

std::vector<SlurmCell> cells(int n) {
  std::vector<SlurmCell> out;
  for (int i = 0; i < n; ++i) out.push_back({"c" + std::to_string(i), {"train", "x.toml", "--set", "train.seed=" + std::to_string(i)}});
  return out;
}

SlurmOptions options() {
  SlurmOptions o;
  o.results = "/shared/R";
  o.binary = "/opt/repshape";
  return o;
}

TEST(SlurmPlan, ChunksBelowMaxArraySizeCoveringEveryCellOnce) {
  SlurmOptions o = options();
  o.maxArraySize = 3;
  o.cellsPerTask = 2;  // 6 cells per array
  const auto arrays = planArrays(cells(13), o, "/shared/R/slurm/s");
  ASSERT_EQ(arrays.size(), 3u);  // 6 + 6 + 1 cells
  EXPECT_EQ(arrays[0].tasks, 3);
  EXPECT_EQ(arrays[2].tasks, 1);
  std::multiset<std::string> seen;
  for (const auto& a : arrays) {
    EXPECT_LE(a.tasks, o.maxArraySize);
    for (const auto& c : a.cells) seen.insert(c.id);
    EXPECT_NE(a.scriptText.find("#SBATCH --array=0-" + std::to_string(a.tasks - 1) + "\n"), std::string::npos);
  }
  EXPECT_EQ(seen.size(), 13u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 13u);
  EXPECT_EQ(arrays[1].cellsFile, "/shared/R/slurm/s/array-1.cells");
  // Line order is the mapping: task a of array 1 runs lines 2a, 2a+1, i.e. cells 6+2a, 7+2a.
  EXPECT_EQ(arrays[1].cellsText.substr(0, arrays[1].cellsText.find('\n')), "c6\ttrain x.toml --set train.seed=6");
}

TEST(SlurmPlan, ScriptCarriesOptions) {
  SlurmOptions o = options();
  o.throttle = 4;
  o.ranksPerCell = 2;
  o.gpusPerRank = 1;
  o.partition = "gpu";
  o.time = "01:00:00";
  o.account = "lab";
  o.extra = {"#SBATCH --constraint=a100"};
  o.warningSeconds = 300;
  const std::string s = planArrays(cells(5), o, "/shared/R/slurm/s")[0].scriptText;
  for (const char* line : {"#SBATCH --array=0-4%4\n", "#SBATCH --ntasks=2\n", "#SBATCH --gpus-per-task=1\n",
                           "#SBATCH --partition=gpu\n", "#SBATCH --time=01:00:00\n", "#SBATCH --account=lab\n",
                           "#SBATCH --constraint=a100\n", "#SBATCH --signal=B:USR2@300\n", "#SBATCH --requeue\n",
                           "#SBATCH --output=/shared/R/slurm/logs/repshape_%A_%a.out\n", "trap forward_usr2 USR2",
                           "scontrol requeue"})
    EXPECT_NE(s.find(line), std::string::npos) << line;
  EXPECT_EQ(s.find("USR1"), s.find("USR1: NCCL"));  // only the comment mentions USR1
}

TEST(SlurmPlan, BadInput) {
  EXPECT_THROW(planArrays({}, options(), "/x"), std::invalid_argument);
  SlurmOptions o = options();
  o.cellsPerTask = 0;
  EXPECT_THROW(planArrays(cells(1), o, "/x"), std::invalid_argument);
  EXPECT_THROW(planArrays({{"a/b", {"train"}}}, options(), "/x"), std::invalid_argument);
  EXPECT_THROW(planArrays({{"a\tb", {"train"}}}, options(), "/x"), std::invalid_argument);
  EXPECT_TRUE(validCellId("cr.1k.lambda=0.01.trial=3"));
}

TEST(SlurmPlan, MaxArraySizeFromShowConfig) {
  EXPECT_EQ(parseMaxArraySize("KillWait                = 5 sec\nMaxArraySize            = 3\nMaxJobCount = 10\n"), 3);
  EXPECT_EQ(parseMaxArraySize("nothing here", 1001), 1001);
}

TEST(SlurmPlan, QuotingSurvivesBash) {
  const std::string word = "it's a \"value\" $HOME `x` \\ end";
  const std::string command = "bash -c 'eval \"args=(\"$0\")\"; printf %s \"${args[0]}\"' " + shellQuote(shellQuote(word));
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buffer[256] = {};
  const std::size_t n = std::fread(buffer, 1, sizeof buffer - 1, pipe);
  ::pclose(pipe);
  EXPECT_EQ(std::string(buffer, n), word);
  EXPECT_EQ(shellQuote("train.seed=3"), "train.seed=3");
}

}  // namespace
}  // namespace repshape::jobs
