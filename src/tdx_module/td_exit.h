// The registers of a TD exit, as TDH.VP.ENTER returns them to the host (TDX module
// src/td_transitions/td_exit.c, async_tdexit_internal; include/tdx_api_defs.h,
// td_exit_qualification_t; shared/spec/tdx-module-abi.md §1.4), and the GPR numbering the
// TDVMCALL register masks use.
#pragma once

#include <cstdint>

#include "base/addr.h"
#include "platform/guest_program.h"
#include "platform/seamcall.h"
#include "platform/vm_exit.h"

namespace tdxsim {

// RDX bits 3:0 of an asynchronous TD exit: what the extended exit qualification says
// (module vmx_eeq_type_t). ABI values.
enum class ExtExitQualType : uint8_t {
  kNone = 0,
  kAccept = 1,
  kGpaDetails = 2,
  kMsrLoadFailure = 3,
  kXstateLoadFailure = 4,
  kAttrWr = 5,
  kPendingEptViolation = 6,
};

// The EPT-violation qualification of a data write (SDM Table 28-7 bit 1) on an entry that
// grants nothing: what the module reports for its own, faked EPT violations (ACCEPT exits,
// the zero-step filter; rules §1).
inline constexpr uint64_t kEptQualDataWrite = 0x2;

// An asynchronous TD exit: RAX = TDX_SUCCESS | exit reason, RCX = exit qualification
// (bits 31:0; the VM index in 33:32 is 0, there are no L2 VMs), RDX = extended exit
// qualification type | info << 32, R8 = GPA, R9 = VM-exit interruption information; every
// other GPR is 0.
inline void set_async_td_exit(SeamcallRegs& regs, VmxExitReason reason, uint64_t qualification,
                              ExtExitQualType eeq_type, uint32_t eeq_info, Gpa gpa,
                              uint32_t intr_info) {
  regs = SeamcallRegs{};
  regs.rax = static_cast<uint64_t>(reason);
  regs.rcx = qualification & 0xFFFF'FFFF;
  regs.rdx = static_cast<uint64_t>(eeq_type) | (uint64_t{eeq_info} << 32);
  regs.r8 = gpa.raw();
  regs.r9 = intr_info;
}

// The SEAMCALL register of GPR number `i` in the x86 encoding order the TDVMCALL masks use
// (0 RAX, 1 RCX, 2 RDX, 3 RBX, 4 RSP, 5 RBP, 6 RSI, 7 RDI, 8-15 R8-R15).
// Returns: nullptr for RSP, which never travels.
inline uint64_t* seamcall_gpr(SeamcallRegs& r, unsigned i) {
  switch (i) {
    case 0: return &r.rax;
    case 1: return &r.rcx;
    case 2: return &r.rdx;
    case 3: return &r.rbx;
    case 5: return &r.rbp;
    case 6: return &r.rsi;
    case 7: return &r.rdi;
    case 8: return &r.r8;
    case 9: return &r.r9;
    case 10: return &r.r10;
    case 11: return &r.r11;
    case 12: return &r.r12;
    case 13: return &r.r13;
    case 14: return &r.r14;
    case 15: return &r.r15;
    default: return nullptr;
  }
}

// The module completed the instruction at RIP for the guest (a TDCALL it emulated): the
// guest goes on after it, as after any retired instruction.
inline void retire_guest_insn(GuestState& gs, const GuestInsn& insn) {
  gs.rip += insn.length;
  gs.retired++;
}

}  // namespace tdxsim
