// The answers the S-EPT memory leaves share (mem_leaves.cc, mem_resize_leaves.cc,
// debug_leaves.cc): an error that carries the acted-on entry's details, BUSY on a locked
// entry, and the TLB-tracking test of a block (shared/spec/tdx-module-rules.md §1, A3;
// tdx-module-abi.md §3.2 footnote 1, §5).
#pragma once

#include <atomic>
#include <cstdint>

#include "base/addr.h"
#include "platform/key_id.h"
#include "platform/seamcall.h"
#include "tdx_module/pamt.h"
#include "tdx_module/sept_entry.h"
#include "tdx_module/sept_state.h"
#include "tdx_module/sept_walk.h"
#include "tdx_module/td.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {

// An S-EPT error that carries the entry's details (rules A3): RCX = its architectural
// view, RDX = `level` | state. Returns: `status`|RCX.
inline uint64_t entry_error(SeamcallRegs& regs, TdxStatus status, SeptEntry e, Level level,
                            const PhysAddrLayout& l) {
  regs.rcx = e.arch_view(l);
  regs.rdx = e.arch_detail(level);
  return with_operand(status, TdxOperand::kRcx);
}

// Another host (or a guest's ACCEPT) holds the walked entry's lock: BUSY|RCX with the
// entry as walked.
inline uint64_t entry_busy(SeamcallRegs& regs, const SeptWalkResult& walk,
                           const PhysAddrLayout& l) {
  return entry_error(regs, TdxStatus::kOperandBusy, walk.entry, walk.level, l);
}

// Whether the block that recorded `bepoch` is TLB-tracked in `td` now.
inline bool tracked(const Td& td, uint64_t bepoch) {
  const uint64_t epoch = td.td_epoch.load(std::memory_order_acquire);
  const uint64_t refs = td.refcount[bepoch & 1].load(std::memory_order_acquire);
  return is_tlb_tracked(bepoch, epoch, static_cast<uint16_t>(refs));
}

// Whether an entry in `s` may change only once blocked and tracked: while the TD may be
// running (RUNNABLE), for every state a vCPU may hold translations under.
inline bool needs_block_and_track(const Td& td, SeptState s) {
  return tlb_tracking_required(s) && td.op_state == TdOpState::kRunnable;
}

// PAGE.REMOVE, SEPT.REMOVE, RELOCATE, DEMOTE and PROMOTE, where needs_block_and_track():
// an unblocked entry answers GPA_RANGE_NOT_BLOCKED|RCX with details, an untracked block
// TLB_TRACKING_NOT_DONE|RCX without (A3, A4). `bepoch` is the PAMT BEPOCH of what the
// entry maps (the page, or the child S-EPT page of a non-leaf).
// Returns: raw(kSuccess) when the entry may change.
inline uint64_t check_blocked_and_tracked(SeamcallRegs& regs, const Td& td, SeptEntry e,
                                          Level level, uint64_t bepoch,
                                          const PhysAddrLayout& l) {
  if (!needs_block_and_track(td, e.state())) return raw(TdxStatus::kSuccess);
  if (!is_blocked(e.state())) return entry_error(regs, TdxStatus::kGpaRangeNotBlocked, e, level, l);
  if (!tracked(td, bepoch)) return with_operand(TdxStatus::kTlbTrackingNotDone, TdxOperand::kRcx);
  return raw(TdxStatus::kSuccess);
}

}  // namespace tdxsim
