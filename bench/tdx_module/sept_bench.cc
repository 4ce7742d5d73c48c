// The S-EPT paths KVM takes for every private page: TDH.MEM.PAGE.AUG followed by the guest's
// TDG.MEM.PAGE.ACCEPT (the fault-in of a page; goal: median ≤ 300 ns a page single-threaded,
// docs/benchmarks.md), and BLOCK + TRACK + REMOVE (the zap of one). Both run on one logical
// CPU with no vCPU inside, on a RUNNABLE TD whose S-EPT already has the page tables.
//
// AUG+ACCEPT is measured a 2M batch at a time: 512 AUGs, then one TDH.VP.ENTER whose guest
// accepts the 512 pages and halts; the items are pages. The pages go back (BLOCK, TRACK,
// REMOVE) outside the timed region and the next batch AUGs the same frames.
#include <benchmark/benchmark.h>

#include <vector>

#include "base/check.h"
#include "base/fault_injection.h"
#include "platform/platform.h"
#include "platform/scripted_guest.h"
#include "tdx_module/page_info.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {
namespace {

constexpr uint16_t kGlobalHkid = 32;
constexpr uint16_t kTdHkid = 33;
constexpr Gpa kGpa{0x20'0000};
constexpr unsigned kBatch = 512;

// One SEAMCALL on the bound CPU; anything but `expect` is a broken benchmark.
uint64_t seamcall(LogicalCpu& cpu, SeamcallLeaf leaf, uint64_t rcx = 0, uint64_t rdx = 0,
                  uint64_t r8 = 0, uint64_t expect = 0) {
  SeamcallRegs r;
  r.rax = LeafAndVersion::of(leaf).raw();
  r.rcx = rcx;
  r.rdx = rdx;
  r.r8 = r8;
  const uint64_t s = host_seamcall(cpu, r);
  TDXSIM_CHECK(s == expect, "{}: {}", to_string(leaf), describe_status(s));
  return r.rcx;
}

uint64_t pi(Gpa gpa) { return PageInfo::of(gpa, 0).raw(); }

// A single-package, single-CPU platform with the module up and one RUNNABLE TD whose S-EPT
// maps nothing yet but has the tables for kGpa's 2M.
struct Td {
  Td() : platform(config(), faults), module(platform) {
    platform.install_seam_module(&module);
    binding.emplace(platform.bind(0));
    LogicalCpu& c = cpu();
    HostMemory& mem = platform.memory();
    const auto page = [&] { return mem.alloc_frame().value().hpa().raw(); };
    seamcall(c, SeamcallLeaf::kSysInit);
    seamcall(c, SeamcallLeaf::kSysLpInit);
    seamcall(c, SeamcallLeaf::kSysConfig, 0, 1, kGlobalHkid);
    seamcall(c, SeamcallLeaf::kSysKeyConfig);
    while (!module.tdmr_initialized()) seamcall(c, SeamcallLeaf::kSysTdmrInit);
    tdr = page();
    seamcall(c, SeamcallLeaf::kMngCreate, tdr, kTdHkid);
    seamcall(c, SeamcallLeaf::kMngKeyConfig, tdr);
    for (unsigned i = 0; i < module.config().tdcs_pages; ++i)
      seamcall(c, SeamcallLeaf::kMngAddcx, page(), tdr);
    const Hpa params{page()};
    mem.write(params + 0, kHostKey, kTdAttrSeptVeDisable);  // ATTRIBUTES
    mem.write(params + 16, kHostKey, 1);                    // MAX_VCPUS
    mem.write(params + 24, kHostKey, 6 | (3 << 3));         // EPTP controls: WB, 4 levels
    seamcall(c, SeamcallLeaf::kMngInit, tdr, params.raw());
    tdvpr = page();
    seamcall(c, SeamcallLeaf::kVpCreate, tdvpr, tdr);
    for (unsigned i = 1; i < module.config().tdvps_pages; ++i)
      seamcall(c, SeamcallLeaf::kVpAddcx, page(), tdvpr);
    seamcall(c, SeamcallLeaf::kVpInit, tdvpr, 0);
    for (unsigned l = 3; l >= 1; --l) {
      seamcall(c, SeamcallLeaf::kMemSeptAdd, PageInfo::of(kGpa.align_down(PageInfo::from_tdx_level(l)), l).raw(),
               tdr, page());
    }
    seamcall(c, SeamcallLeaf::kMrFinalize, tdr);
    for (unsigned i = 0; i < kBatch; ++i) pages.push_back(page());
  }
  static PlatformConfig config() {
    PlatformConfig c;
    c.cpus_per_package = 1;
    c.memory.bytes = uint64_t{64} << 20;
    return c;
  }
  LogicalCpu& cpu() { return binding->cpu(); }

  void aug_batch() {
    for (unsigned i = 0; i < kBatch; ++i)
      seamcall(cpu(), SeamcallLeaf::kMemPageAug, pi(kGpa + i * kPageSize), tdr, pages[i]);
  }
  void block_track_remove(unsigned i) {
    const uint64_t gpa = pi(kGpa + i * kPageSize);
    seamcall(cpu(), SeamcallLeaf::kMemRangeBlock, gpa, tdr);
    seamcall(cpu(), SeamcallLeaf::kMemTrack, tdr);
    seamcall(cpu(), SeamcallLeaf::kMemPageRemove, gpa, tdr);
  }
  // TDH.VP.ENTER until the guest halts (TDG.VP.VMCALL<HLT>, exit reason 77).
  void enter() {
    SeamcallRegs r;
    r.rax = LeafAndVersion::of(SeamcallLeaf::kVpEnter).raw();
    r.rcx = tdvpr;
    const uint64_t s = host_seamcall(cpu(), r);
    TDXSIM_CHECK(s == static_cast<uint64_t>(VmxExitReason::kTdcall) && r.r11 == 12,
                 "TD exit {:#x}", s);
  }

  FaultInjection faults;
  Platform platform;
  TdxModule module;
  std::optional<CpuBinding> binding;
  uint64_t tdr = 0, tdvpr = 0;
  std::vector<uint64_t> pages;
};

// A guest that accepts the batch's pages in order, from wherever its RIP is, then halts.
class AcceptBatch : public GuestProgram {
 public:
  GuestInsn fetch(GuestState& s) override {
    const uint64_t step = (s.rip - base_) / 4;
    const uint64_t page = step / 3;
    if (page >= kBatch) return ScriptedGuest::op(GuestInsnKind::kHlt);
    switch (step % 3) {
      case 0: return ScriptedGuest::mov(Gpr::kRcx, (kGpa + page * kPageSize).raw());
      case 1: return ScriptedGuest::mov(Gpr::kRax, static_cast<uint64_t>(TdcallLeaf::kMemPageAccept));
      default: return ScriptedGuest::op(GuestInsnKind::kTdcall);
    }
  }
  uint64_t ve_handler_rip() const override { return ~uint64_t{0}; }
  void restart_at(uint64_t rip) { base_ = rip; }

 private:
  uint64_t base_ = 0;
};

void BM_AugAccept4K(benchmark::State& state) {
  Td td;
  AcceptBatch guest;
  TDXSIM_CHECK(td.module.attach_guest(Hpa{td.tdvpr}, &guest, 0), "attach");
  for (auto _ : state) {
    guest.restart_at(td.module.vcpu_guest_state(Hpa{td.tdvpr})->rip);
    td.aug_batch();
    td.enter();
    state.PauseTiming();
    for (unsigned i = 0; i < kBatch; ++i) td.block_track_remove(i);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kBatch);
  state.counters["ns_per_page"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kBatch,
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_AugAccept4K)->Unit(benchmark::kMicrosecond)->Repetitions(5)->ReportAggregatesOnly();

// The two halves of the above, apart: where a page's fault-in time goes.
void BM_Aug4K(benchmark::State& state) {
  Td td;
  AcceptBatch guest;
  TDXSIM_CHECK(td.module.attach_guest(Hpa{td.tdvpr}, &guest, 0), "attach");
  for (auto _ : state) {
    td.aug_batch();
    state.PauseTiming();
    guest.restart_at(td.module.vcpu_guest_state(Hpa{td.tdvpr})->rip);
    td.enter();
    for (unsigned i = 0; i < kBatch; ++i) td.block_track_remove(i);
    state.ResumeTiming();
  }
  state.counters["ns_per_page"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kBatch,
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Aug4K)->Unit(benchmark::kMicrosecond)->Repetitions(5)->ReportAggregatesOnly();

void BM_Accept4K(benchmark::State& state) {
  Td td;
  AcceptBatch guest;
  TDXSIM_CHECK(td.module.attach_guest(Hpa{td.tdvpr}, &guest, 0), "attach");
  for (auto _ : state) {
    state.PauseTiming();
    td.aug_batch();
    guest.restart_at(td.module.vcpu_guest_state(Hpa{td.tdvpr})->rip);
    state.ResumeTiming();
    td.enter();
    state.PauseTiming();
    for (unsigned i = 0; i < kBatch; ++i) td.block_track_remove(i);
    state.ResumeTiming();
  }
  state.counters["ns_per_page"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kBatch,
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Accept4K)->Unit(benchmark::kMicrosecond)->Repetitions(5)->ReportAggregatesOnly();

void BM_BlockTrackRemove4K(benchmark::State& state) {
  Td td;
  for (auto _ : state) {
    state.PauseTiming();
    td.aug_batch();
    state.ResumeTiming();
    for (unsigned i = 0; i < kBatch; ++i) td.block_track_remove(i);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kBatch);
  state.counters["ns_per_page"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kBatch,
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_BlockTrackRemove4K)->Unit(benchmark::kMicrosecond)->Repetitions(5)->ReportAggregatesOnly();

}  // namespace
}  // namespace tdxsim
