// The [metrics] section: parsed, written to the resolved TOML, and malformed addresses are located
// config errors (file:line: key: what), like every other key.
#include "Config.h"
#include "TestUtil.h"

#include <gtest/gtest.h>

namespace repshape {
namespace {

class MetricsConfigTest : public ::testing::Test {
 protected:
  std::filesystem::path dir_ = test::tempDir("metrics-config");
  std::string write(const std::string& text) { return test::writeFile(dir_ / "c.toml", text); }
  std::string errorOf(const std::string& text, const std::vector<std::string>& overrides = {}) {
    try {
      loadConfig(write(text), overrides);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "";
  }
};

constexpr const char* kBase = "[data]\nsource = \"xor\"\n";

TEST_F(MetricsConfigTest, DefaultsAreOffAndKeysParse) {
  const Config off = loadConfig(write(kBase));
  EXPECT_EQ(off.metrics.listen, "");
  EXPECT_EQ(off.metrics.pushgateway, "");
  const Config on = loadConfig(write(std::string(kBase) +
                                     "[metrics]\nlisten = \"127.0.0.1:0\"\npushgateway = \"gw:9091\"\n"
                                     "targets_dir = \"res/targets\"\ngrid = \"choi\"\ncell = \"a=1\"\n"));
  EXPECT_EQ(on.metrics.listen, "127.0.0.1:0");
  EXPECT_EQ(on.metrics.pushgateway, "gw:9091");
  EXPECT_EQ(on.metrics.targetsDir, "res/targets");
  EXPECT_EQ(on.metrics.grid, "choi");
  EXPECT_EQ(on.metrics.cell, "a=1");
  const std::string resolved = toToml(on);
  EXPECT_NE(resolved.find("[metrics]"), std::string::npos) << resolved;
  EXPECT_NE(resolved.find("targets_dir = 'res/targets'"), std::string::npos) << resolved;
  EXPECT_EQ(toToml(loadConfig(test::writeFile(dir_ / "r.toml", resolved))), resolved);
}

TEST_F(MetricsConfigTest, OverridesAsTheGridPassesThem) {
  const Config c = loadConfig(write(kBase), {"metrics.grid=choi", "metrics.cell=reg=cr,trial=0",
                                             "metrics.targets_dir=/r/targets", "metrics.listen=127.0.0.1:0"});
  EXPECT_EQ(c.metrics.grid, "choi");
  EXPECT_EQ(c.metrics.cell, "reg=cr,trial=0");
  EXPECT_EQ(c.metrics.targetsDir, "/r/targets");
}

TEST_F(MetricsConfigTest, MalformedAddressesAreLocated) {
  const std::string file = (dir_ / "c.toml").string();
  std::string e = errorOf(std::string(kBase) + "[metrics]\nlisten = \"localhost:9100\"\n");
  EXPECT_EQ(e.rfind(file + ":4: metrics.listen: host must be an IPv4", 0), 0u) << e;
  e = errorOf(std::string(kBase) + "[metrics]\n\nlisten = \"127.0.0.1:99999\"\n");
  EXPECT_EQ(e.rfind(file + ":5: metrics.listen: port must be 0..65535", 0), 0u) << e;
  e = errorOf(std::string(kBase) + "[metrics]\npushgateway = \"127.0.0.1\"\n");
  EXPECT_EQ(e.rfind(file + ":4: metrics.pushgateway: expected \"HOST:PORT\"", 0), 0u) << e;
  e = errorOf(kBase, {"metrics.listen=127.0.0.1"});
  EXPECT_EQ(e.rfind(file + ": --set: metrics.listen: expected \"HOST:PORT\"", 0), 0u) << e;
  e = errorOf(std::string(kBase) + "[metrics]\nlisen = \"127.0.0.1:0\"\n");
  EXPECT_NE(e.find("did you mean 'listen'"), std::string::npos) << e;
  e = errorOf(std::string(kBase) + "[metrcs]\n");
  EXPECT_NE(e.find("did you mean [metrics]"), std::string::npos) << e;
}

}  // namespace
}  // namespace repshape
