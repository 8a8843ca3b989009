#include "Checkpoint.h"

#include "Json.h"
#include "OutputFiles.h"

#include <ATen/Context.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace repshape {

namespace fs = std::filesystem;

namespace {

constexpr const char* kDone = "DONE";
constexpr const char* kPrefix = "step-";

std::string stepName(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "%s%08lld", kPrefix, static_cast<long long>(step));
  return name;
}

// Complete checkpoints (those with DONE) as (step, directory), oldest first.
std::vector<std::pair<int64_t, fs::path>> completeCheckpoints(const std::string& runDir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code error;
  const fs::path root = fs::path(runDir) / "checkpoints";
  if (!fs::is_directory(root, error)) return found;
  for (const auto& entry : fs::directory_iterator(root, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0 || !fs::exists(entry.path() / kDone, error)) continue;
    try {
      found.emplace_back(std::stoll(name.substr(std::strlen(kPrefix))), entry.path());
    } catch (const std::exception&) {  // step-xyz written by someone else: not ours
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

void syncPath(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// The CPU generator and, when training on CUDA, that device's generator: [cpu, cuda?].
std::vector<torch::Tensor> rngStates(const torch::Device& device) {
  std::vector<torch::Tensor> states{at::detail::getDefaultCPUGenerator().get_state()};
  if (device.is_cuda()) states.push_back(at::globalContext().defaultGenerator(device).get_state());
  return states;
}

}  // namespace

std::optional<std::string> latestCheckpoint(const std::string& runDir) {
  const auto found = completeCheckpoints(runDir);
  if (found.empty()) return std::nullopt;
  return found.back().second.string();
}

std::string Checkpointer::save(int64_t stepsDone, int64_t epoch, Network& network,
                               torch::optim::Optimizer& optimizer, const torch::Device& device) {
  comm_.barrier("checkpoint.begin");
  std::string written;
  if (comm_.rank() == 0) {
    const fs::path root = fs::path(runDir_) / "checkpoints";
    const fs::path final = root / stepName(stepsDone);
    const fs::path temporary = root / (".tmp-" + stepName(stepsDone) + "-" + std::to_string(::getpid()));
    std::error_code error;
    fs::remove_all(temporary, error);
    createDirectories(temporary.string());
    torch::save(network, (temporary / "model.pt").string());
    torch::save(optimizer, (temporary / "optimizer.pt").string());
    torch::save(rngStates(device), (temporary / "rng.pt").string());
    // steps.jsonl is flushed line by line by rank 0 (StepsLog), so its size now is the offset of
    // the first line after this step.
    const int64_t stepsBytes = pinnedBytes_ ? *pinnedBytes_ : stepsLogSize();
    JsonWriter state;
    state.beginObject()
        .field("step", stepsDone)
        .field("epoch", epoch)
        .field("steps_jsonl_bytes", stepsBytes)
        .field("world_size", comm_.size())
        .endObject();
    writeFileAtomically((temporary / "state.json").string(), state.str() + "\n");
    for (const char* file : {"model.pt", "optimizer.pt", "rng.pt"}) syncPath(temporary / file);
    // A rerun after a crash between rename and DONE writes the same step again: replace it.
    if (fs::exists(final, error)) fs::remove_all(final, error);
    fs::rename(temporary, final, error);
    if (error) throw std::runtime_error("cannot rename " + temporary.string() + " to " + final.string() + ": " + error.message());
    syncPath(root);
    writeFileAtomically((final / kDone).string(), std::to_string(stepsDone) + "\n");
    prune();
    written = final.string();
  }
  pinnedBytes_.reset();
  comm_.barrier("checkpoint.end");
  return written;
}

int64_t Checkpointer::stepsLogSize() const {
  std::error_code error;
  const fs::path stepsLog = fs::path(runDir_) / "steps.jsonl";
  const auto size = fs::file_size(stepsLog, error);
  return error ? 0 : static_cast<int64_t>(size);
}

void Checkpointer::pinStepsLogOffset() {
  if (comm_.rank() == 0) pinnedBytes_ = stepsLogSize();
}

void Checkpointer::prune() const {
  const auto found = completeCheckpoints(runDir_);
  std::error_code error;
  for (std::size_t i = 0; i + static_cast<std::size_t>(keep_) < found.size(); ++i) fs::remove_all(found[i].second, error);
  // Temporary directories of writers that died mid-write.
  for (const auto& entry : fs::directory_iterator(fs::path(runDir_) / "checkpoints", error))
    if (entry.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(entry.path(), error);
}

CheckpointState readCheckpointState(const std::string& checkpointDir) {
  const fs::path path = fs::path(checkpointDir) / "state.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("checkpoint " + checkpointDir + " has no state.json");
  const nlohmann::json json = nlohmann::json::parse(in, nullptr, false);
  if (json.is_discarded() || !json.is_object() || !json.contains("step") || !json.contains("steps_jsonl_bytes"))
    throw std::runtime_error(path.string() + " is not a checkpoint state (step, steps_jsonl_bytes)");
  CheckpointState state;
  state.path = checkpointDir;
  state.step = json.at("step").get<int64_t>();
  state.epoch = json.value("epoch", int64_t{0});
  state.stepsLogBytes = json.at("steps_jsonl_bytes").get<int64_t>();
  state.worldSize = json.value("world_size", 1);
  return state;
}

CheckpointState loadCheckpoint(const std::string& checkpointDir, Network& network,
                               torch::optim::Optimizer& optimizer, const torch::Device& device) {
  const fs::path dir(checkpointDir);
  auto need = [&](const char* file) {
    const fs::path path = dir / file;
    if (!fs::exists(path)) throw std::runtime_error("checkpoint " + checkpointDir + " has no " + file);
    return path.string();
  };
  CheckpointState state = readCheckpointState(checkpointDir);
  torch::load(network, need("model.pt"), device);
  torch::load(optimizer, need("optimizer.pt"), device);
  std::vector<torch::Tensor> states;
  torch::load(states, need("rng.pt"));
  // Generator is a shared handle: a copy sets the state of the global generator.
  if (!states.empty()) {
    at::Generator cpu = at::detail::getDefaultCPUGenerator();
    cpu.set_state(states[0]);
  }
  if (device.is_cuda() && states.size() > 1) {
    at::Generator cuda = at::globalContext().defaultGenerator(device);
    cuda.set_state(states[1]);
  }
  return state;
}

void truncateStepsLog(const std::string& path, int64_t bytes) {
  std::error_code error;
  const int64_t size = fs::exists(path, error) ? static_cast<int64_t>(fs::file_size(path, error)) : 0;
  if (size < bytes)
    throw std::runtime_error(path + " has " + std::to_string(size) + " bytes, fewer than the checkpoint's " +
                             std::to_string(bytes) + ": it is not the log of this run");
  if (size == bytes) return;
  fs::resize_file(path, static_cast<std::uintmax_t>(bytes), error);
  if (error) throw std::runtime_error("cannot truncate " + path + " to " + std::to_string(bytes) + " bytes: " + error.message());
}

}  // namespace repshape
