// VM exits as the hardware reports them: VMX basic exit reasons (SDM Vol. 3 Appendix C)
// and SVM exit codes (APM Vol. 2 Appendix C). The values are architectural: do not change
// them.
#pragma once

#include <cstdint>

#include "base/addr.h"
#include "platform/guest_program.h"

namespace tdxsim {

enum class VmxExitReason : uint16_t {
  kExceptionNmi = 0,
  kExternalInterrupt = 1,
  kTripleFault = 2,
  kHlt = 12,
  kVmcall = 18,
  kEptViolation = 48,
  kEptMisconfig = 49,
  kPreemptionTimer = 52,
  kPmlFull = 62,
  kTdcall = 77,
};
const char* to_string(VmxExitReason r);

enum class SvmExitCode : uint32_t {
  kIntr = 0x060,
  kNmi = 0x061,
  kHlt = 0x078,
  kVmmcall = 0x081,
  kNpf = 0x400,
};
const char* to_string(SvmExitCode c);

enum class GuestMode : uint8_t { kVmx, kSvm, kTd };
const char* to_string(GuestMode m);

// VM-exit interruption information for an NMI: valid (31) | type NMI (2 << 8) | vector 2.
inline constexpr uint32_t kIntrInfoNmi = 0x8000'0202;
// The same for a machine check: valid | type hardware exception (3 << 8) | vector 18.
inline constexpr uint32_t kIntrInfoMachineCheck = 0x8000'0312;

struct VmExit {
  GuestMode mode = GuestMode::kVmx;
  // VMX: the basic exit reason (bits 15:0 of the exit-reason field); SVM: EXITCODE.
  uint32_t reason = 0;
  // VMX: exit qualification; SVM: EXITINFO1 (the #NPF error code).
  uint64_t qualification = 0;
  // VMX: guest-physical address (EPT violation/misconfiguration); SVM: EXITINFO2.
  Gpa gpa;
  uint32_t intr_info = 0;  // VMX VM-exit interruption information
  uint64_t rip = 0;        // guest RIP at the exit
  GuestInsn insn;          // the instruction at RIP (what an emulator would decode)

  bool is(VmxExitReason r) const {
    return mode != GuestMode::kSvm && reason == static_cast<uint32_t>(r);
  }
  bool is(SvmExitCode c) const {
    return mode == GuestMode::kSvm && reason == static_cast<uint32_t>(c);
  }
};

}  // namespace tdxsim
