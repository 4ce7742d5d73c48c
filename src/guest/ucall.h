// ucall: how guest code talks to the test on the host (the KVM selftests' GUEST_SYNC,
// GUEST_DONE, GUEST_ASSERT), as one 8-byte MMIO write to the ucall GPA (VmFlavour), which no
// memslot covers. On a VMX guest it is an EPT-violation exit carrying the store; on a TD the
// write raises a #VE and the handler turns it into TDG.VP.VMCALL<#VE.RequestMMIO> (R14 the
// GPA with the shared bit, R15 the data). Either way the host decodes (GPA, data).
//
// The word: the command in bits 7:0, a 56-bit argument in bits 63:8 (SYNC: the stage; DONE:
// 0; ASSERT: an index into the program's failure records). The selftests pass a struct ucall
// in guest memory instead; tdxsim keeps the failure's details (message, GPA, expected and
// actual values) on the program object, where the host reads them by that index
// (Program::failure), so the MMIO word stays one word.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/addr.h"
#include "guest/vm_flavour.h"

namespace tdxsim::guest {

enum class UcallCmd : uint8_t { kSync = 1, kDone = 2, kAssert = 3 };
const char* to_string(UcallCmd cmd);

inline constexpr unsigned kUcallArgBits = 56;

struct Ucall {
  UcallCmd cmd = UcallCmd::kSync;
  uint64_t arg = 0;
  bool operator==(const Ucall&) const = default;
};

// REQUIRES: arg < 2^56 (checked).
uint64_t encode_ucall(UcallCmd cmd, uint64_t arg);

// The ucall a guest's MMIO write of `data` to `gpa` stands for; nullopt when `gpa` is not the
// ucall GPA or the word is no ucall. `gpa` may carry a TD's shared bit (47 or 51) or not:
// KVM strips it, the raw TDVMCALL exit (R14) has it.
std::optional<Ucall> decode_ucall(Gpa gpa, uint64_t data, Gpa ucall_gpa = kDefaultUcallGpa);

// What a failed guest assertion recorded (the selftests' ucall struct's text and values).
struct GuestFailure {
  std::string what;
  Gpa gpa;
  uint64_t expected = 0;
  uint64_t actual = 0;
};
std::string to_string(const GuestFailure& f);

}  // namespace tdxsim::guest
