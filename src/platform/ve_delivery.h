// Delivering a virtualization exception (#VE, vector 20) to a guest: the CPU does it for an
// EPT violation whose entry has suppress-#VE clear, and the TDX module does it itself for a
// TD's access to a PENDING page (shared/spec/tdx-module-abi.md §8.3). Both must leave the
// guest in the same state, so both go through here.
#pragma once

#include <cstdint>

#include "base/addr.h"
#include "platform/guest_context.h"
#include "platform/guest_program.h"

namespace tdxsim {

// Writes the #VE information area, pushes the interrupted RIP (the faulting instruction
// re-executes after the handler's IRET) and jumps to the program's #VE handler.
// Returns: false, changing nothing, while the area is still busy with an earlier #VE (the
// guest has not read it): the CPU then takes a VM exit instead (SDM Vol. 3 §25.5.7.1).
inline bool deliver_ve(VeInfoArea& ve, GuestState& state, const GuestProgram& program,
                       uint32_t exit_reason, uint64_t qualification, uint64_t gla, Gpa gpa) {
  if (ve.busy == VeInfoArea::kBusy) return false;
  ve = VeInfoArea{exit_reason, VeInfoArea::kBusy, qualification, gla, gpa.raw(), 0};
  state.exception_stack.push_back(state.rip);
  state.rip = program.ve_handler_rip();
  return true;
}

}  // namespace tdxsim
