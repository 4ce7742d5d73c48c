#include "tdx_module/sept_state.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace tdxsim {
namespace {

using enum SeptState;

// Columns of the hand-written table, in this order.
constexpr SeptState kColumns[] = {
    kFree,  kNlMapped, kNlBlocked, kMapped, kBlocked, kPending, kPendingBlocked, kRemoved,
    // Migration states: not in the spec's table; from the module's sept_state_lookup.c.
    kBlockedW, kExportedBlockedW, kExportedDirty, kExportedDirtyBlockedW, kPendingBlockedW,
    kPendingExportedBlockedW, kPendingExportedDirty, kPendingExportedDirtyBlockedW};

struct TableRow {
  uint16_t leaf;
  const char* name;
  // One character per column: 'x' allowed, '.' rejected.
  //       FREE NL_M NL_B MAP BLK PEND P_BLK REMOVED | BW EBW ED EDBW PBW PEBW PED PEDBW
  const char* allowed;
};

// shared/spec/tdx-module-abi.md §3.2 (first eight columns; REMOVED from the AUG and SEPT.RD
// rows' notes and §1.2 "SEPT.RD: allowed in every S-EPT state"), written by hand.
// Footnote-¹ entries (REMOVE & co. on unblocked states) are allowed by the table; BLOCK on a
// blocked entry and ACCEPT on MAPPED are rejected by it (the leaves answer those with
// informational codes before looking).
constexpr TableRow kSeamcallTable[] = {
    {2, "PAGE.ADD", "x......." "........"},
    {3, "SEPT.ADD", "xx......" "........"},
    {5, "PAGE.RELOCATE", "...xxxx." "xxxxxxxx"},
    {6, "PAGE.AUG", "x......x" "........"},
    {7, "RANGE.BLOCK", ".x.x.x.." "x...x..."},
    {12, "MEM.RD", "...x...." "xxxx...."},
    {14, "MEM.WR", "...x...." "..x....."},
    {15, "PAGE.DEMOTE", "...xxxx." "........"},
    {16, "MR.EXTEND", "...x...." "........"},
    {23, "PAGE.PROMOTE", ".xx....." "........"},
    {25, "SEPT.RD", "xxxxxxxx" "xxxxxxxx"},
    {29, "PAGE.REMOVE", "...xxxx." "x...x..."},
    {30, "SEPT.REMOVE", ".xx....." "........"},
    {39, "RANGE.UNBLOCK", "..x.x.x." "........"},
};

constexpr TableRow kTdcallTable[] = {
    {6, "TDG.MEM.PAGE.ACCEPT", ".....x.." "......x."},
};

template <size_t N>
const TableRow* find_row(const TableRow (&table)[N], uint16_t leaf) {
  for (const TableRow& r : table) {
    if (r.leaf == leaf) return &r;
  }
  return nullptr;
}

TEST(SeptStateTable, EverySeamcallLeafInEveryState) {
  static_assert(std::size(kColumns) == 16);
  int pairs = 0;
  int allowed = 0;
  for (uint16_t leaf = 0; leaf < 128; ++leaf) {
    const TableRow* row = find_row(kSeamcallTable, leaf);
    if (row != nullptr) {
      ASSERT_EQ(std::strlen(row->allowed), std::size(kColumns)) << row->name;
    }
    for (size_t c = 0; c < std::size(kColumns); ++c) {
      const bool expect = row != nullptr && row->allowed[c] == 'x';
      EXPECT_EQ(sept_leaf_allowed(leaf, kColumns[c]), expect)
          << "leaf " << leaf << (row ? fmt::format(" ({})", row->name) : std::string{})
          << " in " << to_string(kColumns[c]);
      ++pairs;
      allowed += expect;
    }
  }
  EXPECT_TRUE(sept_leaf_allowed(SeptLeaf::kMemPageAug, kFree));
  EXPECT_FALSE(sept_leaf_allowed(SeptLeaf::kMemPageAug, kMapped));
  fmt::print("[ info ] {} (SEAMCALL leaf, state) pairs, {} allowed\n", pairs, allowed);
}

TEST(SeptStateTable, EveryTdcallLeafInEveryState) {
  int pairs = 0;
  for (uint16_t leaf = 0; leaf < 32; ++leaf) {
    const TableRow* row = find_row(kTdcallTable, leaf);
    for (size_t c = 0; c < std::size(kColumns); ++c) {
      const bool expect = row != nullptr && row->allowed[c] == 'x';
      EXPECT_EQ(sept_tdcall_allowed(leaf, kColumns[c]), expect)
          << "TDCALL " << leaf << " in " << to_string(kColumns[c]);
      ++pairs;
    }
  }
  fmt::print("[ info ] {} (TDCALL leaf, state) pairs\n", pairs);
}

TEST(SeptStateTable, SeptLeafNumbersAreTheAbiNumbers) {
  EXPECT_EQ(static_cast<uint16_t>(SeptLeaf::kMemPageAdd), 2);
  EXPECT_EQ(static_cast<uint16_t>(SeptLeaf::kMemSeptAdd), 3);
  EXPECT_EQ(static_cast<uint16_t>(SeptLeaf::kMemPageRelocate), 5);
  EXPECT_EQ(static_cast<uint16_t>(SeptLeaf::kMemPageAug), 6);
  EXPECT_EQ(static_cast<uint16_t>(SeptLeaf::kMemRangeBlock), 7);
  EXPECT_EQ(static_cast<uint16_t>(SeptLeaf::kMemRd), 12);
  EXPECT_EQ(static_cast<uint16_t>(SeptLeaf::kMemWr), 14);
  EXPECT_EQ(static_cast<uint16_t>(SeptLeaf::kMemPageDemote), 15);
  EXPECT_EQ(static_cast<uint16_t>(SeptLeaf::kMrExtend), 16);
  EXPECT_EQ(static_cast<uint16_t>(SeptLeaf::kMemPagePromote), 23);
  EXPECT_EQ(static_cast<uint16_t>(SeptLeaf::kMemSeptRd), 25);
  EXPECT_EQ(static_cast<uint16_t>(SeptLeaf::kMemPageRemove), 29);
  EXPECT_EQ(static_cast<uint16_t>(SeptLeaf::kMemSeptRemove), 30);
  EXPECT_EQ(static_cast<uint16_t>(SeptLeaf::kMemRangeUnblock), 39);
  EXPECT_EQ(kSeptTdcallAccept, 6);
}

TEST(SeptStateClasses, PerState) {
  struct Row {
    SeptState state;
    bool tracking, blocked, pending, guest_leaf, leaf;
  };
  // From spec §3.1 ("needs TLB tracking to change", "guest can access") and the module's
  // sept_special_flags_lookup for the migration states.
  constexpr Row rows[] = {
      {kFree, false, false, false, false, false},
      {kRemoved, false, false, false, false, false},
      {kNlMapped, true, false, false, false, false},
      {kNlBlocked, true, true, false, false, false},
      {kMapped, true, false, false, true, true},
      {kBlocked, true, true, false, false, true},
      {kPending, true, false, true, false, true},
      {kPendingBlocked, true, true, true, false, true},
      {kBlockedW, true, false, false, true, true},
      {kExportedBlockedW, false, false, false, true, true},
      {kExportedDirty, true, false, false, true, true},
      {kExportedDirtyBlockedW, true, false, false, true, true},
      {kPendingBlockedW, true, false, true, false, true},
      {kPendingExportedBlockedW, false, false, true, false, true},
      {kPendingExportedDirty, true, false, true, false, true},
      {kPendingExportedDirtyBlockedW, true, false, true, false, true},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(to_string(r.state));
    EXPECT_EQ(tlb_tracking_required(r.state), r.tracking);
    EXPECT_EQ(is_blocked(r.state), r.blocked);
    EXPECT_EQ(is_pending(r.state), r.pending);
    EXPECT_EQ(is_guest_accessible_leaf(r.state), r.guest_leaf);
    EXPECT_EQ(is_leaf_state(r.state), r.leaf);
    // The leaf flag of the encoding (PS, bit 6) says the same.
    EXPECT_EQ((*sept_state_encoding(r.state) & 0x40) != 0, r.leaf);
  }
  fmt::print("[ info ] {} states classified\n", std::size(rows));
}

TEST(SeptStateClasses, BlockAndUnblockPairs) {
  EXPECT_EQ(blocked_state(kMapped), kBlocked);
  EXPECT_EQ(blocked_state(kPending), kPendingBlocked);
  EXPECT_EQ(blocked_state(kNlMapped), kNlBlocked);
  EXPECT_EQ(unblocked_state(kBlocked), kMapped);
  EXPECT_EQ(unblocked_state(kPendingBlocked), kPending);
  EXPECT_EQ(unblocked_state(kNlBlocked), kNlMapped);
}

TEST(SeptStateDeathTest, MisuseAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH((void)sept_leaf_allowed(SeptLeaf::kMemSeptRd, kL2Mapped), "not an L1");
  EXPECT_DEATH((void)tlb_tracking_required(kL2NlBlocked), "not an L1");
  EXPECT_DEATH((void)blocked_state(kBlocked), "no transition");
  EXPECT_DEATH((void)unblocked_state(kFree), "no transition");
}

}  // namespace
}  // namespace tdxsim
