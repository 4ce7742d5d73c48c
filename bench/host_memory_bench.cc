// HostMemory's hot paths: the frame allocator under each reuse policy, and single-word
// accesses (what every simulated page walk and SPTE update costs).
#include <benchmark/benchmark.h>

#include "platform/host_memory.h"

namespace tdxsim {
namespace {

constexpr KeyId kTd{1};

HostMemoryConfig bench_config(ReusePolicy reuse = ReusePolicy::kLastFreedFirst) {
  HostMemoryConfig cfg;
  cfg.bytes = uint64_t{1} << 30;
  cfg.reuse = reuse;
  return cfg;
}

// One alloc_frame + free_frame pair, with a few hundred frames held so that the policies'
// free structures are not trivially empty.
void BM_AllocFreePair(benchmark::State& state) {
  HostMemory mem(bench_config(static_cast<ReusePolicy>(state.range(0))));
  for (int i = 0; i < 512; ++i) mem.free_frame(*mem.alloc_frame());  // seed the free lists
  for (int i = 0; i < 256; ++i) (void)mem.alloc_frame();
  for (auto _ : state) {
    const Pfn p = *mem.alloc_frame();
    benchmark::DoNotOptimize(p);
    mem.free_frame(p);
  }
}
BENCHMARK(BM_AllocFreePair)
    ->ArgName("policy")
    ->Arg(static_cast<int>(ReusePolicy::kLastFreedFirst))
    ->Arg(static_cast<int>(ReusePolicy::kFirstFreedFirst))
    ->Arg(static_cast<int>(ReusePolicy::kLowestFirst))
    ->Arg(static_cast<int>(ReusePolicy::kRandom));

// A frame whose word storage was written (a page-table page), and a filled one.
struct Frames {
  Frames() : mem(bench_config()) {
    table = *mem.alloc_frame();
    mem.set_key(table, kTd);
    mem.fill(table, kTd, 0);
    for (unsigned i = 0; i < 512; ++i) mem.write(table.hpa() + i * 8, kTd, i);
    filled = *mem.alloc_frame();
    mem.fill(filled, kHostKey, 7);
  }
  HostMemory mem;
  Pfn table;
  Pfn filled;
};

void BM_ReadWordStorage(benchmark::State& state) {
  Frames f;
  unsigned i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.mem.read(f.table.hpa() + (i++ % 512) * 8, kTd));
  }
}
BENCHMARK(BM_ReadWordStorage);

void BM_ReadFilled(benchmark::State& state) {
  Frames f;
  unsigned i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.mem.read(f.filled.hpa() + (i++ % 512) * 8, kHostKey));
  }
}
BENCHMARK(BM_ReadFilled);

void BM_LoadAcquire(benchmark::State& state) {
  Frames f;
  unsigned i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        f.mem.load(f.table.hpa() + (i++ % 512) * 8, kTd, std::memory_order_acquire));
  }
}
BENCHMARK(BM_LoadAcquire);

void BM_ForeignLoadCiphertext(benchmark::State& state) {
  Frames f;
  unsigned i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        f.mem.load(f.table.hpa() + (i++ % 512) * 8, kHostKey, std::memory_order_acquire));
  }
}
BENCHMARK(BM_ForeignLoadCiphertext);

void BM_Write(benchmark::State& state) {
  Frames f;
  uint64_t i = 0;
  for (auto _ : state) {
    f.mem.write(f.table.hpa() + (i % 512) * 8, kTd, i);
    ++i;
  }
}
BENCHMARK(BM_Write);

void BM_CompareExchange(benchmark::State& state) {
  Frames f;
  const Hpa e = f.table.hpa() + 8 * 17;
  uint64_t cur = f.mem.load(e, kTd, std::memory_order_acquire);
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        f.mem.compare_exchange(e, kTd, cur, cur + 1, std::memory_order_acq_rel));
    ++cur;
  }
}
BENCHMARK(BM_CompareExchange);

void BM_FetchOr(benchmark::State& state) {
  Frames f;
  const Hpa e = f.table.hpa() + 8 * 17;
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.mem.fetch_or(e, kTd, 0x300, std::memory_order_relaxed));
  }
}
BENCHMARK(BM_FetchOr);

void BM_FillPage(benchmark::State& state) {
  Frames f;
  uint64_t v = 0;
  for (auto _ : state) f.mem.fill(f.filled, kHostKey, v++);
}
BENCHMARK(BM_FillPage);

void BM_PageHash(benchmark::State& state) {
  Frames f;
  for (auto _ : state) benchmark::DoNotOptimize(f.mem.page_hash(f.table, kTd));
}
BENCHMARK(BM_PageHash);

}  // namespace
}  // namespace tdxsim
