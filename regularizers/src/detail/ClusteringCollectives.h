#pragma once
// Collectives for clustering and MI bounds whose results do not depend on the number of ranks.
//
// Floating-point sums change in the last bit with the order of addition, so a plain all-reduce of
// fp64 centroid sums differs between W = 1 and W = 3 and a near-tie can flip a label. Here every
// sum that decides something is exact: values are split into integer "limbs" against a global
// power-of-two scale, and integer-valued fp64 sums below 2^53 are exact in any order.

#include <repshape/regularizers/Regularizers.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace repshape::reg::detail {

// Reducer exposes no rank. gatherRows() concatenates in rank order, so a process finds its rank as
// the position of its own random 64-bit tag (two 32-bit halves, exact in fp64). Every rank sees the
// same table, so a tag collision (probability ~W²·2^-64) makes all ranks draw again together.
inline int reducerRank(Reducer& reducer) {
  const int world = reducer.worldSize();
  if (world == 1) {
    return 0;
  }
  std::random_device device;
  for (int attempt = 0; attempt < 8; ++attempt) {
    const uint64_t tag = (uint64_t{device()} << 32 | device()) ^
                         (static_cast<uint64_t>(::getpid()) * 0x9E3779B97F4A7C15ull);
    const auto mine = torch::tensor({static_cast<double>(tag >> 32),
                                     static_cast<double>(tag & 0xffffffffull)},
                                    torch::kFloat64)
                          .view({1, 2});
    const auto table = reducer.gatherRows(mine).to(torch::kFloat64).contiguous();  // [W, 2]
    TORCH_CHECK(table.size(0) == world, "gatherRows returned ", table.size(0), " rows for ",
                world, " ranks");
    const double* t = table.data_ptr<double>();
    int found = -1;
    bool collision = false;
    for (int r = 0; r < world; ++r) {
      for (int q = 0; q < r; ++q) {
        collision = collision || (t[2 * r] == t[2 * q] && t[2 * r + 1] == t[2 * q + 1]);
      }
      if (t[2 * r] == static_cast<double>(tag >> 32) &&
          t[2 * r + 1] == static_cast<double>(tag & 0xffffffffull)) {
        found = r;
      }
    }
    if (!collision) {
      TORCH_CHECK(found >= 0, "own rank tag missing from gatherRows table of ", world, " rows");
      return found;
    }
  }
  TORCH_CHECK(false, "could not find a unique rank tag among ", world, " ranks");
}

// Uniform doubles in [0, 1) from a seeded 64-bit stream: 53 random bits, the same on every
// platform (std::uniform_real_distribution is implementation-defined).
class SeededUniform {
 public:
  explicit SeededUniform(uint64_t seed) : engine_(seed) {}
  double next() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

 private:
  std::mt19937_64 engine_;
};

// Three 21-bit limbs per value: v ≈ s·(a·2^-21 + b·2^-42 + c·2^-63), s = 2^e ≥ max|v| over all
// ranks, |error| ≤ s·2^-64. Limb sums over fewer than 2^31 rows stay below 2^53, hence exact.
constexpr int kLimbCount = 3;
constexpr int kLimbBits = 21;

// Global power-of-two scale ≥ max |values| (one reducer.max); 0 when every value is 0.
inline double globalLimbScale(const torch::Tensor& values, Reducer& reducer) {
  // max(max v, −min v) rather than |v|.max(): no temporary as large as the input.
  const double localMax =
      values.numel() > 0
          ? std::max(values.max().item<double>(), -values.min().item<double>())
          : 0.0;
  TORCH_CHECK(std::isfinite(localMax), "non-finite value (max |v| = ", localMax,
              ") in clustering input");
  const double globalMax =
      reducer.max(torch::tensor({localMax}, torch::kFloat64)).item<double>();
  if (!(globalMax > 0.0)) {
    return 0.0;
  }
  int exponent = 0;
  std::frexp(globalMax, &exponent);  // globalMax = f·2^exponent, f ∈ [0.5, 1)
  return std::ldexp(1.0, exponent);
}

// [kLimbCount, ...values.shape] integer-valued fp64 limbs of values / scale.
inline torch::Tensor splitLimbs(const torch::Tensor& values, double scale) {
  if (scale == 0.0) {
    std::vector<int64_t> shape{kLimbCount};
    shape.insert(shape.end(), values.sizes().begin(), values.sizes().end());
    return torch::zeros(shape, values.options().dtype(torch::kFloat64));
  }
  auto rest = values.to(torch::kFloat64) * (1.0 / scale);  // exact: power of two, |rest| ≤ 1
  std::vector<torch::Tensor> limbs;
  for (int l = 0; l < kLimbCount; ++l) {
    rest = rest * std::ldexp(1.0, kLimbBits);  // exact
    auto limb = torch::round(rest);
    rest = rest - limb;  // exact: the fractional part of a double
    limbs.push_back(limb);
  }
  return torch::stack(limbs);
}

// Inverse of splitLimbs on (reduced) limb sums [kLimbCount, ...]; the same fp64 operations on the
// same exact inputs on every rank.
inline torch::Tensor combineLimbs(const torch::Tensor& limbSums, double scale) {
  auto value = torch::zeros_like(limbSums[0]);
  for (int l = 0; l < kLimbCount; ++l) {
    value = value + limbSums[l] * std::ldexp(1.0, -kLimbBits * (l + 1));
  }
  return value * scale;
}

// Exact Σ over every rank's rows of values [n, c] → [c] (one max + one sum). Limbs are formed
// in chunks of rows so the temporaries stay small next to the input.
inline torch::Tensor exactColumnSums(const torch::Tensor& values, Reducer& reducer) {
  constexpr int64_t kChunkRows = 2048;
  const double scale = globalLimbScale(values, reducer);
  const int64_t n = values.size(0);
  auto local = torch::zeros({kLimbCount, values.size(1)}, torch::kFloat64);  // integers < 2^53
  for (int64_t start = 0; start < n; start += kChunkRows) {
    local += splitLimbs(values.narrow(0, start, std::min(kChunkRows, n - start)), scale).sum(1);
  }
  return combineLimbs(reducer.sum(local), scale);
}

// Σ_j (x_ij − c_j)² for every row of x [n, M] (fp64, contiguous) against one point c [M], summed in
// a fixed order so a row's value never depends on how rows are split across ranks.
inline torch::Tensor rowSquaredDistances(const torch::Tensor& x, const double* c) {
  const int64_t n = x.size(0);
  const int64_t m = x.size(1);
  auto out = torch::empty({n}, x.options());
  const double* xp = x.data_ptr<double>();
  double* op = out.data_ptr<double>();
  at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const double* row = xp + i * m;
      double acc = 0.0;
      for (int64_t j = 0; j < m; ++j) {
        const double d = row[j] - c[j];
        acc += d * d;
      }
      op[i] = acc;
    }
  });
  return out;
}

}  // namespace repshape::reg::detail
