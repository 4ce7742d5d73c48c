// KVM_SET_MEMORY_ATTRIBUTES: errors, the per-slot pre/post hooks inside one invalidation,
// and the readers the fault path uses.
#include <gtest/gtest.h>

#include "kvm/kvm_fixture_for_test.h"

namespace tdxsim {
namespace {

using Kind = FakeArchHooks::Kind;
constexpr int kEinval = static_cast<int>(Errno::kEinval);
constexpr uint64_t kP = kMemAttrPrivate;

class KvmMemAttributesTest : public KvmFixture {
 protected:
  void SetUp() override { make_vm(VmType::kSwProtected); }
};

TEST_F(KvmMemAttributesTest, Errors) {
  EXPECT_EQ(err(kvm->set_memory_attributes(Gfn{10}, Gfn{10}, kP)), kEinval);
  EXPECT_EQ(err(kvm->set_memory_attributes(Gfn{10}, Gfn{5}, kP)), kEinval);
  EXPECT_EQ(err(kvm->set_memory_attributes(Gfn{0}, Gfn{5}, kP | 1)), kEinval);
  EXPECT_EQ(err(kvm->set_memory_attributes(Gfn{0}, Gfn{5}, uint64_t{1} << 63)), kEinval);
  make_vm(VmType::kDefault);
  EXPECT_EQ(err(kvm->set_memory_attributes(Gfn{0}, Gfn{5}, kP)), kEinval);
  EXPECT_EQ(err(kvm->set_memory_attributes(Gfn{0}, Gfn{5}, 0)), kEinval);
}

TEST_F(KvmMemAttributesTest, SetGetMergeAndRangeHas) {
  ASSERT_EQ(err(kvm->set_memory_attributes(Gfn{0x10}, Gfn{0x20}, kP)), 0);
  ASSERT_EQ(err(kvm->set_memory_attributes(Gfn{0x20}, Gfn{0x30}, kP)), 0);
  EXPECT_EQ(kvm->memory_attributes().ranges(),
            (std::vector<MemAttributes::Range>{{Gfn{0x10}, Gfn{0x30}, kP}}));
  EXPECT_TRUE(kvm->mem_is_private(Gfn{0x10}));
  EXPECT_TRUE(kvm->mem_is_private(Gfn{0x2f}));
  EXPECT_FALSE(kvm->mem_is_private(Gfn{0x30}));
  EXPECT_EQ(kvm->get_memory_attributes(Gfn{0x15}), kP);
  EXPECT_TRUE(kvm->range_has_memory_attributes(Gfn{0x10}, Gfn{0x30}, kP, kP));
  EXPECT_FALSE(kvm->range_has_memory_attributes(Gfn{0x0f}, Gfn{0x30}, kP, kP));
  EXPECT_TRUE(kvm->range_has_memory_attributes(Gfn{0x30}, Gfn{0x40}, ~uint64_t{0}, 0));
  // Attributes the VM does not support are masked out of the query.
  EXPECT_FALSE(kvm->range_has_memory_attributes(Gfn{0x10}, Gfn{0x30}, 1, 1));
  ASSERT_EQ(err(kvm->set_memory_attributes(Gfn{0x18}, Gfn{0x1c}, 0)), 0);
  EXPECT_FALSE(kvm->mem_is_private(Gfn{0x18}));
  EXPECT_EQ(kvm->memory_attributes().ranges().size(), 2u);
}

TEST_F(KvmMemAttributesTest, HooksGetTheSlotPiecesInsideOneInvalidation) {
  // Slots over gfns [0x100, 0x110) and [0x200, 0x210); the change covers [0x108, 0x208).
  ASSERT_EQ(err(set(region(0, 0x100 * kPageSize, 0x10 * kPageSize))), 0);
  ASSERT_EQ(err(set(region(1, 0x200 * kPageSize, 0x10 * kPageSize))), 0);
  arch->clear();
  arch->unmap_flushes = true;
  const uint64_t seq = kvm->mmu_invalidate_seq();
  struct Seen {
    bool in_range;
    bool outside;
    uint64_t attrs_now;
  };
  std::vector<Seen> seen;
  arch->on_call = [&](const FakeArchHooks::Call& c) {
    if (c.kind != Kind::kPreSet && c.kind != Kind::kPostSet) return;
    seen.push_back(Seen{kvm->mmu_invalidate_retry_gfn(seq, c.start),
                        kvm->mmu_invalidate_retry_gfn(seq, Gfn{0x300}),
                        kvm->get_memory_attributes(c.start)});
  };
  ASSERT_EQ(err(kvm->set_memory_attributes(Gfn{0x108}, Gfn{0x208}, kP)), 0);
  EXPECT_EQ(arch->kinds(), (std::vector<Kind>{Kind::kPreSet, Kind::kPreSet, Kind::kFlushRemoteTlbs,
                                              Kind::kPostSet, Kind::kPostSet}));
  const auto pre = arch->calls(Kind::kPreSet);
  const auto post = arch->calls(Kind::kPostSet);
  for (const auto* calls : {&pre, &post}) {
    EXPECT_EQ((*calls)[0].slot_id, 0);
    EXPECT_EQ((*calls)[0].start, Gfn{0x108});
    EXPECT_EQ((*calls)[0].end, Gfn{0x110});
    EXPECT_EQ((*calls)[1].slot_id, 1);
    EXPECT_EQ((*calls)[1].start, Gfn{0x200});
    EXPECT_EQ((*calls)[1].end, Gfn{0x208});
    for (const auto& c : *calls) {
      EXPECT_EQ(c.attributes, kP);
      EXPECT_EQ(c.attr_filter, 0);
      EXPECT_TRUE(c.may_block);
      EXPECT_EQ(c.mmu_lock, LockMode::kExclusive);
      EXPECT_TRUE(c.slots_lock_held);
      EXPECT_EQ(c.invalidate_in_progress, 1u);
    }
  }
  ASSERT_EQ(seen.size(), 4u);
  for (const Seen& s : seen) {
    EXPECT_TRUE(s.in_range);  // a fault that snapshotted seq before must retry
    EXPECT_FALSE(s.outside);  // one elsewhere need not
  }
  EXPECT_EQ(seen[0].attrs_now, 0u);  // pre: not yet stored
  EXPECT_EQ(seen[2].attrs_now, kP);  // post: stored
  EXPECT_EQ(kvm->mmu_invalidate_seq(), seq + 1);
  EXPECT_EQ(kvm->mmu_invalidate_in_progress(), 0u);
  EXPECT_EQ(kvm->remote_tlb_flushes(), 1u);
}

TEST_F(KvmMemAttributesTest, UnchangedAttributesAreANoOp) {
  ASSERT_EQ(err(set(region(0, 0, 0x10 * kPageSize))), 0);
  ASSERT_EQ(err(kvm->set_memory_attributes(Gfn{0}, Gfn{8}, kP)), 0);
  arch->clear();
  const uint64_t seq = kvm->mmu_invalidate_seq();
  ASSERT_EQ(err(kvm->set_memory_attributes(Gfn{2}, Gfn{6}, kP)), 0);
  ASSERT_EQ(err(kvm->set_memory_attributes(Gfn{8}, Gfn{16}, 0)), 0);
  EXPECT_TRUE(arch->calls().empty());
  EXPECT_EQ(kvm->mmu_invalidate_seq(), seq);
}

TEST_F(KvmMemAttributesTest, RangesOutsideEverySlotAreStoredWithoutHooks) {
  ASSERT_EQ(err(set(region(0, 0, 0x10 * kPageSize))), 0);
  arch->clear();
  const uint64_t seq = kvm->mmu_invalidate_seq();
  ASSERT_EQ(err(kvm->set_memory_attributes(Gfn{0x1000}, Gfn{0x2000}, kP)), 0);
  EXPECT_TRUE(arch->calls().empty());
  EXPECT_EQ(kvm->mmu_invalidate_seq(), seq);
  EXPECT_TRUE(kvm->mem_is_private(Gfn{0x1fff}));
}

TEST_F(KvmMemAttributesTest, ConvertingBackPassesTheNewValue) {
  ASSERT_EQ(err(set(region(0, 0, 0x10 * kPageSize))), 0);
  ASSERT_EQ(err(kvm->set_memory_attributes(Gfn{0}, Gfn{0x10}, kP)), 0);
  arch->clear();
  ASSERT_EQ(err(kvm->set_memory_attributes(Gfn{4}, Gfn{5}, 0)), 0);
  const auto pre = arch->calls(Kind::kPreSet);
  ASSERT_EQ(pre.size(), 1u);
  EXPECT_EQ(pre[0].attributes, 0u);
  EXPECT_EQ(pre[0].start, Gfn{4});
  EXPECT_EQ(pre[0].end, Gfn{5});
  EXPECT_TRUE(arch->calls(Kind::kFlushRemoteTlbs).empty());  // the hook asked for none
}

}  // namespace
}  // namespace tdxsim
