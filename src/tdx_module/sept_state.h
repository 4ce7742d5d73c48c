// Which memory leaf may act on an S-EPT entry in which state, and the state classes the
// leaves test (shared/spec/tdx-module-abi.md §3.2; TDX module include/auto_gen/
// sept_state_lookup.c: seamcall_sept_state_lookup, tdcall_sept_state_lookup and
// sept_special_flags_lookup, identical for these rows and states in 1.5 and later).
//
// The table is the module's first filter only: a leaf whose state is rejected here answers
// TDX_EPT_ENTRY_STATE_INCORRECT with the entry's details. Some leaves look again:
//   - REMOVE, SEPT.REMOVE, RELOCATE, DEMOTE, PROMOTE are admitted on unblocked entries, but
//     while the op_state requires TLB tracking they demand a blocked and tracked entry;
//   - SEPT.ADD is admitted on NL_MAPPED, which only version 1 with ALLOW_EXISTING accepts;
//   - RANGE.BLOCK is refused on blocked entries here, but the leaf answers those with the
//     informational TDX_GPA_RANGE_ALREADY_BLOCKED (is_blocked()) before consulting it;
//   - ACCEPT is refused on MAPPED here, and the leaf answers TDX_PAGE_ALREADY_ACCEPTED.
#pragma once

#include <cstdint>

#include "tdx_module/sept_entry.h"

namespace tdxsim {

// The SEAMCALL leaves that consult the S-EPT state table, with their leaf numbers. Values
// are ABI (the same numbers as SeamcallLeaf in seamcall_leaf.h).
enum class SeptLeaf : uint16_t {
  kMemPageAdd = 2,
  kMemSeptAdd = 3,
  kMemPageRelocate = 5,
  kMemPageAug = 6,
  kMemRangeBlock = 7,
  kMemRd = 12,
  kMemWr = 14,
  kMemPageDemote = 15,
  kMrExtend = 16,
  kMemPagePromote = 23,
  kMemSeptRd = 25,
  kMemPageRemove = 29,
  kMemSeptRemove = 30,
  kMemRangeUnblock = 39,
};

// The TDCALL leaf that does (TDG.MEM.PAGE.ACCEPT). ABI value.
inline constexpr uint16_t kSeptTdcallAccept = 6;

// Returns: whether SEAMCALL leaf `leaf` admits an entry in state `s`. False for every leaf
// that has no row (leaves that never act on an S-EPT entry).
// REQUIRES: `s` is an L1 S-EPT state (not an L2 one; checked).
bool sept_leaf_allowed(uint16_t leaf, SeptState s);
inline bool sept_leaf_allowed(SeptLeaf leaf, SeptState s) {
  return sept_leaf_allowed(static_cast<uint16_t>(leaf), s);
}
// The same for TDCALL leaves: only TDG.MEM.PAGE.ACCEPT (6) has a row among the leaves
// tdxsim models.
bool sept_tdcall_allowed(uint16_t leaf, SeptState s);

// State classes (module sept_special_flags_lookup). REQUIRES: an L1 state (checked).
//   tlb_tracking_required: leaving the state needs the TLB tracking of a block (every
//     state a vCPU may have cached a translation for or under: not FREE, REMOVED, nor the
//     two exported-and-clean blocked-for-writing states).
//   is_blocked: NL_BLOCKED, BLOCKED, PENDING_BLOCKED (any_blocked; not BLOCKEDW).
//   is_pending: PENDING and every pending migration form (any_pending).
//   is_guest_accessible_leaf: a leaf the guest can read (MAPPED and the migration forms
//     of it, blocked-for-writing ones included).
bool tlb_tracking_required(SeptState s);
bool is_blocked(SeptState s);
bool is_pending(SeptState s);
bool is_guest_accessible_leaf(SeptState s);
// Leaf states by the state alone (the entry's PS bit says the same).
bool is_leaf_state(SeptState s);

// The state TDH.MEM.RANGE.BLOCK / RANGE.UNBLOCK turn `s` into: MAPPED ↔ BLOCKED,
// PENDING ↔ PENDING_BLOCKED, NL_MAPPED ↔ NL_BLOCKED.
// REQUIRES: `s` is one of the three on the respective side (checked).
SeptState blocked_state(SeptState s);
SeptState unblocked_state(SeptState s);

}  // namespace tdxsim
