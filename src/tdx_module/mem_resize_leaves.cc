// The leaves that change how a private page is mapped without changing what the guest
// sees: TDH.MEM.PAGE.DEMOTE (split a 2M/1G leaf into 512 smaller ones under a new S-EPT
// page), TDH.MEM.PAGE.PROMOTE (merge 512 contiguous leaves back, freeing their S-EPT page)
// and TDH.MEM.PAGE.RELOCATE (move a 4K page's contents to another host page). Module
// handlers: intel/tdx-module src/vmm_dispatcher/api_calls/tdh_mem_page_{demote,promote,
// relocate}.c; statuses and the choices the sheets leave open: docs/abi.md.
//
// Check order, as the module's: the common prefix (mem_begin_entry: TDR, op_state, page
// info, tree lock shared, walk, entry lock, state table); then, while the TD may run, the
// entry blocked and its block tracked (check_blocked_and_tracked); then the leaf's own
// checks and the new page in R8. Every leaf leaves the acted-on entry unblocked: the TLB
// tracking of the block already guarantees no CPU holds a translation through the old
// mapping, so the new one may be used at once.
//
// Locking (abi §1.3): TDR shared, op_state shared, S-EPT tree shared, the host-side lock
// of the entry acted on (PROMOTE: also of all 512 children), then PAMT entries: the page
// being split, merged or moved, and the new page. A lock not taken answers BUSY at once.
#include <atomic>
#include <optional>
#include <vector>

#include "base/bitfield.h"
#include "base/check.h"
#include "tdx_module/mem_leaf_checks.h"
#include "tdx_module/sept_entry_lock.h"
#include "tdx_module/sept_state.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {

namespace {

constexpr uint64_t kEntriesPerTable = 512;
// NULL_PA: what PROMOTE version 1 reports in R9-R11 for L2 S-EPT pages it did not free.
constexpr uint64_t kNullPa = ~uint64_t{0};

// The leaf a split, merge or move leaves behind: the entry's state unblocked (BLOCKED →
// MAPPED, PENDING_BLOCKED → PENDING), mapping `hpa` at `level`.
SeptEntry unblocked_leaf(SeptState s, Hpa hpa, KeyId hkid, Level level, const PhysAddrLayout& l) {
  const SeptState u = is_blocked(s) ? unblocked_state(s) : s;
  TDXSIM_CHECK(u == SeptState::kMapped || u == SeptState::kPending,
               "no unblocked leaf for S-EPT state {}", to_string(s));
  return u == SeptState::kMapped ? SeptEntry::mapped(hpa, hkid, level, l)
                                 : SeptEntry::pending(hpa, hkid, level, l);
}

uint64_t busy_rcx() { return with_operand(TdxStatus::kOperandBusy, TdxOperand::kRcx); }

}  // namespace

uint64_t TdxModule::mem_page_demote(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  // RDX bit 0 selects how L2 S-EPT pages are added; R9-R11 name them. This TD has no L2
  // VMs, so the module never reads them and leaves them as they came.
  MemOp op;
  if (const uint64_t s = mem_begin_entry(regs, SeamcallLeaf::kMemPageDemote, op, TreeLock::kShared,
                                         /*handle_has_flag=*/true);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Td& td = *op.td;
  HostMemory& mem = platform_.memory();
  const Level level = op.walk.level;
  const SeptEntry e = op.entry->value();
  const Hpa large = e.hpa(layout());
  {
    // BEPOCH under a shared hold only: the page's entry is taken exclusively after R8's
    // checks, as the module splits the PAMT last, so that an R8 inside the page being
    // split is a metadata error (the walk stops at the large page), not contention.
    std::expected<PamtLock, uint64_t> page =
        lock_blocked_and_tracked(regs, op, /*exclusive=*/false);
    if (!page) return page.error();
  }
  Check table = check_page(regs.r8, PamtPageType::kNda, TdxOperand::kR8, /*exclusive=*/true);
  if (!table) return table.error();
  std::expected<PamtLock, TryLockResult> page =
      pamt_.lock(large.pfn(), level, Requester::kHost, /*exclusive=*/true);
  if (!page) return busy_rcx();

  // The new table maps the same frames in 512 smaller leaves, written under the TD's key
  // before the entry publishes it. The page's contents stay where they are.
  const Level child = level_down(level);
  const Hpa table_hpa = table->pfn().hpa();
  take_page(table->pfn(), td.hkid, SeptEntry::free().raw());
  for (uint64_t i = 0; i < kEntriesPerTable; ++i) {
    const SeptEntry c =
        unblocked_leaf(e.state(), large + i * level_bytes(child), td.hkid, child, layout());
    mem.store(table_hpa + 8 * i, td.hkid, c.raw(), std::memory_order_relaxed);
  }
  pamt_.demote(*page);
  table->assign(PamtPageType::kEpt, td.tdr, /*bepoch=*/0);
  td.child_count.fetch_add(1, std::memory_order_relaxed);
  op.entry->commit(SeptEntry::non_leaf(table_hpa, td.hkid, layout()));
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mem_page_promote(LogicalCpu& /*cpu*/, SeamcallRegs& regs, uint8_t version) {
  // Version 1 also reports freed L2 S-EPT pages; there are none, whatever the outcome.
  if (version >= 1) regs.r9 = regs.r10 = regs.r11 = kNullPa;
  MemOp op;
  if (const uint64_t s = mem_begin_entry(regs, SeamcallLeaf::kMemPagePromote, op);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Td& td = *op.td;
  HostMemory& mem = platform_.memory();
  const Level level = op.walk.level;
  const SeptEntry e = op.entry->value();
  const Hpa table = e.hpa(layout());
  std::expected<PamtLock, uint64_t> table_page =
      lock_blocked_and_tracked(regs, op, /*exclusive=*/true);
  if (!table_page) return table_page.error();
  // The host may have written the table with its own key: reading it is a machine check.
  if (mem.consumes_poison(table.pfn(), td.hkid)) return td_machine_check(td);

  // The children, each locked then checked in turn (module is_sept_page_valid_for_merge):
  // the first a MAPPED or PENDING leaf on a frame aligned to the merged size, every other
  // the same leaf one child-size further. Either failure carries the parent's details.
  const Level child = level_down(level);
  std::vector<std::optional<SeptEntryLock>> children(kEntriesPerTable);
  SeptEntry first;
  for (uint64_t i = 0; i < kEntriesPerTable; ++i) {
    SeptEntryLock& c = children[i].emplace(mem, td.hkid, table + 8 * i);
    if (!c.try_lock()) return entry_error(regs, TdxStatus::kOperandBusy, e, level, layout());
    const SeptEntry v = c.value();
    bool ok = false;
    if (i == 0) {
      ok = (v.state() == SeptState::kMapped || v.state() == SeptState::kPending) &&
           v.hpa(layout()).is_aligned(level);
      first = v;
    } else {
      const Hpa expected = first.hpa(layout()) + i * level_bytes(child);
      ok = v == unblocked_leaf(first.state(), expected, td.hkid, child, layout());
    }
    if (!ok) return entry_error(regs, TdxStatus::kEptInvalidPromoteConditions, e, level, layout());
  }
  const Hpa merged = first.hpa(layout());
  std::expected<PamtLock, TryLockResult> range =
      pamt_.lock(merged.pfn(), level, Requester::kHost, /*exclusive=*/true);
  if (!range) return busy_rcx();
  TDXSIM_CHECK(range->level() == level, "PAMT walk for a {} merge stopped at {}",
               level_name(level), level_name(range->level()));
  pamt_.promote(*range);

  // The entry becomes the children's leaf at the larger size; the children stay locked
  // until the table is unreachable. The table keeps the TD's key and dirty lines, as a
  // removed S-EPT page does.
  op.entry->commit(unblocked_leaf(first.state(), merged, td.hkid, level, layout()));
  td.child_count.fetch_sub(1, std::memory_order_relaxed);
  table_page->set_type(PamtPageType::kNda);
  regs.rcx = table.raw();
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mem_page_relocate(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  MemOp op;
  if (const uint64_t s = mem_begin_entry(regs, SeamcallLeaf::kMemPageRelocate, op);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Td& td = *op.td;
  HostMemory& mem = platform_.memory();
  const Level level = op.walk.level;
  const SeptEntry e = op.entry->value();
  const Hpa old_page = e.hpa(layout());
  // Moving a page onto itself is refused before R8's own checks (bits 51:0 compared, as
  // the module compares the full PA).
  if ((regs.r8 & bit_range(51, 0)) == old_page.raw()) {
    return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kR8);
  }
  std::expected<PamtLock, uint64_t> source =
      lock_blocked_and_tracked(regs, op, /*exclusive=*/true);
  if (!source) return source.error();
  Check target = check_page(regs.r8, PamtPageType::kNda, TdxOperand::kR8, /*exclusive=*/true);
  if (!target) return target.error();
  if (!is_pending(e.state()) && mem.consumes_poison(old_page.pfn(), td.hkid)) {
    return td_machine_check(td);
  }

  // The copy reads and writes with the TD's key (MOVDIR64B). A PENDING page has nothing the
  // guest may read yet: its new frame is keyed but not initialised, as AUG leaves one.
  mem.set_key(target->pfn(), td.hkid);
  if (!is_pending(e.state())) mem.copy_page(target->pfn(), td.hkid, old_page.pfn(), td.hkid);
  // The old frame keeps the TD's key and dirty lines: the host writes them back
  // (TDH.PHYMEM.PAGE.WBINVD) before reusing it, as after REMOVE.
  source->set_type(PamtPageType::kNda);
  target->assign(PamtPageType::kReg, td.tdr, /*bepoch=*/0);
  op.entry->commit(unblocked_leaf(e.state(), target->pfn().hpa(), td.hkid, level, layout()));
  regs.rcx = old_page.raw();
  return raw(TdxStatus::kSuccess);
}

}  // namespace tdxsim
