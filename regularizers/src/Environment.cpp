#include <repshape/regularizers/Environment.h>

#include <cstdlib>
#include <stdexcept>

namespace repshape {

std::string environmentChoice(const char* name, std::initializer_list<const char*> choices) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return *choices.begin();
  for (const char* choice : choices)
    if (std::string(text) == choice) return text;
  std::string expected;
  std::size_t i = 0;
  for (const char* choice : choices) {
    if (i > 0) expected += i + 1 == choices.size() ? " or " : ", ";
    expected += choice;
    ++i;
  }
  throw std::invalid_argument(std::string(name) + "='" + text + "': expected " + expected);
}

}  // namespace repshape
