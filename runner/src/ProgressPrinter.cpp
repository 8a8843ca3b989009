#include "ProgressPrinter.h"

#include <cmath>
#include <string>

namespace repshape {

namespace {

std::string duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  char buffer[32];
  if (s >= 3600) std::snprintf(buffer, sizeof buffer, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else if (s >= 60) std::snprintf(buffer, sizeof buffer, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buffer, sizeof buffer, "%lds", s);
  return buffer;
}

// The characteristics a reader looks at first (SPEC §3), in this order, when present.
constexpr const char* kSummaryMetrics[] = {"covariance", "correlation", "sparsity", "stable_rank", "mapc", "ami"};

}  // namespace

void ProgressPrinter::onStart(const RunInfo& info) {
  active_ = info.rank == 0;
  totalSteps_ = info.totalSteps;
  lastPrint_ = Clock::now();
}

void ProgressPrinter::onStep(const StepRecord& r) {
  if (!active_ || (!live_ && intervalSeconds_ <= 0)) return;
  const auto now = Clock::now();
  const double sinceLast = std::chrono::duration<double>(now - lastPrint_).count();
  const bool last = r.step == r.totalSteps;
  if (live_ ? (sinceLast < 0.25 && !last) : (sinceLast < intervalSeconds_)) return;
  lastPrint_ = now;
  const double eta = r.step > 0 ? r.elapsedSeconds * static_cast<double>(r.totalSteps - r.step) / static_cast<double>(r.step) : NAN;
  char text[256];
  std::snprintf(text, sizeof text, "epoch %lld  step %lld/%lld  loss %.4g  penalty %.4g  %.0f samples/s  elapsed %s  ETA %s",
                static_cast<long long>(r.epoch), static_cast<long long>(r.step), static_cast<long long>(r.totalSteps),
                r.loss, r.penalty, r.samplesPerSecond, duration(r.elapsedSeconds).c_str(), duration(eta).c_str());
  if (live_) {
    std::fprintf(out_, "\r\033[K%s", text);
    lineOpen_ = true;
  } else {
    std::fprintf(out_, "%s\n", text);
  }
  std::fflush(out_);
}

void ProgressPrinter::onEvaluation(const EvalRecord& record) {
  if (!record.final) return;
  final_ = record;
  haveFinal_ = true;
}

void ProgressPrinter::onEnd(const RunOutcome& outcome) {
  if (!active_) return;
  if (lineOpen_) std::fputc('\n', out_);
  lineOpen_ = false;
  std::fprintf(out_, "repshape: %s after %lld step(s) in %s", outcome.status.c_str(),
               static_cast<long long>(outcome.step), duration(outcome.wallSeconds).c_str());
  if (!outcome.reason.empty()) std::fprintf(out_, ": %s", outcome.reason.c_str());
  std::fputc('\n', out_);
  if (haveFinal_) {
    std::string errors;
    auto add = [&](const char* name, const std::optional<SplitResult>& split) {
      if (!split) return;
      char buffer[64];
      if (split->errorKey == "mse")  // reconstruction objective: the MSE itself, not a percentage
        std::snprintf(buffer, sizeof buffer, "%s%s mse %.4g", errors.empty() ? "" : ", ", name, split->error);
      else
        std::snprintf(buffer, sizeof buffer, "%s%s %.2f %%", errors.empty() ? "" : ", ", name, split->error);
      errors += buffer;
    };
    add("train", final_.train);
    add("validation", final_.validation);
    add("test", final_.test);
    if (!errors.empty()) std::fprintf(out_, "  error: %s\n", errors.c_str());
    for (const auto& [layer, metrics] : final_.layers) {
      std::string line;
      for (const char* wanted : kSummaryMetrics)
        for (const auto& [name, value] : metrics)
          if (name == wanted) {
            char buffer[64];
            std::snprintf(buffer, sizeof buffer, "%s%s %.4g", line.empty() ? "" : ", ", name.c_str(), value);
            line += buffer;
          }
      if (!line.empty()) std::fprintf(out_, "  %s: %s\n", layer.c_str(), line.c_str());
    }
  }
  std::fflush(out_);
}

}  // namespace repshape
