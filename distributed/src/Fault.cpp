#include <repshape/distributed/Communicator.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "detail/MpiWorld.h"

namespace repshape::dist {
namespace {

[[noreturn]] void badFault(const std::string& text, const std::string& why) {
  throw std::invalid_argument("--fault '" + text + "': " + why +
                              " (expected rank=<int>,step=<int>,kind=crash|stall)");
}

std::int64_t parseInteger(const std::string& text, const std::string& key, const std::string& value) {
  std::size_t used = 0;
  std::int64_t number = 0;
  try {
    number = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != value.size() || number < 0) {
    badFault(text, key + "='" + value + "' is not a non-negative integer");
  }
  return number;
}

}  // namespace

FaultSpec parseFault(const std::string& text) {
  FaultSpec spec;
  if (text.empty()) return spec;
  bool haveRank = false;
  bool haveStep = false;
  std::istringstream items(text);
  std::string item;
  while (std::getline(items, item, ',')) {
    const std::size_t equals = item.find('=');
    if (equals == std::string::npos) badFault(text, "'" + item + "' is not key=value");
    const std::string key = item.substr(0, equals);
    const std::string value = item.substr(equals + 1);
    if (key == "rank") {
      spec.rank = static_cast<int>(parseInteger(text, key, value));
      haveRank = true;
    } else if (key == "step") {
      spec.step = parseInteger(text, key, value);
      haveStep = true;
    } else if (key == "kind") {
      if (value == "crash") {
        spec.kind = FaultKind::Crash;
      } else if (value == "stall") {
        spec.kind = FaultKind::Stall;
      } else {
        badFault(text, "kind='" + value + "' is neither crash nor stall");
      }
    } else {
      badFault(text, "unknown key '" + key + "'");
    }
  }
  if (!haveRank || !haveStep || spec.kind == FaultKind::None) {
    badFault(text, "rank, step and kind are all required");
  }
  return spec;
}

void maybeInjectFault(const FaultSpec& spec, int rank, std::int64_t step) {
  if (!spec.enabled() || rank != spec.rank || step != spec.step) return;
  const char* kind = spec.kind == FaultKind::Crash ? "crash" : "stall";
  // The caller's rank, not MpiWorld's: the Single backend never initialises MPI.
  std::fprintf(stderr, "repshape[rank %d@%s]: injected fault: %s at step %lld\n", rank,
               detail::hostName().c_str(), kind, static_cast<long long>(step));
  std::fflush(stderr);
  if (spec.kind == FaultKind::Crash) _exit(3);  // no unwinding, no MPI_Finalize: like a segfault
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

}  // namespace repshape::dist
