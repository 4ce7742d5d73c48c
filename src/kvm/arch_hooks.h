// KvmArchHooks: what generic KVM (memslots, memory attributes, guest_memfd, MMU notifiers;
// virt/kvm/kvm_main.c and guest_memfd.c upstream) calls in the arch MMU — the kvm_arch_*
// and kvm_*_gfn_range functions of arch/x86/kvm/mmu/mmu.c.
//
// The x86 MMU (tdp_mmu.h) implements it; generic code's own tests use a recording fake. The
// lock each hook runs under is part of its contract: the caller takes it.
#pragma once

#include "kvm/gfn_range.h"
#include "kvm/kvm_errno.h"

namespace tdxsim {

struct Memslot;

// enum kvm_mr_change.
enum class MemslotChange : uint8_t { kCreate, kDelete, kMove, kFlagsOnly };

class KvmArchHooks {
 public:
  virtual ~KvmArchHooks() = default;

  // kvm_arch_prepare_memory_region: arch checks of a slot being created, moved or re-flagged
  // (x86: the last gfn must not carry a direct bit and must fit the MMU) — EINVAL if not.
  // `old` is null for kCreate, `new_slot` null for kDelete. REQUIRES: slots_lock held.
  virtual KvmResult<> prepare_memory_region(const Memslot* old, const Memslot* new_slot,
                                            MemslotChange change) = 0;
  // kvm_arch_commit_memory_region: the change is published (x86: a slot that starts dirty
  // logging is write-protected, so the next write to each page faults and is logged; with
  // PML its leaves lose D instead, so the next write sets D and the CPU logs it).
  // `new_slot` is null for kDelete. REQUIRES: slots_lock held, mmu_lock not held.
  virtual void commit_memory_region(const Memslot* old, const Memslot* new_slot,
                                    MemslotChange change) = 0;
  // kvm_arch_mmu_enable_log_dirty_pt_masked: write-protect the pages of `slot` at
  // base + each set bit of `mask`, just harvested by KVM_GET_DIRTY_LOG (with PML: clear their
  // D), so that their next write is logged again. REQUIRES: mmu_lock held for write.
  virtual void enable_log_dirty_pt_masked(const Memslot& slot, Gfn base, uint64_t mask) = 0;
  // kvm_arch_sync_dirty_log: before a harvest of `slot`, get every page the hardware logged
  // but KVM has not yet marked into the bitmap (x86 with PML: kick every vCPU out of guest
  // mode; each empties its log at the exit). REQUIRES: slots_lock held, mmu_lock not held.
  virtual void sync_dirty_log(const Memslot& slot) { (void)slot; }
  // kvm_arch_flush_shadow_memslot: drop every mapping of a slot being deleted or moved
  // (the slot is already invalid to faults). REQUIRES: slots_lock held, mmu_lock not held
  // (the hook takes it).
  virtual void flush_shadow_memslot(const Memslot& slot) = 0;
  // kvm_arch_memslots_updated: a new memslot set is published as generation `gen`.
  // REQUIRES: slots_lock held, mmu_lock not held.
  virtual void memslots_updated(uint64_t /*gen*/) {}
  // kvm_arch_flush_shadow_all: the host mm is going away (notifier release).
  // REQUIRES: mmu_lock not held.
  virtual void flush_shadow_all() = 0;

  // kvm_unmap_gfn_range. REQUIRES: mmu_lock held for write, an invalidation in progress
  // covering the range. Returns: whether the caller must flush remote TLBs.
  virtual bool unmap_gfn_range(const GfnRange& range) = 0;
  // kvm_age_gfn / kvm_test_age_gfn (shared mappings only). REQUIRES: mmu_lock held for write.
  // Returns: whether any mapping in the range was young (age_gfn also clears it).
  virtual bool age_gfn(const GfnRange& range) = 0;
  virtual bool test_age_gfn(const GfnRange& range) = 0;

  // kvm_arch_pre_set_memory_attributes: zap the alias the conversion retires
  // (range.attributes is the new value). REQUIRES: mmu_lock held for write, an invalidation
  // in progress covering the range. Returns: whether to flush remote TLBs.
  virtual bool pre_set_memory_attributes(const GfnRange& range) = 0;
  // kvm_arch_post_set_memory_attributes: the new attributes are stored.
  // REQUIRES: mmu_lock held for write. Returns: whether to flush remote TLBs.
  virtual bool post_set_memory_attributes(const GfnRange& range) = 0;

  // kvm_flush_remote_tlbs. REQUIRES: mmu_lock held (either mode) or none.
  virtual void flush_remote_tlbs() = 0;
};

}  // namespace tdxsim
