#include "kvm/mmu.h"

#include <algorithm>
#include <array>

#include "base/check.h"
#include "base/rcu.h"
#include "kvm/kvm_vm.h"
#include "kvm/mirror_private_mem.h"
#include "platform/platform.h"

namespace tdxsim {
namespace {

Gfn direct_bits_for(VmType type, Level root_level) {
  if (!has_mirrored_tdp(type)) return Gfn{0};
  // TDX_SHARED_BIT_PWL_4 / _5: the GPA's top bit below the guest's physical-address width.
  const unsigned shared_bit = root_level == Level::k256T ? 51 : 47;
  return Gfn{(uint64_t{1} << shared_bit) >> kPageShift};
}

// The MMIO SPTE shape of a VM (kvm->arch.shadow_mmio_value with the host's masks).
MmioSpteMasks mmio_masks_for(Kvm& kvm, SpteFormat format) {
  if (format == SpteFormat::kNpt) return MmioSpteMasks::npt(kvm.mem().layout().maxphyaddr);
  return MmioSpteMasks::ept(has_mirrored_tdp(kvm.type()) ? MmioValue::kTdVe
                                                         : MmioValue::kEptMisconfig);
}

FaultResult outcome(RetPf ret, std::optional<Errno> error = std::nullopt) {
  FaultResult r;
  r.ret = ret;
  r.error = error;
  return r;
}

ZapAlias alias_of(uint8_t filter) {
  return (filter & kFilterPrivate) != 0 ? ZapAlias::kPrivate : ZapAlias::kShared;
}

}  // namespace

KvmMmu::KvmMmu(Kvm& kvm, MmuVendorOps& ops, const KvmMmuConfig& config)
    : kvm_(kvm),
      ops_(ops),
      config_(config),
      gfn_direct_bits_(direct_bits_for(kvm.type(), config.root_level)),
      tdp_(std::make_unique<TdpMmu>(
          kvm.mem(), kvm.mmu_lock(), ops, &kvm,
          TdpMmuConfig{.root_level = config.root_level,
                       .gfn_direct_bits = gfn_direct_bits_,
                       .format = config.spte_format,
                       .mmio = mmio_masks_for(kvm, config.spte_format),
                       .yield_every = config.yield_every})) {
  if (has_mirrored_tdp(kvm.type())) private_ = std::make_unique<MirrorPrivateMem>(*tdp_);
  kvm_.set_arch(this);
}

KvmMmu::~KvmMmu() {
  {
    WriteLock l(kvm_.mmu_lock());
    // kvm_mmu_uninit_tdp_mmu: everything invalid, then zapped under the write lock so that
    // mirror roots are torn down in the order the S-EPT needs.
    tdp_->invalidate_direct_roots();
    if (private_) private_->teardown();
    tdp_->zap_invalidated_roots(/*shared=*/false);
  }
  kvm_.set_arch(nullptr);
  private_.reset();
  tdp_.reset();
}

// --- Roots -----------------------------------------------------------------------------------

KvmResult<> KvmMmu::load(VcpuMmu& vcpu) {
  // The mirror root first (mmu_alloc_direct_roots): there is never a valid direct root
  // without it.
  if (private_) {
    if (KvmResult<> r = private_->load(); !r) return r;
  }
  if (vcpu.root != nullptr && !TdpMmu::is_obsolete_root(vcpu.root)) return {};
  if (vcpu.root != nullptr) {
    // kvm_mmu_free_obsolete_roots.
    tdp_->put_root(vcpu.root);
    vcpu.root = nullptr;
  }
  vcpu.root = tdp_->get_direct_root();
  if (vcpu.root == nullptr) return std::unexpected(Errno::kEnomem);
  // Only the direct root goes to hardware (a TD's shared EPTP); then the new root is
  // flushed, whatever the CPU cached for a root at the same address before.
  ops_.load_mmu_pgd(&kvm_, vcpu.vcpu_id, vcpu.root->spt(), config_.root_level);
  ops_.flush_tlb_current(&kvm_, vcpu.vcpu_id);
  return {};
}

void KvmMmu::unload(VcpuMmu& vcpu) {
  if (vcpu.root == nullptr) return;
  tdp_->put_root(vcpu.root);
  vcpu.root = nullptr;
}

// --- Faults ----------------------------------------------------------------------------------

FaultResult KvmMmu::memory_fault_exit(const KvmPageFault& fault) {
  tdp_->stats().memory_fault_exits.add();
  return FaultResult{
      .ret = RetPf::kInvalid,
      .error = Errno::kEfault,
      .memory_fault = MemoryFaultExit{.gpa = fault.gfn.gpa(),
                                      .size = kPageSize,
                                      .flags = fault.is_private ? kMemoryExitFlagPrivate : 0}};
}

Level KvmMmu::max_mapping_level(const KvmPageFault& fault, Level backing) const {
  // kvm_mmu_hugepage_adjust: a slot that tracks dirty pages is mapped 4K, so that each
  // page's write is logged on its own (what was mapped huge before logging started is
  // write-protected and split by the next write).
  if (fault.slot->dirty_logging()) return Level::k4K;
  for (Level l = std::min(backing, Level::k1G); l > Level::k4K; l = level_down(l)) {
    const Gfn start = fault.gfn.align_down(l);
    const Gfn end = start + level_pages(l);
    if (start < fault.slot->base_gfn || end > fault.slot->end()) continue;
    // The host page must line up with the guest's: the same offset within the huge page.
    if (!fault.is_private && (fault.slot->gfn_to_hva(start) & (level_bytes(l) - 1)) != 0) continue;
    // A huge page mixing private and shared gfns would map one alias over the other.
    if (has_private_mem(kvm_.type()) &&
        !kvm_.range_has_memory_attributes(start, end, kMemAttrPrivate,
                                          fault.is_private ? kMemAttrPrivate : 0)) {
      continue;
    }
    return l;
  }
  return Level::k4K;
}

std::optional<FaultResult> KvmMmu::faultin_pfn_private(KvmPageFault& fault) {
  // A gfn the guest asked for privately must be backed by guest_memfd.
  if (fault.slot == nullptr || !fault.slot->can_be_private()) return memory_fault_exit(fault);
  if (fault.slot->invalid) return outcome(RetPf::kRetry);
  const KvmResult<GmemPfn> got = kvm_.gmem_get_pfn(*fault.slot, fault.gfn);
  if (!got) {
    if (got.error() == Errno::kEnomem) {
      return outcome(RetPf::kInvalid, Errno::kEnomem);
    }
    return memory_fault_exit(fault);
  }
  fault.pfn = got->pfn;
  fault.map_writable = true;
  const Level vendor_max = ops_.private_max_mapping_level(&kvm_, got->pfn);
  fault.max_level = max_mapping_level(fault, std::min(got->max_level, vendor_max));
  return std::nullopt;
}

std::optional<FaultResult> KvmMmu::faultin_pfn(KvmPageFault& fault) {
  // page_fault strips the direct bits; a caller that skipped that would alias the halves.
  if (kvm_.bug_on((fault.gfn.raw() & gfn_direct_bits_.raw()) != 0,
                  "a fault gfn with direct bits")) {
    return outcome(RetPf::kInvalid, Errno::kEfault);
  }
  // The snapshot comes first: an invalidation that starts after it and covers this gfn is
  // seen by the check under mmu_lock; one that finished before it left nothing stale.
  fault.mmu_seq = kvm_.mmu_invalidate_seq();
  fault.memslot_generation = kvm_.memslots_generation();
  fault.slot = kvm_.gfn_to_memslot(fault.gfn);
  // The guest's view (the GPA's alias for a TD, the access it made otherwise) must match
  // the attribute; userspace converts and re-enters.
  if (has_private_mem(kvm_.type()) && fault.is_private != kvm_.mem_is_private(fault.gfn)) {
    return memory_fault_exit(fault);
  }
  if (fault.is_private) return faultin_pfn_private(fault);
  if (fault.slot == nullptr) {
    // No memslot: MMIO. The SPTE built for it carries the memslots generation.
    fault.goal_level = Level::k4K;
    return std::nullopt;
  }
  // The slot is being deleted or moved: its mappings are about to be zapped, so nothing may
  // be built from it (not even MMIO) until the update finishes.
  if (fault.slot->invalid) return outcome(RetPf::kRetry);
  // A write to a read-only slot is emulated as MMIO (KVM_PFN_ERR_RO_FAULT).
  if (fault.write && fault.slot->readonly()) return outcome(RetPf::kEmulate);
  // host_pfn_mapping_level comes with the pfn: a huge leaf only over a huge host page. Read
  // without mmu_lock; a split or migration since is an invalidation, caught by mmu_seq.
  Level host_level = Level::k4K;
  const KvmResult<Pfn> pfn =
      kvm_.mm().get_user_page(fault.slot->gfn_to_hva(fault.gfn), fault.write, &host_level);
  if (!pfn) return outcome(RetPf::kInvalid, pfn.error());
  fault.pfn = *pfn;
  fault.map_writable = !fault.slot->readonly();
  fault.max_level = max_mapping_level(fault, host_level);
  return std::nullopt;
}

bool KvmMmu::is_page_fault_stale(const VcpuMmu& vcpu, const KvmPageFault& fault) const {
  // A private fault builds in the mirror root, which is never obsolete while the VM lives.
  // A fast zap marks the roots invalid under the write lock and zaps them under the read
  // lock, so a fault that gets mmu_lock after the mark may be behind the zap: installing
  // there would leave tables the zap has passed, which the root's last put never frees.
  // M6: before this check the fault looked only at the invalidation sequence, which a fast
  // zap does not move, and installed into the obsolete root.
  if (!fault.is_private && !bug(BugId::M6) && TdpMmu::is_obsolete_root(vcpu.root)) return true;
  // Everything the new leaf will map, not just the faulting gfn (see the Kvm comment).
  const Gfn first = fault.gfn.align_down(fault.goal_level);
  return kvm_.mmu_invalidate_retry_gfn_range(fault.mmu_seq, first,
                                             first + level_pages(fault.goal_level));
}

std::optional<RetPf> KvmMmu::handle_mmio_page_fault(const VcpuMmu& vcpu, Gpa gpa) const {
  // A lockless walk (walk_shadow_page_lockless_begin: RCU only) to the entry that faulted.
  std::array<Spte, 5> sptes{};
  const Level last = tdp_->get_walk(vcpu.root, gpa, sptes);
  const Spte spte = sptes[level_num(last) - 1];
  const MmioSpteMasks& m = tdp_->config().mmio;
  // Zapped or replaced since the CPU read it: let the vCPU fault again.
  if (!spte.is_mmio(m)) return RetPf::kRetry;
  // check_mmio_spte: a memslot update since made it stale without a zap.
  if (spte.mmio_generation() != (kvm_.memslots_generation() & Spte::kMmioGenMax)) {
    return std::nullopt;
  }
  return RetPf::kEmulate;
}

FaultResult KvmMmu::page_fault(VcpuMmu& vcpu, Gpa gpa, uint64_t error_code) {
  TDXSIM_CHECK(vcpu.root != nullptr, "a page fault on a vCPU without a root");
  if ((error_code & kPferrRsvd) != 0) {
    if (const std::optional<RetPf> mmio = handle_mmio_page_fault(vcpu, gpa)) {
      tdp_->stats().faults[static_cast<size_t>(*mmio)].add();
      kvm_.events().page_fault.emit_lazy(
          [&] { return PageFaultEvent{vcpu.vcpu_id, gpa, error_code, *mmio}; });
      return outcome(*mmio);
    }
  }
  KvmPageFault fault{};
  fault.addr = gpa;
  fault.gfn = Gfn{gpa.gfn().raw() & ~gfn_direct_bits_.raw()};
  // What the vendor's EPT-violation handler adds (__vmx_handle_ept_violation for TDX,
  // kvm_mmu_page_fault for software-protected VMs).
  if (has_mirrored_tdp(kvm_.type())) {
    if ((gpa.gfn().raw() & gfn_direct_bits_.raw()) == 0) error_code |= kPferrPrivateAccess;
  } else if (kvm_.type() == VmType::kSwProtected && kvm_.mem_is_private(fault.gfn)) {
    error_code |= kPferrPrivateAccess;
  }
  if (tdp_->bug_on((error_code & kPferrPrivateAccess) != 0 && !has_private_mem(kvm_.type()),
                   "a private access in a VM without private memory")) {
    return outcome(RetPf::kInvalid, Errno::kEio);
  }
  fault.error_code = error_code;
  fault.write = (error_code & kPferrWrite) != 0;
  fault.exec = (error_code & kPferrFetch) != 0;
  fault.present = (error_code & kPferrPresent) != 0;
  fault.is_private = (error_code & kPferrPrivateAccess) != 0;

  // The whole fault is one read-side section: a memslot update waits for it before it zaps
  // (so a pfn found through a slot being deleted is never mapped after the zap).
  RcuReadGuard rcu;
  FaultResult result;
  if (std::optional<FaultResult> early = faultin_pfn(fault)) {
    result = *early;
  } else {
    fault.goal_level = fault.slot == nullptr ? Level::k4K : fault.max_level;
    if (fault_tracepoint_) fault_tracepoint_(fault);
    ReadLock l(kvm_.mmu_lock());
    // M2 (CVE-2022-45869): the TDP MMU's fault, under the read lock, still reserved shadow
    // pages as the write-locked shadow MMU fault does.
    if (bug(BugId::M2)) make_mmu_pages_available(vcpu.vcpu_id);
    if (is_page_fault_stale(vcpu, fault)) {
      result.ret = RetPf::kRetry;
    } else if (fault.is_private) {
      result.ret = private_ ? private_->fault_in(fault) : tdp_->map(vcpu.root, fault);
    } else {
      result.ret = tdp_->map(vcpu.root, fault);
    }
    if (result.ret == RetPf::kInvalid && tdp_->vm_bugged()) result.error = Errno::kEio;
    if (result.ret == RetPf::kInvalid && !result.error) result.error = Errno::kEnomem;
    // make_spte logs a page it maps writable: dirty logging sees the write the guest is
    // about to do (and any later one, until the page is write-protected again).
    if ((result.ret == RetPf::kFixed || result.ret == RetPf::kSpurious) && fault.slot != nullptr &&
        fault.map_writable && !fault.is_private) {
      fault.slot->mark_page_dirty(fault.gfn);
    }
  }
  tdp_->stats().faults[static_cast<size_t>(result.ret)].add();
  kvm_.events().page_fault.emit_lazy(
      [&] { return PageFaultEvent{vcpu.vcpu_id, gpa, error_code, result.ret}; });
  return result;
}

void KvmMmu::make_mmu_pages_available(int vcpu_id) {
  // Zapping the oldest shadow pages edits active_mmu_pages, which only the write lock guards.
  kvm_.lockdep().assert_held_write(kvm_.mmu_lock(), "make_mmu_pages_available", vcpu_id);
  // The TDP MMU's pages are not shadow pages (n_used_mmu_pages counts none of them), so
  // there is never anything to reclaim here: the lock rule is the whole contract.
}

bool KvmMmu::gpa_is_mapped(const VcpuMmu& vcpu, Gpa gpa) const {
  kvm_.mmu_lock().assert_held();
  const Gfn gfn{gpa.gfn().raw() & ~gfn_direct_bits_.raw()};
  const bool is_private = private_ && (gpa.gfn().raw() & gfn_direct_bits_.raw()) == 0;
  if (is_private) return private_->walk(gfn).has_value();
  return tdp_->leaf_for(vcpu.root, gfn).has_value();
}

// --- Zaps ------------------------------------------------------------------------------------

bool KvmMmu::bug(BugId id) const {
  return kvm_.vm() != nullptr && kvm_.vm()->platform().faults().bug(id);
}

bool KvmMmu::zap_range(const GfnRange& range, uint8_t filter, ZapReason reason, bool flush) {
  kvm_.mmu_lock().assert_held_write();
  TDXSIM_CHECK(filter != 0, "a zap of {}..{} with no attribute filter", range.start, range.end);
  MmuStats& st = tdp_->stats();
  if (!private_) {
    // kvm_gfn_range_filter_to_root_types: without a mirror both aliases are the direct roots.
    st.zap_requests[static_cast<size_t>(reason)][static_cast<size_t>(alias_of(filter))].add();
    // M4: the notifier's unmap walked only valid roots; one a fast zap had invalidated (and
    // was still zapping, yielding) kept mapping the range after the unmap returned.
    const bool with_invalid = !(reason == ZapReason::kNotifier && bug(BugId::M4));
    flush = tdp_->zap_direct_leafs(range.start, range.end, reason, range.may_block, flush,
                                   with_invalid);
  } else {
    if ((filter & kFilterShared) != 0) {
      st.zap_requests[static_cast<size_t>(reason)][static_cast<size_t>(ZapAlias::kShared)].add();
      // T4: the alias filter chose the direct roots and forgot the invalid ones (M4 again).
      flush = tdp_->zap_direct_leafs(range.start, range.end, reason, range.may_block, flush,
                                     /*with_invalid=*/!bug(BugId::T4));
    }
    if ((filter & kFilterPrivate) != 0) {
      flush = private_->zap_range(range.start, range.end, reason, flush);
    }
  }
  kvm_.events().range_zapped.emit_lazy([&] {
    return RangeZapEvent{range.start, range.end, (filter & kFilterShared) != 0 || !private_,
                         (filter & kFilterPrivate) != 0 || !private_, to_string(reason)};
  });
  return flush;
}

bool KvmMmu::unmap_gfn_range(const GfnRange& range) {
  // Generic KVM sends the shared alias from the MMU notifier and the private one from
  // guest_memfd; memslot updates come through flush_shadow_memslot.
  const ZapReason reason =
      range.attr_filter == kFilterShared ? ZapReason::kNotifier : ZapReason::kGmemPunch;
  uint8_t filter = range.attr_filter;
  // S1 (seed 001): before the attribute filter, the notifier's unmap zapped every alias the
  // GFNs had, private included: host reclaim of the VMM's (shared) pages took a TD's private
  // pages out of the S-EPT, and their contents with them.
  if (reason == ZapReason::kNotifier && bug(BugId::S1)) filter |= kFilterPrivate;
  return zap_range(range, filter, reason, /*flush=*/false);
}

void KvmMmu::zap_all_fast() {
  {
    WriteLock l(kvm_.mmu_lock());
    // A mirror root cannot be fast-zapped: its contents could not be faulted back without
    // the guest accepting again. Only direct roots are invalidated here.
    tdp_->invalidate_direct_roots();
    tdp_->stats().zap_requests[static_cast<size_t>(ZapReason::kRoots)][0].add();
    // Every vCPU leaves guest mode and drops its obsolete root before it enters again, and
    // this waits for it, under mmu_lock: once the roots are zapped below, no vCPU still runs
    // on one (or on what its TLB cached from one) — the reload flushes the new root.
    if (kvm_.vm() != nullptr) kvm_.vm()->make_all_cpus_request(KvmRequest::kMmuFreeObsoleteRoots);
  }
  ReadLock l(kvm_.mmu_lock());
  tdp_->zap_invalidated_roots(/*shared=*/true);
}

void KvmMmu::flush_shadow_memslot(const Memslot& slot) {
  kvm_.slots_lock().assert_held();
  if (kvm_.type() == VmType::kDefault && config_.quirk_slot_zap_all) {
    zap_all_fast();
    return;
  }
  // kvm_mmu_zap_memslot_leafs: both aliases, exactly the slot's range.
  WriteLock l(kvm_.mmu_lock());
  const GfnRange range{.slot = &slot,
                       .start = slot.base_gfn,
                       .end = slot.end(),
                       .attr_filter = kFilterShared | kFilterPrivate,
                       .may_block = true};
  const bool flush = zap_range(range, range.attr_filter, ZapReason::kMemslot, false);
  // kvm_flush_remote_tlbs_memslot.
  if (flush) tdp_->flush_remote_tlbs_range(slot.base_gfn, slot.npages);
}

void KvmMmu::memslots_updated(uint64_t gen) {
  if ((gen & Spte::kMmioGenMax) == 0) zap_all_fast();
}

void KvmMmu::flush_shadow_all() {
  // kvm_mmu_zap_all: direct and invalid roots; mirror roots wait for VM destruction.
  WriteLock l(kvm_.mmu_lock());
  tdp_->zap_all_direct();
}

bool KvmMmu::age_gfn(const GfnRange& range) {
  return tdp_->age_gfn_range(range.start, range.end, /*test_only=*/false, /*shared=*/false);
}

bool KvmMmu::test_age_gfn(const GfnRange& range) {
  return tdp_->age_gfn_range(range.start, range.end, /*test_only=*/true);
}

bool KvmMmu::pre_set_memory_attributes(const GfnRange& range) {
  kvm_.mmu_lock().assert_held_write();
  if (!has_private_mem(kvm_.type())) return false;
  // The alias that stops being valid goes: shared mappings when converting to private,
  // private ones when converting to shared.
  const uint8_t filter = (range.attributes & kMemAttrPrivate) != 0 ? kFilterShared : kFilterPrivate;
  return zap_range(range, filter, ZapReason::kAttributes, /*flush=*/false);
}

bool KvmMmu::post_set_memory_attributes(const GfnRange&) {
  // Huge-page eligibility is computed at fault time from the attributes themselves
  // (max_mapping_level), so there is no per-slot mixed-attribute state to update.
  return false;
}

void KvmMmu::flush_remote_tlbs() {
  tdp_->flush_remote_tlbs();
}

KvmResult<> KvmMmu::prepare_memory_region(const Memslot*, const Memslot* new_slot,
                                          MemslotChange change) {
  if (change == MemslotChange::kDelete) return {};
  TDXSIM_CHECK(new_slot != nullptr && new_slot->npages > 0, "a memslot change without a slot");
  const Gfn last = new_slot->base_gfn + (new_slot->npages - 1);
  // A slot gfn must never carry a direct (shared) bit: the MMU would alias the two halves
  // (kvm_is_gfn_alias). T7: the check left out.
  if ((last.raw() & gfn_direct_bits_.raw()) != 0 && !bug(BugId::T7)) {
    return std::unexpected(Errno::kEinval);
  }
  // Nor lie beyond what the TDP tables can map (kvm_mmu_max_gfn).
  if (last >= tdp_->max_gfn_exclusive()) return std::unexpected(Errno::kEinval);
  return {};
}

void KvmMmu::commit_memory_region(const Memslot* old, const Memslot* new_slot,
                                  MemslotChange change) {
  if (change == MemslotChange::kDelete || new_slot == nullptr) return;
  // kvm_mmu_slot_apply_flags: a slot that starts logging is write-protected, so that every
  // page's next write faults and is recorded. (Its existing writable leaves would otherwise
  // let writes through unlogged.)
  const bool was_logging = old != nullptr && old->dirty_logging();
  if (!new_slot->dirty_logging() || was_logging) return;
  bool flush;
  {
    ReadLock l(kvm_.mmu_lock());
    if (pml()) {
      // kvm_mmu_slot_leaf_clear_dirty: the 4K pages' next writes set D, which the CPU logs;
      // huge pages are write-protected so that a write splits them first. The flush below
      // follows only a change, as in the KVM of M9's time: a leaf already clean in memory
      // while a TLB holds it dirty (a D that KVM lost) then escapes it. KVM later made the
      // flush unconditional, which closes that door too.
      flush = tdp_->clear_dirty_slot(new_slot->base_gfn, new_slot->end());
      flush |= tdp_->wrprot_range(new_slot->base_gfn, new_slot->end(), Level::k2M);
    } else {
      flush = tdp_->wrprot_range(new_slot->base_gfn, new_slot->end(), Level::k4K);
    }
  }
  // kvm_flush_remote_tlbs_memslot.
  if (flush) tdp_->flush_remote_tlbs_range(new_slot->base_gfn, new_slot->npages);
}

void KvmMmu::enable_log_dirty_pt_masked(const Memslot& slot, Gfn base, uint64_t mask) {
  kvm_.mmu_lock().assert_held_write();
  if (pml()) {
    // kvm_mmu_clear_dirty_pt_masked: bits of the bitmap beyond the slot are never set.
    tdp_->clear_dirty_pt_masked(base, mask);
    return;
  }
  while (mask != 0) {
    const unsigned bit = static_cast<unsigned>(__builtin_ctzll(mask));
    mask &= mask - 1;
    const Gfn gfn = base + bit;
    if (slot.contains(gfn)) tdp_->wrprot_range(gfn, gfn + 1, Level::k4K);
  }
}

bool KvmMmu::pml() {
  return ops_.cpu_dirty_log_size(&kvm_) != 0;
}

void KvmMmu::sync_dirty_log(const Memslot&) {
  // kvm_arch_sync_dirty_log: a vCPU empties its PML log into the bitmap at every exit, so
  // getting each out of guest mode is enough. Upstream kicks without waiting; waiting here
  // makes "every write retired before the harvest is in it" exact.
  if (pml() && kvm_.vm() != nullptr)
    kvm_.vm()->make_all_cpus_request(KvmRequest::kOutsideGuestMode);
}

KvmResult<> KvmMmu::zap_gfn_range(Gfn start, Gfn end, GfnZapCause cause) {
  if (has_mirrored_tdp(kvm_.type()) && cause != GfnZapCause::kNoncoherentDma) {
    // A TD's MTRRs, CR0 and APIC state are the guest's, protected from KVM: nothing KVM
    // sees could ask for this zap.
    return std::unexpected(Errno::kEopnotsupp);
  }
  WriteLock l(kvm_.mmu_lock());
  // An invalidation over the range while it is zapped: a fault that races with a yield of
  // the zap retries instead of mapping again what was just zapped.
  const bool any = start < end;
  if (any) kvm_.mmu_invalidate_begin(start, end);
  // Private mappings are always write-back whatever DMA does, so only the direct roots
  // (which for a TD map the shared alias) are affected.
  if (tdp_->zap_direct_leafs(start, end, ZapReason::kRoots, /*can_yield=*/true, false)) {
    tdp_->flush_remote_tlbs_range(start, end.raw() - start.raw());
  }
  kvm_.events().range_zapped.emit_lazy([&] {
    return RangeZapEvent{start, end, /*shared=*/true, /*private_alias=*/!private_, "zap_gfn_range"};
  });
  if (any) kvm_.mmu_invalidate_end();
  return {};
}

}  // namespace tdxsim
