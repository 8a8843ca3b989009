#include "CommandLine.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>

namespace repshape {

namespace {

int envInt(std::initializer_list<const char*> names, int fallback) {
  for (const char* name : names)
    if (const char* value = std::getenv(name)) return std::atoi(value);
  return fallback;
}

}  // namespace

int launcherRank() { return envInt({"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"}, 0); }

int launcherWorldSize() { return envInt({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"}, 1); }

int launcherLocalSize() {
  return envInt({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"}, 1);
}

int inputError(const std::string& message) {
  if (launcherRank() == 0) std::fprintf(stderr, "repshape: error: %s\n", message.c_str());
  return 2;
}

int parseCommandLine(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    if (launcherRank() == 0) std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    return inputError(app.get_name() + ": " + e.what() + " (see `" + app.get_name() + " --help`)");
  }
  return -1;
}

}  // namespace repshape
