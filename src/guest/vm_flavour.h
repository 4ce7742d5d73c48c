// What kind of VM a guest program runs in, as far as its code must care: a TD (TDCALLs,
// ACCEPT, the shared bit, MMIO through #VE) or not (plain VMX or a software-protected VM:
// KVM hypercalls, MMIO by EPT-violation exit), and where its ucalls go.
#pragma once

#include <cstdint>

#include "base/addr.h"

namespace tdxsim::guest {

// A GPA no memslot covers (just below 4 GiB), so the guest's write there is an MMIO exit.
inline constexpr Gpa kDefaultUcallGpa{0xFFFF'F000};

struct VmFlavour {
  bool td = false;
  // A TD's shared bit: GPAW - 1 (47 with 4-level EPT, 51 with 5-level). Unused otherwise.
  unsigned shared_bit = 47;
  // The ucall GPA without the shared bit; a TD writes it with the shared bit set.
  Gpa ucall_gpa = kDefaultUcallGpa;

  static VmFlavour vmx() { return VmFlavour{}; }
  static VmFlavour tdx(unsigned shared_bit = 47) { return VmFlavour{true, shared_bit}; }

  uint64_t shared_mask() const { return td ? uint64_t{1} << shared_bit : 0; }
  Gpa to_shared(Gpa gpa) const { return Gpa{gpa.raw() | shared_mask()}; }
  Gpa to_private(Gpa gpa) const { return Gpa{gpa.raw() & ~shared_mask()}; }
  bool is_shared(Gpa gpa) const { return (gpa.raw() & shared_mask()) != 0; }
};

}  // namespace tdxsim::guest
