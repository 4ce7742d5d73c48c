// The TD guest's #VE handler: a coroutine of its own, started each time the CPU (or the TDX
// module, for a PENDING page) delivers a #VE, and ended when its IRET retires.
//
//   TDG.VP.VEINFO.GET (which also frees the information area for the next #VE), then by the
//   exit reason and GPA:
//   - EPT violation on a private GPA: a page the host added but the guest has not accepted
//     (the module raises the #VE only for PENDING pages, and only when the TD's
//     SEPT_VE_DISABLE attribute is clear): ACCEPT its 4K page and return — the interrupted
//     access runs again;
//   - EPT violation on a shared GPA: MMIO (no memslot; the shared EPT entry has suppress-#VE
//     clear). The interrupted load or store becomes TDG.VP.VMCALL<#VE.RequestMMIO>
//     (R11 = 48, R12 = 8 bytes, R13 = 0 read / 1 write, R14 = GPA, R15 = the value written);
//     a read's value (R11) goes to the load's destination register; the saved RIP moves past
//     the instruction;
//   - anything else fails the guest (ucall ASSERT made directly as a TDVMCALL, then HLT).
//
// It clobbers RAX, RCX, RDX and R8-R15 without restoring them; see guest.h for why that is
// safe for code written with Guest's primitives.
#pragma once

#include "guest/guest.h"
#include "guest/task.h"

namespace tdxsim::guest {

GuestTask ve_handler(Guest& g);

}  // namespace tdxsim::guest
