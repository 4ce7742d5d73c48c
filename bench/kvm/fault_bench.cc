// Fault-in through the TDP MMU alone: kvm_tdp_mmu_map on a direct root, under mmu_lock for
// read, one new 4K leaf per iteration (tables allocated as the range grows), no memslot or
// host-memory lookup — what the MMU itself costs per fault.
//
// BM_DirectFault4K/threads:N runs N threads on disjoint 512 GiB ranges of one root, for N = 1, 2
// and each further power of two up to the machine's CPU count.
// BM_ParallelCeiling/threads:N is a trivially parallel loop (private arithmetic) measured in
// the same run: (MMU N-thread/1-thread) ÷ (ceiling N-thread/1-thread) is the scaling figure
// docs/benchmarks.md records. BM_ParallelCeilingThroughput is the ceiling for CPUs that are
// SMT siblings (see there).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>

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

// More threads than CPUs would measure the host's scheduler, not the MMU.
void ThreadsUpToCpus(benchmark::internal::Benchmark* b) {
  const unsigned cpus = std::max(2u, std::thread::hardware_concurrency());
  for (unsigned n = 1; n <= cpus; n *= 2) b->Threads(static_cast<int>(n));
}

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
BENCHMARK(BM_DirectFault4K)->Apply(ThreadsUpToCpus)->UseRealTime();

void BM_ParallelCeiling(benchmark::State& state) {
  uint64_t x = static_cast<uint64_t>(state.thread_index()) + 1;
  for (auto _ : state) {
    // About a fault's worth of dependent work on private state.
    for (int i = 0; i < 64; ++i) x = x * 6364136223846793005ull + 1442695040888963407ull;
    benchmark::DoNotOptimize(x);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParallelCeiling)->Apply(ThreadsUpToCpus)->UseRealTime();

// The same 64 multiply-adds as four independent chains: bound by the core's multipliers
// rather than by one chain's latency. Two hardware threads of one core (SMT) each run a
// latency-bound chain at full speed, but share a throughput-bound one; where CPUs are
// hardware threads, this is the ceiling a busy fault path can expect.
void BM_ParallelCeilingThroughput(benchmark::State& state) {
  constexpr uint64_t kMul = 6364136223846793005ull, kAdd = 1442695040888963407ull;
  const uint64_t t = static_cast<uint64_t>(state.thread_index());
  // Four scalars, not an array: GCC would vectorise an array's chains into emulated 64-bit
  // vector multiplies.
  uint64_t a = t + 1, b = t + 2, c = t + 3, d = t + 4;
  for (auto _ : state) {
    for (int i = 0; i < 16; ++i) {
      a = a * kMul + kAdd;
      b = b * kMul + kAdd;
      c = c * kMul + kAdd;
      d = d * kMul + kAdd;
    }
    benchmark::DoNotOptimize(a);
    benchmark::DoNotOptimize(b);
    benchmark::DoNotOptimize(c);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParallelCeilingThroughput)->Apply(ThreadsUpToCpus)->UseRealTime();

}  // namespace
}  // namespace tdxsim
