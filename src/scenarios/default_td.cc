// default: what `make run` shows a KVM developer first — a TD's whole life at a useful size.
//
// A TD (4 vCPUs, 4 GiB by default) is built with a measured image (TDH.MEM.PAGE.ADD,
// TDH.MR.EXTEND, TDH.MR.FINALIZE). Each vCPU accepts and fills its share of private memory,
// then converts the first quarter of it to shared (MapGPA), where guest and host check each
// other's writes while the host reclaims shared pages under memory pressure, and back to
// private (accept again, fill, verify). A second memslot used by vCPU 0 is deleted
// mid-run. Teardown must return every frame, leave the PAMT clean and show no plaintext to
// the host; the stale-use check watches throughout.
#include <atomic>

#include "guest/program.h"
#include "kvm/vmx/tdx.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "scenarios/tracer.h"
#include "tdx_module/tdx_module.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

constexpr uint64_t kImageRound = 0x1A6E;
constexpr uint64_t kImageBytes = 64 << 10;
// Main memory above 4 GiB: below it sits the (unbacked) ucall page, as a PC's MMIO hole.
constexpr Gpa kMainBase{uint64_t{4} << 30};
constexpr Gpa kExtraGpa{uint64_t{1} << 40};  // the slot that goes away: far from the main one
constexpr uint64_t kExtraBytes = 2 << 20;
constexpr uint32_t kMainSlot = 0, kExtraSlot = 1;

enum Round : uint64_t { kPrivate = 1, kGuestShared = 2, kHostShared = 3, kBack = 4 };
enum Stage : uint64_t { kDeleteExtra = 0xE };

uint64_t image_word(uint64_t offset) {
  return guest::pattern(kMainBase + offset, kImageRound);
}

guest::GuestTask accept_range(guest::Guest& g, Gpa base, uint64_t bytes) {
  for (uint64_t off = 0; off < bytes; off += kPageSize) co_await g.accept(base + off, Level::k4K);
}

guest::GuestTask vcpu_life(guest::Guest& g, unsigned i, Gpa base, uint64_t chunk) {
  const uint64_t quarter = chunk / 4;
  const Gpa shared = g.flavour().to_shared(base);
  co_await accept_range(g, base, chunk);
  if (i == 0) {
    // The measured image is what TDH.MEM.PAGE.ADD copied in, accepted already.
    co_await g.verify(kMainBase, kImageBytes, kImageRound);
    co_await accept_range(g, kExtraGpa, kExtraBytes);
    co_await g.fill(kExtraGpa, kExtraBytes, kPrivate);
    co_await g.verify(kExtraGpa, kExtraBytes, kPrivate);
    co_await g.sync(kDeleteExtra);
  }
  co_await g.fill(base, chunk, kPrivate);
  co_await g.verify(base, chunk, kPrivate);

  // A quarter to shared: both sides see each other's writes there, and only there.
  co_await g.map_gpa(base, quarter, /*to_shared=*/true);
  co_await g.fill(shared, quarter, kGuestShared);
  co_await g.sync(check_write(0, quarter, kGuestShared, kHostShared));
  co_await g.verify(shared, quarter, kHostShared);
  co_await g.verify(base + quarter, chunk - quarter, kPrivate);

  // And back: the private pages are fresh (the shared conversion discarded them).
  co_await g.map_gpa(base, quarter, /*to_shared=*/false);
  co_await accept_range(g, base, quarter);
  co_await g.verify(base, quarter, 0, zero_pattern);
  co_await g.fill(base, quarter, kBack);
  co_await g.verify(base, quarter, kBack);
  co_await g.verify(base + quarter, chunk - quarter, kPrivate);
  co_await g.done();
}

}  // namespace

void run_default(const ScenarioOptions& options, Report& report) {
  const unsigned vcpus = options.vcpus.value_or(4);
  const uint64_t memory = options.memory_bytes.value_or(uint64_t{4} << 30);
  const uint64_t chunk = memory / vcpus / (2 << 20) * (2 << 20);
  if (!report.check(chunk >= (4 << 20), "size", "{} bytes over {} vCPUs is under 4 MiB each",
                    memory, vcpus)) {
    return;
  }
  MachineConfig mc = machine_config(options);
  mc.tdx = true;
  mc.packages = 2;
  mc.cpus_per_package = (mc.host_cpus + vcpus + 1) / 2;
  // Guest memory plus its shared copies, page tables, S-EPT and TD pages: all lazily resident.
  mc.memory_bytes = memory + memory / 2 + (uint64_t{256} << 20);
  Machine machine(mc);
  HostMemory& mem = machine.platform().memory();
  const uint64_t free_before = mem.free_frame_count();
  {
    options.phase("building the TD (TDH.MEM.PAGE.ADD, TDH.MR.EXTEND, TDH.MR.FINALIZE)");
    auto vm_or = Vm::create(machine, VmShape::of(VmType::kTdx, vcpus));
    if (!report.check(vm_or.has_value(), "td_create", "{}", errno_name(vm_or))) return;
    Vm& vm = **vm_or;
    // Traced from its creation on (RunChecks would start at the run), so that the trace shows
    // the image being built; detached before the VM goes.
    const std::unique_ptr<Tracer::Attachment> traced =
        options.tracer != nullptr ? options.tracer->attach(vm) : nullptr;
    const uint64_t main_bytes = chunk * vcpus;
    const KvmResult<> main_slot =
        vm.add_memory_region(kMainSlot, kMainBase, main_bytes, MemoryRegion::with_gmem());
    const KvmResult<> extra_slot =
        vm.add_memory_region(kExtraSlot, kExtraGpa, kExtraBytes, MemoryRegion::with_gmem());
    if (!report.check(main_slot.has_value() && extra_slot.has_value(), "memslots",
                      "main slot: {}, extra slot: {}", errno_name(main_slot),
                      errno_name(extra_slot))) {
      return;
    }
    report.check(vm.set_private(kMainBase, main_bytes).has_value() &&
                     vm.set_private(kExtraGpa, kExtraBytes).has_value(),
                 "set_private");
    report.check(vm.td_init_mem_region(kMainBase, kImageBytes, image_word).has_value(),
                 "init_mem_region");
    report.check(vm.td_finalize().has_value(), "finalize");

    std::vector<std::unique_ptr<guest::Program>> programs;
    for (unsigned i = 0; i < vcpus; ++i) {
      const Gpa base = kMainBase + i * chunk;
      programs.push_back(std::make_unique<guest::Program>(
          vm.flavour(),
          [i, base, chunk](guest::Guest& g) { return vcpu_life(g, i, base, chunk); }));
      vm.vcpu(i).set_guest(programs.back().get());
    }
    ScenarioOptions untraced = options;  // traced since the VM's creation, above
    untraced.tracer = nullptr;
    RunChecks checks(machine, untraced);
    checks.watch(vm);
    const HostSync host_sync(vm, report, "default",
                             [chunk](unsigned i) { return kMainBase + i * chunk; });
    std::atomic<bool> extra_deleted{false};
    const TdxStats& st = TdxOps::to_tdx(vm.kvm_vm()).stats();
    {
      // Every page is accepted (AUG) once, the converted quarter twice.
      options.phase(
          "guests accept, fill and convert (pages AUGed)",
          [&st] { return st.count(SeamcallLeaf::kMemPageAug); },
          (main_bytes + main_bytes / 4 + kExtraBytes) / kPageSize);
      // kswapd-like: 8 MiB of the main slot a pass (shared pages there migrate; private
      // memory has no userspace mapping to reclaim).
      vmm::MemoryPressure pressure(vm, {kMainSlot}, 8 << 20);
      run_vcpus_to_done(vm, programs, report, [&](unsigned i, uint64_t stage) {
        if (stage == kDeleteExtra) {
          extra_deleted = report.check(vm.delete_memslot(kExtraSlot).has_value(), "delete_memslot",
                                       "vCPU {}", i);
          return extra_deleted.load();
        }
        return host_sync(i, stage);
      });
      pressure.stop();
      check_pressure(vm, pressure, report, "default");
      options.phase("checking and tearing down");
    }
    report.check(extra_deleted.load(), "memslot_deleted");
    report.figure("vcpus", vcpus);
    report.figure("guest_memory_bytes", main_bytes + kExtraBytes);
    report.figure("tdh_mem_page_add", st.count(SeamcallLeaf::kMemPageAdd));
    report.schedule_figure("tdh_mem_page_aug", st.count(SeamcallLeaf::kMemPageAug));
    report.schedule_figure("tdh_mem_page_remove", st.count(SeamcallLeaf::kMemPageRemove));
    report.schedule_figure("tdh_mem_track", st.count(SeamcallLeaf::kMemTrack));
    checks.finish_vm(vm, report, "");
    checks.unwatch(vm);
    checks.finish(report);
  }
  check_td_teardown(machine, free_before, report);
}

}  // namespace tdxsim
