// Fault-in through the TDP MMU alone: kvm_tdp_mmu_map on a direct root, under mmu_lock for
// read, one new 4K leaf per iteration (tables allocated as the range grows), no memslot or
// host-memory lookup — what the MMU itself costs per fault.
//
// BM_DirectFault4K/threads:N runs N threads on disjoint 512 GiB ranges of one root.
// BM_ParallelCeiling/threads:N is a trivially parallel loop (private arithmetic) measured in
// the same run: (MMU 2-thread/1-thread) ÷ (ceiling 2-thread/1-thread) is the scaling figure
// docs/benchmarks.md records.
#include <benchmark/benchmark.h>

#include <atomic>
#include <memory>

#include "base/lock.h"
#include "base/rcu.h"
#include "kvm/mmu_vendor_ops.h"
#include "kvm/tdp_mmu.h"

namespace tdxsim {
namespace {

// Each thread maps at most this many gfns before its range is zapped and reused. Large, so
// that the zap (which holds mmu_lock for write and stalls the other thread) stays out of a
// normal run.
constexpr uint64_t kGfnsPerThread = uint64_t{1} << 24;

struct Env {
  HostMemory mem{HostMemoryConfig{.bytes = uint64_t{1} << 30}};
  SharedMutex mmu_lock{"kvm->mmu_lock"};
  MmuVendorOps ops;
  TdpMmu mmu{mem, mmu_lock, ops, nullptr, TdpMmuConfig{}};
  MmuPage* root = nullptr;
};

std::unique_ptr<Env> g_env;

void BM_DirectFault4K(benchmark::State& state) {
  RcuThread rcu;
  if (state.thread_index() == 0) {
    g_env = std::make_unique<Env>();
    g_env->root = g_env->mmu.get_direct_root();
  }
  // The loop starts only when every thread reached it, so g_env is set by then.
  const Gfn base{static_cast<uint64_t>(state.thread_index() + 1) << 27};
  uint64_t next = 0;
  KvmPageFault fault{};
  fault.write = true;
  fault.goal_level = Level::k4K;
  fault.slot = reinterpret_cast<const Memslot*>(&fault);  // RAM, not MMIO
  for (auto _ : state) {
    Env& env = *g_env;
    if (next == kGfnsPerThread) {
      state.PauseTiming();
      WriteLock l(env.mmu_lock);
      env.mmu.zap_direct_leafs(base, base + kGfnsPerThread, ZapReason::kRoots, false, false);
      next = 0;
      state.ResumeTiming();
    }
    fault.gfn = base + next;
    fault.pfn = Pfn{next};
    ++next;
    ReadLock l(env.mmu_lock);
    benchmark::DoNotOptimize(env.mmu.map(env.root, fault));
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    {
      WriteLock l(g_env->mmu_lock);
      g_env->mmu.invalidate_direct_roots();
      g_env->mmu.zap_invalidated_roots(false);
    }
    g_env->mmu.put_root(g_env->root);
    g_env.reset();
  }
}
BENCHMARK(BM_DirectFault4K)->Threads(1)->Threads(2)->UseRealTime();

void BM_ParallelCeiling(benchmark::State& state) {
  uint64_t x = static_cast<uint64_t>(state.thread_index()) + 1;
  for (auto _ : state) {
    // About a fault's worth of dependent work on private state.
    for (int i = 0; i < 64; ++i) x = x * 6364136223846793005ull + 1442695040888963407ull;
    benchmark::DoNotOptimize(x);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParallelCeiling)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
}  // namespace tdxsim
