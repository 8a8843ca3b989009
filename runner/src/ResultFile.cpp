#include "ResultFile.h"

#include "Json.h"
#include "OutputFiles.h"

#include <repshape/BuildInfo.h>

namespace repshape {

std::string resultJson(const ResultContext& context, const RunReport& report) {
  const RunOutcome& outcome = report.outcome;
  JsonWriter result;
  result.beginObject().field("status", outcome.status);
  if (outcome.status != "ok") result.field("reason", outcome.reason).field("exit_code", outcome.exitCode);
  if (outcome.status == "diverged") result.field("term", outcome.term);
  result.field("step", outcome.step)
      .field("repshape_version", kVersion)
      .field("git_commit", kGitCommit)
      .field("config", context.configPath)
      .field("world_size", context.worldSize)
      .field("backend", context.backend)
      .field("device", context.device)
      .field("steps", report.steps)
      .field("epochs", report.epochs)
      .field("train_wall_s", report.trainSeconds)
      .field("wall_s", outcome.wallSeconds);
  auto split = [&](const char* name, const std::optional<SplitResult>& r) {
    if (!r) {
      result.key(name).null();
      return;
    }
    result.key(name).beginObject().field(r->errorKey, r->error).field("loss", r->loss).field("samples", r->samples).endObject();
  };
  const std::optional<EvalRecord>& evaluation = report.evaluation;
  split("train", evaluation ? evaluation->train : std::nullopt);
  split("validation", evaluation ? evaluation->validation : std::nullopt);
  split("test", evaluation ? evaluation->test : std::nullopt);
  result.key("layers").beginObject();
  if (evaluation) {
    for (const auto& [layer, metrics] : evaluation->layers) {
      result.key(layer).beginObject();
      for (const auto& [name, value] : metrics) result.field(name, value);
      result.endObject();
    }
  }
  result.endObject().endObject();
  return result.str() + "\n";
}

void writeCovariances(const std::string& dir, const RunReport& report) {
  if (!report.evaluation || !report.evaluation->test) return;
  for (const auto& c : report.evaluation->test->covariances) {
    JsonWriter json;
    json.beginObject().field("layer", c.layer).field("split", "test").field("samples", c.samples).field("width", c.width);
    json.key("covariance").beginArray();
    for (int64_t i = 0; i < c.width; ++i) {
      json.beginArray();
      for (int64_t j = 0; j < c.width; ++j) json.value(c.matrix[static_cast<std::size_t>(i * c.width + j)]);
      json.endArray();
    }
    json.endArray().key("eigenvalues").beginArray();
    for (double v : c.eigenvalues) json.value(v);
    json.endArray().endObject();
    writeFileAtomically(dir + "/covariance-" + c.layer + ".json", json.str() + "\n");
  }
}

void writeResult(const std::string& dir, const ResultContext& context, const RunReport& report) {
  writeFileAtomically(dir + "/result.json", resultJson(context, report));
}

}  // namespace repshape
