// CachingCpuAllocator: alignment, reuse by size class, the bounds of what is cached, the idle cap,
// concurrent use, and LibTorch's tensors going through it once installed. The cache is one per
// process, so the counters are compared before and after each case.
#include "CachingCpuAllocator.h"

#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace repshape {
namespace {

bool aligned64(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; }

TEST(CachingCpuAllocator, EveryBlockIs64ByteAlignedAndWritable) {
  CachingCpuAllocator allocator;
  for (std::size_t bytes : {std::size_t{1}, std::size_t{63}, std::size_t{1000}, std::size_t{1024}, std::size_t{4097},
                            std::size_t{65536}, std::size_t{65537}, std::size_t{300000}}) {
    c10::DataPtr block = allocator.allocate(bytes);
    ASSERT_NE(block.get(), nullptr) << bytes;
    EXPECT_TRUE(aligned64(block.get())) << bytes;
    EXPECT_EQ(block.device(), c10::Device(c10::DeviceType::CPU));
    std::memset(block.get(), 0xab, bytes);  // the whole request is ours (ASan/valgrind would see overruns)
  }
  const c10::DataPtr empty = allocator.allocate(0);
  EXPECT_EQ(empty.get(), nullptr);
  const c10::DataPtr from = allocator.allocate(5000), to = allocator.allocate(5000);
  for (int i = 0; i < 5000; ++i) static_cast<unsigned char*>(from.get())[i] = static_cast<unsigned char>(i * 7);
  allocator.copy_data(to.get(), from.get(), 5000);  // LibTorch ≥ 2.2 clones storages with it
  EXPECT_EQ(std::memcmp(to.get(), from.get(), 5000), 0);
  // A size that would wrap around with the block's header is refused, not truncated.
  EXPECT_THROW(allocator.allocate(SIZE_MAX), c10::Error);
  EXPECT_THROW(allocator.allocate(SIZE_MAX - 10), c10::Error);
}

TEST(CachingCpuAllocator, AFreedBlockServesTheNextRequestOfItsSizeClass) {
  CachingCpuAllocator allocator;
  CachingCpuAllocator::trim();
  void* first = nullptr;
  {
    const c10::DataPtr block = allocator.allocate(40000);
    first = block.get();
  }
  const CpuCacheStats before = CachingCpuAllocator::stats();
  EXPECT_EQ(before.idleBytes, 40000u);  // 40000 is a multiple of the 64-byte step
  {
    const c10::DataPtr again = allocator.allocate(39990);  // the same class: rounds up to 40000
    EXPECT_EQ(again.get(), first);
    EXPECT_EQ(CachingCpuAllocator::stats().idleBytes, 0u);
    const c10::DataPtr other = allocator.allocate(40001);  // the next class: a new block
    EXPECT_NE(other.get(), first);
  }
  const CpuCacheStats after = CachingCpuAllocator::stats();
  EXPECT_EQ(after.hits - before.hits, 1u);
  EXPECT_EQ(after.misses - before.misses, 1u);
  EXPECT_EQ(after.idleBytes, 40000u + 40064u);
  CachingCpuAllocator::trim();
  EXPECT_EQ(CachingCpuAllocator::stats().idleBytes, 0u);
}

TEST(CachingCpuAllocator, SmallAndHugeRequestsBypassTheCache) {
  CachingCpuAllocator allocator;
  CachingCpuAllocator::trim();
  const CpuCacheStats before = CachingCpuAllocator::stats();
  {
    const c10::DataPtr small = allocator.allocate(CachingCpuAllocator::kMinCachedBlock - 1);
    const c10::DataPtr huge = allocator.allocate(CachingCpuAllocator::kMaxCachedBlock + 1);
    ASSERT_NE(huge.get(), nullptr);
    EXPECT_TRUE(aligned64(huge.get()));
  }
  const CpuCacheStats after = CachingCpuAllocator::stats();
  EXPECT_EQ(after.uncached - before.uncached, 2u);
  EXPECT_EQ(after.hits + after.misses, before.hits + before.misses);
  EXPECT_EQ(after.idleBytes, 0u);  // both went back to glibc
}

TEST(CachingCpuAllocator, IdleBytesStayUnderTheCap) {
  CachingCpuAllocator allocator;
  CachingCpuAllocator::trim();
  const std::size_t block = CachingCpuAllocator::kMaxCachedBlock;  // 64 MiB: pages are never touched
  const std::size_t count = CachingCpuAllocator::kMaxIdleBytes / block + 2;
  {
    std::vector<c10::DataPtr> blocks;
    for (std::size_t i = 0; i < count; ++i) blocks.push_back(allocator.allocate(block));
  }
  EXPECT_EQ(CachingCpuAllocator::stats().idleBytes, CachingCpuAllocator::kMaxIdleBytes);
  CachingCpuAllocator::trim();
}

TEST(CachingCpuAllocator, ThreadsNeverShareALiveBlock) {
  CachingCpuAllocator allocator;
  constexpr int kThreads = 4, kRounds = 3000;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 random(static_cast<unsigned>(t) + 1);
      std::uniform_int_distribution<std::size_t> size(1024, 200000);
      std::vector<c10::DataPtr> live;
      std::vector<std::size_t> sizes;
      for (int r = 0; r < kRounds; ++r) {
        if (live.size() < 8) {
          const std::size_t bytes = size(random);
          live.push_back(allocator.allocate(bytes));
          sizes.push_back(bytes);
          std::memset(live.back().get(), t + 1, bytes);
        } else {  // check and free a block: every byte still holds this thread's mark
          const std::size_t i = random() % live.size();
          const auto* bytes = static_cast<const unsigned char*>(live[i].get());
          for (std::size_t b = 0; b < sizes[i]; b += 61) failures[t] += bytes[b] != t + 1;
          live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
          sizes.erase(sizes.begin() + static_cast<std::ptrdiff_t>(i));
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
  CachingCpuAllocator::trim();
}

TEST(CachingCpuAllocator, InstalledItBacksLibTorchsCpuTensors) {
  installCachingCpuAllocator();
  installCachingCpuAllocator();  // idempotent
  ASSERT_NE(dynamic_cast<CachingCpuAllocator*>(c10::GetCPUAllocator()), nullptr);
  CachingCpuAllocator::trim();
  const torch::Tensor a = torch::randn({100, 100}), b = torch::randn({100, 100});
  const torch::Tensor expected = at::mm(a, b);  // [100, 100] fp32: 40000 bytes, a cached class
  void* storage = nullptr;
  {
    const torch::Tensor product = at::mm(a, b);
    storage = product.data_ptr();
    EXPECT_TRUE(torch::equal(product, expected));
  }
  const torch::Tensor again = torch::empty({100, 100});
  EXPECT_EQ(again.data_ptr(), storage);  // the freed product's block, reused
  EXPECT_TRUE(torch::equal(at::mm(a, b), expected));
}

TEST(CachingCpuAllocator, AnUnknownSwitchValueIsAnError) {
  ::setenv("REPSHAPE_CPU_CACHE", "yes", 1);
  try {
    installCachingCpuAllocator();
    ADD_FAILURE() << "REPSHAPE_CPU_CACHE=yes accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "REPSHAPE_CPU_CACHE='yes': expected 1 or 0");
  }
  ::unsetenv("REPSHAPE_CPU_CACHE");
}

}  // namespace
}  // namespace repshape
