#include "StepsLog.h"

#include "Checkpoint.h"
#include "Json.h"

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace repshape {

StepsLog::~StepsLog() {
  if (file_) std::fclose(file_);
}

void StepsLog::onStart(const RunInfo& info) {
  if (info.rank != 0) return;
  if (keepBytes_ >= 0) truncateStepsLog(path_, keepBytes_);
  file_ = std::fopen(path_.c_str(), keepBytes_ >= 0 ? "a" : "w");
  if (!file_) throw std::runtime_error("cannot write " + path_ + ": " + std::strerror(errno));
}

std::string StepsLog::line(const StepRecord& r, bool timings) {
  JsonWriter json;
  json.beginObject()
      .field("step", r.step)
      .field("epoch", r.epoch)
      .field("loss", r.loss)
      .field("task_loss", r.taskLoss)
      .field("penalty", r.penalty);
  if (!r.penalties.empty()) {
    json.key("penalties").beginObject();
    for (const auto& [name, value] : r.penalties) json.field(name, value);
    json.endObject();
  }
  json.field("stats_bytes", r.statsBytes).field("grad_bytes", r.gradBytes);
  if (timings) {
    json.field("samples_per_s", r.samplesPerSecond)
        .field("stats_comm_s", r.statsCommSeconds)
        .field("grad_comm_s", r.gradCommSeconds);
    if (!r.phaseSeconds.empty()) {
      json.key("phase_s").beginObject();
      for (const auto& [phase, seconds] : r.phaseSeconds) json.field(phase, seconds);
      json.endObject();
    }
  }
  json.endObject();
  return json.str();
}

void StepsLog::onStep(const StepRecord& record) {
  if (!file_) return;
  const std::string text = line(record, timings_) + "\n";
  // One write per line, flushed: readers (and a resumed run) only ever see complete lines.
  if (std::fwrite(text.data(), 1, text.size(), file_) != text.size() || std::fflush(file_) != 0)
    throw std::runtime_error("cannot write " + path_ + ": " + std::strerror(errno));
}

void StepsLog::onEnd(const RunOutcome&) {
  if (file_) std::fclose(file_);
  file_ = nullptr;
}

}  // namespace repshape
