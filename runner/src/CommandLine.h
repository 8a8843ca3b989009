#pragma once
// What every subcommand shares: CLI11 parsing with repshape's exit codes, the launcher's view of
// the job (before MPI starts), and rank-0-only input errors.

#include <string>

namespace CLI {
class App;
}

namespace repshape {

// Parses argv with `app`. Returns -1 to go on, else the exit code: 0 after --help, 2 after a usage
// error (printed by rank 0 only, with the command's usage).
int parseCommandLine(CLI::App& app, int argc, char** argv);

// Rank, world size and ranks on this node as told by the launcher (mpirun, srun), before MPI is
// initialised; 0 / 1 / 1 when not launched by one.
int launcherRank();
int launcherWorldSize();
int launcherLocalSize();

// Prints "repshape: error: MESSAGE" on rank 0 and returns 2 (bad input: nothing was written).
int inputError(const std::string& message);

}  // namespace repshape
