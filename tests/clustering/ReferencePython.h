#pragma once
// Runs an independent Python reference (Debian's python3 with scikit-learn / NumPy, the path in
// REPSHAPE_REFERENCE_PYTHON) on a text file the test wrote, and reads back whitespace-separated
// numbers. The reference never sees repshape code: it recomputes everything from the raw input.

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace repshape::test {

inline std::string scratchPath(const std::string& name) {
  return ::testing::TempDir() + "/repshape_clustering_" + std::to_string(::getpid()) + "_" + name;
}

// Runs tests/clustering/<script> <input> <output>; returns every number of the output file.
inline std::vector<double> runReference(const std::string& script, const std::string& input) {
  const std::string output = input + ".out";
  const std::string command = std::string(REPSHAPE_REFERENCE_PYTHON) + " " + REPSHAPE_SOURCE_DIR +
                              "/tests/clustering/" + script + " " + input + " " + output;
  const int status = std::system(command.c_str());
  EXPECT_EQ(status, 0) << "reference failed: " << command;
  std::ifstream in(output);
  std::vector<double> values;
  std::string token;
  while (in >> token) {
    values.push_back(std::stod(token));
  }
  std::remove(output.c_str());
  return values;
}

}  // namespace repshape::test
