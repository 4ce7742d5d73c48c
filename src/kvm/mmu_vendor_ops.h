// MmuVendorOps: the part of kvm_x86_ops the MMU calls — the four external-table hooks that
// mirror a TD's private mappings into the Secure EPT, the remote TLB flush hooks, the root
// load, and the private mapping level cap.
//
// Upstream these are optional ops of one per-host table (KVM_X86_OP_OPTIONAL); a VM whose
// vendor leaves one out gets KVM's fallback. Here every hook is virtual with the fallback as
// its default, so VMX (no external tables) overrides nothing but the flush, and TDX (the TD
// issue) overrides the lot. The MMU passes the VM so that one table may serve several VMs.
//
// Thread safety: the MMU calls the external hooks with mmu_lock held (read for the two
// "set" hooks, which may answer EBUSY; write for the two removal hooks, which must succeed),
// from any thread; an implementation synchronises its own state.
#pragma once

#include <cstdint>

#include "base/addr.h"
#include "kvm/kvm_errno.h"

namespace tdxsim {

class Kvm;

class MmuVendorOps {
 public:
  virtual ~MmuVendorOps() = default;

  // link_external_spt: make `external_spt` the S-EPT table at `level` - 1 for the gfns from
  // `gfn` (TDH.MEM.SEPT.ADD). `level` is the level of the entry that links it.
  // Returns EBUSY when the vendor could not take a lock it needed (the fault retries).
  virtual KvmResult<> link_external_spt(Kvm* kvm, Gfn gfn, Level level, Hpa external_spt);
  // set_external_spte: map the private page `pfn` at `gfn` (TDH.MEM.PAGE.AUG or ADD).
  virtual KvmResult<> set_external_spte(Kvm* kvm, Gfn gfn, Level level, Pfn pfn);
  // free_external_spt: the S-EPT table for the gfns from `gfn` at `level` is about to be
  // freed; an error means the vendor could not reclaim it and the MMU must leak it.
  virtual KvmResult<> free_external_spt(Kvm* kvm, Gfn gfn, Level level, Hpa external_spt);
  // remove_external_spte: unmap the private page `pfn` at `gfn` and make sure no
  // translation of it survives (BLOCK, TRACK, kick, REMOVE for TDX). Runs under mmu_lock for
  // write, so it cannot be contended: an error is a VM bug.
  virtual KvmResult<> remove_external_spte(Kvm* kvm, Gfn gfn, Level level, Pfn pfn);

  // flush_remote_tlbs: flush every vCPU's TLB for the VM. Returns false when the vendor has
  // no hook (KVM then requests KVM_REQ_TLB_FLUSH on every vCPU and kicks them).
  virtual bool flush_remote_tlbs(Kvm* kvm);
  // flush_remote_tlbs_range: the same for [gfn, gfn + pages); false when not supported, and
  // the caller falls back to a full flush.
  virtual bool flush_remote_tlbs_range(Kvm* kvm, Gfn gfn, uint64_t pages);

  // load_mmu_pgd: point vCPU `vcpu_id`'s hardware at `root` (a `level` table): the EPTP in
  // the VMCS for VMX, TDH.VP.WR of the shared EPTP for a TD (whose secure EPTP the module
  // owns). Only a direct root is ever loaded. The default does nothing (no hardware to
  // program until a vendor provides it).
  virtual void load_mmu_pgd(Kvm* kvm, int vcpu_id, Hpa root, Level level);
  // flush_tlb_current: flush what vCPU `vcpu_id` may have cached for the root it just loaded
  // (kvm_mmu_load flushes every newly loaded root, which is why freeing a root needs no
  // flush). The default does nothing.
  virtual void flush_tlb_current(Kvm* kvm, int vcpu_id);

  // private_max_mapping_level: the largest level a private page may be mapped at (TDX: 4K).
  // The default, "no limit", is the vendor returning 0 upstream.
  virtual Level private_max_mapping_level(Kvm* kvm, Pfn pfn);
  // cpu_dirty_log_size: the entries of the CPU's own dirty log (VMX's PML: 512) when the
  // hardware logs the pages whose dirty flag it sets for this VM; 0 (the default) when it
  // does not, and dirty logging write-protects instead. Upstream a host-wide value; per VM
  // here, because one Intel table serves plain VMs (PML) and TDs (none).
  virtual unsigned cpu_dirty_log_size(Kvm* kvm);
};

}  // namespace tdxsim
