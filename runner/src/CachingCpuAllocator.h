#pragma once
// LibTorch's CPU allocator with a cache of freed blocks, for the training process.
//
// A training step allocates the same tensors every step (activations, gradients, the batch):
// about 40 blocks of 4 KB – 320 KB on the Choi MLP. Through glibc each one is a posix_memalign
// and a free in the large bins (splitting, coalescing, malloc_consolidate, and heap trimming that
// hands pages back to the kernel to be faulted in again): perf of the plain step put the malloc
// family at ≈ 3 % of it (issue 12, target 4). Here a freed block goes to a free list of its size
// and the next request of that size takes it back: one uncontended mutex and a hash lookup.
//
// Blocks up to kMaxCachedBlock are cached; the idle (cached, unused) bytes are capped at
// kMaxIdleBytes, past which freed blocks go back to glibc. Requests below kMinCachedBlock go to
// glibc (tcache and small bins are fast there). Every block is 64-byte aligned, as c10's. As with
// glibc, a reused block holds whatever its last tensor left (torch::empty promises nothing); the
// steps.jsonl of a run is byte-identical with and without the cache (test_train_cli).

#include <c10/core/Allocator.h>

#include <cstddef>
#include <cstdint>

namespace repshape {

struct CpuCacheStats {
  uint64_t hits = 0;         // requests served from a free list
  uint64_t misses = 0;       // cacheable requests that went to glibc
  uint64_t uncached = 0;     // requests outside [kMinCachedBlock, kMaxCachedBlock]
  std::size_t idleBytes = 0; // bytes held in the free lists now
};

class CachingCpuAllocator final : public c10::Allocator {
 public:
  static constexpr std::size_t kMinCachedBlock = 1024;          // bytes
  static constexpr std::size_t kMaxCachedBlock = 64ull << 20;   // bytes
  static constexpr std::size_t kMaxIdleBytes = 512ull << 20;    // bytes

  // c10::Allocator::allocate is const up to LibTorch 2.2 and non-const from 2.3: both are defined,
  // so whichever the base declares is overridden (and no version check can be off by one).
  c10::DataPtr allocate(std::size_t bytes) const;
  c10::DataPtr allocate(std::size_t bytes);
  // Pure virtual in c10::Allocator since LibTorch 2.2 (Allocator::clone); a plain member before.
  void copy_data(void* dest, const void* src, std::size_t count) const;
  c10::DeleterFnPtr raw_deleter() const override;

  // The counters of the process's one cache (all instances share it).
  static CpuCacheStats stats();
  // Hands every idle block back to glibc (tests; a long evaluation with other shapes).
  static void trim();
};

// Makes the caching allocator LibTorch's CPU allocator for the rest of the process (idempotent).
// Tensors allocated before keep their own deleters. REPSHAPE_CPU_CACHE=0 leaves c10's allocator
// in place (A/B benchmarks); any value other than 0 or 1 is an error (std::invalid_argument).
void installCachingCpuAllocator();

}  // namespace repshape
