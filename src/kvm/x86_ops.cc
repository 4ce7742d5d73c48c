#include "kvm/x86_ops.h"

#include "base/check.h"
#include "kvm/kvm.h"
#include "kvm/kvm_vm.h"

namespace tdxsim {

void KvmX86Ops::flush_tlb_current(Kvm* kvm, int vcpu_id) {
  KvmVcpu* vcpu = kvm->vm() != nullptr ? kvm->vm()->vcpu(vcpu_id) : nullptr;
  TDXSIM_CHECK(vcpu != nullptr, "flush_tlb_current for vCPU {} that does not exist", vcpu_id);
  flush_tlb_current(*vcpu);
}

}  // namespace tdxsim
