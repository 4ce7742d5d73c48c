// pml_dirty_log_aging: a plain VMX VM with PML (the CPU logs each page whose EPT dirty flag it
// sets; dirty logging clears D instead of write-protecting). One page in a slot of its own:
//
//   1. the guest writes the page (mapped writable, D set); the VMM turns logging on, which
//      clears D and flushes;
//   2. the host ages the page (MMU-notifier clear_young: KVM clears A under mmu_lock held
//      for write); between KVM's read of the SPTE and its write, the guest writes the page —
//      the CPU sets D and logs the page;
//   3. the VMM turns logging off and on again (a migration that restarts): KVM clears D on
//      every leaf and flushes only if it cleared one;
//   4. the guest writes the page again, and the VMM harvests (KVM_GET_DIRTY_LOG).
//
// KVM must clear A with an atomic AND (the leaf's D is volatile: the CPU may set it without
// mmu_lock), so step 2's D survives, step 3 clears it and flushes, and step 4's write sets D
// again and is logged. Written back with a plain store of what was read, step 2 loses D: step
// 3 finds nothing to clear and does not flush, the TLB keeps the translation with D set, and
// step 4's write neither walks nor logs — the harvest misses a page the guest wrote.
#include <atomic>
#include <chrono>
#include <thread>

#include "base/sched.h"
#include "base/thread.h"
#include "guest/program.h"
#include "platform/platform.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

constexpr Gpa kLoggedGpa{0x4000'0000};
constexpr uint32_t kLoggedSlot = 0;

void pml_dirty_log_aging(const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.memory_bytes = uint64_t{64} << 20;
  mc.tdx = false;
  Machine machine(mc);
  auto vm_or = Vm::create(machine, VmShape::of(VmType::kDefault));
  if (!report.check(vm_or.has_value(), "vm_create", "{}", errno_name(vm_or))) return;
  Vm& vm = **vm_or;
  if (!report.check(vm.add_memory_region(kLoggedSlot, kLoggedGpa, kPageSize).has_value(),
                    "memslot")) {
    return;
  }
  const KvmResult<uint64_t> hva = vm.gpa_to_hva(kLoggedGpa);
  if (!report.check(hva.has_value(), "gpa_to_hva")) return;
  RunChecks checks(machine, options);
  checks.watch(vm);

  // `go` stands in for a flag word the host sets and the guest polls; `written` for the
  // guest's answer. Neither is guest memory: the host sets `go` inside KVM's aging, under
  // mmu_lock and the host mm's lock, where it cannot write guest memory through the VMM.
  std::atomic<bool> go{false}, written{false}, armed{false}, staged{false};
  guest::Program program(vm.flavour(), [&](guest::Guest& g) -> guest::GuestTask {
    co_await g.write(kLoggedGpa, guest::pattern(kLoggedGpa, 1));
    co_await g.sync(1);
    // Reads leave D clear and let the TLB hold the page clean until the aging has read it.
    while (!go.load(std::memory_order_acquire)) co_await g.read(kLoggedGpa);
    co_await g.write(kLoggedGpa + 8, guest::pattern(kLoggedGpa + 8, 2));
    written.store(true, std::memory_order_release);
    co_await g.sync(2);
    co_await g.write(kLoggedGpa + 16, guest::pattern(kLoggedGpa + 16, 3));
    co_await g.sync(3);
    co_await g.done();
  });
  vm.vcpu(0).set_guest(&program, 4096);

  // In KVM's aging of the page, between its read of the SPTE and its write: the guest's write.
  const Gfn gfn = kLoggedGpa.gfn();
  auto sub = vm.kvm().events().spte_changed.attach([&](const SpteChangeEvent& e) {
    if (e.phase != EventPhase::kBegin || e.gfn != gfn || !armed.exchange(false)) return;
    go.store(true, std::memory_order_release);
    const auto deadline = sched_now() + std::chrono::seconds(5);
    while (!written.load(std::memory_order_acquire) && sched_now() < deadline) {
      sched_pause();
    }
    staged.store(written.load(std::memory_order_acquire), std::memory_order_release);
  });
  Thread ager;
  uint64_t harvested = 0;
  run_vcpu_to_done(vm, 0, program, report, [&](unsigned, uint64_t stage) {
    switch (stage) {
      case 1:
        if (!report.check(vm.set_dirty_logging(kLoggedSlot, true).has_value(), "log_start"))
          return false;
        armed.store(true, std::memory_order_release);
        ager = Thread([&] {
          CpuBinding cpu = machine.platform().bind(machine.host_cpu(1));
          vm.mm().age(*hva, kPageSize);
        });
        return true;
      case 2:
        ager.join();
        // Released even if the aging never reached the page, so the guest can go on.
        go.store(true, std::memory_order_release);
        report.check(staged.load(), "race_window",
                     "the guest's write did not land inside KVM's aging of the page");
        return report.check(vm.set_dirty_logging(kLoggedSlot, false).has_value(), "log_stop") &&
               report.check(vm.set_dirty_logging(kLoggedSlot, true).has_value(), "log_restart");
      case 3: {
        const KvmResult<std::vector<uint64_t>> log = vm.get_dirty_log(kLoggedSlot);
        if (!report.check(log.has_value(), "get_dirty_log", "{}", errno_name(log))) return false;
        for (uint64_t w : *log) harvested += static_cast<uint64_t>(__builtin_popcountll(w));
        return true;
      }
      default:
        return report.check(false, "sync_stage", "unexpected stage {}", stage);
    }
  });
  if (ager.joinable()) {
    go.store(true, std::memory_order_release);
    ager.join();
  }
  sub.reset();
  report.schedule_figure("dirty_log.pages_harvested", harvested);
  checks.finish_vm(vm, report, "");
  checks.unwatch(vm);
  checks.finish(report);
}

}  // namespace

void run_pml_dirty_log_aging(const ScenarioOptions& options, Report& report) {
  pml_dirty_log_aging(options, report);
}

}  // namespace tdxsim
