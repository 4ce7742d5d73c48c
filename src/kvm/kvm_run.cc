#include "kvm/kvm_run.h"

namespace tdxsim {

const char* to_string(KvmExitReason r) {
  switch (r) {
    case KvmExitReason::kUnknown:
      return "KVM_EXIT_UNKNOWN";
    case KvmExitReason::kException:
      return "KVM_EXIT_EXCEPTION";
    case KvmExitReason::kIo:
      return "KVM_EXIT_IO";
    case KvmExitReason::kHypercall:
      return "KVM_EXIT_HYPERCALL";
    case KvmExitReason::kHlt:
      return "KVM_EXIT_HLT";
    case KvmExitReason::kMmio:
      return "KVM_EXIT_MMIO";
    case KvmExitReason::kShutdown:
      return "KVM_EXIT_SHUTDOWN";
    case KvmExitReason::kFailEntry:
      return "KVM_EXIT_FAIL_ENTRY";
    case KvmExitReason::kIntr:
      return "KVM_EXIT_INTR";
    case KvmExitReason::kInternalError:
      return "KVM_EXIT_INTERNAL_ERROR";
    case KvmExitReason::kSystemEvent:
      return "KVM_EXIT_SYSTEM_EVENT";
    case KvmExitReason::kMemoryFault:
      return "KVM_EXIT_MEMORY_FAULT";
    case KvmExitReason::kTdx:
      return "KVM_EXIT_TDX";
  }
  return "?";
}

}  // namespace tdxsim
