// memslot_delete_private: KVM's private_mem_kvm_exits_test — a guest loops reading a private
// page while the host deletes its memslot; KVM_RUN fails with EFAULT and a memory-fault exit
// naming the slot's GPA, 4096 bytes, private (on a software-protected VM, as the selftest,
// and on a TD).
//
// memslot_move: set_memory_region_test's move and delete tests on a plain VMX VM with a THP
// slot, with KVM_X86_QUIRK_SLOT_ZAP_ALL on and off: while the guest spins reading the slot's
// first word, the host moves the slot down 4 KiB (the guest may see MMIO, never the word the
// host then writes at the old alignment), moves it back (the guest sees the host's 1),
// deletes it (MMIO), and re-creates it (fresh memory: 0).
#include <atomic>
#include <thread>
#include <vector>

#include "base/lock.h"
#include "base/sched.h"
#include "base/thread.h"
#include "guest/program.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

constexpr Gpa kPrivateGpa{0xC000'0000};

void delete_private(VmType type, const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.memory_bytes = uint64_t{64} << 20;
  mc.tdx = type == VmType::kTdx;
  Machine machine(mc);
  auto vm_or = Vm::create(machine, VmShape::of(type));
  if (!report.check(vm_or.has_value(), "vm_create", "{}", errno_name(vm_or))) return;
  Vm& vm = **vm_or;
  report.check(
      vm.add_memory_region(0, kPrivateGpa, kPageSize, MemoryRegion::with_gmem()).has_value(),
      "memslot");
  report.check(vm.set_private(kPrivateGpa, kPageSize).has_value(), "set_private");
  if (type == VmType::kTdx) report.check(vm.td_finalize().has_value(), "finalize");
  RunChecks checks(machine, options);
  checks.watch(vm);
  std::atomic<uint64_t> reads{0};
  guest::Program program(vm.flavour(), [&reads](guest::Guest& g) -> guest::GuestTask {
    if (g.flavour().td) co_await g.accept(kPrivateGpa, Level::k4K);
    for (;;) {
      co_await g.read(kPrivateGpa);
      reads.fetch_add(1, std::memory_order_relaxed);
    }
  });
  vm.vcpu(0).set_guest(&program, /*budget=*/256);
  KvmResult<> result;
  Thread vcpu([&] {
    for (;;) {
      result = vm.vcpu(0).run();
      if (!result) return;
    }
  });
  // Delete once the guest is in its loop, reading the mapped page.
  while (reads.load(std::memory_order_relaxed) < 100) sched_pause();
  report.check(vm.delete_memslot(0).has_value(), "delete_memslot");
  vcpu.join();
  const KvmRun& run = vm.vcpu(0).run_state();
  const char* t = to_string(type);
  report.check(!result && result.error() == Errno::kEfault, "kvm_run_efault", "{}: KVM_RUN gave {}",
               t, errno_name(result));
  report.check(run.exit_reason == KvmExitReason::kMemoryFault, "memory_fault_exit", "{}: exit {}",
               t, to_string(run.exit_reason));
  report.check(run.memory_fault.gpa == kPrivateGpa && run.memory_fault.size == kPageSize &&
                   run.memory_fault.flags == kMemoryExitFlagPrivate,
               "memory_fault_fields", "{}: gpa {} size {} flags {:#x}", t, run.memory_fault.gpa,
               run.memory_fault.size, run.memory_fault.flags);
  checks.verdict(report, t);
}

constexpr Gpa kMoveGpa{0x4000'0000};
constexpr uint64_t kMoveSize = 2 << 20;

// The guest spins on the slot's first word, reporting each change of what it sees, until the
// host's final 3.
guest::GuestTask move_guest(guest::Guest& g) {
  uint64_t last = co_await g.read(kMoveGpa);
  co_await g.sync(last & 0xFF);
  while (last != 3) {
    const uint64_t v = co_await g.read(kMoveGpa);
    if (v == last) continue;
    last = v;
    co_await g.sync(v & 0xFF);  // 1, 0, 0xFF (MMIO), 3; 2 only through a stale translation
  }
  co_await g.done();
}

void move_and_delete(bool quirk, const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.memory_bytes = uint64_t{64} << 20;
  mc.huge_2m_pages = 4;
  mc.tdx = false;
  Machine machine(mc);
  VmShape shape = VmShape::of(VmType::kDefault);
  shape.quirk_slot_zap_all = quirk;
  auto vm_or = Vm::create(machine, shape);
  if (!report.check(vm_or.has_value(), "vm_create", "{}", errno_name(vm_or))) return;
  Vm& vm = **vm_or;
  report.check(vm.add_memory_region(0, kMoveGpa, kMoveSize, MemoryRegion::with_thp()).has_value(),
               "memslot");
  report.check(vm.host_write(kMoveGpa, 1).has_value(), "host_write");
  RunChecks checks(machine, options);
  checks.watch(vm);
  guest::Program program(vm.flavour(), move_guest);
  vm.vcpu(0).set_guest(&program, 512);

  // What the guest saw, in order; the host steps on once the value a step waits for shows up.
  Mutex mu{"seen"};
  std::vector<uint64_t> seen;
  std::atomic<bool> done{false};
  Thread vcpu([&] {
    run_vcpu_to_done(vm, 0, program, report, [&](unsigned, uint64_t v) {
      report.check(v != 2, "no_stale_data", "quirk {}: the guest read the misaligned 2", quirk);
      MutexLock l(mu);
      seen.push_back(v);
      return v != 2;
    });
    done = true;
  });
  size_t next = 0;
  auto wait_seen = [&](uint64_t v) {
    for (;;) {
      {
        MutexLock l(mu);
        for (; next < seen.size(); ++next) {
          if (seen[next] == v) {
            ++next;
            return true;
          }
        }
      }
      if (done) return false;
      sched_pause();
    }
  };
  report.check(wait_seen(1), "guest_sees_1");
  // Misaligned: GPA kMoveGpa now maps the slot's second page (0); the host's 2 on the first
  // page is what only a stale translation could show.
  report.check(vm.move_memslot(0, kMoveGpa - kPageSize).has_value(), "move");
  report.check(vm.host_write(kMoveGpa - kPageSize, 2).has_value(), "host_write");
  report.check(wait_seen(0), "guest_sees_the_moved_slot");
  // Realigned: the first page holds 1 again before the slot moves back.
  report.check(vm.host_write(kMoveGpa - kPageSize, 1).has_value(), "host_write");
  report.check(vm.move_memslot(0, kMoveGpa).has_value(), "move_back");
  report.check(wait_seen(1), "guest_sees_1_after_move_back");
  report.check(vm.delete_memslot(0).has_value(), "delete");
  report.check(wait_seen(0xFF), "guest_sees_mmio_after_delete");
  report.check(vm.add_memory_region(0, kMoveGpa, kMoveSize, MemoryRegion::with_thp()).has_value(),
               "recreate");
  report.check(wait_seen(0), "guest_sees_fresh_memory");
  report.check(vm.host_write(kMoveGpa, 3).has_value(), "host_write");
  vcpu.join();
  report.check(done.load(), "guest_done");
  checks.verdict(report, quirk ? "quirk on" : "quirk off");
}

}  // namespace

void run_memslot_delete_private(const ScenarioOptions& options, Report& report) {
  delete_private(VmType::kSwProtected, options, report);
  delete_private(VmType::kTdx, options, report);
}

void run_memslot_move(const ScenarioOptions& options, Report& report) {
  move_and_delete(/*quirk=*/true, options, report);
  move_and_delete(/*quirk=*/false, options, report);
}

}  // namespace tdxsim
