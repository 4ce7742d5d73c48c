// The ucall word's encoding and its host-side decoder.
#include "guest/ucall.h"

#include <fmt/format.h>

#include "base/check.h"

namespace tdxsim::guest {

namespace {
// Either possible TD shared bit: the decoder does not know the VM's GPAW.
constexpr uint64_t kAnySharedBit = (uint64_t{1} << 47) | (uint64_t{1} << 51);
}  // namespace

const char* to_string(UcallCmd cmd) {
  switch (cmd) {
    case UcallCmd::kSync:
      return "SYNC";
    case UcallCmd::kDone:
      return "DONE";
    case UcallCmd::kAssert:
      return "ASSERT";
  }
  return "?";
}

uint64_t encode_ucall(UcallCmd cmd, uint64_t arg) {
  TDXSIM_CHECK(arg >> kUcallArgBits == 0, "ucall argument {:#x} does not fit 56 bits", arg);
  return static_cast<uint64_t>(cmd) | (arg << 8);
}

std::optional<Ucall> decode_ucall(Gpa gpa, uint64_t data, Gpa ucall_gpa) {
  if ((gpa.raw() & ~kAnySharedBit) != (ucall_gpa.raw() & ~kAnySharedBit)) return std::nullopt;
  const auto cmd = static_cast<UcallCmd>(data & 0xFF);
  switch (cmd) {
    case UcallCmd::kSync:
    case UcallCmd::kDone:
    case UcallCmd::kAssert:
      return Ucall{cmd, data >> 8};
  }
  return std::nullopt;
}

std::string to_string(const GuestFailure& f) {
  return fmt::format("{} at GPA {:#x}: expected {:#x}, got {:#x}", f.what, f.gpa.raw(), f.expected,
                     f.actual);
}

}  // namespace tdxsim::guest
