// Invariant "pamt_balance": what the TDX module's PAMT assigns to a TD is exactly what its
// S-EPT holds. Every PT_REG entry owned by the TD is a page one S-EPT leaf maps, at that
// leaf's size (a 2M leaf is one 2M entry), and every PT_EPT entry it owns is one of its S-EPT
// table pages below the root (the root is a TDCS page) — so no private page or S-EPT page
// belongs to the TD without being reachable (leaked to it until teardown), and no leaf maps
// a page the PAMT does not hold for it. The module's own books, kept by every leaf that
// changes the S-EPT; frames are balanced at teardown by "frames_returned".
//
// Read at the quiescent points of "mirror_matches_sept", from the same S-EPT census and a
// scan of the PAMT entries ever assigned. Cost: the scan, once per TD at the end of a run.
#pragma once

#include <string>
#include <vector>

#include "base/addr.h"
#include "check/sept_census.h"

namespace tdxsim {

class Pamt;

// The disagreements between `pamt`'s entries owned by the TD whose TDR is at `tdr` and its
// S-EPT as `census` read it; empty when they balance, or when the census read nothing (the
// S-EPT unreadable: before KVM_TDX_INIT_VM, after the HKID release).
std::vector<std::string> pamt_imbalance(const Pamt& pamt, Hpa tdr, const SeptCensus& census);

}  // namespace tdxsim
