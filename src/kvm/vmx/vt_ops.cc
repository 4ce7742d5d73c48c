#include "kvm/vmx/vt_ops.h"

namespace tdxsim {

KvmResult<> VtOps::vm_init(KvmVm& vm) {
  if (vm.kvm().type() == VmType::kTdx && tdx_ == nullptr) return std::unexpected(Errno::kEinval);
  return of(vm).vm_init(vm);
}

}  // namespace tdxsim
