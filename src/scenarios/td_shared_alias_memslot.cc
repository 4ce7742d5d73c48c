// td_shared_alias_memslot: a VMM gives a TD's shared half a memslot of its own, at the
// shared bit (GPA bit 47 set), as if the shared alias were separate memory. It is not: KVM
// keeps one memslot per gfn for both halves and adds the shared bit only inside its TDP
// iterator, so a slot up there aliases the halves (faults never reach it; its zaps land on
// the other slot's shared mappings). KVM refuses it (EINVAL); the VMM then runs the TD as it
// should, converting part of its memory to shared and reading back what the guest wrote there.
#include "guest/program.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

constexpr uint64_t kSlotBytes = 2 << 20;
constexpr uint64_t kPrivateBytes = 64 << 10;
constexpr uint64_t kSharedOffset = 32 << 10, kSharedBytes = 16 << 10;
constexpr uint64_t kRound = 5;
constexpr uint32_t kAliasSlot = 1;

guest::GuestTask alias_guest(guest::Guest& g) {
  for (uint64_t off = 0; off < kPrivateBytes; off += kPageSize) {
    co_await g.accept(Gpa{off}, Level::k4K);
  }
  co_await g.fill(Gpa{0}, kPrivateBytes, kRound);
  co_await g.map_gpa(Gpa{kSharedOffset}, kSharedBytes, /*to_shared=*/true);
  const Gpa shared = g.flavour().to_shared(Gpa{kSharedOffset});
  co_await g.fill(shared, kSharedBytes, kRound + 1);
  co_await g.sync(check(kSharedOffset, kSharedBytes, kRound + 1));
  co_await g.verify(Gpa{0}, kSharedOffset, kRound);
  co_await g.done();
}

}  // namespace

void run_td_shared_alias_memslot(const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.memory_bytes = uint64_t{64} << 20;
  Machine machine(mc);
  const std::unique_ptr<Vm> td = create_private_td(machine, 1, kSlotBytes, kSlotBytes, report);
  if (td == nullptr) return;
  Vm& vm = *td;
  RunChecks checks(machine, options);
  checks.watch(vm);
  // Plain anonymous memory for "the shared half", where the shared bit puts it.
  const Gpa alias = vm.flavour().to_shared(Gpa{0});
  const KvmResult<> added = vm.add_memory_region(kAliasSlot, alias, kSlotBytes);
  report.figure("alias_memslot_refused", added.has_value() ? 0 : 1);
  report.check(vm.td_finalize().has_value(), "finalize");

  guest::Program program(vm.flavour(), alias_guest);
  vm.vcpu(0).set_guest(&program);
  const HostSync host_sync(vm, report, "td", [](unsigned) { return Gpa{0}; });
  run_vcpu_to_done(vm, 0, program, report,
                   [&](unsigned i, uint64_t stage) { return host_sync(i, stage); });
  checks.finish_vm(vm, report, "");
  checks.unwatch(vm);
  checks.finish(report);
}

}  // namespace tdxsim
