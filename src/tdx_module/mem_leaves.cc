// The S-EPT memory leaves: TDH.MEM.SEPT.ADD, PAGE.AUG, SEPT.RD, RANGE.BLOCK, RANGE.UNBLOCK,
// TRACK, PAGE.REMOVE, SEPT.REMOVE, and the build-time ones: TDH.MEM.PAGE.ADD, TDH.MR.EXTEND,
// TDH.MR.FINALIZE (intel/tdx-module src/vmm_dispatcher/api_calls/tdh_mem_*.c, tdh_mr_*.c). Check order per shared/spec/tdx-module-rules.md §1: op_state before any
// operand, then the page info, the walk and the entry's state, and only then the new page
// in R8 (A1). RCX/RDX carry the entry's details on the S-EPT errors A3 lists, else 0.
//
// Locking, as the module's (abi §1.3): the TDR shared, the op_state lock shared, the S-EPT
// tree lock shared (SEPT.ADD, AUG, REMOVE) or exclusive (BLOCK, UNBLOCK, SEPT.REMOVE), the
// host-side entry lock (TDEL) of the entry acted on, then the PAMT entry of the page. Every
// lock is a try: contention answers BUSY with the lock's operand at once. An S-EPT entry
// changes only by compare-and-swap on its word: the CPUs' walkers read it concurrently.
// PAGE.ADD, MR.EXTEND and MR.FINALIZE take the TDR exclusively instead, which keeps every
// other leaf of the TD out (the tree lock is implied) and serialises the measurement.
#include <array>
#include <atomic>

#include "base/check.h"
#include "tdx_module/mem_leaf_checks.h"
#include "tdx_module/sept_entry_lock.h"
#include "tdx_module/sept_state.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {

namespace {

// S-EPT entries (and a 4K S-EPT page's slots).
constexpr uint64_t kEntriesPerTable = 512;
// SEPT.ADD version 1 output: R8 bit 63 marks a page the leaf did not consume.
constexpr uint64_t kPageNotConsumed = uint64_t{1} << 63;

}  // namespace

uint64_t TdxModule::mem_begin(SeamcallRegs& regs, SeamcallLeaf leaf, bool handle_has_flag,
                              bool tdr_exclusive, std::initializer_list<TdOpState> allowed,
                              TreeLock tree, MemOp& op) {
  op.page_info = PageInfo{regs.rcx};
  const TdHandle handle{regs.rdx};
  // No extended error information unless a leaf sets it.
  regs.rcx = 0;
  regs.rdx = 0;
  if (const uint64_t s = handle.check(handle_has_flag, layout()); s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Check tdr = check_page(handle.tdr().raw(), PamtPageType::kTdr, TdxOperand::kRdx, tdr_exclusive);
  if (!tdr) return tdr.error();
  op.tdr.emplace(std::move(*tdr));
  op.td = &locked_td(*op.tdr);
  Td& td = *op.td;
  if (const uint64_t s = check_td_state(td, /*lock_exclusive=*/false, allowed, op.op_state);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  const std::optional<LevelRange> levels = page_info_levels(leaf, td.ept_levels - 1);
  TDXSIM_CHECK(levels.has_value(), "{} has no page-info operand", to_string(leaf));
  if (const uint64_t s = op.page_info.validate_private(*levels, td.gpaw);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  if (tree != TreeLock::kNone &&
      !op.tree.try_lock(td.sept_lock, /*exclusive=*/tree == TreeLock::kExclusive)) {
    return with_operand(TdxStatus::kOperandBusy, TdxOperand::kSeptTree);
  }
  locks_held.emit_lazy([&] { return LocksHeld{leaf, td.tdr.hpa()}; });
  op.walk = sept_walk(platform_.memory(), layout(), td.sept_root().hpa(), td.ept_levels, td.hkid,
                      op.page_info.gpa(), op.page_info.level());
  if (op.walk.machine_check) return td_machine_check(td);
  if (!op.walk.reached) {
    regs.rcx = op.walk.arch_view(layout());
    regs.rdx = op.walk.arch_detail();
    return with_operand(TdxStatus::kEptWalkFailed, TdxOperand::kRcx);
  }
  return raw(TdxStatus::kSuccess);
}

std::expected<PamtLock, uint64_t> TdxModule::lock_blocked_and_tracked(SeamcallRegs& regs,
                                                                      const MemOp& op,
                                                                      bool exclusive) {
  const SeptEntry e = op.entry->value();
  const Level level = op.walk.level;
  std::expected<PamtLock, uint64_t> page = lock_mapped(e, level, exclusive);
  if (!page) return page;
  if (const uint64_t s =
          check_blocked_and_tracked(regs, *op.td, e, level, page->bepoch(), layout());
      s != raw(TdxStatus::kSuccess)) {
    return std::unexpected(s);
  }
  return page;
}

uint64_t TdxModule::mem_begin_entry(SeamcallRegs& regs, SeamcallLeaf leaf, MemOp& op,
                                    TreeLock tree, bool handle_has_flag,
                                    std::optional<TdxStatus> if_blocked) {
  if (const uint64_t s = mem_begin(regs, leaf, handle_has_flag, /*tdr_exclusive=*/false,
                                   {TdOpState::kInitialized, TdOpState::kRunnable}, tree, op);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  SeptEntryLock& entry = op.entry.emplace(platform_.memory(), op.td->hkid, op.walk.entry_hpa);
  if (!entry.try_lock(op.walk.entry)) return entry_busy(regs, op.walk, layout());
  // The entry as locked, not the walk's copy: that may predate a holder's commit.
  const SeptEntry e = entry.value();
  if (if_blocked && is_blocked(e.state())) {
    return entry_error(regs, *if_blocked, e, op.walk.level, layout());
  }
  if (!sept_leaf_allowed(static_cast<uint16_t>(leaf), e.state())) {
    return entry_error(regs, TdxStatus::kEptEntryStateIncorrect, e, op.walk.level, layout());
  }
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mem_sept_add(LogicalCpu& /*cpu*/, SeamcallRegs& regs, uint8_t version) {
  // The module reads ALLOW_EXISTING from the handle in either version. Version 1 also takes
  // L2 S-EPT pages in R9-R11 (no L2 VMs here) and reports every page register back, bit 63
  // set on a page not consumed and 0 for one consumed (module tdh_mem_sept_add.c). Bit 63
  // of a page operand is ignored on input.
  const bool allow_existing = TdHandle{regs.rdx}.allow_existing();
  const auto strip = [](uint64_t pa) { return pa & ~kPageNotConsumed; };
  std::array<uint64_t, 4> pages = {strip(regs.r8), 0, 0, 0};
  if (version >= 1) pages = {strip(regs.r8), strip(regs.r9), strip(regs.r10), strip(regs.r11)};
  std::array<uint64_t, 4> flagged = pages;
  const uint64_t status = mem_sept_add_body(regs, version, allow_existing, pages, flagged);
  if (version >= 1) {
    regs.r8 = flagged[0];
    regs.r9 = flagged[1];
    regs.r10 = flagged[2];
    regs.r11 = flagged[3];
  }
  return status;
}

uint64_t TdxModule::mem_sept_add_body(SeamcallRegs& regs, uint8_t version, bool allow_existing,
                                      const std::array<uint64_t, 4>& pages,
                                      std::array<uint64_t, 4>& flagged) {
  MemOp op;
  // The state table admits FREE and NL_MAPPED; the refined checks follow (A2).
  if (const uint64_t s = mem_begin_entry(regs, SeamcallLeaf::kMemSeptAdd, op, TreeLock::kShared,
                                         /*handle_has_flag=*/true);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Td& td = *op.td;
  const Level level = op.walk.level;
  const SeptEntry e = op.entry->value();
  const bool is_free = e.state() == SeptState::kFree;
  std::optional<PamtLock> page;
  if (pages[0] == 0) {
    // No page: only version 1 may ask, and only to confirm an existing table.
    if (version == 0) return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kR8);
    if (is_free) return entry_error(regs, TdxStatus::kEptEntryStateIncorrect, e, level, layout());
  } else if (is_free) {
    Check p = check_page(pages[0], PamtPageType::kNda, TdxOperand::kR8, /*exclusive=*/true);
    if (!p) return p.error();
    page.emplace(std::move(*p));
  } else if (allow_existing) {
    flagged[0] |= kPageNotConsumed;
  } else {
    return entry_error(regs, TdxStatus::kEptEntryStateIncorrect, e, level, layout());
  }
  // L2 S-EPT pages name VMs this TD does not have (no TD partitioning).
  for (size_t vm = 1; vm < pages.size(); ++vm) {
    if (pages[vm] != 0) {
      return with_operand(TdxStatus::kOperandInvalid,
                          static_cast<TdxOperand>(static_cast<uint32_t>(TdxOperand::kR8) + vm));
    }
  }
  if (!page) return raw(TdxStatus::kSuccess);

  // The new table: every entry FREE under the TD's key, written before it is published.
  take_page(page->pfn(), td.hkid, SeptEntry::free().raw());
  page->assign(PamtPageType::kEpt, td.tdr, /*bepoch=*/0);
  td.child_count.fetch_add(1, std::memory_order_relaxed);
  op.entry->commit(SeptEntry::non_leaf(page->pfn().hpa(), td.hkid, layout()));
  flagged[0] = 0;
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mem_page_aug(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  MemOp op;
  if (const uint64_t s = mem_begin_entry(regs, SeamcallLeaf::kMemPageAug, op);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Td& td = *op.td;
  HostMemory& mem = platform_.memory();
  const Level level = op.walk.level;
  // The page: format and TDMR range first, then the PAMT's own checks at the page's size
  // (alignment to it, and for 2M the whole range free).
  if (const uint64_t s = check_hpa_format_and_range(regs.r8, TdxOperand::kR8);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  std::expected<PamtLock, uint64_t> page =
      pamt_.lock_hpa_operand(Hpa{regs.r8}, level, PamtPageType::kNda, TdxOperand::kR8,
                             Requester::kHost, /*exclusive=*/true);
  if (!page) return page.error();

  // AUG hands the frames to the TD's key without initialising them: the guest's ACCEPT
  // zeroes the page before anything can read it.
  for (uint64_t i = 0; i < level_pages(level); ++i) mem.set_key(page->pfn() + i, td.hkid);
  page->assign(PamtPageType::kReg, td.tdr, /*bepoch=*/0);
  td.child_count.fetch_add(level_pages(level), std::memory_order_relaxed);
  op.entry->commit(SeptEntry::pending(page->pfn().hpa(), td.hkid, level, layout()));
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mem_sept_rd(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  MemOp op;
  if (const uint64_t s = mem_begin(regs, SeamcallLeaf::kMemSeptRd, /*handle_has_flag=*/false,
                                   /*tdr_exclusive=*/false,
                                   {TdOpState::kInitialized, TdOpState::kRunnable},
                                   TreeLock::kShared, op);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  // Every state is readable (abi §3.2); the entry lock is not taken, as the module reads.
  regs.rcx = op.walk.arch_view(layout());
  regs.rdx = op.walk.arch_detail();
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mem_range_block(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  MemOp op;
  // Any blocked state is an informational answer, before the state table (A16).
  if (const uint64_t s = mem_begin_entry(regs, SeamcallLeaf::kMemRangeBlock, op,
                                         TreeLock::kExclusive, /*handle_has_flag=*/false,
                                         TdxStatus::kGpaRangeAlreadyBlocked);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Td& td = *op.td;
  const Level level = op.walk.level;
  const SeptEntry e = op.entry->value();
  const SeptState state = e.state();
  // BEPOCH lives in the PAMT entry of what the entry maps: the page at its size, or the
  // child S-EPT page of a non-leaf.
  std::expected<PamtLock, uint64_t> page = lock_mapped(e, level, /*exclusive=*/true);
  if (!page) return page.error();
  page->set_bepoch(td.td_epoch.load(std::memory_order_acquire));
  op.entry->commit(e.with_state(blocked_state(state)));
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mem_range_unblock(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  MemOp op;
  if (const uint64_t s = mem_begin_entry(regs, SeamcallLeaf::kMemRangeUnblock, op,
                                         TreeLock::kExclusive);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Td& td = *op.td;
  const Level level = op.walk.level;
  const SeptEntry e = op.entry->value();
  const SeptState state = e.state();
  // Only a TD that may be running needs the block tracked before the entry is usable
  // again (A6); the failure names the tree, without details (A3, A4).
  if (td.op_state == TdOpState::kRunnable) {
    std::expected<PamtLock, uint64_t> page = lock_mapped(e, level, /*exclusive=*/false);
    if (!page) return page.error();
    if (!tracked(td, page->bepoch())) {
      return with_operand(TdxStatus::kTlbTrackingNotDone, TdxOperand::kSeptTree);
    }
  }
  op.entry->commit(e.with_state(unblocked_state(state)));
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mem_track(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  Check tdr = check_page(regs.rcx, PamtPageType::kTdr, TdxOperand::kRcx, /*exclusive=*/false);
  if (!tdr) return tdr.error();
  Td* td = &locked_td(*tdr);
  TryLockGuard op_state;
  if (const uint64_t s = check_td_state(*td, /*lock_exclusive=*/false,
                                        {TdOpState::kInitialized, TdOpState::kRunnable}, op_state);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  TryLockGuard epoch;
  if (!epoch.try_lock(td->epoch_lock, /*exclusive=*/true)) {
    return with_operand(TdxStatus::kOperandBusy, TdxOperand::kTdEpoch);
  }
  locks_held.emit_lazy([&] { return LocksHeld{SeamcallLeaf::kMemTrack, td->tdr.hpa()}; });
  // A vCPU still inside since before the previous TRACK: advancing again would let the
  // tracked predicate pass for blocks it may still hold translations for.
  const uint64_t e = td->td_epoch.load(std::memory_order_relaxed);
  if (td->refcount[(e - 1) & 1].load(std::memory_order_relaxed) != 0) {
    return raw(TdxStatus::kPreviousTlbEpochBusy);
  }
  td->td_epoch.store(e + 1, std::memory_order_release);
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mem_page_remove(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  MemOp op;
  // The row holds leaf states only, so a non-leaf is refused there (the module also tests
  // the leaf bit, to the same answer).
  if (const uint64_t s = mem_begin_entry(regs, SeamcallLeaf::kMemPageRemove, op);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Td& td = *op.td;
  const Level level = op.walk.level;
  std::expected<PamtLock, uint64_t> page =
      lock_blocked_and_tracked(regs, op, /*exclusive=*/true);
  if (!page) return page.error();
  op.entry->commit(SeptEntry::free());
  td.child_count.fetch_sub(level_pages(level), std::memory_order_relaxed);
  // The frames keep the TD's key and dirty lines: the host writes them back
  // (TDH.PHYMEM.PAGE.WBINVD) before reusing them.
  page->set_type(PamtPageType::kNda);
  regs.rcx = page->pfn().hpa().raw();
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mem_sept_remove(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  MemOp op;
  if (const uint64_t s = mem_begin_entry(regs, SeamcallLeaf::kMemSeptRemove, op,
                                         TreeLock::kExclusive);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Td& td = *op.td;
  HostMemory& mem = platform_.memory();
  const Level level = op.walk.level;
  const SeptEntry e = op.entry->value();
  const Hpa child = e.hpa(layout());
  // Module order: state, blocked, tracked, then the children (A5).
  std::expected<PamtLock, uint64_t> page =
      lock_blocked_and_tracked(regs, op, /*exclusive=*/true);
  if (!page) return page.error();
  // The host may have written the table with its own key: reading it is a machine check.
  if (mem.consumes_poison(child.pfn(), td.hkid)) return td_machine_check(td);
  for (uint64_t i = 0; i < kEntriesPerTable; ++i) {
    const SeptEntry c{mem.load(child + 8 * i, td.hkid, std::memory_order_acquire)};
    if (c.state() != SeptState::kFree) {
      return entry_error(regs, TdxStatus::kEptPageNotFree, e, level, layout());
    }
  }
  op.entry->commit(SeptEntry::free());
  td.child_count.fetch_sub(1, std::memory_order_relaxed);
  page->set_type(PamtPageType::kNda);
  regs.rcx = child.raw();
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mem_page_add(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  MemOp op;
  if (const uint64_t s = mem_begin(regs, SeamcallLeaf::kMemPageAdd, /*handle_has_flag=*/false,
                                   /*tdr_exclusive=*/true, {TdOpState::kInitialized},
                                   TreeLock::kNone, op);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Td& td = *op.td;
  HostMemory& mem = platform_.memory();
  // No entry lock: with the TDR exclusive no other host leaf runs, and before FINALIZE no
  // vCPU has run, so nothing else can lock the entry (the module writes it unlocked).
  const SeptEntry e{mem.load(op.walk.entry_hpa, td.hkid, std::memory_order_acquire)};
  if (!sept_leaf_allowed(SeptLeaf::kMemPageAdd, e.state())) {
    return entry_error(regs, TdxStatus::kEptEntryStateIncorrect, e, op.walk.level, layout());
  }
  // R9: the source, ordinary shared memory — 4K aligned, below MAX_PA, and with no private
  // HKID in its key bits (module shared_hpa_check_with_pwr_2_alignment). Whether the host's
  // allocator holds the frame free is no concern of the module's: it reads what is there.
  // tdxsim refuses only an address past the end of the memory it models, where hardware
  // would read whatever the platform returns for it.
  const uint64_t src_raw = regs.r9;
  const KeyId src_key = layout().key_of(src_raw);
  const Hpa src = layout().strip_key(src_raw);
  if (!src.is_aligned(Level::k4K) || (src_raw >> layout().maxphyaddr) != 0 ||
      is_private_hkid(src_key.raw()) || !mem.contains(src)) {
    return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kR9);
  }
  Check page = check_page(regs.r8, PamtPageType::kNda, TdxOperand::kR8, /*exclusive=*/true);
  if (!page) return page.error();

  // The copy reads the source with the key its address carries (the host's, for shared
  // memory) and writes the page with the TD's (MOVDIR64B): a source that is another TD's
  // private frame gives ciphertext.
  mem.set_key(page->pfn(), td.hkid);
  mem.copy_page(page->pfn(), td.hkid, src.pfn(), src_key);
  page->assign(PamtPageType::kReg, td.tdr, /*bepoch=*/0);
  td.child_count.fetch_add(1, std::memory_order_relaxed);
  const SeptEntry mapped = SeptEntry::mapped(page->pfn().hpa(), td.hkid, Level::k4K, layout());
  uint64_t expected = e.raw();
  TDXSIM_CHECK(mem.compare_exchange(op.walk.entry_hpa, td.hkid, expected, mapped.raw(),
                                    std::memory_order_acq_rel),
               "S-EPT entry {} changed under an exclusive TDR", op.walk.entry_hpa);
  td.measurement.extend_page_add(op.page_info.gpa());
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mr_extend(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  const Gpa gpa{regs.rcx};
  const TdHandle handle{regs.rdx};
  regs.rcx = 0;
  regs.rdx = 0;
  if (const uint64_t s = handle.check(/*leaf_has_flag=*/false, layout());
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Check tdr = check_page(handle.tdr().raw(), PamtPageType::kTdr, TdxOperand::kRdx,
                         /*exclusive=*/true);
  if (!tdr) return tdr.error();
  Td* td = &locked_td(*tdr);
  TryLockGuard op_state;
  if (const uint64_t s = check_td_state(*td, /*lock_exclusive=*/false, {TdOpState::kInitialized},
                                        op_state);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  // RCX is a bare GPA, not page info: 256-byte alignment, then the private-GPA rule.
  if (gpa.raw() % TdMeasurement::kExtendChunkBytes != 0 || !is_valid_private_gpa(gpa, td->gpaw)) {
    return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRcx);
  }
  HostMemory& mem = platform_.memory();
  // The walk goes to whatever leaf maps the GPA: a walk that ends on a non-leaf above 4K
  // is a missing page (with details); a leaf in another state than MAPPED is too, plainly.
  const SeptWalkResult w = sept_walk(mem, layout(), td->sept_root().hpa(), td->ept_levels,
                                     td->hkid, gpa, Level::k4K);
  if (w.machine_check) return td_machine_check(*td);
  if (!w.reached && !w.entry.is_leaf()) {
    regs.rcx = w.arch_view(layout());
    regs.rdx = w.arch_detail();
    return with_operand(TdxStatus::kEptEntryNotPresent, TdxOperand::kRcx);
  }
  if (!sept_leaf_allowed(SeptLeaf::kMrExtend, w.entry.state())) {
    return raw(TdxStatus::kEptEntryNotPresent);
  }
  const Hpa chunk = w.entry.hpa(layout()) + (gpa.raw() & (level_bytes(w.level) - 1));
  if (mem.consumes_poison(chunk.pfn(), td->hkid)) return td_machine_check(*td);
  std::array<uint8_t, TdMeasurement::kExtendChunkBytes> bytes{};
  for (size_t i = 0; i < bytes.size(); i += 8) {
    const uint64_t word = mem.read(chunk + i, td->hkid).value;
    for (size_t b = 0; b < 8; ++b) bytes[i + b] = static_cast<uint8_t>(word >> (8 * b));
  }
  td->measurement.extend_mr_extend(gpa, bytes);
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mr_finalize(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  Check tdr = check_page(regs.rcx, PamtPageType::kTdr, TdxOperand::kRcx, /*exclusive=*/true);
  if (!tdr) return tdr.error();
  Td* td = &locked_td(*tdr);
  // op_state changes: its lock exclusively (td.h).
  TryLockGuard op_state;
  if (const uint64_t s = check_td_state(*td, /*lock_exclusive=*/true, {TdOpState::kInitialized},
                                        op_state);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  if (td->num_vcpus.load(std::memory_order_relaxed) == 0) return raw(TdxStatus::kNoVcpus);
  td->measurement.finalize();
  td->op_state = TdOpState::kRunnable;
  return raw(TdxStatus::kSuccess);
}

// --- Introspection ---------------------------------------------------------------------------

std::optional<uint64_t> TdxModule::td_epoch(Hpa tdr) const {
  const Td* td = find_td(tdr.pfn());
  if (td == nullptr) return std::nullopt;
  return td->td_epoch.load(std::memory_order_relaxed);
}

std::optional<Sha384Digest> TdxModule::td_mrtd(Hpa tdr) const {
  const Td* td = find_td(tdr.pfn());
  if (td == nullptr || !td->measurement.finalized()) return std::nullopt;
  return td->measurement.mrtd();
}

}  // namespace tdxsim
