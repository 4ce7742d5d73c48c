// VmType: the x86 VM types of KVM_CREATE_VM (KVM_X86_*_VM, arch/x86/include/uapi/asm/kvm.h).
//
// The type decides what the MMU must do differently: whether a gfn can be private (memory
// attributes and guest_memfd), whether private memory is mirrored into tables KVM cannot
// touch (TDX's Secure EPT), and how a memslot deletion zaps. The values are the ABI's.
#pragma once

#include <cstdint>

namespace tdxsim {

enum class VmType : uint8_t {
  kDefault = 0,      // KVM_X86_DEFAULT_VM
  kSwProtected = 1,  // KVM_X86_SW_PROTECTED_VM: private memory without hardware protection
  kTdx = 5,          // KVM_X86_TDX_VM
};

const char* to_string(VmType t);

// kvm_arch_has_private_mem: gfns may be private (guest_memfd slots, the PRIVATE attribute).
constexpr bool has_private_mem(VmType t) {
  return t != VmType::kDefault;
}
// kvm_has_mirrored_tdp: private memory lives in external (S-EPT) tables behind mirror roots.
constexpr bool has_mirrored_tdp(VmType t) {
  return t == VmType::kTdx;
}
// kvm_arch_has_readonly_mem: a VM whose state the host cannot see (TDX) has no read-only
// memslots: KVM could not emulate the faulting write.
constexpr bool has_readonly_mem(VmType t) {
  return t != VmType::kTdx;
}
// kvm_arch_nr_memslot_as_ids: private-memory VMs have no SMM address space.
constexpr unsigned nr_memslot_as_ids(VmType t) {
  return has_private_mem(t) ? 1 : 2;
}

}  // namespace tdxsim
