// The second-level walker: a 4-level EPT walk to a 4K leaf, as every TLB miss of a
// simulated access costs it. Reported as the median of repetitions (ns per walk).
#include <benchmark/benchmark.h>

#include "platform/ept_entry.h"
#include "platform/eptp.h"
#include "platform/host_memory.h"
#include "platform/page_walk.h"

namespace tdxsim {
namespace {

constexpr Gpa kGpa{0x0080'8060'4567};

struct Ept4K {
  Ept4K()
      : mem([] {
          HostMemoryConfig cfg;
          cfg.bytes = uint64_t{1} << 24;
          return cfg;
        }()) {
    Hpa tables[4];
    for (Hpa& t : tables) t = mem.alloc_frame()->hpa();
    const EptEntry table = EptEntry{}.with_read(true).with_write(true).with_exec(true);
    for (unsigned l = 4; l >= 2; --l) {
      mem.store(slot(tables[4 - l], level_from(l)), kHostKey,
                table.with_addr(tables[5 - l].raw()).raw(), std::memory_order_release);
      upper[4 - l] = slot(tables[4 - l], level_from(l));
    }
    leaf_slot = slot(tables[3], Level::k4K);
    leaf = table.with_mem_type(EptMemType::kWB).with_addr(0x1234'5000).raw();
    mem.store(leaf_slot, kHostKey, leaf, std::memory_order_release);
    ctx = Eptp::make(tables[0], 4, /*ad_enabled=*/true).walk_context(kHostKey);
  }
  static Hpa slot(Hpa table, Level l) { return table + uint64_t{kGpa.index(l)} * 8; }
  // Clears A/D everywhere, so that the next kHardware walk has all four to set.
  void clear_ad() {
    for (Hpa s : upper) {
      mem.store(
          s, kHostKey,
          EptEntry{mem.load(s, kHostKey, std::memory_order_relaxed)}.with_accessed(false).raw(),
          std::memory_order_release);
    }
    mem.store(leaf_slot, kHostKey, leaf, std::memory_order_release);
  }

  HostMemory mem;
  Hpa upper[3];
  Hpa leaf_slot;
  uint64_t leaf = 0;
  WalkContext ctx;
};

void walk_loop(benchmark::State& state, WalkMode mode, AccessType type) {
  Ept4K t;
  AccessRequest access;
  access.type = type;
  for (auto _ : state) {
    WalkResult r = walk(t.mem, t.mem.layout(), t.ctx, kGpa, access, mode);
    benchmark::DoNotOptimize(r);
  }
}

// kHardware in the steady state: A/D are already set, so the walk only reads.
void BM_EptWalk4K_Hardware(benchmark::State& state) {
  walk_loop(state, WalkMode::kHardware, AccessType::kWrite);
}
// kProbe: the TLB staleness check's side-effect-free walk.
void BM_EptWalk4K_Probe(benchmark::State& state) {
  walk_loop(state, WalkMode::kProbe, AccessType::kWrite);
}
// kHardware with A in four entries and D in the leaf to set every time (a first touch):
// includes the four stores that clear them again.
void BM_EptWalk4K_HardwareSettingAd(benchmark::State& state) {
  Ept4K t;
  AccessRequest access;
  access.type = AccessType::kWrite;
  for (auto _ : state) {
    t.clear_ad();
    WalkResult r = walk(t.mem, t.mem.layout(), t.ctx, kGpa, access, WalkMode::kHardware);
    benchmark::DoNotOptimize(r);
  }
}

BENCHMARK(BM_EptWalk4K_Hardware)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(BM_EptWalk4K_Probe)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(BM_EptWalk4K_HardwareSettingAd)->Repetitions(5)->ReportAggregatesOnly(true);

}  // namespace
}  // namespace tdxsim
