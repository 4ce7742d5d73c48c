// KvmX86Ops: the vendor table (struct kvm_x86_ops) — one per host, chosen when the module
// loads, shared by every VM on the host. Its MMU half is MmuVendorOps; this adds VM and vCPU
// lifecycle, the run path and the TLB flushes a vCPU asks for.
//
// On an Intel host VMX and TDX VMs share one table whose entries dispatch per VM (upstream's
// vt_* wrappers in vmx/main.c); seed 000 is about exactly that sharing. Every entry gets the
// VM or vCPU, and a vendor finds its own state behind it (Kvm::vendor, KvmVcpu::vendor).
//
// Thread safety: vCPU entries run on that vCPU's thread, bound to the logical CPU it was
// loaded on; VM entries run on the thread doing the VM ioctl, bound to some CPU when the
// entry issues CPU-local instructions. The MMU half keeps the rules of mmu_vendor_ops.h.
#pragma once

#include "kvm/kvm_errno.h"
#include "kvm/mmu_vendor_ops.h"
#include "kvm/spte.h"

namespace tdxsim {

class KvmVm;
class KvmVcpu;
class LogicalCpu;
class GuestProgram;

// enum exit_fastpath_completion.
enum class ExitFastpath : uint8_t {
  kNone,          // the slow path (handle_exit) decides
  kReenterGuest,  // handled in the fastpath, go straight back in
  kExitHandled,   // nothing left to do for this exit (TDX: entry skipped, or BUSY)
};

// Which function the table's optional flush_remote_tlbs op holds. Upstream code asks by
// comparing the function pointer (`kvm_x86_ops.flush_remote_tlbs == hv_flush_remote_tlbs`);
// here the table names it. kNone: the op is absent and KVM falls back to requests.
enum class RemoteFlushHook : uint8_t {
  kNone,
  kHyperV,  // hv_flush_remote_tlbs: KVM runs nested on Hyper-V (kvm/hyperv/)
  kVt,      // vt_flush_remote_tlbs: the Intel table of a TDX host, dispatching per VM
};
const char* to_string(RemoteFlushHook h);

class KvmX86Ops : public MmuVendorOps {
 public:
  // --- Host ------------------------------------------------------------------------------
  // The TDP entries' format for every VM of this host: what the vendor's hardware walks
  // (upstream: vmx's kvm_mmu_set_ept_masks() at module load; SVM keeps the defaults).
  virtual SpteFormat spte_format() const { return SpteFormat::kEpt; }
  // What this table's flush_remote_tlbs op is (see RemoteFlushHook).
  virtual RemoteFlushHook remote_flush_hook() const { return RemoteFlushHook::kNone; }

  // --- VM -------------------------------------------------------------------------------
  // vm_init: per-VM vendor state (Kvm::set_vendor). EINVAL for a VM type the vendor does
  // not run.
  virtual KvmResult<> vm_init(KvmVm& vm) = 0;
  // vm_pre_destroy: before the MMU is torn down (TDX: release the HKID, so that S-EPT
  // pages can be reclaimed when the mirror tables go).
  virtual void vm_pre_destroy(KvmVm& vm) { (void)vm; }
  // vm_destroy: after the MMU and the vCPUs are gone (TDX: reclaim TDCS and TDR).
  virtual void vm_destroy(KvmVm& vm) = 0;

  // --- vCPU ------------------------------------------------------------------------------
  virtual KvmResult<> vcpu_create(KvmVcpu& vcpu) = 0;
  // After the vCPU's MMU is unloaded. TDX: TDVPR/TDCX are reclaimed only once the HKID is
  // free (else leaked, as upstream).
  virtual void vcpu_free(KvmVcpu& vcpu) = 0;
  // vcpu_load: the vCPU's thread now runs on `cpu` (bound). `cpu` may differ from the last
  // one: a vendor whose state is tied to a CPU moves it here.
  virtual void vcpu_load(KvmVcpu& vcpu, LogicalCpu& cpu) = 0;
  // vcpu_pre_run: can KVM_RUN go on at all (TDX: EINVAL before the TD is runnable)?
  virtual KvmResult<> vcpu_pre_run(KvmVcpu& vcpu) {
    (void)vcpu;
    return {};
  }
  // vcpu_run: enter the guest once, with the vCPU's mode IN_GUEST_MODE; returns after the
  // exit with the exit recorded in the vendor's vCPU state.
  virtual ExitFastpath vcpu_run(KvmVcpu& vcpu) = 0;
  // handle_exit: > 0 re-enter, 0 return to userspace with vcpu.run_state() filled, < 0 fail
  // KVM_RUN with that -errno (the run state may carry an exit too, e.g. a memory fault).
  virtual int handle_exit(KvmVcpu& vcpu, ExitFastpath fastpath) = 0;
  // complete_userspace_io: the exit userspace just handled needs finishing before entry (an
  // MMIO read's data into the guest's register, a MapGPA chunk's next step). Same return
  // convention as handle_exit; the default has nothing pending.
  virtual int complete_userspace_io(KvmVcpu& vcpu) {
    (void)vcpu;
    return 1;
  }

  // KVM_REQ_TLB_FLUSH / KVM_REQ_TLB_FLUSH_CURRENT on the vCPU's own logical CPU.
  virtual void flush_tlb_all(KvmVcpu& vcpu) = 0;
  virtual void flush_tlb_current(KvmVcpu& vcpu) = 0;

  // --- Simulation hook (not an upstream op) ----------------------------------------------
  // The code the vCPU runs from its next entry: what a real VMM loads as the guest image.
  // `instruction_budget`: instructions per entry before a timer exit (0: no timer).
  virtual void set_guest(KvmVcpu& vcpu, GuestProgram* program, uint32_t instruction_budget) = 0;

  // MmuVendorOps entries that take a vCPU id land on the vCPU versions above.
  void flush_tlb_current(Kvm* kvm, int vcpu_id) override;
};

}  // namespace tdxsim
