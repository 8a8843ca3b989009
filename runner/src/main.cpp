// repshape: command-line entry point. Library code throws; errors are caught once here.
#include "Commands.h"

#include <cstdio>
#include <cstring>
#include <string>

namespace {

void printUsage(std::FILE* to) {
  std::fputs(
      "usage: repshape <command> [args]\n"
      "  train CONFIG.toml [--set section.key=value]... [--out DIR]   train one model\n"
      "  inspect ACTIVATIONS.(csv|npy) [options]                      metrics and penalties of saved activations\n"
      "  version                                                      print version and build\n"
      "Run `repshape <command> --help` for the options of a command.\n",
      to);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    printUsage(stderr);
    return 2;
  }
  const std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    printUsage(stdout);
    return 0;
  }
  if (command == "train") return repshape::runTrain(argc - 2, argv + 2);
  if (command == "inspect") return repshape::runInspect(argc - 2, argv + 2);
  if (command == "version" || command == "--version") return repshape::runVersion();
  std::fprintf(stderr, "repshape: unknown command '%s'\n", command.c_str());
  printUsage(stderr);
  return 2;
}
