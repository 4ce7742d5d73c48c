// zapped_range_unmapped against a real TDP MMU: a leaf left in the zapped range — in a valid
// or an invalid root — is a violation at the zap's return; a zap that did its job, however
// often it yielded, and leaves outside the range are not.
#include "check/zapped_range.h"

#include <gtest/gtest.h>

#include <memory>

#include "check/direct_root_mmu_for_test.h"

namespace tdxsim {
namespace {

class ZappedRangeCheckTest : public ::testing::Test, protected DirectRootMmu {
 protected:
  explicit ZappedRangeCheckTest(unsigned yield_every = 512)
      : DirectRootMmu(TdpMmuConfig{.yield_every = yield_every}) {
    check_.watch(kvm_, *mmu_);
  }
  ~ZappedRangeCheckTest() override { check_.unwatch(kvm_); }

  // What KvmMmu does at the end of a zap: the tracepoint, still under the write lock.
  void zap_returned(Gfn start, Gfn end) {
    kvm_.events().range_zapped.emit(RangeZapEvent{start, end, true, false, "test"});
  }

  ZappedRangeCheck check_;
};

TEST_F(ZappedRangeCheckTest, ALeafLeftInAValidRootIsAViolation) {
  map(Gfn{0x100});
  map(Gfn{0x101});
  {
    WriteLock l(kvm_.mmu_lock());
    zap_returned(Gfn{0x100}, Gfn{0x200});
  }
  ASSERT_EQ(check_.violation_count(), 1u);
  const ZappedRangeViolation v = check_.violations().front();
  EXPECT_EQ(v.leaf.gfn, Gfn{0x100});
  EXPECT_FALSE(v.leaf.invalid);
  EXPECT_EQ(v.leaves, 2u);
  EXPECT_NE(v.describe().find("valid direct root"), std::string::npos) << v.describe();
}

TEST_F(ZappedRangeCheckTest, ALeafLeftInAnInvalidRootIsAViolation) {
  map(Gfn{0x100});
  {
    WriteLock l(kvm_.mmu_lock());
    mmu_->invalidate_direct_roots();
    // Valid roots only: the invalid one keeps its leaf.
    mmu_->zap_direct_leafs(Gfn{0x100}, Gfn{0x101}, ZapReason::kNotifier, true, false,
                           /*with_invalid=*/false);
    zap_returned(Gfn{0x100}, Gfn{0x101});
  }
  ASSERT_EQ(check_.violation_count(), 1u);
  EXPECT_TRUE(check_.violations().front().leaf.invalid);
  EXPECT_NE(check_.violations().front().describe().find("invalid direct root"), std::string::npos);
}

TEST_F(ZappedRangeCheckTest, AZapThatEmptiedTheRangeIsQuiet) {
  for (uint64_t g = 0x100; g < 0x140; ++g) map(Gfn{g});
  map(Gfn{0x200});  // outside the range: stays, and is no violation
  {
    WriteLock l(kvm_.mmu_lock());
    mmu_->invalidate_direct_roots();
    mmu_->zap_direct_leafs(Gfn{0x100}, Gfn{0x140}, ZapReason::kNotifier, true, false);
    zap_returned(Gfn{0x100}, Gfn{0x140});
  }
  EXPECT_EQ(check_.zaps_checked(), 1u);
  EXPECT_EQ(check_.violation_count(), 0u);
}

class ZappedRangeCheckYieldTest : public ZappedRangeCheckTest {
 protected:
  ZappedRangeCheckYieldTest() : ZappedRangeCheckTest(/*yield_every=*/1) {}
};

TEST_F(ZappedRangeCheckYieldTest, AZapThatYieldsAfterEveryEntryStillEmptiesTheRange) {
  for (uint64_t g = 0x1F0; g < 0x210; ++g) map(Gfn{g});  // across two 4K tables
  {
    WriteLock l(kvm_.mmu_lock());
    mmu_->zap_direct_leafs(Gfn{0x1F0}, Gfn{0x210}, ZapReason::kMemslot, true, false);
    zap_returned(Gfn{0x1F0}, Gfn{0x210});
  }
  EXPECT_EQ(check_.violation_count(), 0u);
}

}  // namespace
}  // namespace tdxsim
