#pragma once
// steps.jsonl: one JSON line per logged step, written by rank 0, each line complete and flushed
// when it is written (SPEC §7), so a killed run leaves only whole lines.

#include "RunSink.h"

#include <cstdint>
#include <cstdio>
#include <string>

namespace repshape {

class StepsLog final : public RunSink {
 public:
  // timings = false leaves out every wall-clock field: the file is then byte-reproducible.
  // keepBytes >= 0 (a resumed run): keep the first keepBytes bytes of the file (the lines up to the
  // checkpoint) and append after them, instead of starting a new file.
  StepsLog(std::string path, bool timings, int64_t keepBytes = -1)
      : path_(std::move(path)), timings_(timings), keepBytes_(keepBytes) {}
  ~StepsLog() override;
  StepsLog(const StepsLog&) = delete;
  StepsLog& operator=(const StepsLog&) = delete;

  void onStart(const RunInfo& info) override;
  void onStep(const StepRecord& record) override;
  void onEnd(const RunOutcome&) override;

  // The JSON line of one record (no newline); also what tests compare.
  static std::string line(const StepRecord& record, bool timings);

 private:
  std::string path_;
  bool timings_;
  int64_t keepBytes_;
  std::FILE* file_ = nullptr;  // rank 0 only
};

}  // namespace repshape
