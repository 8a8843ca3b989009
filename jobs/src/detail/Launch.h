#pragma once
// One cell as a child process group, and what its exit means (SPEC §7).

#include <repshape/jobs/Jobs.h>

#include <sys/types.h>

namespace repshape::jobs::detail {

struct RunningCell {
  Cell cell;
  pid_t pid = -1;  // also the process group id of the child and everything it starts
  int lockFd = -1;
  double startSeconds = 0.0;
};

// Writes inputs/<id>.toml, cleans cells/<id>, and starts `repshape train` (under mpirun when
// ranksPerCell > 1) in its own process group with PR_SET_PDEATHSIG, so a kill -9 of the grid
// runner also ends the cell. Returns false when another process holds the cell's lock.
bool launchCell(const GridSpec& spec, const Cell& cell, const RunOptions& options, RunningCell& out);

// After the child exited with wait status `waitStatus`: makes result.json carry `status` (deriving
// it from the exit code when the child wrote none or no file at all) and the cell's identity.
// Returns the final result.json.
nlohmann::json finalizeCell(const std::string& results, const Cell& cell, int waitStatus, bool interrupted,
                            const nlohmann::json& cellExtra);

// Adds `cell` info to a finished result.json lacking it (a runner killed between the child's exit
// and finalizeCell); never rewrites a complete one, so finished cells stay byte-identical.
void completeCellInfo(const std::string& results, const Cell& cell, const nlohmann::json& cellExtra);

nlohmann::json cellInfo(const Cell& cell, const nlohmann::json& extra);
double nowSeconds();

}  // namespace repshape::jobs::detail
