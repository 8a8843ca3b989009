#include "CachingCpuAllocator.h"

#include <repshape/regularizers/Environment.h>

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace repshape {

namespace {

// Every block starts with a header of kHeader bytes (so the data stays 64-byte aligned) holding
// its capacity: the size class for a cacheable block, 0 for one that goes straight back to glibc.
constexpr std::size_t kAlignment = 64;  // c10::gAlignment
constexpr std::size_t kHeader = 64;     // bytes, ≥ sizeof(std::size_t), a multiple of kAlignment

// The size class of a cacheable request: 64-byte steps up to 64 KiB, 4 KiB steps above (≤ 6 %
// slack at 64 KiB, less above), so the same tensor shape always lands in the same class.
std::size_t sizeClass(std::size_t bytes) {
  const std::size_t step = bytes <= (64u << 10) ? 64u : 4096u;
  return (bytes + step - 1) / step * step;
}

struct Cache {
  std::mutex mutex;
  std::unordered_map<std::size_t, std::vector<void*>> idle;  // size class → blocks (their bases)
  CpuCacheStats stats;
};

// Never destroyed: tensors freed during static destruction (after main) still find it.
Cache& cache() {
  static Cache* const instance = new Cache;
  return *instance;
}

// A block of `bytes` after its header from glibc, the header holding `capacity` (see kHeader).
void* systemBlock(std::size_t bytes, std::size_t capacity) {
  // As c10::alloc_cpu: a size past PTRDIFF_MAX is a bug upstream (a negative size cast), and the
  // header must not wrap the sum around to a small block.
  TORCH_CHECK(bytes <= static_cast<std::size_t>(PTRDIFF_MAX) - kHeader,
              "CachingCpuAllocator: cannot allocate ", bytes, " bytes");
  void* base = nullptr;
  if (posix_memalign(&base, kAlignment, kHeader + bytes) != 0) base = nullptr;
  TORCH_CHECK(base != nullptr, "CachingCpuAllocator: out of memory allocating ", bytes, " bytes");
  std::memcpy(base, &capacity, sizeof capacity);
  return base;
}

void releaseBlock(void* data) {
  if (data == nullptr) return;
  void* base = static_cast<char*>(data) - kHeader;
  std::size_t capacity = 0;
  std::memcpy(&capacity, base, sizeof capacity);
  if (capacity != 0) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.stats.idleBytes + capacity <= CachingCpuAllocator::kMaxIdleBytes) {
      c.idle[capacity].push_back(base);
      c.stats.idleBytes += capacity;
      return;
    }
  }
  std::free(base);
}

c10::DataPtr allocateBlock(std::size_t bytes) {
  const c10::Device cpu(c10::DeviceType::CPU);
  if (bytes == 0) return {nullptr, nullptr, &releaseBlock, cpu};
  const bool cacheable = bytes >= CachingCpuAllocator::kMinCachedBlock && bytes <= CachingCpuAllocator::kMaxCachedBlock;
  const std::size_t capacity = cacheable ? sizeClass(bytes) : 0;
  void* base = nullptr;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    if (!cacheable) {
      ++c.stats.uncached;
    } else if (auto found = c.idle.find(capacity); found != c.idle.end() && !found->second.empty()) {
      base = found->second.back();
      found->second.pop_back();
      c.stats.idleBytes -= capacity;
      ++c.stats.hits;
    } else {
      ++c.stats.misses;
    }
  }
  if (base == nullptr) base = cacheable ? systemBlock(capacity, capacity) : systemBlock(bytes, 0);
  void* data = static_cast<char*>(base) + kHeader;
  return {data, data, &releaseBlock, cpu};
}

}  // namespace

c10::DataPtr CachingCpuAllocator::allocate(std::size_t bytes) const { return allocateBlock(bytes); }
c10::DataPtr CachingCpuAllocator::allocate(std::size_t bytes) { return allocateBlock(bytes); }

void CachingCpuAllocator::copy_data(void* dest, const void* src, std::size_t count) const {
  if (count > 0) std::memcpy(dest, src, count);
}

c10::DeleterFnPtr CachingCpuAllocator::raw_deleter() const { return &releaseBlock; }

CpuCacheStats CachingCpuAllocator::stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.stats;
}

void CachingCpuAllocator::trim() {
  std::vector<void*> blocks;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    for (auto& [capacity, list] : c.idle) blocks.insert(blocks.end(), list.begin(), list.end());
    c.idle.clear();
    c.stats.idleBytes = 0;
  }
  for (void* base : blocks) std::free(base);
}

void installCachingCpuAllocator() {
  if (environmentChoice("REPSHAPE_CPU_CACHE", {"1", "0"}) == "0") return;
  static CachingCpuAllocator allocator;
  // Priority above c10's own registration (0), so a later default registration cannot undo it.
  c10::SetCPUAllocator(&allocator, /*priority=*/1);
}

}  // namespace repshape
