// Guest code as the CPU sees it: an instruction at each RIP.
//
// A guest program is asked for the instruction at the current RIP every time the CPU is
// about to execute one. Nothing else moves RIP: an instruction that completes in guest mode
// retires (RIP += length); one that faults or exits leaves RIP where it was, so re-entry
// re-executes it — unless the host (or the TDX module) emulates it and skips it, exactly as
// KVM's skip_emulated_instruction does. Results come back the way hardware returns them: in
// registers (a load writes `dest`; TDCALL/VMCALL outputs are the ABI's registers).
//
// Thread safety: a program and its GuestState belong to the vCPU thread that runs them.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "base/addr.h"

namespace tdxsim {

enum class Gpr : uint8_t {
  kRax, kRcx, kRdx, kRbx, kRsp, kRbp, kRsi, kRdi,
  kR8, kR9, kR10, kR11, kR12, kR13, kR14, kR15,
};

struct GuestRegs {
  std::array<uint64_t, 16> gpr{};
  uint64_t& operator[](Gpr r) { return gpr[static_cast<size_t>(r)]; }
  uint64_t operator[](Gpr r) const { return gpr[static_cast<size_t>(r)]; }
};

enum class GuestInsnKind : uint8_t {
  kNop,
  kLoad,    // dest <- [gpa] (8 bytes)
  kStore,   // [gpa] <- value
  kFetch,   // an instruction fetch from gpa (a jump there and back): exercises X permission
  kVmcall,  // VMCALL / VMMCALL: exits to the host
  kTdcall,  // TDCALL: exits to the TDX module in a TD; #UD elsewhere (not modelled: exits)
  kHlt,
  kPause,
  kIret,    // return from the #VE handler to the interrupted RIP
  kMov,     // dest <- value (an immediate: how a program sets up TDCALL/VMCALL operands)
};
const char* to_string(GuestInsnKind k);

struct GuestInsn {
  GuestInsnKind kind = GuestInsnKind::kNop;
  Gpa gpa;             // memory operand
  uint64_t value = 0;  // store data
  Gpr dest = Gpr::kRax;
  uint8_t length = 4;  // bytes: what retirement adds to RIP
  bool user_mode = false;         // a CPL-3 access (EPT mode-based execute)
  bool paging_structure = false;  // a guest page-table access (a guest-physical mapping)

  bool is_memory() const {
    return kind == GuestInsnKind::kLoad || kind == GuestInsnKind::kStore ||
           kind == GuestInsnKind::kFetch;
  }
};

struct GuestState {
  uint64_t rip = 0;
  GuestRegs regs;
  // Return RIPs pushed by exception delivery (#VE) and popped by IRET.
  std::vector<uint64_t> exception_stack;
  uint64_t retired = 0;  // instructions retired in guest mode
};

// Where the guest's #VE handler starts and what it is told (SDM Vol. 3 §25.5.7.2).
inline constexpr uint8_t kVeVector = 20;

class GuestProgram {
 public:
  virtual ~GuestProgram() = default;
  // The instruction at state.rip. May read registers the previous instructions produced.
  virtual GuestInsn fetch(GuestState& state) = 0;
  // The RIP of the #VE handler (vector 20). Called when a #VE is delivered.
  virtual uint64_t ve_handler_rip() const = 0;
};

}  // namespace tdxsim
