// KvmVcpu: one vCPU (struct kvm_vcpu with its x86 half) — its requests, its mode, kicks, and
// KVM_RUN's loop (vcpu_run / vcpu_enter_guest in arch/x86/kvm/x86.c):
//
//   KVM_RUN(cpu):  vcpu_load on `cpu` (the vendor moves CPU-bound state when it changed)
//                  complete what userspace just handled (an MMIO read, a MapGPA chunk)
//                  vendor vcpu_pre_run
//     loop:        requests: VM dead → EIO; free obsolete roots; TLB flush (all, current)
//                  kvm_mmu_reload: a valid direct root, loaded and flushed if it is new
//                  mode = IN_GUEST_MODE, then requests/signals checked again (a sender that
//                  set one after the first look saw the mode and kicked)
//                  vendor vcpu_run (enters the guest once)
//                  mode = OUTSIDE_GUEST_MODE; interrupts taken (the kick's IPI, NMIs)
//                  vendor handle_exit: re-enter, return to userspace, or fail
//
// Kicks. kvm_vcpu_kick moves IN_GUEST_MODE to EXITING_GUEST_MODE and sends the vCPU's CPU a
// reschedule IPI; the guest exits at its next instruction. A sender that must know the
// vCPU is out (kvm_make_all_cpus_request with a waiting request) watches the mode word, whose
// upper bits count the vCPU's exits from guest mode: it waits until that count moves.
//
// Threads. run() belongs to one thread at a time, bound to the CPU it passes; the vCPU may
// run on another CPU at its next KVM_RUN (migration). Requests, kicks and signal() come from
// any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include "base/atomic.h"
#include "kvm/kvm_errno.h"
#include "kvm/kvm_run.h"
#include "kvm/mmu.h"
#include "kvm/vcpu_request.h"

namespace tdxsim {

class Kvm;
class KvmVm;
class KvmX86Ops;
class LogicalCpu;

enum class VcpuMode : uint8_t { kOutsideGuestMode, kInGuestMode, kExitingGuestMode };
const char* to_string(VcpuMode m);

// The vendor's per-vCPU state (vcpu_vmx, vcpu_tdx) behind the generic vCPU.
class VendorVcpu {
 public:
  virtual ~VendorVcpu() = default;
};

struct VcpuStats {
  OwnerCounter runs, entries, exits, exits_to_userspace, requests_cancelled_entry, tlb_flushes,
      tlb_flushes_current, root_loads, migrations;
  Counter kicks;  // kicks that found the vCPU in guest mode (senders count them)
};

class KvmVcpu {
 public:
  // KvmVm::create_vcpu builds it.
  KvmVcpu(KvmVm& vm, int id);
  ~KvmVcpu();
  KvmVcpu(const KvmVcpu&) = delete;
  KvmVcpu& operator=(const KvmVcpu&) = delete;

  int id() const { return id_; }
  KvmVm& vm() const { return vm_; }
  Kvm& kvm() const;
  VcpuMmu& mmu() { return mmu_; }
  const VcpuMmu& mmu() const { return mmu_; }
  // The kvm_run area: the last exit, and what userspace writes back.
  KvmRun& run_state() { return run_; }
  const VcpuStats& stats() const { return stats_; }

  VendorVcpu* vendor() const { return vendor_.get(); }
  void set_vendor(std::unique_ptr<VendorVcpu> v) { vendor_ = std::move(v); }
  template <class T>
  T& vendor_as() const {
    return static_cast<T&>(*vendor_);
  }

  // The logical CPU the vCPU was last loaded on (vcpu->cpu), nullptr before its first run.
  LogicalCpu* cpu() const { return cpu_; }

  // KVM_RUN. Returns after an exit userspace must handle (run_state().exit_reason), or an
  // error: EIO once the VM is dead, EINTR after signal() (KVM_EXIT_INTR), EFAULT with a
  // memory-fault exit, whatever the vendor refuses (EINVAL for a TD vCPU that cannot run).
  // REQUIRES: the calling thread is bound to `cpu`; no other thread in run() of this vCPU.
  KvmResult<> run(LogicalCpu& cpu);

  // --- Requests and kicks (any thread) ------------------------------------------------------
  // kvm_make_request: the vCPU handles it before its next entry. No kick.
  void make_request(KvmRequest r);
  bool test_request(KvmRequest r) const;
  // kvm_check_request: test and clear. REQUIRES: the vCPU's own thread.
  bool check_request(KvmRequest r);
  bool has_requests() const { return requests_.load(std::memory_order_acquire) != 0; }
  // kvm_vcpu_kick: out of guest mode soon; does not wait.
  void kick();
  // A signal for the vCPU's thread: KVM_RUN returns EINTR (KVM_EXIT_INTR) at its next check
  // (before entry, or after the exit the kick causes).
  void signal();
  bool signal_pending() const { return signal_.load(std::memory_order_acquire) != 0; }
  VcpuMode mode() const { return mode_of(mode_.load(std::memory_order_acquire)); }
  // The mode and how many times the vCPU has left guest mode, read together: what a
  // checker compares to see that a vCPU in the guest has left it since.
  std::pair<VcpuMode, uint64_t> mode_and_exits() const {
    const uint64_t w = mode_.load(std::memory_order_seq_cst);
    return {mode_of(w), exits_of(w)};
  }

  // kvm_make_all_cpus_request's per-vCPU half: set `r`, kick if in guest mode.
  // Returns: the mode word seen, for wait_exited() when the request waits.
  uint64_t request_and_kick(KvmRequest r);
  // Waits until the vCPU left the guest-mode run seen in `word` (no wait if it was outside).
  void wait_exited(uint64_t word) const;

  // vcpu->arch.hv_root_tdp: the root this vCPU last loaded, as KVM-on-Hyper-V tracks it.
  // REQUIRES: the VM's HvRootTdp lock held (kvm/hyperv/ is the only user).
  Hpa hv_root_tdp() const { return hv_root_tdp_; }
  void set_hv_root_tdp(Hpa root) { hv_root_tdp_ = root; }

  // A vendor's vcpu_run may give up before entering (TDX while removals block entry); it
  // ran with the mode IN_GUEST_MODE all the same, and the loop sets it back.

 private:
  static VcpuMode mode_of(uint64_t word) { return static_cast<VcpuMode>(word & 3); }
  static uint64_t exits_of(uint64_t word) { return word >> 2; }
  // One vcpu_enter_guest: > 0 go on, 0 to userspace, < 0 -errno.
  int enter_guest(LogicalCpu& cpu);
  // Requests before entry. < 0: fail KVM_RUN; 0 return to userspace; > 0 go on.
  int process_requests();
  void load(LogicalCpu& cpu);

  KvmVm& vm_;
  KvmX86Ops& ops_;
  const int id_;
  VcpuMmu mmu_;
  KvmRun run_;
  VcpuStats stats_;
  std::unique_ptr<VendorVcpu> vendor_;
  LogicalCpu* cpu_ = nullptr;      // written by run()'s thread only
  Hpa hv_root_tdp_{~uint64_t{0}};  // under the VM's HvRootTdp lock
  // exits << 2 | VcpuMode: the mode and how many times the vCPU has left guest mode.
  AtomicWord mode_;
  AtomicWord requests_;
  AtomicWord signal_;
};

}  // namespace tdxsim
