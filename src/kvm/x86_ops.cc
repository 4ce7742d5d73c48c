#include "kvm/x86_ops.h"

#include "base/check.h"
#include "kvm/kvm.h"
#include "kvm/kvm_vm.h"

namespace tdxsim {

const char* to_string(RemoteFlushHook h) {
  switch (h) {
    case RemoteFlushHook::kNone:
      return "none";
    case RemoteFlushHook::kHyperV:
      return "hv_flush_remote_tlbs";
    case RemoteFlushHook::kVt:
      return "vt_flush_remote_tlbs";
  }
  return "?";
}

void KvmX86Ops::flush_tlb_current(Kvm* kvm, int vcpu_id) {
  KvmVcpu* vcpu = kvm->vm() != nullptr ? kvm->vm()->vcpu(vcpu_id) : nullptr;
  TDXSIM_CHECK(vcpu != nullptr, "flush_tlb_current for vCPU {} that does not exist", vcpu_id);
  flush_tlb_current(*vcpu);
}

}  // namespace tdxsim
