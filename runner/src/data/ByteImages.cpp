#include "ByteImages.h"

#include <repshape/regularizers/CpuKernels.h>

#include <algorithm>
#include <cstring>

namespace repshape::data {

namespace {

constexpr float kLevels = 255.0f;  // the loaders' divisor (Idx.cpp, Cifar.cpp)

// Bytes of `n` floats into `out`; true when each float is exactly float(k) / 255 for its byte k.
// Anything outside +0 … 1 by its bits (negatives and -0.0, NaN, > 1) is converted as 0 and then
// mismatches. Branch-free and vectorised (no-trapping-math: GCC otherwise keeps the float-to-int
// conversion under a branch; no FP exception flag is read here).
__attribute__((optimize("O3", "no-trapping-math"))) bool encodeSpan(const float* __restrict in,
                                                                  uint8_t* __restrict out, int64_t n) {
  constexpr uint32_t kOneBits = 0x3F800000u;  // 1.0f
  uint32_t mismatch = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, in + i, sizeof bits);
    const uint32_t inRange = bits <= kOneBits ? bits : 0u;
    float v;
    std::memcpy(&v, &inRange, sizeof v);
    const int32_t k = static_cast<int32_t>(v * kLevels + 0.5f);  // v·255 is within an ulp of k
    const float back = static_cast<float>(k) / kLevels;
    uint32_t backBits;
    std::memcpy(&backBits, &back, sizeof backBits);
    mismatch |= bits ^ backBits;
    out[i] = static_cast<uint8_t>(k);
  }
  return mismatch == 0;
}

// The loaders' conversion, k → float(k) / 255 (a correctly rounded division, scalar or vector alike).
__attribute__((always_inline)) inline void convertLoop(const uint8_t* __restrict in, float* __restrict out,
                                                       int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]) / kLevels;
}

__attribute__((optimize("O3"))) void convertBaseline(const uint8_t* in, float* out, int64_t n) {
  convertLoop(in, out, n);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((optimize("O3"), target("avx2"))) void convertAvx2(const uint8_t* in, float* out, int64_t n) {
  convertLoop(in, out, n);
}
#endif

void convert(const uint8_t* in, float* out, int64_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (cpu::avx2Fma()) return convertAvx2(in, out, n);
#endif
  convertBaseline(in, out, n);
}

// Asks for every cache line of a row [p, p + bytes) without waiting for any.
inline void prefetchRow(const uint8_t* p, int64_t bytes) {
  for (int64_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset);
  __builtin_prefetch(p + bytes - 1);
}

}  // namespace

std::optional<ByteImages> ByteImages::encode(const torch::Tensor& inputs) {
  if (!inputs.defined() || !inputs.is_cpu() || inputs.scalar_type() != torch::kFloat32 || inputs.dim() < 2 ||
      inputs.numel() == 0)
    return std::nullopt;
  const torch::Tensor floats = inputs.contiguous();
  const int64_t n = floats.size(0), d = floats.numel() / n;
  torch::Tensor bytes = torch::empty({n, d}, torch::kUInt8);
  const float* in = floats.data_ptr<float>();
  uint8_t* out = bytes.data_ptr<uint8_t>();
  // In spans, so data that is not bytes (a PCA projection, synthetic features) is refused early.
  constexpr int64_t kSpan = int64_t{1} << 20;
  for (int64_t begin = 0, total = floats.numel(); begin < total; begin += kSpan)
    if (!encodeSpan(in + begin, out + begin, std::min(kSpan, total - begin))) return std::nullopt;
  return ByteImages(std::move(bytes), inputs.sizes().vec());
}

torch::Tensor ByteImages::gather(const torch::Tensor& index) const {
  TORCH_CHECK(index.is_cpu() && index.scalar_type() == torch::kInt64 && index.dim() == 1,
              "ByteImages::gather: the index must be int64 [B] on the CPU");
  const torch::Tensor rowsIndex = index.contiguous();
  const int64_t b = rowsIndex.size(0), n = bytes_.size(0), d = bytes_.size(1);
  const int64_t* idx = rowsIndex.data_ptr<int64_t>();
  for (int64_t r = 0; r < b; ++r)
    TORCH_CHECK(idx[r] >= 0 && idx[r] < n, "ByteImages::gather: row ", idx[r], " out of range [0, ", n, ")");
  std::vector<int64_t> shape = shape_;
  shape[0] = b;
  torch::Tensor result = torch::empty(shape, torch::kFloat32);
  if (b == 0) return result;
  const uint8_t* base = bytes_.data_ptr<uint8_t>();
  float* out = result.data_ptr<float>();
  // Every row's lines are requested before the first is converted, so their misses overlap
  // (a row converted as soon as it is asked for waits out a DRAM latency per row). Ahead by at
  // most 256 KiB: the batch's bytes stay in the caches until they are read.
  const int64_t ahead = std::max<int64_t>(1, (int64_t{256} << 10) / d);
  for (int64_t r = 0; r < std::min(ahead, b); ++r) prefetchRow(base + idx[r] * d, d);
  for (int64_t r = 0; r < b; ++r) {
    if (r + ahead < b) prefetchRow(base + idx[r + ahead] * d, d);
    convert(base + idx[r] * d, out + r * d, d);
  }
  return result;
}

}  // namespace repshape::data
