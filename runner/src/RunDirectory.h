#pragma once
// Run directories are transactions (SPEC §7): a run never writes into a directory that holds
// another run's results unless told to replace them (--overwrite) or continue them (--resume).

#include <string>

namespace repshape {

// The files a run writes into its directory; --overwrite removes exactly these.
inline constexpr const char* kRunFiles[] = {"result.json", "steps.jsonl", "config.resolved.toml", "checkpoints"};

// Before any work, on every rank (reads only): throws ConfigError when `dir` is not a usable run
// directory — not a directory, not writable, or holding results without --overwrite/--resume.
void checkRunDirectory(const std::string& dir, bool overwrite, bool resume);

// Rank 0, once the run starts: creates `dir`; with `overwrite`, removes the earlier run's files.
void prepareRunDirectory(const std::string& dir, bool overwrite);

// The `status` of DIR/result.json, "" when there is none or it cannot be read.
std::string runStatus(const std::string& dir);

}  // namespace repshape
