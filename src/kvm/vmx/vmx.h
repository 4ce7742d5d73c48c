// VmxOps: KVM's VMX vendor code (arch/x86/kvm/vmx/vmx.c) for ordinary and software-protected
// VMs on the TDP MMU: the VMCS (a GuestContext: EPTP, VPID), VM entry through the logical
// CPU, and the exits a VM without private-memory hardware has — EPT violations into the
// MMU, MMIO (no memslot) emulated out to userspace, VMCALL hypercalls (KVM_HC_MAP_GPA_RANGE
// becomes a userspace exit), HLT — the last three shared with SVM (x86_emulate.h).
//
// TLB: INVEPT single-context for the loaded root (flush current), global INVEPT for a full
// flush. On bare metal there is no remote-flush hook: the MMU falls back to
// KVM_REQ_TLB_FLUSH on every vCPU. A vCPU loaded on a CPU it did not last run on requests a
// full flush first (the new CPU may hold entries from an earlier stay under this VPID).
// Nested on Hyper-V with HV_X64_NESTED_GUEST_MAPPING_FLUSH (enable_hyperv_flush), the
// remote flushes are the L0's GPA-flush hypercalls, ranged ones included, and every loaded
// root is tracked for them (hv_load_mmu_eptp). Whether to track is decided by the host
// table's flush op being Hyper-V's — not by it being present (seed 000, bug S0).
//
// Dirty logging with PML (enable_pml, on by default as upstream): every vCPU's VMCS enables
// PML with its own 512-entry log; the CPU logs each page whose D it sets, and the vCPU
// empties the log into the memslots' dirty bitmaps at every exit (vmx_flush_pml_buffer),
// right after the CPU leaves guest mode — before the vCPU's mode says it is out, so a
// harvest that waited for the vCPUs to leave guest mode (kvm_arch_sync_dirty_log) finds
// every logged page in the bitmap. The MMU then clears D instead of write-protecting
// (cpu_dirty_log_size).
//
// Thread safety: the vCPU state belongs to the vCPU's thread; the VPID pool is locked.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "base/atomic.h"
#include "base/lock.h"
#include "kvm/hyperv/kvm_onhyperv.h"
#include "kvm/vcpu.h"
#include "kvm/x86_emulate.h"
#include "kvm/x86_ops.h"
#include "platform/guest_context.h"
#include "platform/guest_program.h"
#include "platform/vm_exit.h"

namespace tdxsim {

// The registers, program, last exit and pending completion are X86Vcpu's (x86_emulate.h).
struct VmxVcpu : X86Vcpu {
  GuestContext vmcs;
  std::unique_ptr<PmlLog> pml_pg;  // the page vmcs.pml_address points at (with PML)
};

// mmio_exits, hypercalls, hlt_exits, unhandled_exits: X86ExitStats.
struct VmxStats : X86ExitStats {
  Counter ept_violations, ept_misconfigs, pml_full_exits, pml_pages_logged;
};

class VmxOps final : public KvmX86Ops {
 public:
  VmxOps() = default;

  const VmxStats& stats() const { return stats_; }

  // The module parameter enable_pml. REQUIRES: before any vCPU exists.
  void set_enable_pml(bool on) { enable_pml_ = on; }
  bool enable_pml() const { return enable_pml_; }
  unsigned cpu_dirty_log_size(Kvm* kvm) override;

  // hardware_setup on Hyper-V with EPT and the guest-mapping-flush enlightenment: installs
  // hv_flush_remote_tlbs(_range). REQUIRES: before any VM exists; `hv` outlives the ops.
  void enable_hyperv_flush(KvmOnHyperV* hv) { hv_ = hv; }
  RemoteFlushHook remote_flush_hook() const override {
    return hv_ != nullptr ? RemoteFlushHook::kHyperV : RemoteFlushHook::kNone;
  }
  bool flush_remote_tlbs(Kvm* kvm) override;
  bool flush_remote_tlbs_range(Kvm* kvm, Gfn gfn, uint64_t pages) override;

  KvmResult<> vm_init(KvmVm& vm) override;
  void vm_destroy(KvmVm& vm) override;
  KvmResult<> vcpu_create(KvmVcpu& vcpu) override;
  void vcpu_free(KvmVcpu& vcpu) override;
  void vcpu_load(KvmVcpu& vcpu, LogicalCpu& cpu) override;
  ExitFastpath vcpu_run(KvmVcpu& vcpu) override;
  int handle_exit(KvmVcpu& vcpu, ExitFastpath fastpath) override;
  int complete_userspace_io(KvmVcpu& vcpu) override;
  void flush_tlb_all(KvmVcpu& vcpu) override;
  void flush_tlb_current(KvmVcpu& vcpu) override;
  using KvmX86Ops::flush_tlb_current;
  void set_guest(KvmVcpu& vcpu, GuestProgram* program, uint32_t instruction_budget) override;

  void load_mmu_pgd(Kvm* kvm, int vcpu_id, Hpa root, Level level) override;

 private:
  int handle_ept_violation(KvmVcpu& vcpu, VmxVcpu& v);
  // vmx_flush_pml_buffer: every GPA the CPU logged since the last flush into the dirty
  // bitmaps, and the index back at the top.
  void flush_pml_buffer(KvmVcpu& vcpu, VmxVcpu& v);

  uint16_t alloc_vpid();
  void free_vpid(uint16_t vpid);

  VmxStats stats_;
  KvmOnHyperV* hv_ = nullptr;
  bool enable_pml_ = true;
  Mutex vpid_mu_{"vmx_vpid_lock"};
  std::vector<bool> vpid_used_ TDXSIM_GUARDED_BY(vpid_mu_) = std::vector<bool>(1u << 16);
};

}  // namespace tdxsim
