#pragma once
// The subcommands of the `repshape` executable. Each parses its own arguments and returns the
// process exit code: 0 success, 1 runtime failure, 2 bad input (config, data, arguments).

namespace repshape {

int runTrain(int argc, char** argv);    // Train.cpp
int runInspect(int argc, char** argv);  // Inspect.cpp
int runVersion();                       // Train.cpp

}  // namespace repshape
