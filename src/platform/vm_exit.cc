#include "platform/vm_exit.h"

namespace tdxsim {

const char* to_string(VmxExitReason r) {
  switch (r) {
    case VmxExitReason::kExceptionNmi: return "EXCEPTION_NMI";
    case VmxExitReason::kExternalInterrupt: return "EXTERNAL_INTERRUPT";
    case VmxExitReason::kTripleFault: return "TRIPLE_FAULT";
    case VmxExitReason::kHlt: return "HLT";
    case VmxExitReason::kVmcall: return "VMCALL";
    case VmxExitReason::kEptViolation: return "EPT_VIOLATION";
    case VmxExitReason::kEptMisconfig: return "EPT_MISCONFIG";
    case VmxExitReason::kPreemptionTimer: return "PREEMPTION_TIMER";
    case VmxExitReason::kPmlFull: return "PML_FULL";
    case VmxExitReason::kTdcall: return "TDCALL";
  }
  return "VMX_EXIT_?";
}

const char* to_string(SvmExitCode c) {
  switch (c) {
    case SvmExitCode::kIntr: return "SVM_EXIT_INTR";
    case SvmExitCode::kNmi: return "SVM_EXIT_NMI";
    case SvmExitCode::kHlt: return "SVM_EXIT_HLT";
    case SvmExitCode::kVmmcall: return "SVM_EXIT_VMMCALL";
    case SvmExitCode::kNpf: return "SVM_EXIT_NPF";
  }
  return "SVM_EXIT_?";
}

const char* to_string(GuestMode m) {
  switch (m) {
    case GuestMode::kVmx: return "vmx";
    case GuestMode::kSvm: return "svm";
    case GuestMode::kTd: return "td";
  }
  return "?";
}

const char* to_string(GuestInsnKind k) {
  switch (k) {
    case GuestInsnKind::kNop: return "nop";
    case GuestInsnKind::kLoad: return "load";
    case GuestInsnKind::kStore: return "store";
    case GuestInsnKind::kFetch: return "fetch";
    case GuestInsnKind::kVmcall: return "vmcall";
    case GuestInsnKind::kTdcall: return "tdcall";
    case GuestInsnKind::kHlt: return "hlt";
    case GuestInsnKind::kPause: return "pause";
    case GuestInsnKind::kIret: return "iret";
    case GuestInsnKind::kMov: return "mov";
  }
  return "?";
}

}  // namespace tdxsim
