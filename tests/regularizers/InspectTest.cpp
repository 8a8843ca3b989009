// `repshape inspect` end to end: the real executable on CSV and .npy files (the .npy written by
// NumPy), values, gradients and metrics against the independent reference, and exit code 2 with a
// message on bad input.
#include "TestSupport.h"

#include "ArrayIO.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace repshape::test {
namespace {

using torch::Tensor;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `repshape inspect ARGS`, stdout to DIR/out.json, stderr to DIR/err.txt; returns the exit code.
int inspect(const std::string& dir, const std::string& args) {
  const std::string command = std::string(REPSHAPE_EXECUTABLE) + " inspect " + args + " > " + dir + "/out.json 2> " +
                              dir + "/err.txt";
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The number after "key": in a flat part of the JSON; NaN for null, throws if absent.
double jsonNumber(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const auto at = json.find(needle);
  if (at == std::string::npos) throw std::runtime_error("no key " + key + " in " + json);
  const char* p = json.c_str() + at + needle.size();
  if (std::strncmp(p, "null", 4) == 0) return std::nan("");
  return std::strtod(p, nullptr);
}

class InspectCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = makePenaltyData(31);
    dir_ = scratchDir("inspect");
    runReference(dir_, data_, referenceCases());
    // NumPy writes the .npy inputs: relu(z) as float64, z as float32, labels as int64.
    const std::string py = std::string(REPSHAPE_REFERENCE_PYTHON) + " -c \"import numpy as np; d='" + dir_ +
                           "'; z=np.loadtxt(d+'/z.csv',delimiter=','); np.save(d+'/zrelu.npy', np.maximum(z,0)); "
                           "np.save(d+'/z32.npy', z.astype(np.float32)); "
                           "np.save(d+'/labels.npy', np.loadtxt(d+'/labels.csv').astype(np.int64))\"";
    ASSERT_EQ(std::system(py.c_str()), 0);
  }
  static PenaltyData data_;
  static std::string dir_;
};
PenaltyData InspectCli::data_;
std::string InspectCli::dir_;

TEST_F(InspectCli, CsvPenaltiesAndGradientsMatchReference) {
  std::string args = dir_ + "/z.csv --labels " + dir_ + "/labels.csv --probs " + dir_ + "/probs.csv --weights " +
                     dir_ + "/w.csv --classes 5 --grad-out " + dir_ + "/grads";
  for (const auto& c : referenceCases()) args += " --penalty " + c;
  ASSERT_EQ(inspect(dir_, args), 0) << readFile(dir_ + "/err.txt");
  const std::string json = readFile(dir_ + "/out.json");
  EXPECT_EQ(jsonNumber(json, "samples"), 37);
  EXPECT_EQ(jsonNumber(json, "classes"), 5);
  const auto ref = readReferenceValues(dir_);
  for (const auto& c : referenceCases()) {
    SCOPED_TRACE(c);
    const double expected = ref.at(c);
    EXPECT_NEAR(jsonNumber(json, c), expected, 1e-8 * std::max(1.0, std::abs(expected)));  // %.9g in JSON
    const Tensor grad = io::readArray(dir_ + "/grads/" + fileStem(c) + ".csv");
    const Tensor refGrad = io::readArray(dir_ + "/ref_grad_" + fileStem(c) + ".csv").view_as(grad);
    EXPECT_LE((grad - refGrad).abs().max().item<double>(), 1e-8 * std::max(1.0, refGrad.abs().max().item<double>()));
  }
}

TEST_F(InspectCli, NpyMetricsMatchReference) {
  std::map<std::string, std::string> ref[2];
  std::ifstream in(dir_ + "/ref_metrics.txt");
  int relu;
  std::string name, value;
  while (in >> relu >> name >> value) ref[relu][name] = value;
  ASSERT_EQ(inspect(dir_, dir_ + "/zrelu.npy --relu --labels " + dir_ + "/labels.npy --penalty cw-vr"), 0)
      << readFile(dir_ + "/err.txt");
  const std::string json = readFile(dir_ + "/out.json");
  for (const auto& [k, v] : ref[1]) {
    SCOPED_TRACE(k);
    if (v == "null") {
      EXPECT_TRUE(std::isnan(jsonNumber(json, k)));
    } else {
      EXPECT_NEAR(jsonNumber(json, k), std::stod(v), 1e-8 * std::max(1.0, std::abs(std::stod(v))));
    }
  }
  // float32 .npy of z: the non-ReLU metrics agree to single precision.
  ASSERT_EQ(inspect(dir_, dir_ + "/z32.npy"), 0) << readFile(dir_ + "/err.txt");
  const std::string json32 = readFile(dir_ + "/out.json");
  for (const auto& [k, v] : ref[0]) {
    SCOPED_TRACE(k);
    if (v != "null") {
      EXPECT_NEAR(jsonNumber(json32, k), std::stod(v), 1e-5 * std::max(1.0, std::abs(std::stod(v))));
    }
  }
}

TEST_F(InspectCli, BadInputExitsTwoWithAMessage) {
  EXPECT_EQ(inspect(dir_, dir_ + "/missing.csv"), 2);
  EXPECT_NE(readFile(dir_ + "/err.txt").find("missing.csv"), std::string::npos);
  EXPECT_EQ(inspect(dir_, dir_ + "/z.csv --penalty cwcr"), 2);
  EXPECT_NE(readFile(dir_ + "/err.txt").find("unknown penalty 'cwcr'"), std::string::npos);
  EXPECT_EQ(inspect(dir_, dir_ + "/z.csv --penalty cw-cr"), 2);
  EXPECT_NE(readFile(dir_ + "/err.txt").find("--labels"), std::string::npos);
  EXPECT_EQ(inspect(dir_, dir_ + "/z.csv --penalty rr:method=svd"), 2);
  EXPECT_EQ(inspect(dir_, dir_ + "/z.csv --labels " + dir_ + "/probs.csv --penalty cw-vr"), 2);
  EXPECT_EQ(inspect(dir_, dir_ + "/z.csv --frobnicate"), 2);
}

}  // namespace
}  // namespace repshape::test
