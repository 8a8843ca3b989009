// `repshape report RESULTS [--format md|csv|tex|html] [--out FILE]`: the grid's table from its
// cells' result.json files (a partial grid too: missing and failed cells are counted).
#include "Commands.h"

#include <repshape/jobs/Jobs.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>

namespace repshape {

int runReport(int argc, char** argv) {
  CLI::App app{"Tables of a grid's results (the papers' layout)", "repshape report"};
  std::string results, format = "md", out;
  app.add_option("results", results, "results directory of `repshape grid`")->required();
  app.add_option("--format", format, "md | csv | tex | html")->check(CLI::IsMember({"md", "csv", "tex", "html"}));
  app.add_option("--out", out, "write to FILE instead of stdout");
  if (const int code = parseCommandLine(app, argc, argv); code >= 0) return code;
  try {
    const std::string text = jobs::renderReport(results, format);
    if (out.empty()) {
      std::fputs(text.c_str(), stdout);
    } else {
      jobs::writeFileAtomically(out, text);
      std::printf("repshape report: wrote %s\n", out.c_str());
    }
  } catch (const jobs::SpecError& e) {
    std::fprintf(stderr, "repshape: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "repshape report: error: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace repshape
