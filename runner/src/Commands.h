#pragma once
// The subcommands of the `repshape` executable. Each takes its own argv (argv[0] is the
// subcommand's name), parses it with CLI11 and returns the process exit code (SPEC §7): 0 success,
// 1 runtime failure, 2 bad input (config, data, arguments: nothing written), 4 diverged,
// 70 collective deadline, 75 preempted, 130/143 interrupted.

#include "CommandLine.h"

namespace repshape {

int runTrain(int argc, char** argv);    // Train.cpp
int runInspect(int argc, char** argv);  // Inspect.cpp
int runVersion();                       // Train.cpp
int runGrid(int argc, char** argv);     // Grid.cpp
int runReport(int argc, char** argv);   // Report.cpp
int runSlurm(int argc, char** argv);    // Slurm.cpp

}  // namespace repshape

#include <optional>
#include <string>

namespace repshape {

// The grid's cell validator (Grid.cpp): loadConfig on a cell's config text; the message on error,
// else nothing and `resolved` holds its config.resolved.toml. `grid` and `slurm` share it.
std::optional<std::string> validateCellConfig(const std::string& text, std::string& resolved);

}  // namespace repshape
