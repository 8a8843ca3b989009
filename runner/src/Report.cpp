// `repshape report RESULTS [--format md|csv|tex|html] [--out FILE] [--figures DIR]`: the grid's
// table (and the spec's [[report.figure]]s) from its cells' result.json files (a partial grid too:
// missing and failed cells are counted). --figures writes each figure as DIR/<name>.svg (a table
// figure as DIR/<name>.md) and, when `rsvg-convert` (Debian: librsvg2-bin) is on PATH, a PNG too.
#include "Commands.h"

#include <repshape/jobs/Jobs.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace repshape {

namespace {

namespace fs = std::filesystem;

bool onPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::string dirs = path;
  for (std::size_t start = 0; start <= dirs.size();) {
    const std::size_t end = std::min(dirs.find(':', start), dirs.size());
    std::error_code ec;
    const fs::path candidate = fs::path(dirs.substr(start, end - start)) / program;
    if (end > start && fs::is_regular_file(candidate, ec)) return true;
    start = end + 1;
  }
  return false;
}

// Single-quoted for /bin/sh.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

void writeFigures(const std::string& results, const std::string& dir) {
  const auto figures = jobs::renderFigures(results);
  fs::create_directories(dir);
  const bool png = onPath("rsvg-convert");
  for (const auto& f : figures) {
    const std::string stem = (fs::path(dir) / f.name).string();
    if (f.kind == "table") {
      jobs::writeFileAtomically(stem + ".md", "# " + f.title + "\n" + f.markdown);
      std::fprintf(stderr, "repshape report: wrote %s.md\n", stem.c_str());
      continue;
    }
    jobs::writeFileAtomically(stem + ".svg", f.svg);
    std::fprintf(stderr, "repshape report: wrote %s.svg\n", stem.c_str());
    if (png) {
      const std::string command = "rsvg-convert -f png -o " + quoted(stem + ".png") + " " + quoted(stem + ".svg");
      if (std::system(command.c_str()) == 0) std::fprintf(stderr, "repshape report: wrote %s.png\n", stem.c_str());
      else std::fprintf(stderr, "repshape report: warning: rsvg-convert failed for %s.svg (no PNG)\n", stem.c_str());
    }
  }
  if (!png && !figures.empty())
    std::fprintf(stderr, "repshape report: no rsvg-convert on PATH (apt install librsvg2-bin): SVG only\n");
  if (figures.empty()) std::fprintf(stderr, "repshape report: the spec declares no [[report.figure]]\n");
}

}  // namespace

int runReport(int argc, char** argv) {
  CLI::App app{"Tables and figures of a grid's results (the papers' layout)", "repshape report"};
  std::string results, format = "md", out, figures;
  app.add_option("results", results, "results directory of `repshape grid`")->required();
  app.add_option("--format", format, "md | csv | tex | html")->check(CLI::IsMember({"md", "csv", "tex", "html"}));
  app.add_option("--out", out, "write to FILE instead of stdout");
  app.add_option("--figures", figures, "also write the spec's figures to DIR (<name>.svg, .png with rsvg-convert)");
  if (const int code = parseCommandLine(app, argc, argv); code >= 0) return code;
  try {
    const std::string text = jobs::renderReport(results, format);
    if (out.empty()) {
      std::fputs(text.c_str(), stdout);
    } else {
      jobs::writeFileAtomically(out, text);
      std::printf("repshape report: wrote %s\n", out.c_str());
    }
    if (!figures.empty()) writeFigures(results, figures);
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
