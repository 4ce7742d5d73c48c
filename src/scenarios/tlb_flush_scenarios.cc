// Who flushes what, and when (seeds 000 and 003; kvm-tdx-mmu.md §3).
//
// hyperv_vmx_root_tracking: a VMX VM on Hyper-V. KVM flushes remote TLBs with the L0's
// GPA-flush hypercalls, one per root: with every vCPU on the same root, one hypercall; after a
// fast zap, while one vCPU has loaded the new root and the other still holds the old one,
// one per distinct root; a kvm_zap_gfn_range's ranged flush lists exactly the zapped range.
// The guests verify their memory across every step and the stale-use check watches them.
//
// vmx_on_tdx_host: a TD and a plain VMX VM side by side on a bare-metal TDX host, sharing one
// vendor table whose flush op is TDX's. Nothing may touch Hyper-V's root tracking or make a
// hypercall; with S0 (the pre-fix "any flush op means Hyper-V") the VMX VM does.
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "base/thread.h"
#include "guest/program.h"
#include "kvm/kvm_vm.h"
#include "kvm/memslot.h"
#include "kvm/svm/svm.h"
#include "kvm/tdp_mmu.h"
#include "platform/page_walk.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

constexpr Gpa kBase{0x1000'0000};
constexpr uint64_t kChunk = 1 << 20;  // each vCPU's
constexpr unsigned kVcpus = 2;
constexpr uint32_t kDataSlot = 0, kSpareSlot = 1;
constexpr Gpa kSpareGpa{0x2000'0000};

// Fill, then verify once per host step; stage numbers tell the host where the guest is.
guest::GuestTask fill_and_verify(guest::Guest& g, Gpa base, unsigned steps) {
  co_await g.fill(base, kChunk, 1);
  co_await g.sync(0);
  for (unsigned s = 1; s <= steps; ++s) {
    co_await g.verify(base, kChunk, 1);
    co_await g.sync(s);
  }
  co_await g.done();
}

// The hypercalls the L0 saw, by root, while it is alive.
class HypercallLog {
 public:
  explicit HypercallLog(HyperVL0& l0)
      : sub_(l0.hypercalls.attach([this](const HvFlushHypercall& h) {
          MutexLock l(mu_);
          calls_.push_back(h);
        })) {}
  std::vector<HvFlushHypercall> take() {
    MutexLock l(mu_);
    return std::exchange(calls_, {});
  }

 private:
  Mutex mu_{"hypercall log"};
  std::vector<HvFlushHypercall> calls_ TDXSIM_GUARDED_BY(mu_);
  Tracepoint<HvFlushHypercall>::Subscription sub_;
};

std::set<uint64_t> roots_of(const std::vector<HvFlushHypercall>& calls) {
  std::set<uint64_t> roots;
  for (const HvFlushHypercall& h : calls) roots.insert(h.root.raw());
  return roots;
}

// Whether every list hypercall covers exactly [start, start + bytes).
bool lists_cover_exactly(const std::vector<HvFlushHypercall>& calls, Gpa start, uint64_t bytes) {
  for (const HvFlushHypercall& h : calls) {
    if (h.code != HvCallCode::kFlushGuestPhysicalAddressList) return false;
    uint64_t next = start.raw();
    for (const HvGpaPageRange& r : h.list) {
      if (r.start().raw() != next) return false;
      next += r.bytes();
    }
    if (next != start.raw() + bytes) return false;
  }
  return !calls.empty();
}

Hpa current_root(Vm& vm, unsigned i) {
  const MmuPage* root = vm.vcpu(i).kvm_vcpu().mmu().root;
  return root != nullptr ? root->spt() : kInvalidPage;
}

Hpa tracked_root(Vm& vm) {
  HvRootTdp& t = vm.kvm_vm().hv_root_tdp();
  MutexLock l(t.lock);
  return t.root;
}

bool at_sync(Vm& vm, unsigned i, uint64_t stage, Report& report) {
  const VcpuStop stop = vm.vcpu(i).run_to_ucall();
  return report.check(
      stop.ucall && stop.ucall->cmd == guest::UcallCmd::kSync && stop.ucall->arg == stage,
      "guest_step", "vCPU {} stopped at {} (exit {}), expected GUEST_SYNC({})", i,
      stop.ucall ? static_cast<int>(stop.ucall->cmd) : -1, to_string(stop.exit), stage);
}

}  // namespace

void run_hyperv_vmx_root_tracking(const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.tdx = false;
  mc.hyperv = HyperVConfig{};
  mc.memory_bytes = uint64_t{64} << 20;
  Machine machine(mc);
  RunChecks checks(machine, options);
  HypercallLog log(*machine.platform().hyperv());
  {
    auto vm_or = Vm::create(machine, VmShape::of(VmType::kDefault, kVcpus));
    if (!report.check(vm_or.has_value(), "vm_create", "{}", errno_name(vm_or))) return;
    Vm& vm = **vm_or;
    checks.watch(vm);
    report.check(vm.add_memory_region(kDataSlot, kBase, kChunk * kVcpus).has_value(), "memslot");
    report.check(vm.add_memory_region(kSpareSlot, kSpareGpa, 1 << 20).has_value(), "memslot");
    constexpr unsigned kSteps = 4;
    std::vector<std::unique_ptr<guest::Program>> programs;
    for (unsigned i = 0; i < kVcpus; ++i) {
      const Gpa base = kBase + i * kChunk;
      programs.push_back(std::make_unique<guest::Program>(
          vm.flavour(), [base](guest::Guest& g) { return fill_and_verify(g, base, kSteps); }));
      vm.vcpu(i).set_guest(programs.back().get());
    }
    for (unsigned i = 0; i < kVcpus; ++i) at_sync(vm, i, 0, report);
    const Hpa first = current_root(vm, 0);
    report.check(first == current_root(vm, 1), "one_root_shared", "vCPU roots {} and {}", first,
                 current_root(vm, 1));

    // 1. Every vCPU on one root: one hypercall, and it names exactly the zapped range.
    const Gpa zap0 = kBase + 64 * kPageSize;
    const uint64_t zap_bytes = 37 * kPageSize;
    log.take();
    report.check(vm.zap_gfn_range(zap0, zap_bytes).has_value(), "zap_gfn_range");
    std::vector<HvFlushHypercall> calls = log.take();
    report.check(calls.size() == 1 && roots_of(calls) == std::set<uint64_t>{first.raw()},
                 "shared_root_one_hypercall", "{} hypercalls for one shared root", calls.size());
    report.check(lists_cover_exactly(calls, zap0, zap_bytes), "ranged_flush_exact",
                 "the list hypercall does not name exactly [{}, +{:#x})", zap0, zap_bytes);
    report.check(tracked_root(vm) == first, "vm_root_tracked", "VM root {} after the walk",
                 tracked_root(vm));

    // 2. A fast zap (deleting a slot with the quirk on) obsoletes the root; vCPU 0 loads the
    // new one, vCPU 1 has not run since: the roots diverge.
    report.check(vm.delete_memslot(kSpareSlot).has_value(), "delete_memslot");
    at_sync(vm, 0, 1, report);
    const Hpa second = current_root(vm, 0);
    report.check(second != first, "new_root_after_fast_zap", "vCPU 0 still on {}", first);
    report.check(tracked_root(vm) == kInvalidPage, "divergence_untracks",
                 "VM root {} while vCPUs hold {} and {}", tracked_root(vm), second, first);
    // (Only vCPU 0's memory is mapped now: the fast zap emptied the old root.)
    const Gpa zap1 = kBase + 3 * kPageSize;
    report.check(vm.zap_gfn_range(zap1, 2 * kPageSize).has_value(), "zap_gfn_range");
    calls = log.take();
    report.check(
        roots_of(calls) == std::set<uint64_t>{first.raw(), second.raw()} && calls.size() == 2,
        "each_distinct_root_flushed", "{} hypercalls over {} roots for 2 distinct roots",
        calls.size(), roots_of(calls).size());
    report.check(lists_cover_exactly(calls, zap1, 2 * kPageSize), "ranged_flush_exact",
                 "a list hypercall does not name exactly [{}, +{:#x})", zap1, 2 * kPageSize);
    report.check(tracked_root(vm) == kInvalidPage, "still_diverged", "VM root {}",
                 tracked_root(vm));

    // 3. vCPU 1 catches up: one root again, so one hypercall, then the shared-root path.
    at_sync(vm, 1, 1, report);
    report.check(current_root(vm, 1) == second, "converged", "vCPU 1 on {}, vCPU 0 on {}",
                 current_root(vm, 1), second);
    vm.flush_remote_tlbs();
    calls = log.take();
    report.check(calls.size() == 1 && roots_of(calls) == std::set<uint64_t>{second.raw()} &&
                     calls[0].code == HvCallCode::kFlushGuestPhysicalAddressSpace,
                 "converged_one_hypercall", "{} hypercalls after the vCPUs converged",
                 calls.size());
    report.check(tracked_root(vm) == second, "vm_root_tracked_again", "VM root {}",
                 tracked_root(vm));
    vm.flush_remote_tlbs();
    report.check(log.take().size() == 1, "shared_root_fast_path");

    // The guests keep verifying while both kinds of flush go on around them.
    for (unsigned s = 2; s <= kSteps; ++s) {
      for (unsigned i = 0; i < kVcpus; ++i) {
        report.check(vm.zap_gfn_range(kBase + i * kChunk, kChunk / 2).has_value(), "zap_gfn_range");
        at_sync(vm, i, s, report);
      }
    }
    for (unsigned i = 0; i < kVcpus; ++i) run_vcpu_to_done(vm, i, *programs[i], report);
    checks.finish_vm(vm, report, "");
    checks.unwatch(vm);
  }
  checks.finish(report);
}

void run_vmx_on_tdx_host(const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.tdx = true;
  mc.cpus_per_package = 4;
  mc.memory_bytes = uint64_t{128} << 20;
  Machine machine(mc);
  RunChecks checks(machine, options);
  {
    auto td_or = Vm::create(machine, VmShape::of(VmType::kTdx, kVcpus));
    auto vmx_or = Vm::create(machine, VmShape::of(VmType::kDefault, kVcpus));
    if (!report.check(td_or.has_value() && vmx_or.has_value(), "vm_create", "TD {}, VMX {}",
                      errno_name(td_or), errno_name(vmx_or))) {
      return;
    }
    Vm& td = **td_or;
    Vm& vmx = **vmx_or;
    checks.watch(td);
    checks.watch(vmx);
    report.check(
        td.add_memory_region(0, kBase, kChunk * kVcpus, MemoryRegion::with_gmem()).has_value(),
        "td_memslot");
    report.check(td.set_private(kBase, kChunk * kVcpus).has_value(), "set_private");
    report.check(td.td_finalize().has_value(), "finalize");
    report.check(vmx.add_memory_region(kDataSlot, kBase, kChunk * kVcpus).has_value(),
                 "vmx_memslot");
    report.check(vmx.add_memory_region(kSpareSlot, kSpareGpa, 1 << 20).has_value(), "vmx_memslot");
    // The TD's vCPUs take the first CPUs, the VMX VM's the next ones.
    for (unsigned i = 0; i < kVcpus; ++i) {
      td.vcpu(i).set_cpu(machine.vcpu_cpu(i));
      vmx.vcpu(i).set_cpu(machine.vcpu_cpu(kVcpus + i));
    }

    constexpr unsigned kSteps = 3;
    std::vector<std::unique_ptr<guest::Program>> td_programs, vmx_programs;
    for (unsigned i = 0; i < kVcpus; ++i) {
      const Gpa base = kBase + i * kChunk;
      td_programs.push_back(std::make_unique<guest::Program>(
          td.flavour(), [base](guest::Guest& g) -> guest::GuestTask {
            for (uint64_t off = 0; off < kChunk; off += kPageSize) {
              co_await g.accept(base + off, Level::k4K);
            }
            co_await fill_and_verify(g, base, kSteps);
          }));
      td.vcpu(i).set_guest(td_programs.back().get());
      vmx_programs.push_back(std::make_unique<guest::Program>(
          vmx.flavour(), [base](guest::Guest& g) { return fill_and_verify(g, base, kSteps); }));
      vmx.vcpu(i).set_guest(vmx_programs.back().get());
    }
    // The VMX VM's host steps make it load new roots and flush: a fast zap (a slot deleted
    // with the quirk on) and an MTRR-style zap of each vCPU's range.
    Thread td_thread([&] { run_vcpus_to_done(td, td_programs, report); });
    run_vcpus_to_done(vmx, vmx_programs, report, [&](unsigned i, uint64_t stage) {
      if (stage == 1 && i == 0) {
        return report.check(vmx.delete_memslot(kSpareSlot).has_value(), "delete_memslot");
      }
      return report.check(vmx.zap_gfn_range(kBase + i * kChunk, kChunk).has_value(),
                          "zap_gfn_range");
    });
    td_thread.join();
    report.check(machine.kvm_on_hyperv() == nullptr, "bare_metal");
    checks.finish_vm(td, report, "td");
    checks.finish_vm(vmx, report, "vmx");
    checks.unwatch(td);
    checks.unwatch(vmx);
  }
  checks.finish(report);
}

}  // namespace tdxsim

namespace tdxsim {

// hyperv_svm_enlightened_tlb (seed 003): an SVM VM on Hyper-V with the enlightened NPT TLB,
// where an ASID flush no longer drops the L0's GPA translations. Each round the host deletes
// and re-creates the data slot with fresh memory (a fast zap: every root obsolete), and the
// vCPUs reload. The host allocator hands out the lowest free frame, so the first root's page,
// freed once both vCPUs let go of it, comes back as the root of the round after: same HPA,
// same GPAs, other frames. The L0 still holds the first root's translations under that HPA
// unless KVM's flush of the new root asked it to drop them (the fix); with S3 the guest reads
// the old frames.
void run_hyperv_svm_enlightened_tlb(const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.tdx = false;
  mc.vendor = CpuVendor::kAmd;
  mc.hyperv = HyperVConfig{.enlightened_tlb = true};
  mc.frame_reuse = ReusePolicy::kLowestFirst;
  mc.memory_bytes = uint64_t{64} << 20;
  Machine machine(mc);
  RunChecks checks(machine, options);
  {
    auto vm_or = Vm::create(machine, VmShape::of(VmType::kDefault, kVcpus));
    if (!report.check(vm_or.has_value(), "vm_create", "{}", errno_name(vm_or))) return;
    Vm& vm = **vm_or;
    checks.watch(vm);
    report.check(vm.add_memory_region(kDataSlot, kBase, kChunk * kVcpus).has_value(), "memslot");
    // Round 0 fills with pattern 1; every later round finds fresh (zero) memory, checks it,
    // and fills it again.
    constexpr unsigned kRounds = 3;
    std::vector<std::unique_ptr<guest::Program>> programs;
    for (unsigned i = 0; i < kVcpus; ++i) {
      const Gpa base = kBase + i * kChunk;
      programs.push_back(std::make_unique<guest::Program>(
          vm.flavour(), [base](guest::Guest& g) -> guest::GuestTask {
            co_await g.fill(base, kChunk, 1);
            co_await g.sync(0);
            for (unsigned r = 1; r < kRounds; ++r) {
              co_await g.verify(base, kChunk, 0, zero_pattern);
              co_await g.fill(base, kChunk, 1);
              co_await g.sync(r);
            }
            co_await g.done();
          }));
      vm.vcpu(i).set_guest(programs.back().get());
    }
    std::vector<Hpa> roots;
    for (unsigned r = 0; r < kRounds; ++r) {
      if (r > 0) {
        // Fresh memory at the same GPAs: the fast zap makes every root obsolete.
        report.check(vm.delete_memslot(kDataSlot).has_value(), "delete_memslot");
        report.check(vm.add_memory_region(kDataSlot, kBase, kChunk * kVcpus).has_value(),
                     "memslot");
        TdpMmu::barrier();
      }
      for (unsigned i = 0; i < kVcpus; ++i) {
        if (!at_sync(vm, i, r, report)) break;
      }
      roots.push_back(current_root(vm, 0));
      // Both vCPUs left the old root: its page goes back to the allocator.
      TdpMmu::barrier();
    }
    report.check(roots.size() == kRounds && roots[2] == roots[0], "freed_root_reused",
                 "roots by round: {}, {}, {} (the scenario needs round 2's root at round 0's "
                 "HPA)",
                 roots[0], roots.size() > 1 ? roots[1] : Hpa{0},
                 roots.size() > 2 ? roots[2] : Hpa{0});
    for (unsigned i = 0; i < kVcpus; ++i) run_vcpu_to_done(vm, i, *programs[i], report);
    report.figure("svm_hv_root_flushes", machine.svm()->stats().hv_root_flushes.value());
    report.figure("svm_asids_assigned", machine.svm()->stats().new_asids.value());
    checks.finish_vm(vm, report, "");
    checks.unwatch(vm);
  }
  checks.finish(report);
}

}  // namespace tdxsim

namespace tdxsim {

namespace {

// The page table a vCPU's current root uses for `gpa`'s 2M region (kInvalidPage if none).
Hpa page_table_of(Machine& machine, Vm& vm, unsigned vcpu, Gpa gpa) {
  const MmuPage* root = vm.vcpu(vcpu).kvm_vcpu().mmu().root;
  if (root == nullptr) return kInvalidPage;
  WalkContext wc;
  wc.format = PagingFormat::kEpt;
  wc.root = root->spt();
  wc.levels = level_num(root->level());
  HostMemory& mem = machine.platform().memory();
  for (const WalkStep& s : PageWalk(mem, mem.layout(), wc, gpa)) {
    if (s.level != Level::k2M) continue;
    if (PageWalk::is_terminal(wc, s.entry, s.level)) return kInvalidPage;
    return mem.layout().strip_key(s.entry & BitField<51, 12>::kMask);
  }
  return kInvalidPage;
}

}  // namespace

// hyperv_vmx_huge_leaf_flush (M3): a VMX VM on Hyper-V, where a ranged flush is the L0's
// list hypercall and reaches only the GPAs it names. A THP-backed slot starts with dirty
// logging on, so vCPU 1's read of a 2M region R (the second 2M of its 1G) is mapped by a 4K
// leaf in a page table T, and vCPU 1's CPU caches R's PDE (→ T) in its paging-structure
// cache. Logging stops; vCPU 0 writes a page of R that T does not map, and the fault maps R
// with a 2M leaf in T's place (kvm_flush_remote_tlbs_gfn then flushes R). After the grace
// period T's frame is free; vCPU 0 moves to another CPU (KVM flushes that CPU, and the
// trapped INVEPT makes the L0 drop its shadow), then reads a 4K-backed slot in the same 1G,
// whose new page table takes T's frame. vCPU 1 reads the page vCPU 0 wrote in R: its
// paging-structure cache must no longer name T, or its walk lands in the other slot's page.
// With M3 the flush names the first 2M of the 1G instead of R.
void run_hyperv_vmx_huge_leaf_flush(const ScenarioOptions& options, Report& report) {
  constexpr Gpa kThpGpa{0x1000'0000};
  constexpr Gpa kRegion = kThpGpa + level_bytes(Level::k2M);  // R: not its 1G's first 2M
  constexpr Gpa kSmallGpa{0x1080'0000};                       // 4K pages, the same 1G
  constexpr uint64_t kPage = 7;  // the page of R (and of the small slot) read at the end
  constexpr uint64_t kInR = 0x5252, kInSmall = 0x5a5a;
  MachineConfig mc = machine_config(options);
  mc.tdx = false;
  mc.hyperv = HyperVConfig{};
  mc.huge_2m_pages = 4;
  mc.frame_reuse = ReusePolicy::kLastFreedFirst;
  mc.memory_bytes = uint64_t{64} << 20;
  Machine machine(mc);
  RunChecks checks(machine, options);
  {
    auto vm_or = Vm::create(machine, VmShape::of(VmType::kDefault, kVcpus));
    if (!report.check(vm_or.has_value(), "vm_create", "{}", errno_name(vm_or))) return;
    Vm& vm = **vm_or;
    checks.watch(vm);
    MemoryRegion thp = MemoryRegion::with_thp();
    thp.extra_flags = kMemLogDirtyPages;
    report.check(
        vm.add_memory_region(kDataSlot, kThpGpa, 2 * level_bytes(Level::k2M), thp).has_value(),
        "memslot");
    report.check(vm.add_memory_region(kSpareSlot, kSmallGpa, level_bytes(Level::k2M)).has_value(),
                 "memslot");
    // The small slot's page is resident before T is freed: the fault that maps it later
    // allocates nothing but its page table.
    const Gpa small_page = kSmallGpa + kPage * kPageSize;
    report.check(vm.host_write(small_page, kInSmall).has_value(), "host_write");
    const Gpa r_page = kRegion + kPage * kPageSize;

    guest::Program writer(vm.flavour(), [&](guest::Guest& g) -> guest::GuestTask {
      co_await g.sync(0);
      co_await g.write(r_page, kInR);
      co_await g.sync(1);
      (void)co_await g.read(small_page);
      co_await g.sync(2);
      co_await g.done();
    });
    guest::Program reader(vm.flavour(), [&](guest::Guest& g) -> guest::GuestTask {
      (void)co_await g.read(kRegion);
      co_await g.sync(0);
      // The reference model knows what vCPU 0 wrote here.
      (void)co_await g.read(r_page);
      co_await g.sync(1);
      co_await g.done();
    });
    vm.vcpu(0).set_guest(&writer);
    vm.vcpu(1).set_guest(&reader);

    at_sync(vm, 0, 0, report);
    at_sync(vm, 1, 0, report);
    const Hpa table = page_table_of(machine, vm, 1, kRegion);
    report.check(table != kInvalidPage, "region_mapped_4k",
                 "R is not mapped through a page table while logging");
    report.check(vm.set_dirty_logging(kDataSlot, false).has_value(), "log_stop");
    at_sync(vm, 0, 1, report);
    report.check(page_table_of(machine, vm, 0, kRegion) == kInvalidPage, "region_mapped_2m",
                 "R is still mapped through a page table after the huge fault");
    // T's frame goes back to the allocator.
    TdpMmu::barrier();
    report.check(vm.vcpu(1).cpu() != machine.vcpu_cpu(kVcpus), "distinct_cpus");
    vm.vcpu(0).set_cpu(machine.vcpu_cpu(kVcpus));
    at_sync(vm, 0, 2, report);
    report.check(page_table_of(machine, vm, 0, kSmallGpa) == table, "freed_table_reused",
                 "the small slot's page table is at {}, R's old one was at {} (the scenario "
                 "needs the frame reused)",
                 page_table_of(machine, vm, 0, kSmallGpa), table);
    at_sync(vm, 1, 1, report);
    run_vcpu_to_done(vm, 0, writer, report);
    run_vcpu_to_done(vm, 1, reader, report);
    report.figure("psc_hits",
                  machine.platform().cpu(vm.vcpu(1).cpu()).tlb().stats().psc_hits.value());
    checks.finish_vm(vm, report, "");
    checks.unwatch(vm);
  }
  checks.finish(report);
}

}  // namespace tdxsim
