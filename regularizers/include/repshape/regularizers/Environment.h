#pragma once
// The environment switches of repshape (REPSHAPE_STATS_PATH, REPSHAPE_BYTE_INPUTS, …): A/B choices
// for benchmarks and tests that a run never needs. One parser, so every switch treats an unset or
// empty variable as its default and rejects a value it does not know, naming the variable and its
// choices.

#include <initializer_list>
#include <string>

namespace repshape {

// The value of environment variable `name` when it is one of `choices`; the first choice when it
// is unset or empty. Any other value throws std::invalid_argument: "NAME='v': expected a, b or c".
std::string environmentChoice(const char* name, std::initializer_list<const char*> choices);

}  // namespace repshape
