#include "tdx_module/pamt.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace tdxsim {
namespace {

using enum PamtPageType;
using enum Requester;

constexpr PhysAddrLayout kLayout{};  // MAXPHYADDR 52, key ID in bits 51:46
constexpr uint64_t kFrames = 3 * 512 * 512 + 100;  // 3 GiB + 100 frames: a partial last 2M

// The exact RAX values, written out from spec §2.2/§2.4.
constexpr uint64_t kInvalidR8 = 0xC000'0100'0000'0008;
constexpr uint64_t kRangeR8 = 0xC000'0101'0000'0008;
constexpr uint64_t kBusyR8 = 0x8000'0200'0000'0008;
constexpr uint64_t kBusyHostPrioRcx = 0x8000'0204'0000'0001;
constexpr uint64_t kMetadataR8 = 0xC000'0300'0000'0008;
constexpr uint64_t kMetadataRcx = 0xC000'0300'0000'0001;

// Assigns the page at `pfn` of size `level` as `type` owned by `tdr`.
void assign(Pamt& pamt, Pfn pfn, Level level, PamtPageType type, Pfn tdr = Pfn{0x42}) {
  auto l = pamt.lock(pfn, level, kHost, true);
  ASSERT_TRUE(l.has_value()) << to_string(l.error());
  ASSERT_EQ(l->level(), level);
  l->set_type(type);
  l->set_owner(tdr);
  l->set_bepoch(0);
}

TEST(Pamt, StartsFreeAndCostsNothingUntilTouched) {
  // 65 GiB of host memory: 17M entries per level-4K array, mapped but untouched.
  Pamt big(uint64_t{65} << 18);
  EXPECT_EQ(big.frames(), uint64_t{65} << 18);
  const Pfn last{(uint64_t{65} << 18) - 1};
  EXPECT_EQ(big.peek_type(last, Level::k4K), kNda);
  auto l = big.lock(last, Level::k4K, kHost, true);
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->level(), Level::k4K);
  EXPECT_EQ(l->type(), kNda);
  EXPECT_EQ(l->owner(), Pfn{0});
  EXPECT_EQ(l->bepoch(), 0u);
  EXPECT_EQ(big.count(kReg), 0u);
}

TEST(Pamt, FieldsRoundTripUnderTheExclusiveLock) {
  Pamt pamt(kFrames);
  {
    auto l = pamt.lock(Pfn{7}, Level::k4K, kHost, true);
    ASSERT_TRUE(l.has_value());
    l->set_type(kTdr);
    l->set_owner(Pfn{(uint64_t{1} << 40) - 1});
    l->set_bepoch(0x8000'0000'0000'0003);
  }
  auto l = pamt.lock(Pfn{7}, Level::k4K, kGuest, false);
  ASSERT_TRUE(l.has_value());
  EXPECT_FALSE(l->exclusive());
  EXPECT_EQ(l->type(), kTdr);
  EXPECT_EQ(l->owner(), Pfn{(uint64_t{1} << 40) - 1});
  EXPECT_EQ(l->bepoch(), 0x8000'0000'0000'0003u);
  EXPECT_EQ(l->pfn(), Pfn{7});
  EXPECT_EQ(pamt.count(kTdr), 1u);
  EXPECT_EQ(pamt.count(kTdr, Level::k4K), 1u);
  // assign() writes all three at once, over whatever the entry held.
  {
    auto w = pamt.lock(Pfn{8}, Level::k4K, kHost, true);
    ASSERT_TRUE(w.has_value());
    w->set_type(kTdcx);
    w->set_owner(Pfn{0x55});
    w->set_bepoch(9);
    w->assign(kReg, Pfn{(uint64_t{1} << 40) - 1}, 0);
    EXPECT_EQ(w->type(), kReg);
    EXPECT_EQ(w->owner(), Pfn{(uint64_t{1} << 40) - 1});
    EXPECT_EQ(w->bepoch(), 0u);
  }
  EXPECT_EQ(pamt.count(kReg), 1u);  // counted: the entry's page is noted typed
  EXPECT_EQ(pamt.count(kTdcx), 0u);
}

TEST(Pamt, LocksAreTheModulesHostPriorityLocks) {
  Pamt pamt(kFrames);
  auto a = pamt.lock(Pfn{9}, Level::k4K, kGuest, false);
  auto b = pamt.lock(Pfn{9}, Level::k4K, kHost, false);
  ASSERT_TRUE(a && b);  // readers share
  auto c = pamt.lock(Pfn{9}, Level::k4K, kHost, true);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), TryLockResult::kBusy);  // and the host now has priority
  a->unlock();
  b->unlock();
  auto d = pamt.lock(Pfn{9}, Level::k4K, kGuest, false);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error(), TryLockResult::kBusyHostPriority);
  auto e = pamt.lock(Pfn{9}, Level::k4K, kHost, true);
  ASSERT_TRUE(e);
  // Neighbours are independent; the path above (2M, 1G) is only held shared.
  EXPECT_TRUE(pamt.lock(Pfn{10}, Level::k4K, kHost, true).has_value());
  EXPECT_TRUE(pamt.lock(Pfn{0}, Level::k2M, kHost, false).has_value());
  // But the 2M entry cannot be taken exclusively under a 4K holder.
  auto f = pamt.lock(Pfn{0}, Level::k2M, kHost, true);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error(), TryLockResult::kBusy);
  e->unlock();
  EXPECT_TRUE(pamt.lock(Pfn{0}, Level::k2M, kHost, true).has_value());
}

TEST(Pamt, MovingALockMovesTheHold) {
  Pamt pamt(kFrames);
  std::optional<PamtLock> kept;
  {
    auto l = pamt.lock(Pfn{3}, Level::k4K, kHost, true);
    ASSERT_TRUE(l);
    kept.emplace(std::move(*l));
    EXPECT_FALSE(l->held());
  }
  EXPECT_TRUE(kept->held());
  EXPECT_FALSE(pamt.lock(Pfn{3}, Level::k4K, kHost, false).has_value());
  kept.reset();
  EXPECT_TRUE(pamt.lock(Pfn{3}, Level::k4K, kHost, true).has_value());
}

TEST(Pamt, LargePagesAreTrackedAtTheirOwnLevel) {
  Pamt pamt(kFrames);
  assign(pamt, Pfn{512}, Level::k2M, kReg);
  assign(pamt, Pfn{512 * 512}, Level::k1G, kReg);
  EXPECT_EQ(pamt.count(kReg, Level::k2M), 1u);
  EXPECT_EQ(pamt.count(kReg, Level::k1G), 1u);
  EXPECT_EQ(pamt.count(kReg, Level::k4K), 0u);
  EXPECT_EQ(pamt.peek_type(Pfn{513}, Level::k4K), kNda);  // the children stay NDA
  // A 4K walk inside either page stops at the page's entry.
  auto in_2m = pamt.lock(Pfn{700}, Level::k4K, kHost, false);
  ASSERT_TRUE(in_2m);
  EXPECT_EQ(in_2m->level(), Level::k2M);
  EXPECT_EQ(in_2m->pfn(), Pfn{512});
  EXPECT_EQ(in_2m->type(), kReg);
  EXPECT_EQ(in_2m->owner(), Pfn{0x42});
  auto in_1g = pamt.lock(Pfn{512 * 512 + 700}, Level::k2M, kHost, false);
  ASSERT_TRUE(in_1g);
  EXPECT_EQ(in_1g->level(), Level::k1G);
  EXPECT_EQ(in_1g->pfn(), Pfn{512 * 512});
}

TEST(Pamt, TwoMegRangeFreeNeedsEveryEntryFree) {
  Pamt pamt(kFrames);
  EXPECT_TRUE(pamt.is_2m_range_free(Pfn{1024}));
  assign(pamt, Pfn{1024 + 511}, Level::k4K, kEpt);
  EXPECT_FALSE(pamt.is_2m_range_free(Pfn{1024}));
  assign(pamt, Pfn{1536}, Level::k2M, kReg);
  EXPECT_FALSE(pamt.is_2m_range_free(Pfn{1536}));
  EXPECT_TRUE(pamt.is_2m_range_free(Pfn{2048}));
}

TEST(Pamt, DemoteSplitsALargePageIntoItsChildrenAndPromoteMergesThemBack) {
  Pamt pamt(kFrames);
  assign(pamt, Pfn{1024}, Level::k2M, kReg, Pfn{0x77});
  {
    auto l = pamt.lock(Pfn{1024}, Level::k2M, kHost, true);
    ASSERT_TRUE(l);
    l->set_bepoch(5);  // a block recorded on the large page
    pamt.demote(*l);
    EXPECT_EQ(l->type(), kNda);
  }
  EXPECT_EQ(pamt.count(kReg, Level::k2M), 0u);
  EXPECT_EQ(pamt.count(kReg, Level::k4K), 512u);
  for (uint64_t i : {uint64_t{0}, uint64_t{1}, uint64_t{300}, uint64_t{511}}) {
    // A 4K walk now ends at the 4K entry: the page is 512 small pages of the same TD.
    auto c = pamt.lock(Pfn{1024 + i}, Level::k4K, kHost, false);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->level(), Level::k4K) << i;
    EXPECT_EQ(c->type(), kReg) << i;
    EXPECT_EQ(c->owner(), Pfn{0x77}) << i;
    EXPECT_EQ(c->bepoch(), 0u) << i;
  }
  EXPECT_EQ(pamt.peek_type(Pfn{1536}, Level::k4K), kNda) << "the next 2M is untouched";

  // A 4K child held shared keeps the merge out: the 2M entry cannot be taken exclusively.
  {
    auto child = pamt.lock(Pfn{1024 + 9}, Level::k4K, kHost, false);
    ASSERT_TRUE(child);
    EXPECT_FALSE(pamt.lock(Pfn{1024}, Level::k2M, kHost, true).has_value());
  }
  {
    auto l = pamt.lock(Pfn{1024}, Level::k2M, kHost, true);
    ASSERT_TRUE(l);
    ASSERT_EQ(l->level(), Level::k2M);
    pamt.promote(*l);
    EXPECT_EQ(l->type(), kReg);
    EXPECT_EQ(l->owner(), Pfn{0x77});
    EXPECT_EQ(l->bepoch(), 0u);
  }
  EXPECT_EQ(pamt.count(kReg, Level::k2M), 1u);
  EXPECT_EQ(pamt.count(kReg, Level::k4K), 0u);
  EXPECT_EQ(pamt.peek_type(Pfn{1024 + 300}, Level::k4K), kNda);
  auto in_2m = pamt.lock(Pfn{1024 + 300}, Level::k4K, kHost, false);
  ASSERT_TRUE(in_2m);
  EXPECT_EQ(in_2m->level(), Level::k2M);
}

TEST(Pamt, DemoteAndPromoteAtOneGig) {
  Pamt pamt(kFrames);
  const Pfn g{512 * 512};
  assign(pamt, g, Level::k1G, kReg, Pfn{0x99});
  {
    auto l = pamt.lock(g, Level::k1G, kHost, true);
    ASSERT_TRUE(l);
    pamt.demote(*l);
  }
  EXPECT_EQ(pamt.count(kReg, Level::k1G), 0u);
  EXPECT_EQ(pamt.count(kReg, Level::k2M), 512u);
  EXPECT_EQ(pamt.count(kReg, Level::k4K), 0u);
  auto c = pamt.lock(g + 511 * 512 + 3, Level::k4K, kHost, false);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->level(), Level::k2M);
  EXPECT_EQ(c->pfn(), g + 511 * 512);
  EXPECT_EQ(c->owner(), Pfn{0x99});
  c->unlock();
  {
    auto l = pamt.lock(g, Level::k1G, kHost, true);
    ASSERT_TRUE(l);
    pamt.promote(*l);
  }
  EXPECT_EQ(pamt.count(kReg, Level::k1G), 1u);
  EXPECT_EQ(pamt.count(kReg, Level::k2M), 0u);
}

// The module's operand checks, one failure per row, in its order (earlier checks win).
TEST(Pamt, HpaOperandChecksInTheModulesOrder) {
  Pamt pamt(kFrames);
  const uint64_t end = kFrames * kPageSize;
  assign(pamt, Pfn{0x10}, Level::k4K, kReg);                // a TD page
  assign(pamt, Pfn{0x200}, Level::k2M, kReg);               // a 2M TD page at 2 MiB
  assign(pamt, Pfn{0x400 + 5}, Level::k4K, kTdcx);          // one used frame at 4 MiB + 20K
  assign(pamt, Pfn{512 * 512}, Level::k1G, kReg);           // a 1G TD page at 1 GiB
  pamt.mark_reserved(Pfn{0x30}, 1);
  auto holder = pamt.lock(Pfn{0x20}, Level::k4K, kHost, true);  // someone works on 0x20000
  ASSERT_TRUE(holder);

  struct Row {
    const char* name;
    uint64_t hpa;
    Level size;
    PamtPageType expected;
    TdxOperand op;
    Requester who;
    uint64_t status;  // 0: success
  };
  const Row rows[] = {
      {"free 4K page", 0x11000, Level::k4K, kNda, TdxOperand::kR8, kHost, 0},
      {"misaligned", 0x11800, Level::k4K, kNda, TdxOperand::kR8, kHost, kInvalidR8},
      {"2M operand 4K aligned", 0x601000, Level::k2M, kNda, TdxOperand::kR8, kHost, kInvalidR8},
      {"HKID bits", 0x11000 | (uint64_t{3} << 46), Level::k4K, kNda, TdxOperand::kR8, kHost,
       kInvalidR8},
      {"above MAX_PA", 0x11000 | (uint64_t{1} << 52), Level::k4K, kNda, TdxOperand::kR8, kHost,
       kInvalidR8},
      {"misaligned beats out of range", end + 0x800, Level::k4K, kNda, TdxOperand::kR8, kHost,
       kInvalidR8},
      {"beyond memory", end, Level::k4K, kNda, TdxOperand::kR8, kHost, kRangeR8},
      {"2M page past the end", (kFrames & ~uint64_t{511}) * kPageSize, Level::k2M, kNda,
       TdxOperand::kR8, kHost, kRangeR8},
      {"a page past the end", end + 0x1000, Level::k4K, kReg, TdxOperand::kR8, kHost,
       kRangeR8},
      {"busy", 0x20000, Level::k4K, kNda, TdxOperand::kR8, kHost, kBusyR8},
      {"busy beats wrong type", 0x20000, Level::k4K, kTdr, TdxOperand::kR8, kHost, kBusyR8},
      {"guest after host lost", 0x20000, Level::k4K, kNda, TdxOperand::kRcx, kGuest,
       kBusyHostPrioRcx},
      {"wrong type", 0x10000, Level::k4K, kNda, TdxOperand::kR8, kHost, kMetadataR8},
      {"right type", 0x10000, Level::k4K, kReg, TdxOperand::kR8, kHost, 0},
      {"reserved frame", 0x30000, Level::k4K, kNda, TdxOperand::kR8, kHost, kMetadataR8},
      {"4K inside an assigned 2M", 0x201000, Level::k4K, kNda, TdxOperand::kR8, kHost,
       kMetadataR8},
      {"4K inside an assigned 2M, as the page's type", 0x201000, Level::k4K, kReg,
       TdxOperand::kRcx, kHost, kMetadataRcx},
      {"the 2M page itself", 0x200000, Level::k2M, kReg, TdxOperand::kR8, kHost, 0},
      {"2M with a used 4K frame", 0x400000, Level::k2M, kNda, TdxOperand::kR8, kHost,
       kMetadataR8},
      {"free 2M page", 0x600000, Level::k2M, kNda, TdxOperand::kR8, kHost, 0},
      {"2M inside an assigned 1G", 0x4000'0000 + 0x20'0000, Level::k2M, kNda, TdxOperand::kR8,
       kHost, kMetadataR8},
      {"4K inside an assigned 1G", 0x4000'0000 + 0x5000, Level::k4K, kReg, TdxOperand::kR8,
       kHost, kMetadataR8},
      {"the 1G page", 0x4000'0000, Level::k1G, kReg, TdxOperand::kR8, kHost, 0},
      {"TDR operand as TDR", 0x10000, Level::k4K, kTdr, TdxOperand::kRcx, kHost, kMetadataRcx},
  };
  int checked = 0;
  const auto expect_row = [](const Row& r, std::expected<PamtLock, uint64_t>& got) {
    if (r.status == 0) {
      ASSERT_TRUE(got.has_value()) << describe_status(got.error());
      EXPECT_EQ(got->level(), r.size);
      EXPECT_EQ(got->type(), r.expected);
      EXPECT_EQ(got->pfn(), Hpa{r.hpa}.pfn());
      got->unlock();
    } else {
      ASSERT_FALSE(got.has_value());
      EXPECT_EQ(got.error(), r.status)
          << fmt::format("{:#x} ({}) vs {:#x}", got.error(), describe_status(got.error()),
                         r.status);
    }
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    auto got = pamt.check_hpa_operand(Hpa{r.hpa}, r.size, r.expected, r.op, r.who, r.who == kHost,
                                      kLayout);
    expect_row(r, got);
    // The module's own format check has made step 1's HKID and MAX_PA tests: the rest
    // answers alike.
    if ((r.hpa & ~kLayout.frame_mask()) == 0) {
      SCOPED_TRACE("lock_hpa_operand");
      auto rest =
          pamt.lock_hpa_operand(Hpa{r.hpa}, r.size, r.expected, r.op, r.who, r.who == kHost);
      expect_row(r, rest);
    }
    ++checked;
  }
  // A failed check holds nothing: every page is free to lock again.
  holder->unlock();
  for (uint64_t pfn : {0x10u, 0x11u, 0x20u, 0x30u, 0x200u, 0x201u, 0x400u, 0x600u}) {
    EXPECT_TRUE(pamt.lock(Pfn{pfn}, Level::k4K, kHost, true).has_value()) << pfn;
  }
  EXPECT_TRUE(pamt.lock(Pfn{512 * 512}, Level::k1G, kHost, true).has_value());
  fmt::print("[ info ] {} HPA operand checks\n", checked);
}

TEST(Pamt, CountsFollowEverySetter) {
  Pamt pamt(kFrames);
  pamt.mark_reserved(Pfn{100}, 3);
  assign(pamt, Pfn{1}, Level::k4K, kTdr);
  assign(pamt, Pfn{2}, Level::k4K, kTdcx);
  assign(pamt, Pfn{3}, Level::k4K, kTdcx);
  assign(pamt, Pfn{4}, Level::k4K, kEpt);
  assign(pamt, Pfn{512}, Level::k2M, kReg);
  EXPECT_EQ(pamt.count(kRsvd), 3u);
  EXPECT_EQ(pamt.count(kTdr), 1u);
  EXPECT_EQ(pamt.count(kTdcx), 2u);
  EXPECT_EQ(pamt.count(kEpt), 1u);
  EXPECT_EQ(pamt.count(kReg), 1u);
  EXPECT_EQ(pamt.count(kTdvpr), 0u);
  {
    auto l = pamt.lock(Pfn{3}, Level::k4K, kHost, true);
    ASSERT_TRUE(l);
    l->set_type(kNda);  // reclaimed
  }
  {
    auto l = pamt.lock(Pfn{512}, Level::k2M, kHost, true);
    ASSERT_TRUE(l);
    l->set_type(kNda);
  }
  EXPECT_EQ(pamt.count(kTdcx), 1u);
  EXPECT_EQ(pamt.count(kReg), 0u);
}

// BEPOCH and the TD epoch (spec §5.2), every case of the formula with E = TD_EPOCH:
//   tracked  ⇔  BEPOCH < E-1  ∨  (BEPOCH = E-1 ∧ REFCOUNT[BEPOCH&1] = 0), migration flag clear.
TEST(TlbTracking, EveryCaseOfTheFormula) {
  struct Row {
    const char* name;
    uint64_t bepoch, td_epoch;
    uint16_t refcount;
    bool tracked;
  };
  const Row rows[] = {
      {"blocked two epochs ago, vCPUs running", 3, 5, 4, true},
      {"blocked long ago", 0, 100, 65535, true},
      {"blocked last epoch, nobody left in it", 4, 5, 0, true},
      {"blocked last epoch, vCPUs still in it", 4, 5, 1, false},
      {"blocked this epoch (no TRACK yet), none running", 5, 5, 0, false},
      {"blocked this epoch, vCPUs running", 5, 5, 3, false},
      {"BEPOCH ahead of the TD epoch", 6, 5, 0, false},
      {"block before FINALIZE, no TRACK (A7)", 1, 1, 0, false},
      {"block before FINALIZE, one TRACK, no vCPU", 1, 2, 0, true},
      {"fresh AUG (BEPOCH 0) in epoch 1", 0, 1, 0, true},
      {"fresh AUG (BEPOCH 0) in epoch 1, vCPU in epoch 0's parity", 0, 1, 2, false},
      {"migration flag", (uint64_t{1} << 63) | 1, 10, 0, false},
      {"migration flag, otherwise ancient", uint64_t{1} << 63, ~uint64_t{0}, 0, false},
      {"large epochs", 0x1'0000'0000, 0x1'0000'0001, 0, true},
      {"large epochs, refcount", 0x1'0000'0000, 0x1'0000'0001, 9, false},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(is_tlb_tracked(r.bepoch, r.td_epoch, r.refcount), r.tracked) << r.name;
  }
  // A sweep against the formula written with E-1 computed as the spec reads it.
  int sweep = 0;
  for (uint64_t e = 1; e <= 8; ++e) {
    for (uint64_t b = 0; b <= 10; ++b) {
      for (uint16_t rc : {uint16_t{0}, uint16_t{1}, uint16_t{2}, uint16_t{65535}}) {
        const bool spec = (b + 1 < e) || (b + 1 == e && rc == 0);
        EXPECT_EQ(is_tlb_tracked(b, e, rc), spec) << b << " " << e << " " << rc;
        ++sweep;
      }
    }
  }
  static_assert(is_tlb_tracked(3, 5, 1) && !is_tlb_tracked(4, 5, 1));
  fmt::print("[ info ] {} named cases, {} swept\n", std::size(rows), sweep);
}

TEST(PamtNames, ToStringAndAbiValues) {
  EXPECT_STREQ(to_string(kNda), "PT_NDA");
  EXPECT_STREQ(to_string(kEpt), "PT_EPT");
  EXPECT_EQ(static_cast<int>(kNda), 0);
  EXPECT_EQ(static_cast<int>(kRsvd), 1);
  EXPECT_EQ(static_cast<int>(kReg), 3);
  EXPECT_EQ(static_cast<int>(kTdr), 4);
  EXPECT_EQ(static_cast<int>(kTdcx), 5);
  EXPECT_EQ(static_cast<int>(kTdvpr), 6);
  EXPECT_EQ(static_cast<int>(kEpt), 8);
}

TEST(PamtDeathTest, MisuseAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Pamt pamt(1024);
  EXPECT_DEATH(
      {
        auto l = pamt.lock(Pfn{1}, Level::k4K, kHost, false);
        l->set_type(kReg);
      },
      "without its exclusive lock");
  EXPECT_DEATH(
      {
        auto l = pamt.lock(Pfn{1}, Level::k4K, kHost, false);
        l->assign(kReg, Pfn{0x42}, 0);
      },
      "without its exclusive lock");
  EXPECT_DEATH(
      {
        auto l = pamt.lock(Pfn{1}, Level::k4K, kHost, true);
        l->assign(kReg, Pfn{uint64_t{1} << 40}, 0);
      },
      "beyond 40 bits");
  EXPECT_DEATH((void)pamt.lock(Pfn{1}, Level::k4K, kGuest, true), "guest");
  EXPECT_DEATH((void)pamt.lock(Pfn{1024}, Level::k4K, kHost, false), "beyond");
  EXPECT_DEATH((void)pamt.count(kNda), "not counted");
  EXPECT_DEATH((void)pamt.check_hpa_operand(Hpa{0}, Level::k1G, kNda, TdxOperand::kR8, kHost,
                                            true, kLayout),
               "free 1G");
  EXPECT_DEATH(
      {
        auto l = pamt.lock(Pfn{512}, Level::k2M, kHost, true);
        pamt.demote(*l);
      },
      "free page");
  EXPECT_DEATH(
      {
        auto l = pamt.lock(Pfn{512}, Level::k2M, kHost, true);
        pamt.promote(*l);
      },
      "free pages");
  EXPECT_DEATH(
      {
        assign(pamt, Pfn{0}, Level::k4K, kReg);
        assign(pamt, Pfn{1}, Level::k4K, kEpt);
        auto l = pamt.lock(Pfn{0}, Level::k2M, kHost, true);
        pamt.promote(*l);
      },
      "child 1 is PT_EPT");
  EXPECT_DEATH(
      {
        auto l = pamt.lock(Pfn{512}, Level::k2M, kHost, false);
        pamt.promote(*l);
      },
      "without its exclusive lock");
}

}  // namespace
}  // namespace tdxsim
