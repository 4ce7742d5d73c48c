// What the VMX and SVM vendors share for a VM without private-memory hardware: the vCPU's
// registers, program and last exit, and the exits KVM completes in userspace — MMIO
// (x86_emulate_instruction ending in KVM_EXIT_MMIO), the KVM hypercalls
// (kvm_emulate_hypercall: KVM_HC_MAP_GPA_RANGE becomes KVM_EXIT_HYPERCALL), HLT
// (kvm_emulate_halt without an in-kernel local APIC) — with their completion on the next
// KVM_RUN (vcpu->arch.complete_userspace_io). Only how an exit is decoded differs by vendor
// (EPT violation / misconfiguration or #NPF, VMCALL or VMMCALL); the handling is here, once.
//
// Thread safety: everything here runs on the vCPU's thread.
#pragma once

#include <cstdint>

#include "base/atomic.h"
#include "kvm/vcpu.h"
#include "platform/guest_program.h"
#include "platform/vm_exit.h"

namespace tdxsim {

// The vendor-neutral half of a VMX or SVM vCPU (the VMCS or VMCB is the vendor's).
struct X86Vcpu : VendorVcpu {
  GuestState regs;
  GuestProgram* program = nullptr;
  VmExit exit;
  // What the next KVM_RUN must finish first: an MMIO read's value for a register, or a
  // hypercall's return value.
  enum class Pending : uint8_t { kNone, kMmioRead, kHypercall } pending = Pending::kNone;
  Gpr mmio_dest = Gpr::kRax;

  // kvm_skip_emulated_instruction: past the instruction of the last exit.
  void skip_instruction() { regs.rip += exit.insn.length; }
};

// The exits both vendors count the same way.
struct X86ExitStats {
  Counter mmio_exits, hypercalls, hlt_exits, unhandled_exits;
};

// kvm_mmu_page_fault for a TDP fault at `gpa` with the PFERR_* `error_code`, and what its
// verdict means for the exit: > 0 re-enter, 0 to userspace (MMIO emulated out), < 0 fail
// KVM_RUN (with a memory-fault exit when the MMU gave one).
int x86_tdp_page_fault(KvmVcpu& vcpu, X86Vcpu& v, X86ExitStats& stats, Gpa gpa,
                       uint64_t error_code);

// The access at the exit went to a GPA without RAM: KVM_EXIT_MMIO (x86_emulate_instruction
// decodes the instruction; the platform hands it over with the exit). A load completes on
// the next KVM_RUN; anything but a load or store is an emulation failure.
int x86_emulate_mmio(KvmVcpu& vcpu, X86Vcpu& v, X86ExitStats& stats);

// kvm_emulate_hypercall for VMCALL / VMMCALL: KVM_HC_MAP_GPA_RANGE goes to userspace for a
// VM with private memory; anything else is -KVM_ENOSYS in RAX.
int x86_emulate_hypercall(KvmVcpu& vcpu, X86Vcpu& v);

// kvm_emulate_halt: no in-kernel local APIC, so the halt goes to userspace, past the HLT.
int x86_emulate_halt(KvmVcpu& vcpu, X86Vcpu& v, X86ExitStats& stats);

// kvm_prepare_unexpected_reason_exit: KVM_EXIT_INTERNAL_ERROR with the exit reason and CPU.
int x86_unexpected_exit(KvmVcpu& vcpu, uint32_t reason, X86ExitStats& stats);

// complete_userspace_io: finishes the exit userspace just handled (always re-enters).
int x86_complete_userspace_io(KvmVcpu& vcpu, X86Vcpu& v);

}  // namespace tdxsim
