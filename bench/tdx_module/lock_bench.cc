// What the module's own lock protocol costs on this machine, apart from everything else.
//
// Every SEAMCALL walks the PAMT for its TDR (three shared acquisitions, three releases, as
// the module's pamt_walk does) and takes op_state and S-EPT tree locks; docs/benchmarks.md
// ("Session 19" of the TDX module's section) counts them per AUG + ACCEPT and per private
// fault with scripts/locked-ops. These give each one's price, uncontended, on one thread:
//   BM_LockedRmwPair      fetch_add + fetch_sub on one word: two locked instructions.
//   BM_PlainRmwPair       the same arithmetic as plain loads and stores, for comparison.
//   BM_TryLockSharedPair  the module's shared TryLock taken and released (op_state, tree).
//   BM_PamtWalk4K         Pamt::lock of a 4K frame (shared, host) and its release: one
//                         TDR check's walk, six locked instructions.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>

#include "base/check.h"
#include "base/try_lock.h"
#include "tdx_module/pamt.h"

namespace tdxsim {
namespace {

void BM_LockedRmwPair(benchmark::State& state) {
  std::atomic<uint64_t> word{0};
  for (auto _ : state) {
    word.fetch_add(4, std::memory_order_acquire);
    word.fetch_sub(4, std::memory_order_release);
  }
  benchmark::DoNotOptimize(word.load());
}
BENCHMARK(BM_LockedRmwPair);

void BM_PlainRmwPair(benchmark::State& state) {
  std::atomic<uint64_t> word{0};
  for (auto _ : state) {
    word.store(word.load(std::memory_order_relaxed) + 4, std::memory_order_relaxed);
    benchmark::ClobberMemory();
    word.store(word.load(std::memory_order_relaxed) - 4, std::memory_order_relaxed);
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(word.load());
}
BENCHMARK(BM_PlainRmwPair);

void BM_TryLockSharedPair(benchmark::State& state) {
  TryLock lock;
  for (auto _ : state) {
    if (!lock.try_acquire_shared(Requester::kHost)) {
      state.SkipWithError("an uncontended shared TryLock was busy");
      break;
    }
    lock.unlock_shared();
  }
}
BENCHMARK(BM_TryLockSharedPair);

void BM_PamtWalk4K(benchmark::State& state) {
  Pamt pamt(uint64_t{1} << 18);  // 1 GiB of frames
  const Pfn pfn{12345};
  for (auto _ : state) {
    auto locked = pamt.lock(pfn, Level::k4K, Requester::kHost, /*exclusive=*/false);
    TDXSIM_CHECK(locked.has_value(), "an uncontended PAMT walk");
    benchmark::DoNotOptimize(locked->level());
  }
}
BENCHMARK(BM_PamtWalk4K);

}  // namespace
}  // namespace tdxsim
