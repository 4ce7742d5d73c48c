// tdx_upm_explicit / tdx_upm_implicit: the posted TDX selftest tdx_upm_test. A 2 MiB
// guest_memfd slot at GPA 0x80000000 holds general area 0 (1 MiB), a 40 KiB focus area and
// general area 1; the host fills its own (shared) backing before finalize; the guest, whose
// #VE handler accepts PENDING pages on first touch, fills everything privately and the host
// must not see it; the focus area is converted to shared and back — explicitly by MapGPA, or
// implicitly by accessing it through the other alias, which KVM turns into a memory-fault
// exit the VMM answers by converting — and each side checks what the other wrote; converted
// back to private, the focus area reads zero. All along the host reclaims the slot's shared
// memory (page migration through the MMU notifier).
#include "guest/program.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

constexpr Gpa kSlotGpa{0x8000'0000};
constexpr uint64_t kSlotSize = 2 << 20;
constexpr uint64_t kGeneral0 = 0, kGeneral0Size = 1 << 20;
constexpr uint64_t kFocus = kGeneral0Size, kFocusSize = 40 << 10;
constexpr uint64_t kGeneral1 = kFocus + kFocusSize, kGeneral1Size = kSlotSize - kGeneral1;

// The test's bytes 0x11 (host, before finalize), 0x33, 0x44 (guest), 0x22 (host), as rounds.
enum Round : uint64_t { k11 = 1, k22 = 2, k33 = 3, k44 = 4 };

guest::GuestTask upm_guest(guest::Guest& g, bool explicit_conversion) {
  const Gpa focus = kSlotGpa + kFocus;
  const Gpa shared_focus = g.flavour().to_shared(focus);
  // Everything private (accepted lazily by the #VE handler), invisible to the host.
  co_await g.fill(kSlotGpa, kSlotSize, k33);
  co_await g.sync(check(0, kSlotSize, k11));
  // The focus area to shared; the general areas keep their private contents.
  if (explicit_conversion) co_await g.map_gpa(focus, kFocusSize, /*to_shared=*/true);
  co_await g.verify(shared_focus, kFocusSize, k11);
  co_await g.verify(kSlotGpa + kGeneral0, kGeneral0Size, k33);
  co_await g.verify(kSlotGpa + kGeneral1, kGeneral1Size, k33);
  co_await g.fill(shared_focus, kFocusSize, k44);
  co_await g.sync(check_write(kFocus, kFocusSize, k44, k22));
  co_await g.sync(check(kGeneral0, kGeneral0Size, k11));
  co_await g.sync(check(kGeneral1, kGeneral1Size, k11));
  co_await g.verify(shared_focus, kFocusSize, k22);
  // Back to private: fresh pages, zero once accepted.
  if (explicit_conversion) co_await g.map_gpa(focus, kFocusSize, /*to_shared=*/false);
  co_await g.verify(focus, kFocusSize, 0, zero_pattern);
  co_await g.verify(kSlotGpa + kGeneral0, kGeneral0Size, k33);
  co_await g.verify(kSlotGpa + kGeneral1, kGeneral1Size, k33);
  co_await g.fill(kSlotGpa, kSlotSize, k44);
  co_await g.verify(kSlotGpa, kSlotSize, k44);
  // The host's view never changed outside the focus area it wrote.
  co_await g.sync(check(kGeneral0, kGeneral0Size, k11));
  co_await g.done();
}

void run_upm(bool explicit_conversion, const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.memory_bytes = uint64_t{128} << 20;
  Machine machine(mc);
  auto vm_or = Vm::create(machine, VmShape::of(VmType::kTdx));
  if (!report.check(vm_or.has_value(), "td_create", "{}", errno_name(vm_or))) return;
  Vm& vm = **vm_or;
  if (!report.check(
          vm.add_memory_region(0, kSlotGpa, kSlotSize, MemoryRegion::with_gmem()).has_value(),
          "memslot")) {
    return;
  }
  report.check(vm.set_private(kSlotGpa, kSlotSize).has_value(), "set_private");
  // The host's backing (the shared half) holds 0x11 before the TD runs.
  guest::for_each_sample(kSlotGpa, kSlotSize, [&](Gpa gpa) {
    report.check(vm.host_write(gpa, round_value(gpa, k11)).has_value(), "host_fill");
  });
  report.check(vm.td_finalize().has_value(), "finalize");
  RunChecks checks(machine, options);
  checks.watch(vm);
  guest::Program program(vm.flavour(), [explicit_conversion](guest::Guest& g) {
    return upm_guest(g, explicit_conversion);
  });
  vm.vcpu(0).set_guest(&program);
  const HostSync on_sync(vm, report, explicit_conversion ? "explicit" : "implicit",
                         [](unsigned) { return kSlotGpa; });
  {
    vmm::MemoryPressure pressure(vm, {0});
    // Besides the background pressure, one reclaim at a known point: right after the host
    // wrote the shared focus area the guest has mapped, so the guest's next reads go through
    // a notifier zap to the migrated pages.
    run_vcpu_to_done(vm, 0, program, report, [&](unsigned vcpu, uint64_t arg) {
      const bool ok = on_sync(vcpu, arg);
      if (HostStep::decode(arg).op == HostOp::kCheckWrite) vm.reclaim(0);
      return ok;
    });
    pressure.stop();
    check_pressure(vm, pressure, report, explicit_conversion ? "explicit" : "implicit");
  }
  const VcpuExitStats& s = vm.vcpu(0).exit_stats();
  report.figure("map_gpa_exits", s.map_gpa);
  report.figure("memory_fault_exits", s.memory_faults);
  report.figure("ve_handled", program.ves_handled());
  if (explicit_conversion) {
    report.check(s.map_gpa >= 2 && s.memory_faults == 0, "explicit_by_map_gpa",
                 "{} MapGPA exits, {} memory-fault exits", s.map_gpa, s.memory_faults);
  } else {
    report.check(s.map_gpa == 0 && s.memory_faults >= 2, "implicit_by_memory_fault",
                 "{} MapGPA exits, {} memory-fault exits", s.map_gpa, s.memory_faults);
  }
  checks.finish_vm(vm, report, "");
  checks.unwatch(vm);
  checks.finish(report);
}

}  // namespace

void run_tdx_upm_explicit(const ScenarioOptions& options, Report& report) {
  run_upm(true, options, report);
}
void run_tdx_upm_implicit(const ScenarioOptions& options, Report& report) {
  run_upm(false, options, report);
}

}  // namespace tdxsim
