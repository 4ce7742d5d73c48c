// tdp_zap_yield: a plain VMX VM whose zaps yield mmu_lock every few entries. The guest fills a
// 1 MiB slot of 4K pages; the host zaps it with kvm_zap_gfn_range (an MTRR change) while the
// guest waits, the guest reads it all back, and the slot is deleted (quirk off: a memslot
// zap of exactly its range). Every zap must leave its range unmapped in every root however
// often it yielded, and no KVM lock assertion may warn on the way (the fault path takes
// mmu_lock for read).
//
// notifier_during_fast_zap: a plain VMX VM with KVM_X86_QUIRK_SLOT_ZAP_ALL: deleting a slot
// invalidates every root and zaps them under mmu_lock held for read, yielding after every
// entry. While that zap is part way through the root — one 1 GiB region torn down, the next
// still mapped — the host reclaims the other slot: the MMU notifier's unmap runs under the
// write lock in the zapper's yield. When it returns, the invalid root must not map the
// reclaimed range any more (its frames go back to the host).
//
// td_shared_unmap_during_fast_zap: the same on a TD, whose shared memory lives in the direct
// roots: the memslot generation's MMIO bits wrap (kvm_mmu_invalidate_mmio_sptes), which
// fast-zaps the direct roots (never the mirror), and the host reclaims a shared slot in the
// zap's yield; the notifier's unmap takes the alias-filtered path (shared: direct roots).
//
// fault_on_obsolete_root: a plain VMX VM whose memslot generation's MMIO bits are about to
// wrap, so the next memslot update fast-zaps (kvm_mmu_invalidate_mmio_sptes: every root
// invalidated under the write lock, then zapped under the read lock). The vCPU's fault on a
// page of its second slot is held between the pfn lookup and mmu_lock while another thread
// adds a third slot; when the fault goes on, the root the vCPU still holds is obsolete and
// its zap is over. The fault must retry (the vCPU reloads a new root) rather than build
// tables under the old root: its last put frees the root page alone. (A slot deletion
// cannot stand in for the update: it waits for the fault's RCU section before it zaps.)
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "base/sched.h"
#include "base/thread.h"
#include "guest/program.h"
#include "kvm/mmu.h"
#include "platform/platform.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

constexpr Gpa kYieldGpa{0x4000'0000};
constexpr uint64_t kYieldSize = 1 << 20;

void zap_yield(const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.memory_bytes = uint64_t{64} << 20;
  mc.tdx = false;
  Machine machine(mc);
  VmShape shape = VmShape::of(VmType::kDefault);
  shape.quirk_slot_zap_all = false;
  shape.zap_yield_every = 4;
  auto vm_or = Vm::create(machine, shape);
  if (!report.check(vm_or.has_value(), "vm_create", "{}", errno_name(vm_or))) return;
  Vm& vm = **vm_or;
  report.check(vm.add_memory_region(0, kYieldGpa, kYieldSize).has_value(), "memslot");
  RunChecks checks(machine, options);
  checks.watch(vm);
  guest::Program program(vm.flavour(), [](guest::Guest& g) -> guest::GuestTask {
    for (uint64_t off = 0; off < kYieldSize; off += kPageSize) {
      co_await g.write(kYieldGpa + off, guest::pattern(kYieldGpa + off, 1));
    }
    co_await g.sync(1);
    for (uint64_t off = 0; off < kYieldSize; off += kPageSize) {
      const Gpa gpa = kYieldGpa + off;
      const uint64_t v = co_await g.read(gpa);
      if (v != guest::pattern(gpa, 1))
        co_await g.fail("read back after the zap", gpa, guest::pattern(gpa, 1), v);
    }
    co_await g.done();
  });
  vm.vcpu(0).set_guest(&program, 4096);
  run_vcpu_to_done(vm, 0, program, report, [&](unsigned, uint64_t) {
    return report.check(vm.zap_gfn_range(kYieldGpa, kYieldSize).has_value(), "zap_gfn_range");
  });
  report.check(vm.delete_memslot(0).has_value(), "delete_memslot");
  checks.finish_vm(vm, report, "");
  checks.unwatch(vm);
  checks.finish(report);
}

// Runs `fast_zap` (something that ends in kvm_mmu_zap_all_fast) on this thread and, in its
// window, reclaims slot `reclaimed` from another thread: the fast zap's first change of an
// SPTE (this thread's) lets the reclaimer go, and holds on until the reclaimer waits for
// mmu_lock, so that the zap's next yield lets the notifier's unmap in while the second region
// is still mapped in the invalid root.
template <class FastZap>
void reclaim_during_fast_zap(Machine& machine, Vm& vm, uint32_t reclaimed, FastZap&& fast_zap,
                             Report& report) {
  const std::thread::id zapper = std::this_thread::get_id();
  std::atomic<bool> armed{false}, go{false}, staged{false};
  SharedMutex& mmu_lock = vm.kvm().mmu_lock();
  auto sub = vm.kvm().events().spte_changed.attach([&](const SpteChangeEvent&) {
    if (std::this_thread::get_id() != zapper || !armed.exchange(false)) return;
    go.store(true, std::memory_order_release);
    const auto deadline = sched_now() + std::chrono::seconds(5);
    while (!mmu_lock.writer_pending() && sched_now() < deadline) {
      sched_pause();
    }
    staged.store(mmu_lock.writer_pending(), std::memory_order_release);
  });
  Thread reclaimer([&] {
    while (!go.load(std::memory_order_acquire)) sched_pause();
    // The main thread holds host CPU 0 for the memslot update.
    CpuBinding cpu = machine.platform().bind(machine.host_cpu(1));
    vm.reclaim(reclaimed);
  });
  armed.store(true, std::memory_order_release);
  fast_zap();
  // Released even if the zap never changed an SPTE, so the thread can end.
  go.store(true, std::memory_order_release);
  reclaimer.join();
  sub.reset();
  report.check(staged.load(), "race_window",
               "the notifier's unmap did not wait for the fast zap's yield");
}

constexpr Gpa kFirstGpa{0x4000'0000};   // 1 GiB: the fast zap's first region
constexpr Gpa kSecondGpa{0x8000'0000};  // 2 GiB: still mapped when the zap first yields
constexpr uint64_t kRegionSize = 64 << 10;

// A VM of `type` with two slots, one in each region, which the guest fills (a TD through
// their shared alias: they have no guest_memfd).
void notifier_during_fast_zap(VmType type, const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.memory_bytes = uint64_t{64} << 20;
  mc.tdx = type == VmType::kTdx;
  Machine machine(mc);
  VmShape shape = VmShape::of(type);
  shape.quirk_slot_zap_all = true;
  shape.zap_yield_every = 1;
  // A TD's direct roots are fast-zapped only when the memslot generation's MMIO bits wrap:
  // the third memslot update below does.
  if (type == VmType::kTdx) shape.first_memslots_generation = Spte::kMmioGenMax - 2;
  auto vm_or = Vm::create(machine, shape);
  if (!report.check(vm_or.has_value(), "vm_create", "{}", errno_name(vm_or))) return;
  Vm& vm = **vm_or;
  report.check(vm.add_memory_region(0, kFirstGpa, kRegionSize).has_value(), "memslot");
  report.check(vm.add_memory_region(1, kSecondGpa, kRegionSize).has_value(), "memslot");
  if (type == VmType::kTdx) report.check(vm.td_finalize().has_value(), "finalize");
  RunChecks checks(machine, options);
  checks.watch(vm);
  guest::Program program(vm.flavour(), [](guest::Guest& g) -> guest::GuestTask {
    for (Gpa base : {kFirstGpa, kSecondGpa}) {
      for (uint64_t off = 0; off < kRegionSize; off += kPageSize) {
        const Gpa gpa = g.flavour().td ? g.flavour().to_shared(base + off) : base + off;
        co_await g.write(gpa, guest::pattern(gpa, 1));
      }
    }
    co_await g.done();
  });
  vm.vcpu(0).set_guest(&program, 4096);
  run_vcpu_to_done(vm, 0, program, report);
  if (type == VmType::kTdx) {
    reclaim_during_fast_zap(
        machine, vm, 1,
        [&] {
          report.check((vm.kvm().memslots_generation() & Spte::kMmioGenMax) == Spte::kMmioGenMax,
                       "generation_before_wrap", "generation {:#x}",
                       vm.kvm().memslots_generation());
          report.check(vm.add_memory_region(2, Gpa{0xC000'0000}, kPageSize).has_value(), "memslot");
        },
        report);
  } else {
    reclaim_during_fast_zap(
        machine, vm, 1, [&] { report.check(vm.delete_memslot(0).has_value(), "delete_memslot"); },
        report);
  }
  checks.finish_vm(vm, report, to_string(type));
  checks.unwatch(vm);
  checks.finish(report);
}

void fault_on_obsolete_root(const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.memory_bytes = uint64_t{64} << 20;
  mc.tdx = false;
  Machine machine(mc);
  VmShape shape = VmShape::of(VmType::kDefault);
  // The two slots below bring the generation's MMIO bits to their maximum; the third update
  // wraps them.
  shape.first_memslots_generation = Spte::kMmioGenMax - 2;
  auto vm_or = Vm::create(machine, shape);
  if (!report.check(vm_or.has_value(), "vm_create", "{}", errno_name(vm_or))) return;
  Vm& vm = **vm_or;
  report.check(vm.add_memory_region(0, kFirstGpa, kRegionSize).has_value(), "memslot");
  report.check(vm.add_memory_region(1, kSecondGpa, kRegionSize).has_value(), "memslot");
  RunChecks checks(machine, options);
  checks.watch(vm);
  // Untouched before the update: its fault is the first after it.
  static constexpr Gpa kTarget = kSecondGpa + kRegionSize / 2;
  guest::Program program(vm.flavour(), [](guest::Guest& g) -> guest::GuestTask {
    for (Gpa gpa : {kFirstGpa, kSecondGpa}) co_await g.write(gpa, guest::pattern(gpa, 1));
    co_await g.sync(1);
    co_await g.write(kTarget, guest::pattern(kTarget, 1));
    for (Gpa gpa : {kFirstGpa, kSecondGpa, kTarget}) {
      const uint64_t v = co_await g.read(gpa);
      if (v != guest::pattern(gpa, 1)) co_await g.fail("read back", gpa, guest::pattern(gpa, 1), v);
    }
    co_await g.done();
  });
  vm.vcpu(0).set_guest(&program, 4096);

  KvmMmu& mmu = vm.kvm_vm().mmu();
  const auto fast_zaps = [&] {
    return mmu.stats().zap_requests[static_cast<size_t>(ZapReason::kRoots)][0].value();
  };
  std::atomic<bool> armed{false}, held{false}, updated{false}, zapped_in_window{false};
  // On the vCPU's thread, inside the fault's RCU section but before mmu_lock: the update
  // below takes no grace period, so it can run to the end meanwhile.
  mmu.set_fault_tracepoint([&](const KvmPageFault& f) {
    if (f.gfn != kTarget.gfn() || !armed.exchange(false)) return;
    const uint64_t before = fast_zaps();
    held.store(true, std::memory_order_release);
    const auto deadline = sched_now() + std::chrono::seconds(5);
    while (!updated.load(std::memory_order_acquire) && sched_now() < deadline) {
      sched_pause();
    }
    zapped_in_window.store(updated.load(std::memory_order_acquire) && fast_zaps() > before,
                           std::memory_order_release);
  });
  Thread updater;
  std::atomic<bool> update_ok{false};
  run_vcpu_to_done(vm, 0, program, report, [&](unsigned, uint64_t) {
    report.check((vm.kvm().memslots_generation() & Spte::kMmioGenMax) == Spte::kMmioGenMax,
                 "generation_before_wrap", "generation {:#x}", vm.kvm().memslots_generation());
    armed.store(true, std::memory_order_release);
    updater = Thread([&] {
      const auto deadline = sched_now() + std::chrono::seconds(5);
      while (!held.load(std::memory_order_acquire) && sched_now() < deadline) {
        sched_pause();
      }
      update_ok.store(vm.add_memory_region(2, Gpa{0xC000'0000}, kPageSize).has_value(),
                      std::memory_order_release);
      updated.store(true, std::memory_order_release);
    });
    return true;
  });
  if (updater.joinable()) updater.join();
  mmu.set_fault_tracepoint(nullptr);
  report.check(update_ok.load(), "memslot", "adding the slot that wraps the generation failed");
  report.check(zapped_in_window.load(), "race_window",
               "the fault was not held across the memslot update's fast zap");
  checks.finish_vm(vm, report, "");
  checks.unwatch(vm);
  checks.finish(report);
}

}  // namespace

void run_fault_on_obsolete_root(const ScenarioOptions& options, Report& report) {
  fault_on_obsolete_root(options, report);
}

void run_tdp_zap_yield(const ScenarioOptions& options, Report& report) {
  zap_yield(options, report);
}

void run_notifier_during_fast_zap(const ScenarioOptions& options, Report& report) {
  notifier_during_fast_zap(VmType::kDefault, options, report);
}

void run_td_shared_unmap_during_fast_zap(const ScenarioOptions& options, Report& report) {
  notifier_during_fast_zap(VmType::kTdx, options, report);
}

}  // namespace tdxsim
