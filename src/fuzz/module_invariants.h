// What must hold of the TDX module however hostile its host, checked after a fuzz input (and
// where an answer promises something, right after the answer). Each check that fails prints
// what it saw and aborts, so that libFuzzer keeps the input.
//
//   no_plaintext_leak   no TD's plaintext ever reached host-readable memory (HostMemory's
//                       own record; the host's writes into TD frames are its right and only
//                       poison them)
//   registries          the module's TDs and vCPUs are exactly its PT_TDR and PT_TDVPR pages
//   child_count         each TD's CHLDCNT is the 4K pages the PAMT assigns to it
//   pamt_balance        the invariant of check/pamt_balance.h: the PT_REG and PT_EPT pages a
//                       TD owns are exactly its S-EPT's leaves and tables — and each leaf
//                       and table names a page of that type
//   measured_intact     a page PAGE.ADD measured still holds that content wherever the S-EPT
//                       maps it, unless a leaf that may change it ran (HostWorld marks them)
//   accepted_zero       a page the guest has just accepted read zeros (FuzzGuest's suspects)
//   stale_private_frame a stale private translation a vCPU used still reached a frame its TD
//                       holds (HostWorld::stale_private_uses)
//   page_add_copy       PAGE.ADD's page holds what its source held
//
// The S-EPT is read as the checker of a real host could not: straight from memory with the
// TD's key. A table the host poisoned with its own key makes the census of that TD
// unreadable, and it is skipped (its entries are garbage to anyone).
#pragma once

#include "base/addr.h"
#include "platform/host_memory.h"
#include "platform/key_id.h"

namespace tdxsim::fuzz {

class HostWorld;

// Every check above but page_add_copy, on every TD the host knows.
void check_module_invariants(HostWorld& world);

// The zero checks of every attached guest: run after each TD entry.
void check_accepted_zero(HostWorld& world);

// REQUIRES: PAGE.ADD of `dst` for the TD with key `td_key`, from `src`, just succeeded.
void check_page_add_copy(const HostMemory& mem, Hpa dst, KeyId td_key, uint64_t src);

}  // namespace tdxsim::fuzz
