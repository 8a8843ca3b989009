// environmentChoice: the one parser of the REPSHAPE_* switches.
#include <repshape/regularizers/Environment.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace repshape {
namespace {

constexpr const char* kName = "REPSHAPE_TEST_SWITCH";

std::string messageOf(std::initializer_list<const char*> choices) {
  try {
    environmentChoice(kName, choices);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(EnvironmentChoice, UnsetOrEmptyGivesTheFirstChoice) {
  ::unsetenv(kName);
  EXPECT_EQ(environmentChoice(kName, {"auto", "packed", "gather"}), "auto");
  ::setenv(kName, "", 1);
  EXPECT_EQ(environmentChoice(kName, {"1", "0"}), "1");
  ::unsetenv(kName);
}

TEST(EnvironmentChoice, AListedValueIsReturned) {
  ::setenv(kName, "gather", 1);
  EXPECT_EQ(environmentChoice(kName, {"auto", "packed", "gather"}), "gather");
  ::setenv(kName, "0", 1);
  EXPECT_EQ(environmentChoice(kName, {"1", "0"}), "0");
  ::unsetenv(kName);
}

TEST(EnvironmentChoice, AnyOtherValueNamesTheVariableAndItsChoices) {
  ::setenv(kName, "Gather", 1);  // case matters
  EXPECT_EQ(messageOf({"auto", "packed", "gather"}), "REPSHAPE_TEST_SWITCH='Gather': expected auto, packed or gather");
  ::setenv(kName, "yes", 1);
  EXPECT_EQ(messageOf({"1", "0"}), "REPSHAPE_TEST_SWITCH='yes': expected 1 or 0");
  ::unsetenv(kName);
}

}  // namespace
}  // namespace repshape
