// TD exit handling: tdx_handle_exit's validation order and the EPT-violation handler
// (kvm-tdx-mmu.md §2.6).
#include <thread>

#include "base/check.h"
#include "base/fault_injection.h"
#include "base/sched.h"
#include "kvm/vmx/tdx.h"
#include "tdx_module/td_exit.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {

namespace {

// VMX basic exit reason bit 31: VM entry failed.
constexpr uint32_t kFailedVmEntry = uint32_t{1} << 31;
// EPT-violation exit qualification bits (SDM Table 28-7).
constexpr uint64_t kEptQualWrite = uint64_t{1} << 1;
constexpr uint64_t kEptQualFetch = uint64_t{1} << 2;
constexpr uint64_t kEptQualEntryRwx = uint64_t{7} << 3;
// VMX exit reason 64: an SMI outside SMM (EXIT_REASON_OTHER_SMI).
constexpr uint16_t kExitReasonOtherSmi = 6;

bool is_nmi(uint64_t intr_info) {
  return (intr_info & 0x8000'0700) == 0x8000'0200;
}

}  // namespace

const char* to_string(TdxExitHandler h) {
  switch (h) {
    case TdxExitHandler::kNmi:
      return "NMI";
    case TdxExitHandler::kTdvmcall:
      return "TDVMCALL";
    case TdxExitHandler::kEptViolation:
      return "EPT violation";
  }
  return "?";
}

void TdxOps::trace_dispatch(KvmVcpu& vcpu, TdxExitHandler handler, Gpa gpa) {
  exit_dispatch_trace.emit_lazy([&] {
    return TdxExitDispatchEvent{to_tdx(vcpu.vm()).tdr_, vcpu.id(), handler,
                                to_tdx(vcpu).vp_enter_ret_, gpa};
  });
}

int TdxOps::unhandled_exit(KvmVcpu& vcpu) {
  TdxVcpu& tdx = to_tdx(vcpu);
  KvmRun& run = vcpu.run_state();
  run.exit_reason = KvmExitReason::kInternalError;
  run.internal.suberror = kKvmInternalErrorUnexpectedExitReason;
  run.internal.ndata = 2;
  run.internal.data[0] = tdx.vp_enter_ret_;
  run.internal.data[1] = tdx.last_entry_cpu_;
  return 0;
}

// tdx_handle_exit.
int TdxOps::handle_exit(KvmVcpu& vcpu, ExitFastpath fastpath) {
  TdxVcpu& tdx = to_tdx(vcpu);
  Kvm& kvm = vcpu.kvm();
  if (fastpath == ExitFastpath::kExitHandled || fastpath == ExitFastpath::kReenterGuest) return 1;
  const uint64_t ret = tdx.vp_enter_ret_;
  const uint32_t reason = tdx.exit_reason_;

  // The SEAMCALL instruction failed (#UD, #GP, VMfailInvalid): KVM cannot run TDs at all.
  if ((ret & linux_status::kSwError) == linux_status::kSwError) {
    kvm.bug_on(true, "TDH.VP.ENTER failed as an instruction");
    return unhandled_exit(vcpu);
  }
  if (reason != TdxVcpu::kInvalidExitReason && (reason & kFailedVmEntry) != 0) {
    KvmRun& run = vcpu.run_state();
    run.exit_reason = KvmExitReason::kFailEntry;
    run.fail_entry_hardware_reason = reason;
    run.fail_entry_cpu = tdx.last_entry_cpu_;
    return 0;
  }
  const uint16_t basic = static_cast<uint16_t>(reason);
  if ((is_error(ret) || is_non_recoverable(ret)) &&
      !(reason != TdxVcpu::kInvalidExitReason &&
        basic == static_cast<uint16_t>(VmxExitReason::kTripleFault))) {
    return unhandled_exit(vcpu);
  }
  if (reason == TdxVcpu::kInvalidExitReason) return unhandled_exit(vcpu);

  switch (static_cast<VmxExitReason>(basic)) {
    case VmxExitReason::kTripleFault:
      vcpu.run_state().exit_reason = KvmExitReason::kShutdown;
      return 0;
    case VmxExitReason::kExceptionNmi:
      // The NMI went to the host's handler right after the exit; any other exception
      // reaching the host is one KVM cannot reflect into a TD.
      if (is_nmi(tdx.regs_.r9)) return 1;
      vcpu.run_state().exit_reason = KvmExitReason::kException;
      return 0;
    case VmxExitReason::kExternalInterrupt:
    case VmxExitReason::kPreemptionTimer:
      return 1;
    case VmxExitReason::kEptViolation:
      trace_dispatch(vcpu, TdxExitHandler::kEptViolation, Gpa{tdx.regs_.r8});
      return handle_ept_violation(vcpu);
    case VmxExitReason::kTdcall:
      trace_dispatch(vcpu, TdxExitHandler::kTdvmcall);
      return handle_tdvmcall(vcpu);
    case VmxExitReason::kEptMisconfig:
      // Shared EPT's MMIO SPTEs make the guest take a #VE; a misconfig exit is a KVM bug.
      kvm.bug_on(true, "EPT misconfig exit from a TD");
      return -static_cast<int>(Errno::kEio);
    default:
      if (basic == kExitReasonOtherSmi) return 1;
      return unhandled_exit(vcpu);
  }
}

// tdx_handle_ept_violation.
int TdxOps::handle_ept_violation(KvmVcpu& vcpu) {
  TdxVcpu& tdx = to_tdx(vcpu);
  TdxVm& td = to_tdx(vcpu.vm());
  Kvm& kvm = vcpu.kvm();
  KvmMmu& mmu = vcpu.vm().mmu();
  const Gpa gpa{tdx.regs_.r8};
  const uint64_t qual = tdx.regs_.rcx;
  const bool is_private = (gpa.gfn().raw() & mmu.gfn_direct_bits().raw()) == 0;
  uint64_t error_code = 0;
  bool local_retry = false;
  if (is_private) {
    // The guest touched a page it never accepted: with SEPT_VE_DISABLE it cannot be told
    // by a #VE, and nothing KVM maps would help.
    const auto eeq = static_cast<ExtExitQualType>(tdx.regs_.rdx & 0xF);
    if (eeq == ExtExitQualType::kPendingEptViolation && (qual & kEptQualEntryRwx) == 0) {
      kvm.bug_on(true, "a TD accessed a private page it has not accepted");
      return -static_cast<int>(Errno::kEio);
    }
    // Private pages are always RWX; a write fault also avoids a COW page (one HPA at two
    // GPAs would make AUG fail).
    error_code = kPferrWrite;
    // T1 restores the handler that answered a busy private fault by entering the guest
    // again to fault again, as often as it takes.
    local_retry = !host_.platform().faults().bug(BugId::T1);
  } else {
    if (kvm.bug_on((qual & kEptQualFetch) != 0, "a TD fetched from shared memory")) {
      return -static_cast<int>(Errno::kEio);
    }
    if ((qual & kEptQualWrite) != 0) error_code |= kPferrWrite;
    if ((qual & kEptQualEntryRwx) != 0) error_code |= kPferrPresent;
  }

  FaultResult f = mmu.page_fault(vcpu.mmu(), gpa, error_code);
  // Retry inside KVM rather than re-entering: every TDH.VP.ENTER that faults again counts
  // toward the module's zero-step mitigation, which then takes the S-EPT lock.
  while (local_retry && f.ret == RetPf::kRetry) {
    if (vcpu.has_requests() || vcpu.signal_pending() || kvm.vm_bugged()) break;
    if (vcpu.mmu().root == nullptr || TdpMmu::is_obsolete_root(vcpu.mmu().root)) break;
    td.stats_.local_fault_retries.add();
    sched_pause();
    f = mmu.page_fault(vcpu.mmu(), gpa, error_code);
  }
  switch (f.ret) {
    case RetPf::kFixed:
    case RetPf::kSpurious:
    case RetPf::kRetry:
      return 1;
    case RetPf::kEmulate:
      // The MMIO SPTE now in place makes the guest's next access a #VE; the guest asks for
      // the emulation by TDVMCALL.
      if (kvm.bug_on(is_private, "MMIO emulation of a private GPA")) {
        return -static_cast<int>(Errno::kEio);
      }
      return 1;
    default:
      break;
  }
  if (f.memory_fault) {
    KvmRun& run = vcpu.run_state();
    run.memory_fault = *f.memory_fault;
    run.exit_reason = KvmExitReason::kMemoryFault;
    return -static_cast<int>(Errno::kEfault);
  }
  return -static_cast<int>(f.error.value_or(Errno::kEio));
}

}  // namespace tdxsim
