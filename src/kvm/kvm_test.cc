// The MMU invalidation sequence (kvm_mmu_invalidate_* and mmu_invalidate_retry_gfn) and the
// remote TLB flush.
#include "kvm/kvm.h"

#include <gtest/gtest.h>

#include "kvm/kvm_fixture_for_test.h"

namespace tdxsim {
namespace {

class KvmTest : public KvmFixture {
 protected:
  void SetUp() override { make_vm(VmType::kTdx); }
};

TEST_F(KvmTest, AnInvalidationCoversItsRangeUntilItEndsThenTheSequenceMoves) {
  const uint64_t seq = kvm->mmu_invalidate_seq();
  WriteLock l(kvm->mmu_lock());
  EXPECT_FALSE(kvm->mmu_invalidate_retry_gfn(seq, Gfn{15}));
  kvm->mmu_invalidate_begin(Gfn{10}, Gfn{20});
  EXPECT_EQ(kvm->mmu_invalidate_in_progress(), 1u);
  EXPECT_TRUE(kvm->mmu_invalidate_retry_gfn(seq, Gfn{10}));
  EXPECT_TRUE(kvm->mmu_invalidate_retry_gfn(seq, Gfn{19}));
  EXPECT_FALSE(kvm->mmu_invalidate_retry_gfn(seq, Gfn{20}));
  EXPECT_FALSE(kvm->mmu_invalidate_retry_gfn(seq, Gfn{9}));
  kvm->mmu_invalidate_range_add(Gfn{30}, Gfn{40});
  EXPECT_TRUE(kvm->mmu_invalidate_retry_gfn(seq, Gfn{25}));  // widened to [10, 40)
  EXPECT_FALSE(kvm->mmu_invalidate_retry_gfn(seq, Gfn{40}));
  kvm->mmu_invalidate_end();
  EXPECT_EQ(kvm->mmu_invalidate_in_progress(), 0u);
  EXPECT_EQ(kvm->mmu_invalidate_seq(), seq + 1);
  // Whoever snapshotted before must retry anywhere; a fresh snapshot need not.
  EXPECT_TRUE(kvm->mmu_invalidate_retry_gfn(seq, Gfn{1000}));
  EXPECT_FALSE(kvm->mmu_invalidate_retry_gfn(seq + 1, Gfn{15}));
}

TEST_F(KvmTest, NestedInvalidationsKeepTheUnionUntilTheLastEnds) {
  WriteLock l(kvm->mmu_lock());
  kvm->mmu_invalidate_begin(Gfn{10}, Gfn{20});
  kvm->mmu_invalidate_begin(Gfn{50}, Gfn{60});
  kvm->mmu_invalidate_end();
  const uint64_t seq = kvm->mmu_invalidate_seq();
  EXPECT_TRUE(kvm->mmu_invalidate_retry_gfn(seq, Gfn{55}));
  EXPECT_TRUE(kvm->mmu_invalidate_retry_gfn(seq, Gfn{30}));
  kvm->mmu_invalidate_end();
  EXPECT_FALSE(kvm->mmu_invalidate_retry_gfn(seq + 1, Gfn{55}));
  // The next invalidation starts a fresh range.
  kvm->mmu_invalidate_begin(Gfn{100}, Gfn{101});
  EXPECT_FALSE(kvm->mmu_invalidate_retry_gfn(seq + 1, Gfn{55}));
  kvm->mmu_invalidate_end();
}

TEST_F(KvmTest, TheLocklessPeekAgreesWhenNothingRaces) {
  const uint64_t seq = kvm->mmu_invalidate_seq();
  {
    WriteLock l(kvm->mmu_lock());
    kvm->mmu_invalidate_begin(Gfn{10}, Gfn{20});
  }
  EXPECT_TRUE(kvm->mmu_invalidate_retry_gfn_unsafe(seq, Gfn{12}));
  EXPECT_FALSE(kvm->mmu_invalidate_retry_gfn_unsafe(seq, Gfn{22}));
  {
    ReadLock l(kvm->mmu_lock());
    EXPECT_TRUE(kvm->mmu_invalidate_retry_gfn(seq, Gfn{12}));
  }
  {
    WriteLock l(kvm->mmu_lock());
    kvm->mmu_invalidate_end();
  }
  EXPECT_TRUE(kvm->mmu_invalidate_retry_gfn_unsafe(seq, Gfn{22}));
  EXPECT_FALSE(kvm->mmu_invalidate_retry_gfn_unsafe(seq + 1, Gfn{12}));
}

TEST_F(KvmTest, InvalidationNeedsMmuLockForWriteAndRetryNeedsItHeld) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(kvm->mmu_invalidate_begin(Gfn{0}, Gfn{1}), "mmu_lock");
  EXPECT_DEATH(
      {
        ReadLock l(kvm->mmu_lock());
        kvm->mmu_invalidate_begin(Gfn{0}, Gfn{1});
      },
      "mmu_lock");
  EXPECT_DEATH((void)kvm->mmu_invalidate_retry_gfn(0, Gfn{0}), "mmu_lock");
}

TEST_F(KvmTest, FlushRemoteTlbsReachesTheArchAndIsCounted) {
  kvm->flush_remote_tlbs();
  kvm->flush_remote_tlbs();
  EXPECT_EQ(kvm->remote_tlb_flushes(), 2u);
  EXPECT_EQ(arch->calls(FakeArchHooks::Kind::kFlushRemoteTlbs).size(), 2u);
  kvm->set_arch(nullptr);
  kvm->flush_remote_tlbs();
  EXPECT_EQ(kvm->remote_tlb_flushes(), 3u);
}

TEST_F(KvmTest, TypeAndConfig) {
  EXPECT_EQ(kvm->type(), VmType::kTdx);
  EXPECT_EQ(kvm->config().max_memslots, 32u);
  EXPECT_EQ(&kvm->mem(), &mem);
  EXPECT_EQ(&kvm->mm(), &mm);
  EXPECT_EQ(kvm->slots_lock().name(), "kvm->slots_lock");
  EXPECT_EQ(kvm->mmu_lock().name(), "kvm->mmu_lock");
}

}  // namespace
}  // namespace tdxsim
