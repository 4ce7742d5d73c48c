// A guest access's second-level translation on a logical CPU: the TLB hit path and the miss
// path (4-level EPT walk + TLB fill), as a guest load pays them.
#include <benchmark/benchmark.h>

#include "base/fault_injection.h"
#include "platform/platform.h"
#include "platform/table_builder.h"

namespace tdxsim {
namespace {

constexpr Perms kRwx{true, true, true, true};

struct Machine {
  explicit Machine(uint32_t tlb_capacity, bool probe, uint64_t pages) : platform(config(tlb_capacity, probe), faults) {
    TableBuilder ept(platform.memory(), PagingFormat::kEpt, 4);
    for (uint64_t i = 0; i < pages; ++i)
      ept.map(Gfn{i}.gpa(), platform.memory().alloc_frame()->hpa(), Level::k4K, kRwx);
    ctx.eptp = Eptp::make(ept.root(), 4, /*ad_enabled=*/true);
  }
  static PlatformConfig config(uint32_t tlb_capacity, bool probe) {
    PlatformConfig c;
    c.cpus_per_package = 1;
    c.memory.bytes = uint64_t{1} << 30;
    c.tlb.capacity = tlb_capacity;
    c.probe_tlb_hits = probe;
    return c;
  }
  FaultInjection faults;
  Platform platform;
  GuestContext ctx;
};

const AccessRequest kRead{};

// Every access hits the TLB (one page); the staleness probe off, as in a plain run.
void BM_TranslateTlbHit(benchmark::State& state) {
  Machine m(0, /*probe=*/false, 1);
  auto binding = m.platform.bind(0);
  LogicalCpu& cpu = binding.cpu();
  (void)cpu.translate(m.ctx, Gpa{0x8}, kRead);
  for (auto _ : state) benchmark::DoNotOptimize(cpu.translate(m.ctx, Gpa{0x8}, kRead));
}
BENCHMARK(BM_TranslateTlbHit)->Repetitions(5)->ReportAggregatesOnly(true);

// The same hit, classified against a fresh walk (the stale-use checker's cost).
void BM_TranslateTlbHitProbed(benchmark::State& state) {
  Machine m(0, /*probe=*/true, 1);
  auto binding = m.platform.bind(0);
  LogicalCpu& cpu = binding.cpu();
  (void)cpu.translate(m.ctx, Gpa{0x8}, kRead);
  for (auto _ : state) benchmark::DoNotOptimize(cpu.translate(m.ctx, Gpa{0x8}, kRead));
}
BENCHMARK(BM_TranslateTlbHitProbed)->Repetitions(5)->ReportAggregatesOnly(true);

// Every access misses: a one-entry TLB and a stride over 4096 pages, so each translation is
// a lookup miss, a 4-level walk (A/D already set after the first pass) and a fill that
// evicts the previous entry.
void BM_TranslateTlbMiss(benchmark::State& state) {
  constexpr uint64_t kPages = 4096;
  Machine m(1, /*probe=*/false, kPages);
  auto binding = m.platform.bind(0);
  LogicalCpu& cpu = binding.cpu();
  uint64_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(cpu.translate(m.ctx, Gfn{i}.gpa(), kRead));
    i = (i + 1) % kPages;
  }
}
BENCHMARK(BM_TranslateTlbMiss)->Repetitions(5)->ReportAggregatesOnly(true);

}  // namespace
}  // namespace tdxsim
