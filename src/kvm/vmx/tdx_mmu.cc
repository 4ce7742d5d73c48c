// The S-EPT half of TdxOps: the external-table hooks the TDP MMU calls for the mirror root,
// TLB tracking and flushes, and the shared EPT root (kvm-tdx-mmu.md §2.3–2.5).
#include "base/check.h"
#include "base/fault_injection.h"
#include "kvm/vmx/tdx.h"
#include "tdx_module/tdx_status.h"
#include "tdxsim/seamcall.h"

namespace tdxsim {

namespace {

constexpr uint64_t kEptRwxMask = 7;

bool is_busy(uint64_t status) {
  return status_of(status) == TdxStatus::kOperandBusy;
}

}  // namespace

template <class Call>
uint64_t TdxOps::no_vcpus_retry(TdxVm& td, SeamcallLeaf leaf, Gfn gfn, Call&& call) {
  Kvm& kvm = td.vm().kvm();
  kvm.mmu_lock().assert_held_write();
  uint64_t s = note(td, leaf, call(), gfn);
  if (!is_busy(s)) return s;
  // tdx_no_vcpus_enter_start: the contention can only come from TDH.VP.ENTER (zero-step
  // mitigation takes the S-EPT lock) and the guest's TDCALLs; with every vCPU out and kept
  // out, the second try has nobody to lose to.
  td.wait_for_sept_zap_.store(true, std::memory_order_release);
  td.stats_.sept_zap_waits.add();
  td.vm().make_all_cpus_request(KvmRequest::kOutsideGuestMode);
  td.stats_.busy_retries[static_cast<size_t>(leaf) % kNumSeamcallLeaves].add();
  s = note(td, leaf, call(), gfn);
  // tdx_no_vcpus_enter_stop.
  td.wait_for_sept_zap_.store(false, std::memory_order_release);
  return s;
}

// tdx_sept_link_private_spt.
KvmResult<> TdxOps::link_external_spt(Kvm* kvm, Gfn gfn, Level level, Hpa external_spt) {
  TdxVm& td = to_tdx(kvm);
  LogicalCpu& cpu = current_cpu("link_external_spt");
  uint64_t e1 = 0, e2 = 0;
  const uint64_t s = note(
      td, SeamcallLeaf::kMemSeptAdd,
      tdh_mem_sept_add(cpu, td.tdr_, PageInfo::of(gfn.gpa(), level), external_spt, &e1, &e2), gfn);
  if (is_busy(s)) return std::unexpected(Errno::kEbusy);
  if (kvm->bug_on(s != 0, "TDH.MEM.SEPT.ADD failed")) return std::unexpected(Errno::kEio);
  return {};
}

// tdx_sept_set_private_spte.
KvmResult<> TdxOps::set_external_spte(Kvm* kvm, Gfn gfn, Level level, Pfn pfn) {
  TdxVm& td = to_tdx(kvm);
  if (kvm->bug_on(level != Level::k4K, "a private mapping larger than 4K")) {
    return std::unexpected(Errno::kEio);
  }
  // Acquire: pairs with finalize_vm's release (the smp_rmb/smp_wmb pair).
  if (td.state() != TdState::kRunnable) {
    // tdx_mem_page_record_premap_cnt: KVM_TDX_INIT_MEM_REGION adds the page itself.
    td.nr_premapped_.fetch_add(1, std::memory_order_acq_rel);
    return {};
  }
  LogicalCpu& cpu = current_cpu("set_external_spte");
  uint64_t e1 = 0, e2 = 0;
  const uint64_t s = note(
      td, SeamcallLeaf::kMemPageAug,
      tdh_mem_page_aug(cpu, td.tdr_, PageInfo::of(gfn.gpa(), level), pfn.hpa(), &e1, &e2), gfn);
  if (is_busy(s)) return std::unexpected(Errno::kEbusy);
  if (kvm->bug_on(s != 0, "TDH.MEM.PAGE.AUG failed")) return std::unexpected(Errno::kEio);
  return {};
}

// tdx_sept_free_private_spt.
KvmResult<> TdxOps::free_external_spt(Kvm* kvm, Gfn gfn, Level level, Hpa external_spt) {
  (void)gfn;
  (void)level;
  TdxVm& td = to_tdx(kvm);
  // S-EPT tables go only once the TD is dead: the HKID release wrote its caches back.
  if (kvm->bug_on(td.hkid_assigned(), "freeing an S-EPT page while the HKID is assigned")) {
    td.stats_.pages_leaked.add();
    return std::unexpected(Errno::kEinval);
  }
  // The MMU frees the frame itself once it is the host's again.
  if (!reclaim_page(td, current_cpu("free_external_spt"), external_spt, std::nullopt)) {
    return std::unexpected(Errno::kEio);
  }
  return {};
}

// tdx_sept_remove_private_spte (6.16's zap + track + drop).
KvmResult<> TdxOps::remove_external_spte(Kvm* kvm, Gfn gfn, Level level, Pfn pfn) {
  TdxVm& td = to_tdx(kvm);
  kvm->mmu_lock().assert_held_write();
  // Every private page is removed before the HKID is released.
  if (kvm->bug_on(!td.hkid_assigned(), "removing a private page after the HKID release")) {
    return std::unexpected(Errno::kEinval);
  }
  if (kvm->bug_on(level != Level::k4K, "removing a private mapping larger than 4K")) {
    return std::unexpected(Errno::kEio);
  }
  LogicalCpu& cpu = current_cpu("remove_external_spte");
  const PageInfo info = PageInfo::of(gfn.gpa(), level);

  // tdx_sept_zap_private_spte: BLOCK makes the entry unusable for new translations.
  uint64_t e1 = 0, e2 = 0;
  uint64_t s = no_vcpus_retry(td, SeamcallLeaf::kMemRangeBlock, gfn,
                              [&] { return tdh_mem_range_block(cpu, td.tdr_, info, &e1, &e2); });
  // tdx_is_sept_zap_err_due_to_premap: before finalization a mirror leaf may never have
  // been PAGE.ADDed (KVM_TDX_INIT_MEM_REGION failed half-way): nothing in the S-EPT to zap.
  if (s != 0 && td.state() != TdState::kRunnable &&
      s == with_operand(TdxStatus::kEptEntryStateIncorrect, TdxOperand::kRcx) &&
      !(SeptEntry{e1}.is_leaf() && (e1 & kEptRwxMask) != 0)) {
    if (kvm->bug_on(td.nr_premapped_.fetch_sub(1, std::memory_order_acq_rel) <= 0,
                    "nr_premapped went below zero")) {
      return std::unexpected(Errno::kEio);
    }
    return {};
  }
  // T12 restores the removal that neither tracked the block nor stopped on the module's
  // refusals: the page then stays mapped (blocked) in the S-EPT while the mirror forgets it.
  const bool t12 = host_.platform().faults().bug(BugId::T12);
  if (kvm->bug_on(s != 0 && !t12, "TDH.MEM.RANGE.BLOCK failed")) {
    return std::unexpected(Errno::kEio);
  }

  // tdx_track: no vCPU may keep a translation of the blocked page.
  if (!t12) {
    if (KvmResult<> t = track(td); !t) return t;
  }

  // tdx_sept_drop_private_spte.
  s = no_vcpus_retry(td, SeamcallLeaf::kMemPageRemove, gfn,
                     [&] { return tdh_mem_page_remove(cpu, td.tdr_, info, &e1, &e2); });
  if (s != 0 && t12) return {};
  if (kvm->bug_on(s != 0, "TDH.MEM.PAGE.REMOVE failed")) return std::unexpected(Errno::kEio);
  // The TD's dirty lines of the page go before the host key takes it back.
  s = note(td, SeamcallLeaf::kPhymemPageWbinvd, tdh_phymem_page_wbinvd(cpu, pfn.hpa(), td.hkid()),
           gfn);
  if (kvm->bug_on(s != 0, "TDH.PHYMEM.PAGE.WBINVD failed")) return std::unexpected(Errno::kEio);
  clear_page(pfn);
  return {};
}

KvmResult<> TdxOps::track(TdxVm& td) {
  // No vCPU could have run before finalization: nothing to track.
  if (td.state() != TdState::kRunnable) return {};
  Kvm& kvm = td.vm().kvm();
  kvm.mmu_lock().assert_held_write();
  LogicalCpu& cpu = current_cpu("tdx_track");
  const uint64_t s = no_vcpus_retry(td, SeamcallLeaf::kMemTrack, Gfn{0},
                                    [&] { return tdh_mem_track(cpu, td.tdr_); });
  if (kvm.bug_on(s != 0, "TDH.MEM.TRACK failed")) return std::unexpected(Errno::kEio);
  // Every vCPU leaves guest mode, so its next TDH.VP.ENTER sees the new epoch and flushes;
  // and the next TRACK cannot find a vCPU still running two epochs back.
  td.vm().make_all_cpus_request(KvmRequest::kOutsideGuestMode);
  return {};
}

bool TdxOps::flush_remote_tlbs(Kvm* kvm) {
  // Private translations were tracked by the removals themselves (under mmu_lock); what is
  // left is the shared EPT, which each vCPU flushes on its own CPU.
  kvm->vm()->make_all_cpus_request(KvmRequest::kTlbFlush);
  return true;
}

bool TdxOps::flush_remote_tlbs_range(Kvm* kvm, Gfn gfn, uint64_t pages) {
  (void)gfn;
  (void)pages;
  return flush_remote_tlbs(kvm);
}

void TdxOps::flush_tlb_all(KvmVcpu& vcpu) {
  // KVM cannot tell which EPT changed; private zaps already tracked, so flush the shared
  // EPT, and a global INVEPT is the only way without the private EPTP (ept_sync_global).
  (void)vcpu;
  current_cpu("tdx_flush_tlb_all").invept(InveptType::kAllContext, Eptp{});
}

void TdxOps::flush_tlb_current(KvmVcpu& vcpu) {
  // A single-context INVEPT of shared EPT would need the private EPTP (its ASID).
  (void)vcpu;
  current_cpu("tdx_flush_tlb_current").invept(InveptType::kAllContext, Eptp{});
}

// tdx_load_mmu_pgd.
void TdxOps::load_mmu_pgd(Kvm* kvm, int vcpu_id, Hpa root, Level level) {
  KvmVm& vm = *kvm->vm();
  TdxVm& td = to_tdx(vm);
  KvmVcpu* vcpu = vm.vcpu(vcpu_id);
  TDXSIM_CHECK(vcpu != nullptr, "load_mmu_pgd for vCPU {} that does not exist", vcpu_id);
  const unsigned shared_bit = level == Level::k256T ? 51 : 47;
  if (kvm->bug_on(vm.mmu().gfn_direct_bits() != Gfn{uint64_t{1} << (shared_bit - kPageShift)},
                  "the shared bit does not match the EPT level")) {
    return;
  }
  TdxVcpu& tdx = to_tdx(*vcpu);
  if (!tdx.vp_created_) return;
  const uint64_t s = note(td, SeamcallLeaf::kVpWr,
                          tdh_vp_wr(current_cpu("tdx_load_mmu_pgd"), tdx.tdvpr_,
                                    vp_field::kSharedEptp, root.raw(), ~uint64_t{0}));
  kvm->bug_on(s != 0, "TDH.VP.WR of the shared EPTP failed");
}

Level TdxOps::private_max_mapping_level(Kvm* kvm, Pfn pfn) {
  (void)kvm;
  (void)pfn;
  return Level::k4K;
}

}  // namespace tdxsim
