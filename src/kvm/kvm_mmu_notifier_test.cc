// The MMU-notifier glue: changes to the VMM's mappings reach the arch as shared-alias unmaps
// and aging over the gfns those mappings back.
#include <gtest/gtest.h>

#include "kvm/kvm_fixture_for_test.h"

namespace tdxsim {
namespace {

using Kind = FakeArchHooks::Kind;

class KvmMmuNotifierTest : public KvmFixture {
 protected:
  void SetUp() override {
    make_vm(VmType::kDefault);
    r0 = region(0, 0x100 * kPageSize, 16 * kPageSize);
    ASSERT_EQ(err(set(r0)), 0);
    arch->clear();
  }
  UserspaceMemoryRegion2 r0;
};

TEST_F(KvmMmuNotifierTest, ReclaimUnmapsTheSharedAliasOfTheBackedGfns) {
  const uint64_t seq = kvm->mmu_invalidate_seq();
  std::vector<bool> retry_inside;
  arch->on_call = [&](const FakeArchHooks::Call& c) {
    if (c.kind == Kind::kUnmap) retry_inside.push_back(kvm->mmu_invalidate_retry_gfn(seq, c.start));
  };
  mm.reclaim(r0.userspace_addr + 2 * kPageSize, 3 * kPageSize);
  const auto calls = arch->calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].kind, Kind::kUnmap);
  EXPECT_EQ(calls[0].slot_id, 0);
  EXPECT_EQ(calls[0].start, Gfn{0x102});
  EXPECT_EQ(calls[0].end, Gfn{0x105});
  EXPECT_EQ(calls[0].attr_filter, kFilterShared);
  EXPECT_TRUE(calls[0].may_block);
  EXPECT_EQ(calls[0].mmu_lock, LockMode::kExclusive);
  EXPECT_EQ(calls[0].invalidate_in_progress, 1u);
  EXPECT_EQ(retry_inside, (std::vector<bool>{true}));
  EXPECT_EQ(kvm->mmu_invalidate_seq(), seq + 1);
  EXPECT_EQ(kvm->mmu_invalidate_in_progress(), 0u);
}

TEST_F(KvmMmuNotifierTest, MunmapOfPartOfASlotUnmapsThoseGfnsAndFlushesIfAsked) {
  arch->unmap_flushes = true;
  ASSERT_TRUE(mm.munmap(r0.userspace_addr + 8 * kPageSize, 16 * kPageSize));
  const auto unmaps = arch->calls(Kind::kUnmap);
  ASSERT_EQ(unmaps.size(), 1u);
  EXPECT_EQ(unmaps[0].start, Gfn{0x108});
  EXPECT_EQ(unmaps[0].end, Gfn{0x110});  // clipped to the slot
  EXPECT_EQ(arch->calls(Kind::kFlushRemoteTlbs).size(), 1u);
  EXPECT_EQ(kvm->remote_tlb_flushes(), 1u);
}

TEST_F(KvmMmuNotifierTest, RangesNoSlotBacksTouchNothing) {
  const uint64_t seq = kvm->mmu_invalidate_seq();
  const uint64_t other = mm.mmap(4 * kPageSize);
  mm.reclaim(other, 4 * kPageSize);
  EXPECT_TRUE(arch->calls().empty());
  EXPECT_EQ(kvm->mmu_invalidate_seq(), seq);
}

TEST_F(KvmMmuNotifierTest, EverySlotAliasingTheRangeIsUnmapped) {
  // A second slot backed by the same host pages, in the other address space.
  UserspaceMemoryRegion2 alias = r0;
  alias.slot = 1u << 16 | 3;
  alias.guest_phys_addr = 0x900 * kPageSize;
  ASSERT_EQ(err(set(alias)), 0);
  arch->clear();
  mm.reclaim(r0.userspace_addr, kPageSize);
  const auto unmaps = arch->calls(Kind::kUnmap);
  ASSERT_EQ(unmaps.size(), 2u);
  EXPECT_EQ(unmaps[0].start, Gfn{0x100});
  EXPECT_EQ(unmaps[1].slot_id, 3);
  EXPECT_EQ(unmaps[1].start, Gfn{0x900});
  EXPECT_EQ(unmaps[1].end, Gfn{0x901});
  EXPECT_EQ(kvm->mmu_invalidate_in_progress(), 0u);
}

TEST_F(KvmMmuNotifierTest, AgingAsksTheArchAboutSharedMappings) {
  ASSERT_TRUE(mm.get_user_page(r0.userspace_addr, false));
  arch->young = true;
  EXPECT_TRUE(mm.age(r0.userspace_addr, 4 * kPageSize));
  const auto ages = arch->calls(Kind::kAge);
  ASSERT_EQ(ages.size(), 1u);
  EXPECT_EQ(ages[0].start, Gfn{0x100});
  EXPECT_EQ(ages[0].end, Gfn{0x104});
  EXPECT_EQ(ages[0].attr_filter, kFilterShared);
  EXPECT_EQ(ages[0].mmu_lock, LockMode::kExclusive);
  arch->clear();
  EXPECT_TRUE(mm.test_young(r0.userspace_addr + 8 * kPageSize, kPageSize));
  const auto tests = arch->calls(Kind::kTestAge);
  ASSERT_EQ(tests.size(), 1u);
  EXPECT_EQ(tests[0].start, Gfn{0x108});
  arch->young = false;
  EXPECT_FALSE(mm.test_young(r0.userspace_addr + 8 * kPageSize, kPageSize));
}

TEST_F(KvmMmuNotifierTest, ExitReleasesEveryMapping) {
  mm.exit();
  const auto calls = arch->calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].kind, Kind::kFlushShadowAll);
  EXPECT_EQ(calls[0].mmu_lock, LockMode::kNotHeld);
}

}  // namespace
}  // namespace tdxsim
