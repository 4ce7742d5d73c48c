// TDH.MEM.PAGE.DEMOTE, PROMOTE and RELOCATE through SEAMCALL, before FINALIZE (no block or
// tracking needed) and after it (BLOCK, then TRACK, then the leaf). Statuses, operand IDs
// and RCX/RDX details are exact values (shared/spec/tdx-module-abi.md §2, §3.2, §3.3;
// docs/abi.md for what the sheets leave open). Each leaf's result is also
// checked as the CPU's walker sees it, as the PAMT records it (TDH.PHYMEM.PAGE.RDMD), and
// for the page contents read with the TD's key.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <iterator>
#include <variant>

#include "platform/page_walk.h"
#include "tdx_module/td_test_harness.h"

namespace tdxsim {
namespace {

using test::detail;
using test::kFreeView;
using test::kGpa;
using test::kOk;
using test::kTdHkid;
using test::op;
using test::pi;
using test::st;
using test::kHarnessMemBytes;

constexpr KeyId kTd{kTdHkid};
constexpr uint64_t k2M = uint64_t{2} << 20;

class MemResizeTest : public test::TdHarness {
 protected:
  uint64_t demote(Gpa g, Hpa table, SeamcallRegs* out = nullptr, unsigned level = 1,
                  uint64_t rdx_flags = 0) {
    return call(SeamcallLeaf::kMemPageDemote, pi(g, level), tdr_.raw() | rdx_flags, table.raw(), 0,
                out);
  }
  uint64_t promote(Gpa g, SeamcallRegs* out = nullptr, unsigned level = 1) {
    return leaf(SeamcallLeaf::kMemPagePromote, g, level, out);
  }
  uint64_t relocate(Gpa g, Hpa target, SeamcallRegs* out = nullptr) {
    return call(SeamcallLeaf::kMemPageRelocate, pi(g, 0), tdr_.raw(), target.raw(), 0, out);
  }
  uint64_t word(Hpa h) { return mem().read(h, kTd).value; }

  // 512 PAGE.ADDs mapping the 2M-aligned frames at `big` at the 2M GPA `g` (its 4K table
  // must exist); page i's first word holds kTag + i.
  static constexpr uint64_t kTag = 0xC0DE'0000;
  void add_2m(Gpa g, Hpa big) {
    const Hpa src = page();
    for (uint64_t i = 0; i < 512; ++i) {
      mem().write(src, kHostKey, kTag + i);
      ASSERT_EQ(add(g + i * kPageSize, big + i * kPageSize, src), kOk) << i;
    }
  }
  // A MAPPED 2M leaf at `g`, the only way one exists before FINALIZE: 512 added 4K pages,
  // promoted. REQUIRES: the level-3 and level-2 tables for `g` exist.
  Hpa mapped_2m(Gpa g) {
    tables(g, 1, 1);
    const Hpa big = page_2m();
    add_2m(g, big);
    EXPECT_EQ(promote(g), kOk);
    return big;
  }

  struct Md {
    uint64_t type, owner, size, bepoch;
  };
  Md rdmd(Hpa h) {
    SeamcallRegs r;
    EXPECT_EQ(call(SeamcallLeaf::kPhymemPageRdmd, h.raw(), 0, 0, 0, &r), kOk);
    return {r.rcx, r.rdx, r.r8, r.r9};
  }
  static constexpr uint64_t kPtReg = static_cast<uint64_t>(PamtPageType::kReg);
  static constexpr uint64_t kPtEpt = static_cast<uint64_t>(PamtPageType::kEpt);

  // The CPU's translation of `g`: present, at `level`, backed by `hpa` (the leaf's base).
  void expect_translation(Gpa g, Level level, Hpa hpa) {
    const WalkResult w = hw_walk(g);
    ASSERT_TRUE(w.has_value()) << fmt::format("{}", g);
    EXPECT_EQ(w->level, level) << fmt::format("{}", g);
    EXPECT_EQ(w->hpa, hpa) << fmt::format("{}", g);
    EXPECT_EQ(w->key, kTd) << fmt::format("{}", g);
  }
  void expect_fault(Gpa g, Level level) {
    const WalkResult w = hw_walk(g);
    ASSERT_FALSE(w.has_value()) << fmt::format("{}", g);
    ASSERT_TRUE(std::holds_alternative<EptViolation>(w.error())) << fmt::format("{}", g);
    EXPECT_EQ(std::get<EptViolation>(w.error()).level, level) << fmt::format("{}", g);
  }
};

// --- Before FINALIZE ----------------------------------------------------------------------------

TEST_F(MemResizeTest, DemoteAndPromoteAPendingPageBeforeFinalize) {
  init_sys();
  td();
  tables(kGpa, 3, 2);
  const Hpa big = page_2m();
  ASSERT_EQ(aug(kGpa, 1, big), kOk);
  const uint64_t base_children = children();
  EXPECT_EQ(rdmd(big + 5 * kPageSize).size, 1u) << "a 4K frame of a 2M page: the 2M entry";
  expect_fault(kGpa + 0x5000, Level::k2M);

  // DEMOTE: the 2M PENDING leaf becomes a table of 512 PENDING 4K leaves.
  const Hpa table = page();
  SeamcallRegs r;
  ASSERT_EQ(demote(kGpa, table, &r), kOk);
  EXPECT_EQ(r.rcx, 0u);
  EXPECT_EQ(r.rdx, 0u);
  EXPECT_EQ(state(kGpa, 1), SeptState::kNlMapped);
  for (uint64_t i : {uint64_t{0}, uint64_t{1}, uint64_t{255}, uint64_t{511}}) {
    const SeptWalkResult w = entry(kGpa + i * kPageSize, 0);
    ASSERT_TRUE(w.reached) << i;
    EXPECT_EQ(w.entry, sept_leaf(SeptState::kPending, big + i * kPageSize, Level::k4K)) << i;
    EXPECT_EQ(w.entry_hpa, table + 8 * i) << i;
  }
  ASSERT_EQ(leaf(SeamcallLeaf::kMemSeptRd, kGpa, 1, &r), kOk);
  EXPECT_EQ(r.rcx, 0x7u);
  EXPECT_EQ(r.rdx, detail(1, SeptState::kNlMapped));
  EXPECT_EQ(children(), base_children + 1) << "the new S-EPT page";
  EXPECT_EQ(mem().key(table.pfn()), kTd);
  const Md t = rdmd(table);
  EXPECT_EQ(t.type, kPtEpt);
  EXPECT_EQ(t.owner, tdr_.raw());
  EXPECT_EQ(t.bepoch, 0u);
  // The PAMT now tracks 512 4K pages of the TD.
  EXPECT_EQ(type_of(big, Level::k2M), PamtPageType::kNda);
  for (uint64_t i : {uint64_t{0}, uint64_t{5}, uint64_t{511}}) {
    const Md m = rdmd(big + i * kPageSize);
    EXPECT_EQ(m.type, kPtReg) << i;
    EXPECT_EQ(m.owner, tdr_.raw()) << i;
    EXPECT_EQ(m.size, 0u) << i;
    EXPECT_EQ(m.bepoch, 0u) << i;
  }
  expect_fault(kGpa + 0x5000, Level::k4K);

  // PROMOTE: back to one 2M PENDING leaf; RCX = the freed table.
  ASSERT_EQ(promote(kGpa, &r), kOk);
  EXPECT_EQ(r.rcx, table.raw());
  EXPECT_EQ(r.rdx, 0u);
  ASSERT_EQ(leaf(SeamcallLeaf::kMemSeptRd, kGpa, 1, &r), kOk);
  EXPECT_EQ(r.rcx, view(SeptState::kPending, big, Level::k2M));
  EXPECT_EQ(r.rdx, detail(1, SeptState::kPending));
  EXPECT_EQ(children(), base_children);
  EXPECT_EQ(type_of(table), PamtPageType::kNda);
  EXPECT_EQ(mem().key(table.pfn()), kTd) << "the host must WBINVD and re-key it";
  EXPECT_EQ(type_of(big, Level::k2M), PamtPageType::kReg);
  EXPECT_EQ(rdmd(big + 5 * kPageSize).size, 1u);
  expect_fault(kGpa + 0x5000, Level::k2M);
  // The freed table can serve again.
  ASSERT_EQ(call(SeamcallLeaf::kPhymemPageWbinvd, layout().with_key(table, kTd)), kOk);
  EXPECT_EQ(demote(kGpa, table), kOk);
}

TEST_F(MemResizeTest, PromoteAndDemoteAMappedRangeKeepItsContents) {
  init_sys();
  td();
  const std::vector<Hpa> pt = tables(kGpa);
  const Hpa big = page_2m();
  add_2m(kGpa, big);
  expect_translation(kGpa + 0x7008, Level::k4K, big + 7 * kPageSize);
  const uint64_t base_children = children();

  SeamcallRegs r;
  ASSERT_EQ(promote(kGpa, &r), kOk);
  EXPECT_EQ(r.rcx, pt[2].raw());
  EXPECT_EQ(state(kGpa, 1), SeptState::kMapped);
  EXPECT_EQ(entry(kGpa, 1).entry, sept_leaf(SeptState::kMapped, big, Level::k2M));
  EXPECT_EQ(children(), base_children - 1);
  EXPECT_EQ(rdmd(big + 7 * kPageSize).size, 1u);
  EXPECT_EQ(rdmd(big).owner, tdr_.raw());
  // The CPU now translates the whole 2M with one leaf; the contents did not move.
  expect_translation(kGpa + 0x7008, Level::k2M, big);
  for (uint64_t i : {uint64_t{0}, uint64_t{7}, uint64_t{511}}) {
    EXPECT_EQ(word(big + i * kPageSize), kTag + i) << i;
  }

  const Hpa table = page();
  ASSERT_EQ(demote(kGpa, table, &r), kOk);
  EXPECT_EQ(children(), base_children);
  for (uint64_t i : {uint64_t{0}, uint64_t{7}, uint64_t{511}}) {
    EXPECT_EQ(state(kGpa + i * kPageSize, 0), SeptState::kMapped) << i;
    expect_translation(kGpa + i * kPageSize + 8, Level::k4K, big + i * kPageSize);
    EXPECT_EQ(word(big + i * kPageSize), kTag + i) << i;
  }
  EXPECT_EQ(rdmd(big + 7 * kPageSize).size, 0u);
}

TEST_F(MemResizeTest, RelocateMovesAPageBeforeFinalize) {
  init_sys();
  td();
  tables(kGpa);
  const Hpa src = page();
  for (uint64_t w = 0; w < 512; ++w) mem().write(src + 8 * w, kHostKey, 0xABC0'0000 + w);
  const Hpa old_page = page();
  ASSERT_EQ(add(kGpa, old_page, src), kOk);
  const uint64_t base_children = children();

  const Hpa target = page();
  SeamcallRegs r;
  ASSERT_EQ(relocate(kGpa, target, &r), kOk);
  EXPECT_EQ(r.rcx, old_page.raw());
  EXPECT_EQ(r.rdx, 0u);
  EXPECT_EQ(entry(kGpa, 0).entry, sept_leaf(SeptState::kMapped, target, Level::k4K));
  EXPECT_EQ(mem().page_hash(target.pfn(), kTd), mem().page_hash(src.pfn(), kHostKey));
  EXPECT_NE(mem().read(target + 8, kHostKey).value, 0xABC0'0001u) << "the host sees ciphertext";
  expect_translation(kGpa + 0x10, Level::k4K, target);
  EXPECT_EQ(children(), base_children);
  const Md m = rdmd(target);
  EXPECT_EQ(m.type, kPtReg);
  EXPECT_EQ(m.owner, tdr_.raw());
  EXPECT_EQ(m.bepoch, 0u);
  // The old frame is free again but keeps the TD's key and dirty lines, as after REMOVE.
  EXPECT_EQ(type_of(old_page), PamtPageType::kNda);
  EXPECT_EQ(mem().key(old_page.pfn()), kTd);
  EXPECT_TRUE(mem().has_dirty_lines(old_page.pfn()));

  // A PENDING page moves without a copy: its new frame is the TD's, uninitialised.
  const Hpa pending = page();
  ASSERT_EQ(aug(kGpa + 0x1000, 0, pending), kOk);
  const Hpa target2 = page();
  ASSERT_EQ(relocate(kGpa + 0x1000, target2, &r), kOk);
  EXPECT_EQ(r.rcx, pending.raw());
  EXPECT_EQ(entry(kGpa + 0x1000, 0).entry, sept_leaf(SeptState::kPending, target2, Level::k4K));
  EXPECT_EQ(mem().key(target2.pfn()), kTd);
  EXPECT_EQ(type_of(pending), PamtPageType::kNda);

  // A BLOCKED page (blocked before FINALIZE) moves and comes back unblocked.
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa, 0), kOk);
  const Hpa target3 = page();
  ASSERT_EQ(relocate(kGpa, target3, &r), kOk);
  EXPECT_EQ(r.rcx, target.raw());
  EXPECT_EQ(entry(kGpa, 0).entry, sept_leaf(SeptState::kMapped, target3, Level::k4K));
  EXPECT_EQ(mem().page_hash(target3.pfn(), kTd), mem().page_hash(src.pfn(), kHostKey));
}

// --- After FINALIZE: BLOCK, TRACK, then the leaf -------------------------------------------

TEST_F(MemResizeTest, RunnableDemoteAndPromoteNeedBlockThenTrack) {
  init_sys();
  td();
  tables(kGpa, 3, 2);
  const Hpa big = mapped_2m(kGpa);
  finalize();
  const uint64_t base_children = children();
  const Hpa table = page();
  SeamcallRegs r;

  EXPECT_EQ(demote(kGpa, table, &r), op(TdxStatus::kGpaRangeNotBlocked, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, view(SeptState::kMapped, big, Level::k2M));
  EXPECT_EQ(r.rdx, detail(1, SeptState::kMapped));
  EXPECT_EQ(type_of(table), PamtPageType::kNda) << "R8 not looked at";
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa, 1), kOk);
  EXPECT_EQ(rdmd(big).bepoch, 1u);
  expect_fault(kGpa + 0x3000, Level::k2M);
  EXPECT_EQ(demote(kGpa, table, &r), op(TdxStatus::kTlbTrackingNotDone, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, 0u) << "no details (A3)";
  EXPECT_EQ(r.rdx, 0u);
  // No vCPU ever ran: one TRACK retires the block's epoch.
  ASSERT_EQ(track(), kOk);
  ASSERT_EQ(demote(kGpa, table, &r), kOk);
  EXPECT_EQ(children(), base_children + 1);
  // The children come out unblocked: usable at once, the block having been tracked.
  for (uint64_t i : {uint64_t{0}, uint64_t{3}, uint64_t{511}}) {
    EXPECT_EQ(state(kGpa + i * kPageSize, 0), SeptState::kMapped) << i;
    expect_translation(kGpa + i * kPageSize, Level::k4K, big + i * kPageSize);
    EXPECT_EQ(word(big + i * kPageSize), kTag + i) << i;
  }

  // PROMOTE wants the parent blocked and tracked.
  EXPECT_EQ(promote(kGpa, &r), op(TdxStatus::kGpaRangeNotBlocked, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, 0x7u);
  EXPECT_EQ(r.rdx, detail(1, SeptState::kNlMapped));
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa, 1), kOk);
  EXPECT_EQ(rdmd(table).bepoch, 2u) << "the table carries the non-leaf's BEPOCH";
  expect_fault(kGpa + 0x3000, Level::k2M);
  EXPECT_EQ(promote(kGpa, &r), op(TdxStatus::kTlbTrackingNotDone, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, 0u);
  EXPECT_EQ(r.rdx, 0u);
  ASSERT_EQ(track(), kOk);
  ASSERT_EQ(promote(kGpa, &r), kOk);
  EXPECT_EQ(r.rcx, table.raw());
  EXPECT_EQ(entry(kGpa, 1).entry, sept_leaf(SeptState::kMapped, big, Level::k2M));
  EXPECT_EQ(children(), base_children);
  expect_translation(kGpa + 0x3000, Level::k2M, big);
  EXPECT_EQ(word(big + 3 * kPageSize), kTag + 3);
}

TEST_F(MemResizeTest, RunnablePendingBlockedDemotesToPendingChildren) {
  init_sys();
  td();
  tables(kGpa, 3, 2);
  const Hpa big = page_2m();
  ASSERT_EQ(aug(kGpa, 1, big), kOk);
  // Blocked before FINALIZE: BEPOCH 1 is not tracked after it until a TRACK (A7).
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa, 1), kOk);
  finalize();
  const Hpa table = page();
  SeamcallRegs r;
  EXPECT_EQ(demote(kGpa, table, &r), op(TdxStatus::kTlbTrackingNotDone, TdxOperand::kRcx));
  ASSERT_EQ(track(), kOk);
  ASSERT_EQ(demote(kGpa, table, &r), kOk);
  for (uint64_t i : {uint64_t{0}, uint64_t{511}}) {
    EXPECT_EQ(entry(kGpa + i * kPageSize, 0).entry,
              sept_leaf(SeptState::kPending, big + i * kPageSize, Level::k4K))
        << i;
  }
  // And back: a PENDING 2M leaf, not PENDING_BLOCKED.
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa, 1), kOk);
  ASSERT_EQ(track(), kOk);
  ASSERT_EQ(promote(kGpa, &r), kOk);
  EXPECT_EQ(entry(kGpa, 1).entry, sept_leaf(SeptState::kPending, big, Level::k2M));
}

TEST_F(MemResizeTest, RunnableRelocateNeedsBlockThenTrack) {
  init_sys();
  td();
  tables(kGpa);
  const Hpa src = page();
  mem().fill(src.pfn(), kHostKey, 0x5A5A);
  const Hpa old_page = page();
  ASSERT_EQ(add(kGpa, old_page, src), kOk);
  const Hpa pending = page();
  ASSERT_EQ(aug(kGpa + 0x1000, 0, pending), kOk);
  finalize();
  const Hpa target = page();
  SeamcallRegs r;

  EXPECT_EQ(relocate(kGpa, target, &r), op(TdxStatus::kGpaRangeNotBlocked, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, view(SeptState::kMapped, old_page, Level::k4K));
  EXPECT_EQ(r.rdx, detail(0, SeptState::kMapped));
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa, 0), kOk);
  EXPECT_EQ(relocate(kGpa, target, &r), op(TdxStatus::kTlbTrackingNotDone, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, 0u);
  EXPECT_EQ(r.rdx, 0u);
  EXPECT_EQ(type_of(target), PamtPageType::kNda) << "R8 not looked at";
  ASSERT_EQ(track(), kOk);
  ASSERT_EQ(relocate(kGpa, target, &r), kOk);
  EXPECT_EQ(r.rcx, old_page.raw());
  EXPECT_EQ(entry(kGpa, 0).entry, sept_leaf(SeptState::kMapped, target, Level::k4K));
  expect_translation(kGpa, Level::k4K, target);
  EXPECT_EQ(mem().page_hash(target.pfn(), kTd), mem().page_hash(src.pfn(), kHostKey));

  // PENDING: NOT_BLOCKED with its details; PENDING_BLOCKED, tracked, comes back PENDING.
  const Hpa target2 = page();
  EXPECT_EQ(relocate(kGpa + 0x1000, target2, &r),
            op(TdxStatus::kGpaRangeNotBlocked, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, view(SeptState::kPending, pending, Level::k4K));
  EXPECT_EQ(r.rdx, detail(0, SeptState::kPending));
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa + 0x1000, 0), kOk);
  ASSERT_EQ(track(), kOk);
  ASSERT_EQ(relocate(kGpa + 0x1000, target2, &r), kOk);
  EXPECT_EQ(entry(kGpa + 0x1000, 0).entry, sept_leaf(SeptState::kPending, target2, Level::k4K));
}

// --- Illegal states and operands ---------------------------------------------------------------

TEST_F(MemResizeTest, OpStateGateComesFirst) {
  init_sys();
  td(/*init=*/false);
  const uint64_t bad_rcx = uint64_t{1} << 5;
  for (SeamcallLeaf l : {SeamcallLeaf::kMemPageDemote, SeamcallLeaf::kMemPagePromote,
                         SeamcallLeaf::kMemPageRelocate}) {
    SeamcallRegs r;
    EXPECT_EQ(call(l, bad_rcx, tdr_.raw(), 0x7, 0, &r), st(TdxStatus::kOpStateIncorrect))
        << to_string(l);
    EXPECT_EQ(r.rcx, 0u);
    EXPECT_EQ(r.rdx, 0u);
  }
}

TEST_F(MemResizeTest, DemoteRefusesEveryOtherStateAndBadOperands) {
  init_sys();
  td();
  tables(kGpa, 3, 2);
  const Hpa big = page_2m();
  ASSERT_EQ(aug(kGpa, 1, big), kOk);
  tables(kGpa + k2M, 1, 1);  // NL_MAPPED at level 1
  tables(kGpa + 2 * k2M, 1, 1);
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa + 2 * k2M, 1), kOk);  // NL_BLOCKED
  const Gpa free_2m = kGpa + 3 * k2M;
  const Gpa beyond = kGpa + (uint64_t{1} << 30);  // its level-2 entry is FREE
  const Hpa table = page();
  const uint64_t incorrect = op(TdxStatus::kEptEntryStateIncorrect, TdxOperand::kRcx);
  const uint64_t inv_rcx = op(TdxStatus::kOperandInvalid, TdxOperand::kRcx);
  const uint64_t inv_r8 = op(TdxStatus::kOperandInvalid, TdxOperand::kR8);
  const uint64_t meta_r8 = op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kR8);
  struct Case {
    const char* what;
    uint64_t rcx, rdx, r8;
    uint64_t expected, rcx_out, rdx_out;
  };
  const uint64_t tdr = tdr_.raw();
  const Case cases[] = {
      {"level 0", pi(kGpa, 0), tdr, table.raw(), inv_rcx, 0, 0},
      {"level 3", pi(Gpa{0}, 3), tdr, table.raw(), inv_rcx, 0, 0},
      {"2M level, 4K-aligned GPA", PageInfo::of(kGpa + 0x1000, 1).raw(), tdr, table.raw(), inv_rcx,
       0, 0},
      {"reserved handle bit", pi(kGpa, 1), tdr | 2, table.raw(),
       op(TdxStatus::kOperandInvalid, TdxOperand::kRdx), 0, 0},
      {"walk stops at a FREE level-2 entry", pi(beyond, 1), tdr, table.raw(),
       op(TdxStatus::kEptWalkFailed, TdxOperand::kRcx), kFreeView, detail(2, SeptState::kFree)},
      {"FREE", pi(free_2m, 1), tdr, table.raw(), incorrect, kFreeView, detail(1, SeptState::kFree)},
      {"NL_MAPPED (already 4K)", pi(kGpa + k2M, 1), tdr, table.raw(), incorrect, 0x7,
       detail(1, SeptState::kNlMapped)},
      {"NL_BLOCKED", pi(kGpa + 2 * k2M, 1), tdr, table.raw(), incorrect, 0,
       detail(1, SeptState::kNlBlocked)},
      {"NL_MAPPED at level 2", pi(Gpa{0}, 2), tdr, table.raw(), incorrect, 0x7,
       detail(2, SeptState::kNlMapped)},
      {"state before R8: FREE with a bad page", pi(free_2m, 1), tdr, 0x5, incorrect, kFreeView,
       detail(1, SeptState::kFree)},
      {"R8 misaligned", pi(kGpa, 1), tdr, table.raw() + 8, inv_r8, 0, 0},
      {"R8 with key bits", pi(kGpa, 1), tdr, layout().with_key(table, kTd), inv_r8, 0, 0},
      {"R8 beyond memory", pi(kGpa, 1), tdr, kHarnessMemBytes,
       op(TdxStatus::kOperandAddrRangeError, TdxOperand::kR8), 0, 0},
      {"R8 not free (a TDCS page)", pi(kGpa, 1), tdr, tdcs_[0].raw(), meta_r8, 0, 0},
      {"R8 inside the page being split", pi(kGpa, 1), tdr, (big + 3 * kPageSize).raw(), meta_r8, 0,
       0},
  };
  for (const Case& c : cases) {
    SeamcallRegs r;
    EXPECT_EQ(call(SeamcallLeaf::kMemPageDemote, c.rcx, c.rdx, c.r8, 0, &r), c.expected) << c.what;
    EXPECT_EQ(r.rcx, c.rcx_out) << c.what;
    EXPECT_EQ(r.rdx, c.rdx_out) << c.what;
  }
  EXPECT_EQ(state(kGpa, 1), SeptState::kPending) << "nothing changed";
  EXPECT_EQ(type_of(table), PamtPageType::kNda);
  EXPECT_EQ(type_of(big, Level::k2M), PamtPageType::kReg);

  // A locked entry: BUSY with the entry as walked, and host priority asked of its holder.
  const SeptWalkResult e = entry(kGpa, 1);
  mem().fetch_or(e.entry_hpa, kTd, SeptEntry::EntryLock::kMask, std::memory_order_acq_rel);
  SeamcallRegs r;
  EXPECT_EQ(demote(kGpa, table, &r), op(TdxStatus::kOperandBusy, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, view(SeptState::kPending, big, Level::k2M));
  EXPECT_EQ(r.rdx, detail(1, SeptState::kPending));
  SeptEntry now{mem().load(e.entry_hpa, kTd, std::memory_order_acquire)};
  EXPECT_TRUE(now.host_priority());
  mem().store(e.entry_hpa, kTd, now.with_lock(false).raw(), std::memory_order_release);

  // RDX bit 0 (L2 S-EPT add mode) is the leaf's flag: accepted, with no L2 VM to act on.
  ASSERT_EQ(demote(kGpa, table, &r, 1, /*rdx_flags=*/1), kOk);
  EXPECT_EQ(state(kGpa, 1), SeptState::kNlMapped);
  std::printf("demote_errors: %zu (+2) vectors checked\n", std::size(cases));
}

TEST_F(MemResizeTest, PromoteRefusesEveryOtherStateAndAnyUnmergeableTable) {
  init_sys();
  td();
  tables(kGpa, 3, 2);
  const uint64_t incorrect = op(TdxStatus::kEptEntryStateIncorrect, TdxOperand::kRcx);
  const uint64_t invalid = op(TdxStatus::kEptInvalidPromoteConditions, TdxOperand::kRcx);
  const uint64_t nl_detail = detail(1, SeptState::kNlMapped);
  SeamcallRegs r;

  // A 2M PENDING leaf; a FREE entry; bad operands.
  const Hpa big = page_2m();
  ASSERT_EQ(aug(kGpa, 1, big), kOk);
  EXPECT_EQ(promote(kGpa, &r), incorrect);
  EXPECT_EQ(r.rcx, view(SeptState::kPending, big, Level::k2M));
  EXPECT_EQ(r.rdx, detail(1, SeptState::kPending));
  EXPECT_EQ(promote(kGpa + 7 * k2M, &r), incorrect);
  EXPECT_EQ(r.rcx, kFreeView);
  EXPECT_EQ(r.rdx, detail(1, SeptState::kFree));
  EXPECT_EQ(promote(kGpa, &r, 0), op(TdxStatus::kOperandInvalid, TdxOperand::kRcx));
  EXPECT_EQ(call(SeamcallLeaf::kMemPagePromote, pi(kGpa, 1), tdr_.raw() | 1),
            op(TdxStatus::kOperandInvalid, TdxOperand::kRdx))
      << "PROMOTE's handle has no flag";
  // Level 2: the children are tables, not leaves.
  EXPECT_EQ(promote(Gpa{0}, &r, 2), invalid);
  EXPECT_EQ(r.rcx, 0x7u);
  EXPECT_EQ(r.rdx, detail(2, SeptState::kNlMapped));

  // Tables whose 512 children cannot merge, each answering with the parent's details.
  struct Case {
    const char* what;
    Gpa g;
  };
  std::vector<Case> cases;
  // All FREE.
  const Gpa all_free = kGpa + k2M;
  tables(all_free, 1, 1);
  cases.push_back({"512 FREE children", all_free});
  // 511 PENDING and one FREE.
  const Gpa hole = kGpa + 2 * k2M;
  tables(hole, 1, 1);
  const Hpa big2 = page_2m();
  for (uint64_t i = 0; i < 512; ++i) {
    if (i == 300) continue;
    ASSERT_EQ(aug(hole + i * kPageSize, 0, big2 + i * kPageSize), kOk);
  }
  cases.push_back({"one FREE child", hole});
  // 512 PENDING pages, contiguous but starting 4K past a 2M boundary.
  const Gpa shifted = kGpa + 3 * k2M;
  tables(shifted, 1, 1);
  const Hpa big3 = page_2m();
  ASSERT_EQ(page(), big3 + 512 * kPageSize) << "the allocator hands out frames in order";
  for (uint64_t i = 0; i < 512; ++i) {
    ASSERT_EQ(aug(shifted + i * kPageSize, 0, big3 + (i + 1) * kPageSize), kOk);
  }
  cases.push_back({"contiguous, not 2M aligned", shifted});
  // 512 PENDING pages, 2M aligned, two of them swapped.
  const Gpa swapped = kGpa + 4 * k2M;
  tables(swapped, 1, 1);
  const Hpa big4 = page_2m();
  for (uint64_t i = 0; i < 512; ++i) {
    const uint64_t f = i == 10 ? 11 : i == 11 ? 10 : i;
    ASSERT_EQ(aug(swapped + i * kPageSize, 0, big4 + f * kPageSize), kOk);
  }
  cases.push_back({"not contiguous", swapped});
  // 511 MAPPED and one PENDING: contiguous and aligned, but two states.
  const Gpa mixed = kGpa + 5 * k2M;
  tables(mixed, 1, 1);
  const Hpa big5 = page_2m();
  const Hpa src = page();
  for (uint64_t i = 0; i < 511; ++i) {
    ASSERT_EQ(add(mixed + i * kPageSize, big5 + i * kPageSize, src), kOk);
  }
  ASSERT_EQ(aug(mixed + 511 * kPageSize, 0, big5 + 511 * kPageSize), kOk);
  cases.push_back({"MAPPED and PENDING children", mixed});
  // 512 MAPPED, one BLOCKED.
  const Gpa blocked = kGpa + 6 * k2M;
  tables(blocked, 1, 1);
  const Hpa big6 = page_2m();
  for (uint64_t i = 0; i < 512; ++i) {
    ASSERT_EQ(add(blocked + i * kPageSize, big6 + i * kPageSize, src), kOk);
  }
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, blocked + 5 * kPageSize, 0), kOk);
  cases.push_back({"a BLOCKED child", blocked});

  for (const Case& c : cases) {
    EXPECT_EQ(promote(c.g, &r), invalid) << c.what;
    EXPECT_EQ(r.rcx, 0x7u) << c.what;
    EXPECT_EQ(r.rdx, nl_detail) << c.what;
    EXPECT_EQ(state(c.g, 1), SeptState::kNlMapped) << c.what;
    // Every child lock was released on the way out.
    for (uint64_t i : {uint64_t{0}, uint64_t{299}, uint64_t{511}}) {
      EXPECT_FALSE(entry(c.g + i * kPageSize, 0).entry.is_locked()) << c.what << " " << i;
    }
  }
  EXPECT_EQ(type_of(big2 + 299 * kPageSize), PamtPageType::kReg) << "the PAMT untouched";

  // Unblocked, the last range merges; with a child locked it is BUSY (parent's details),
  // and the child's holder is asked to yield.
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeUnblock, blocked + 5 * kPageSize, 0), kOk);
  const SeptWalkResult child = entry(blocked + 100 * kPageSize, 0);
  mem().fetch_or(child.entry_hpa, kTd, SeptEntry::EntryLock::kMask, std::memory_order_acq_rel);
  EXPECT_EQ(promote(blocked, &r), op(TdxStatus::kOperandBusy, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, 0x7u);
  EXPECT_EQ(r.rdx, nl_detail);
  SeptEntry now{mem().load(child.entry_hpa, kTd, std::memory_order_acquire)};
  EXPECT_TRUE(now.host_priority());
  EXPECT_FALSE(entry(blocked + 99 * kPageSize, 0).entry.is_locked());
  mem().store(child.entry_hpa, kTd, now.with_lock(false).raw(), std::memory_order_release);
  // Version 1 reports no L2 S-EPT pages (NULL_PA in R9-R11).
  r = SeamcallRegs{};
  r.rcx = pi(blocked, 1);
  r.rdx = tdr_.raw();
  ASSERT_EQ(ModuleHarness::call(0, SeamcallLeaf::kMemPagePromote, r, /*version=*/1), kOk);
  EXPECT_EQ(r.r9, ~uint64_t{0});
  EXPECT_EQ(r.r10, ~uint64_t{0});
  EXPECT_EQ(r.r11, ~uint64_t{0});
  EXPECT_EQ(entry(blocked, 1).entry, sept_leaf(SeptState::kMapped, big6, Level::k2M));
  std::printf("promote_conditions: %zu (+6) vectors checked\n", cases.size());
}

TEST_F(MemResizeTest, RelocateRefusesEveryOtherStateAndBadTargets) {
  init_sys();
  td();
  tables(kGpa);
  const Hpa src = page();
  const Hpa old_page = page();
  ASSERT_EQ(add(kGpa, old_page, src), kOk);
  tables(kGpa + 2 * k2M, 1, 1);
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa + 2 * k2M, 1), kOk);  // NL_BLOCKED
  const Hpa big = page_2m();
  ASSERT_EQ(aug(kGpa + k2M, 1, big), kOk);
  const Hpa target = page();
  const uint64_t inv_r8 = op(TdxStatus::kOperandInvalid, TdxOperand::kR8);
  const uint64_t walk_failed = op(TdxStatus::kEptWalkFailed, TdxOperand::kRcx);
  struct Case {
    const char* what;
    uint64_t rcx, rdx, r8;
    uint64_t expected, rcx_out, rdx_out;
  };
  const uint64_t tdr = tdr_.raw();
  const uint64_t mapped_rcx = pi(kGpa, 0);
  const Case cases[] = {
      {"level 1", pi(kGpa + k2M, 1), tdr, target.raw(),
       op(TdxStatus::kOperandInvalid, TdxOperand::kRcx), 0, 0},
      {"handle bit 0 (no flag)", mapped_rcx, tdr | 1, target.raw(),
       op(TdxStatus::kOperandInvalid, TdxOperand::kRdx), 0, 0},
      {"FREE", pi(kGpa + 0x1000, 0), tdr, target.raw(),
       op(TdxStatus::kEptEntryStateIncorrect, TdxOperand::kRcx), kFreeView,
       detail(0, SeptState::kFree)},
      {"inside a 2M leaf", pi(kGpa + k2M + 0x3000, 0), tdr, target.raw(), walk_failed,
       view(SeptState::kPending, big, Level::k2M), detail(1, SeptState::kPending)},
      {"under an NL_BLOCKED table", pi(kGpa + 2 * k2M, 0), tdr, target.raw(), walk_failed, 0,
       detail(1, SeptState::kNlBlocked)},
      {"onto itself", mapped_rcx, tdr, old_page.raw(), inv_r8, 0, 0},
      {"R8 misaligned", mapped_rcx, tdr, target.raw() + 8, inv_r8, 0, 0},
      {"R8 not free (a TDCS page)", mapped_rcx, tdr, tdcs_[0].raw(),
       op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kR8), 0, 0},
      {"R8 inside a 2M page", mapped_rcx, tdr, (big + kPageSize).raw(),
       op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kR8), 0, 0},
      {"R8 beyond memory", mapped_rcx, tdr, kHarnessMemBytes,
       op(TdxStatus::kOperandAddrRangeError, TdxOperand::kR8), 0, 0},
  };
  for (const Case& c : cases) {
    SeamcallRegs r;
    EXPECT_EQ(call(SeamcallLeaf::kMemPageRelocate, c.rcx, c.rdx, c.r8, 0, &r), c.expected)
        << c.what;
    EXPECT_EQ(r.rcx, c.rcx_out) << c.what;
    EXPECT_EQ(r.rdx, c.rdx_out) << c.what;
  }
  EXPECT_EQ(entry(kGpa, 0).entry, sept_leaf(SeptState::kMapped, old_page, Level::k4K));
  EXPECT_EQ(type_of(old_page), PamtPageType::kReg);
  EXPECT_EQ(type_of(target), PamtPageType::kNda);
  std::printf("relocate_errors: %zu vectors checked\n", std::size(cases));
}

}  // namespace
}  // namespace tdxsim
