// repshape: command-line entry point. Library code throws; each subcommand catches once and
// returns its exit code. The subcommand parses its own options (CLI11), so `repshape train --help`
// lists only train's.
#include "Commands.h"

#include <cstdio>
#include <cstring>
#include <string>

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);
};

int version(int, char**) { return repshape::runVersion(); }

constexpr Command kCommands[] = {
    {"train", "CONFIG.toml [--set key=value]... [--out DIR]   train one model (data-parallel under mpirun)",
     repshape::runTrain},
    {"inspect", "ACTIVATIONS.(csv|npy) [options]              metrics and penalties of saved activations",
     repshape::runInspect},
    {"grid", "SPEC.toml --results DIR (--list|--run|--cell ID)   run a grid of cells (resumable)", repshape::runGrid},
    {"report", "RESULTS [--format md|csv|tex|html]            tables of a grid's results", repshape::runReport},
    {"slurm", "SPEC.toml --results DIR [--submit] [options]    the unfinished cells as Slurm job arrays",
     repshape::runSlurm},
    {"version", "                                             print version and build", version},
};

void printUsage(std::FILE* to) {
  std::fputs("usage: repshape <command> [args]\n", to);
  for (const Command& c : kCommands) std::fprintf(to, "  %-8s %s\n", c.name, c.summary);
  std::fputs("Run `repshape <command> --help` for the options of a command.\n", to);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    printUsage(stderr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    printUsage(stdout);
    return 0;
  }
  if (name == "--version") return repshape::runVersion();
  for (const Command& c : kCommands)
    if (name == c.name) return c.run(argc - 1, argv + 1);
  if (repshape::launcherRank() == 0) {
    std::fprintf(stderr, "repshape: error: unknown command '%s'\n", name.c_str());
    printUsage(stderr);
  }
  return 2;
}
