#pragma once
// Result files are written atomically (temporary file, fsync, rename), so a killed run never
// leaves a truncated result.json that a resumed grid would mistake for a finished cell.

#include <string>

namespace repshape {

void writeFileAtomically(const std::string& path, const std::string& content);
// Creates `dir` and its parents; throws std::runtime_error naming the path on failure.
void createDirectories(const std::string& dir);

}  // namespace repshape
