// page_tables_balance and freed_tables_untouched against a real TDP MMU: a run of faults and
// zaps balances and reads no freed table; a table cut loose without being released, and a
// walk into a freed (poisoned) table, are violations.
#include "check/page_table_balance.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <memory>

#include "check/direct_root_mmu_for_test.h"

namespace tdxsim {
namespace {

class PageTableBalanceTest : public ::testing::Test, protected DirectRootMmu {
 protected:
  // The host address of the entry at `level` on the walk to `gfn`.
  Hpa sptep_at(Gfn gfn, Level level) {
    RcuReadGuard rcu;
    for (TdpIter it(mem_, *root_, Level::k4K, gfn, gfn + 1, Gfn{0}); it.valid(); it.next()) {
      if (it.level() == level) return it.sptep();
    }
    ADD_FAILURE() << "no " << level_name(level) << " entry for " << gfn.raw();
    return Hpa{0};
  }
};

TEST_F(PageTableBalanceTest, FaultsAndZapsBalance) {
  map(Gfn{0x100});
  map(Gfn{0x40000});  // another 1G region: its own 2M and 4K tables
  TdpMmu::TableCensus c = mmu_->table_census();
  // The root, one 1G-level table, two 2M-level and two 4K-level tables.
  EXPECT_EQ(c.reachable, 6u);
  EXPECT_EQ(c.allocated, 6u);
  EXPECT_TRUE(c.balanced());
  EXPECT_EQ(page_table_balance_violation(*mmu_), std::nullopt);
  {
    WriteLock l(kvm_.mmu_lock());
    mmu_->zap_all_direct();  // tables unlinked and queued for freeing
  }
  c = mmu_->table_census();
  EXPECT_EQ(c.reachable, 1u);
  EXPECT_EQ(c.released, 5u);
  EXPECT_TRUE(c.balanced());
  drop_root();
  TdpMmu::barrier();
  c = mmu_->table_census();
  EXPECT_EQ(c.allocated, c.released);
  EXPECT_EQ(c.reachable, 0u);
  EXPECT_EQ(page_table_balance_violation(*mmu_), std::nullopt);
  EXPECT_EQ(freed_table_read_violation(*mmu_), std::nullopt);
}

TEST_F(PageTableBalanceTest, ATableNeitherReleasedNorReachableIsAViolation) {
  map(Gfn{0x100});
  // The 2M entry that links the 4K table, cleared behind the MMU's back: the table is no
  // longer reachable and was never released.
  const Hpa link = sptep_at(Gfn{0x100}, Level::k2M);
  const Hpa table = Spte{mem_.load(link, kHostKey, std::memory_order_acquire)}.child_table();
  mem_.store(link, kHostKey, Spte::kNonPresentValue, std::memory_order_release);
  const TdpMmu::TableCensus c = mmu_->table_census();
  EXPECT_FALSE(c.balanced());
  ASSERT_EQ(c.unreachable_count, 1u);
  EXPECT_EQ(c.unreachable.front().spt, table);
  EXPECT_EQ(c.unreachable.front().level, Level::k4K);
  const std::optional<std::string> v = page_table_balance_violation(*mmu_);
  ASSERT_TRUE(v.has_value());
  EXPECT_NE(v->find("1 page(s) neither freed nor reachable"), std::string::npos) << *v;
  EXPECT_NE(v->find("direct 4K table"), std::string::npos) << *v;
}

TEST_F(PageTableBalanceTest, AFreedTableIsPoisoned) {
  map(Gfn{0x100});
  const Hpa table =
      Spte{mem_.load(sptep_at(Gfn{0x100}, Level::k2M), kHostKey, std::memory_order_acquire)}
          .child_table();
  {
    WriteLock l(kvm_.mmu_lock());
    mmu_->zap_all_direct();
  }
  TdpMmu::barrier();
  for (unsigned i : {0u, 0x100u, 511u}) {
    EXPECT_EQ(
        mem_.load(table + uint64_t{i} * sizeof(uint64_t), kHostKey, std::memory_order_acquire),
        kFreedTablePoison);
  }
  EXPECT_EQ(freed_table_read_violation(*mmu_), std::nullopt);
}

TEST_F(PageTableBalanceTest, AWalkThatReadsAFreedTableIsAViolation) {
  map(Gfn{0x100});
  // What a walk finds in a table freed under it (the poison), while the table is still
  // linked: the next walk through it reads poison.
  const Hpa table =
      Spte{mem_.load(sptep_at(Gfn{0x100}, Level::k2M), kHostKey, std::memory_order_acquire)}
          .child_table();
  mem_.fill(table.pfn(), kHostKey, kFreedTablePoison);
  {
    ReadLock l(kvm_.mmu_lock());
    EXPECT_EQ(mmu_->leaf_for(root_, Gfn{0x100}), std::nullopt);
  }
  const std::optional<std::string> v = freed_table_read_violation(*mmu_);
  ASSERT_TRUE(v.has_value());
  EXPECT_NE(v->find(fmt::format("first at {}", table + 0x100 * sizeof(uint64_t))),
            std::string::npos)
      << *v;
  // Put the table back as the MMU left it, so teardown frees what it holds.
  mem_.fill(table.pfn(), kHostKey, Spte::kNonPresentValue);
}

}  // namespace
}  // namespace tdxsim
