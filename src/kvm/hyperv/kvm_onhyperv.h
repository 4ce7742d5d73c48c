// KvmOnHyperV: KVM as an L1 hypervisor on Microsoft Hyper-V, flushing its guests' GPA
// translations with the L0's hypercalls instead of IPIs (arch/x86/kvm/kvm_onhyperv.c and the
// hypercall wrappers of arch/x86/hyperv/nested.c; kvm-tdx-mmu.md §3).
//
// Root tracking. A GPA-flush hypercall names one address space: the root of the tables the
// L0 shadows. KVM tracks the root each vCPU last loaded (hv_track_root_tdp, called from the
// vendor's load_mmu_pgd) and, per VM, the root they all share — kInvalidPage once two vCPUs
// diverge. A remote flush then costs one hypercall when the vCPUs agree, else one per
// distinct root (the walk over vCPUs re-establishes the shared root when it finds only one).
//
// Ranges. HvCallFlushGuestPhysicalAddressList takes up to 510 ranges of up to 2048 pages; a
// range that does not fit fails (ENOSPC upstream), and KVM falls back to a full flush. On
// Intel this is the only ranged GPA flush there is: bare-metal KVM's range flushes are
// full INVEPTs.
//
// Who may use it: only a host whose vendor table's flush op *is* hv_flush_remote_tlbs. Seed
// 000: on a bare-metal TDX host the table's op is TDX's (vt_flush_remote_tlbs), so "the op
// is non-null" is not "running on Hyper-V" (RemoteFlushHook).
//
// Thread safety: every member may be called from any thread; the tracking is under the VM's
// HvRootTdp lock, which a flush holds across its hypercalls (as upstream's spinlock does).
#pragma once

#include <cstdint>
#include <optional>

#include "base/addr.h"
#include "base/atomic.h"
#include "platform/hyperv_l0.h"

namespace tdxsim {

class Kvm;
class KvmVcpu;

struct HvFlushStats {
  Counter remote_flushes;    // hv_flush_remote_tlbs (whole address spaces)
  Counter range_flushes;     // hv_flush_remote_tlbs_range
  Counter roots_flushed;     // hypercalls issued, one per root flushed
  Counter shared_root_hits;  // flushes that used the VM's shared root (one hypercall)
  Counter failures;          // flushes that failed (KVM falls back)
  Counter list_overflows;    // ranges that did not fit one list hypercall
};

class KvmOnHyperV {
 public:
  // REQUIRES: l0 outlives this.
  explicit KvmOnHyperV(HyperVL0& l0) : l0_(l0) {}
  KvmOnHyperV(const KvmOnHyperV&) = delete;
  KvmOnHyperV& operator=(const KvmOnHyperV&) = delete;

  HyperVL0& l0() { return l0_; }
  const HvFlushStats& stats() const { return stats_; }

  // hv_flush_remote_tlbs / hv_flush_remote_tlbs_range. Returns false when a hypercall failed
  // or the range did not fit: the caller falls back (a full flush, then requests).
  bool flush_remote_tlbs(Kvm& kvm);
  bool flush_remote_tlbs_range(Kvm& kvm, Gfn start, uint64_t pages);

  // hyperv_flush_guest_mapping: every GPA translation derived from `root`.
  bool flush_guest_mapping(Hpa root);

  // hv_track_root_tdp's body: record `root` as `vcpu`'s and forget the VM's shared root when
  // it differs. The caller decided that the host is Hyper-V (see hv_track_root_tdp).
  static void track_root_tdp(KvmVcpu& vcpu, Hpa root);

 private:
  struct Range {
    Gfn start;
    uint64_t pages;
  };
  bool flush(Kvm& kvm, std::optional<Range> range);
  bool flush_root(Hpa root, std::optional<Range> range);

  HyperVL0& l0_;
  HvFlushStats stats_;
};

// hv_track_root_tdp: tracks `root` only when the vendor table's flush op is Hyper-V's.
void hv_track_root_tdp(KvmVcpu& vcpu, Hpa root);

}  // namespace tdxsim
