// The SEAMCALL instruction and the host kernel's wrapper around it.
//
// SEAMCALL transfers to the SEAM module (the TDX module, a later layer) with the leaf number
// and operands in GPRs; the module answers with a completion status in RAX. The instruction
// itself can fail before the module runs, as hardware does:
//   #UD  — not in VMX operation / SEAM not enabled,
//   #GP  — e.g. CPL > 0,
//   VMfailInvalid (RFLAGS.CF=1) — no SEAM module loaded.
// Linux's seamcall wrapper (arch/x86/virt/vmx/tdx) turns these into software-defined
// statuses of class 0xFF, a class the module never uses. VMfailInvalid becomes
// 0x8000FF00FFFF0000 — whose low 16 bits read 0x0000, i.e. "exit reason 0: exception or
// NMI" to code that forgets to check the class first (seed 002).
#pragma once

#include <cstdint>

namespace tdxsim {

class LogicalCpu;

// GPRs of the SEAMCALL/TDCALL ABI (TDX module ABI spec: RAX leaf/status; RCX, RDX, R8-R15,
// RBX, RDI, RSI operands and outputs; RBP too for TDH.VP.ENTER, which passes a TDVMCALL's
// registers both ways). RSP never travels.
struct SeamcallRegs {
  uint64_t rax = 0, rcx = 0, rdx = 0, r8 = 0, r9 = 0, r10 = 0, r11 = 0, r12 = 0, r13 = 0,
           r14 = 0, r15 = 0, rbx = 0, rdi = 0, rsi = 0, rbp = 0;
};

enum class SeamcallInsnFault : uint8_t { kNone = 0, kUd = 1, kGp = 2, kVmFailInvalid = 3 };
const char* to_string(SeamcallInsnFault f);

// Linux's software-defined statuses (arch/x86/include/asm/shared/tdx_errno.h): bit 63 |
// class 0xFF, then the vector or the VMfailInvalid marker.
namespace linux_status {
inline constexpr uint64_t kSwError = 0x8000'FF00'0000'0000;
inline constexpr uint64_t kSeamcallVmFailInvalid = 0x8000'FF00'FFFF'0000;
inline constexpr uint64_t kSeamcallGp = kSwError | 13;
inline constexpr uint64_t kSeamcallUd = kSwError | 6;
}  // namespace linux_status

// What runs in SEAM mode. The TDX module implements it; it is entered with the CPU that
// executed SEAMCALL and returns with RAX holding the completion status.
class SeamModule {
 public:
  virtual ~SeamModule() = default;
  virtual void seamcall(LogicalCpu& cpu, SeamcallRegs& regs) = 0;
};

// The host kernel's wrapper: executes SEAMCALL on `cpu` (the calling thread must be bound
// to it) and returns RAX, with instruction failures mapped to the class-0xFF statuses.
// Registers are left as the module (or the failed instruction: untouched) left them.
uint64_t host_seamcall(LogicalCpu& cpu, SeamcallRegs& regs);

}  // namespace tdxsim
