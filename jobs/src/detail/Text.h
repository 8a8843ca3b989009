#pragma once
// Small helpers shared by the jobs sources: nearest-key suggestions, number formatting, locks.

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace repshape::jobs::detail {

inline std::size_t editDistance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The candidate within edit distance max(3, |key|/2) of `key`, or "".
inline std::string nearest(const std::string& key, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t bestDistance = std::max<std::size_t>(3, key.size() / 2) + 1;
  for (const auto& c : candidates) {
    const std::size_t d = editDistance(key, c);
    if (d < bestDistance) bestDistance = d, best = c;
  }
  return best;
}

inline std::string fixed(double value, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", digits, value);
  return buffer;
}

// Per-cell and per-grid locks: flock on RESULTS/locks/<id>.lock (released by the kernel when the
// holder dies, so a kill -9 never leaves a stale lock behind).
int lockFile(const std::string& path, bool wait);  // fd (>= 0) or -1 when held by another process
void unlockFile(int fd);
bool isLocked(const std::string& path);             // held by some process right now
std::string lockPath(const std::string& results, const std::string& id);

}  // namespace repshape::jobs::detail
