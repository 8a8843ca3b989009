#include "RunDirectory.h"

#include "Config.h"
#include "OutputFiles.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include <unistd.h>

namespace repshape {

namespace fs = std::filesystem;

std::string runStatus(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "result.json");
  if (!in) return "";
  const auto json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object() || !json.contains("status") || !json["status"].is_string()) return "";
  return json["status"].get<std::string>();
}

void checkRunDirectory(const std::string& dir, bool overwrite, bool resume) {
  std::error_code error;
  const fs::path path(dir);
  if (fs::exists(path, error) && !fs::is_directory(path, error))
    throw ConfigError("--out " + dir + ": exists and is not a directory");
  // The nearest existing ancestor must be writable, or nothing can be created below it.
  fs::path existing = fs::absolute(path, error);
  while (!existing.empty() && !fs::exists(existing, error) && existing != existing.parent_path())
    existing = existing.parent_path();
  if (::access(existing.c_str(), W_OK | X_OK) != 0)
    throw ConfigError("--out " + dir + ": " + existing.string() + " is not writable");

  std::string found;
  for (const char* name : kRunFiles)
    if (fs::exists(path / name, error)) found += (found.empty() ? "" : ", ") + std::string(name);
  if (resume) {
    if (!fs::is_directory(path / "checkpoints", error))
      throw ConfigError("--resume: " + dir + " has no checkpoints/ to resume from (set train.checkpoint_every)");
    return;
  }
  if (found.empty() || overwrite) return;
  const std::string status = runStatus(dir);
  throw ConfigError("--out " + dir + ": holds the results of an earlier run (" + found +
                    (status.empty() ? "" : "; status " + status) +
                    "); use --overwrite to replace them, --resume to continue, or another --out");
}

void prepareRunDirectory(const std::string& dir, bool overwrite) {
  createDirectories(dir);
  if (!overwrite) return;
  for (const char* name : kRunFiles) {
    std::error_code error;
    fs::remove_all(fs::path(dir) / name, error);
    if (error) throw std::runtime_error("cannot remove " + (fs::path(dir) / name).string() + ": " + error.message());
  }
  // An earlier run's eval.save_covariance files (covariance-<layer>.json) go too.
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("covariance-", 0) == 0 && entry.path().extension() == ".json") fs::remove(entry.path(), error);
  }
}

}  // namespace repshape
