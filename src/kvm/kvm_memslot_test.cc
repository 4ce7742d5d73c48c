// KVM_SET_USER_MEMORY_REGION2: every error of kvm_set_memory_region, and the arch hooks and
// locks of each kind of change.
#include <gtest/gtest.h>

#include <thread>

#include "base/rcu.h"
#include "kvm/kvm_fixture_for_test.h"

namespace tdxsim {
namespace {

using Kind = FakeArchHooks::Kind;
constexpr int kEinval = static_cast<int>(Errno::kEinval);
constexpr int kEexist = static_cast<int>(Errno::kEexist);
constexpr uint64_t k64K = 16 * kPageSize;

class KvmMemslotTest : public KvmFixture {
 protected:
  void SetUp() override { make_vm(VmType::kDefault); }
};

// --- Flags (check_memory_region_flags) -------------------------------------------------------

TEST_F(KvmMemslotTest, UnknownFlagIsEinval) {
  EXPECT_EQ(err(set(region(0, 0, k64K, 1u << 3))), kEinval);
  EXPECT_EQ(err(set(region(0, 0, k64K, 1u << 31))), kEinval);
  EXPECT_TRUE(arch->calls().empty());
}

TEST_F(KvmMemslotTest, ReadonlyIsFineWhereTheTypeHasReadonlyMemory) {
  EXPECT_EQ(err(set(region(0, 0, k64K, kMemReadonly))), 0);
  EXPECT_TRUE(slot_copy(0)->readonly());
}

TEST_F(KvmMemslotTest, ReadonlyOnATdIsEinval) {
  make_vm(VmType::kTdx);
  EXPECT_EQ(err(set(region(0, 0, k64K, kMemReadonly))), kEinval);
}

TEST_F(KvmMemslotTest, GuestMemfdWithoutPrivateMemoryIsEinval) {
  EXPECT_EQ(err(set(region(0, 0, k64K, kMemGuestMemfd))), kEinval);
}

TEST_F(KvmMemslotTest, DirtyLoggingOfGuestMemfdIsEinval) {
  make_vm(VmType::kSwProtected);
  auto gmem = *kvm->create_guest_memfd(k64K, 0);
  UserspaceMemoryRegion2 r = gmem_region(0, 0, k64K, gmem, 0);
  r.flags |= kMemLogDirtyPages;
  EXPECT_EQ(err(set(r)), kEinval);
}

TEST_F(KvmMemslotTest, ReadonlyGuestMemfdIsEinval) {
  make_vm(VmType::kSwProtected);
  auto gmem = *kvm->create_guest_memfd(k64K, 0);
  UserspaceMemoryRegion2 r = gmem_region(0, 0, k64K, gmem, 0);
  r.flags |= kMemReadonly;
  EXPECT_EQ(err(set(r)), kEinval);
}

// --- Geometry -------------------------------------------------------------------------------

TEST_F(KvmMemslotTest, UnalignedSizeIsEinval) {
  EXPECT_EQ(err(set(region(0, 0, k64K + 8))), kEinval);
}

TEST_F(KvmMemslotTest, UnalignedGpaIsEinval) {
  EXPECT_EQ(err(set(region(0, 0x800, k64K))), kEinval);
}

TEST_F(KvmMemslotTest, UnalignedUserspaceAddressIsEinval) {
  UserspaceMemoryRegion2 r = region(0, 0, k64K);
  r.userspace_addr += 8;
  EXPECT_EQ(err(set(r)), kEinval);
}

TEST_F(KvmMemslotTest, UnalignedGuestMemfdOffsetIsEinval) {
  make_vm(VmType::kSwProtected);
  auto gmem = *kvm->create_guest_memfd(4 * k64K, 0);
  EXPECT_EQ(err(set(gmem_region(0, 0, k64K, gmem, 0x800))), kEinval);
  EXPECT_EQ(err(set(gmem_region(0, 0, k64K, gmem, 1))), kEinval);
}

TEST_F(KvmMemslotTest, AddressSpaceBeyondTheTypesIsEinval) {
  // A default VM has the SMM address space too; a private-memory VM does not.
  EXPECT_EQ(err(set(region(1u << 16, 0, k64K))), 0);
  EXPECT_EQ(slot_copy(0, 1)->as_id, 1);
  EXPECT_EQ(err(set(region(2u << 16, 0, k64K))), kEinval);
  make_vm(VmType::kSwProtected);
  EXPECT_EQ(err(set(region(1u << 16, 0, k64K))), kEinval);
}

TEST_F(KvmMemslotTest, SlotIdAtTheLimitIsEinval) {
  make_vm(VmType::kDefault, 4);
  EXPECT_EQ(err(set(region(4, 0, k64K))), kEinval);
  EXPECT_EQ(err(set(region(0xffff, 0, k64K))), kEinval);
}

TEST_F(KvmMemslotTest, ExactlyMaxMemslotsCanBeAdded) {
  make_vm(VmType::kDefault, 8);
  for (uint32_t id = 0; id < 8; ++id) EXPECT_EQ(err(set(region(id, id * k64K, k64K))), 0) << id;
  EXPECT_EQ(err(set(region(8, 8 * k64K, k64K))), kEinval);
}

TEST_F(KvmMemslotTest, GpaPlusSizeWrappingIsEinval) {
  EXPECT_EQ(err(set(region(0, ~uint64_t{0} - kPageSize + 1, 2 * kPageSize))), kEinval);
}

TEST_F(KvmMemslotTest, MoreThanMaxPagesIsEinval) {
  UserspaceMemoryRegion2 r = region(0, 0, kPageSize);
  r.memory_size = (kMemMaxNrPages + 1) * kPageSize;
  EXPECT_EQ(err(set(r)), kEinval);
}

TEST_F(KvmMemslotTest, DeletingAMissingSlotIsEinval) {
  EXPECT_EQ(err(set(region(3, 0, 0))), kEinval);
}

TEST_F(KvmMemslotTest, OverlapOnCreateIsEexist) {
  ASSERT_EQ(err(set(region(0, k64K, k64K))), 0);
  EXPECT_EQ(err(set(region(1, k64K + kPageSize, kPageSize))), kEexist);  // inside
  EXPECT_EQ(err(set(region(1, 0, k64K + kPageSize))), kEexist);          // front
  EXPECT_EQ(err(set(region(1, 2 * k64K - kPageSize, k64K))), kEexist);   // back
  EXPECT_EQ(err(set(region(1, 2 * k64K, k64K))), 0);                     // adjacent
  // Another address space is another gfn space.
  EXPECT_EQ(err(set(region(1u << 16 | 2, k64K, k64K))), 0);
}

TEST_F(KvmMemslotTest, OverlapOnMoveIsEexist) {
  ASSERT_EQ(err(set(region(0, 0, k64K))), 0);
  UserspaceMemoryRegion2 r = region(1, 4 * k64K, k64K);
  ASSERT_EQ(err(set(r)), 0);
  r.guest_phys_addr = k64K / 2;
  EXPECT_EQ(err(set(r)), kEexist);
  // Moving onto part of its own old range is fine.
  r.guest_phys_addr = 4 * k64K + kPageSize;
  EXPECT_EQ(err(set(r)), 0);
}

TEST_F(KvmMemslotTest, ModifyingAGuestMemfdSlotIsEinval) {
  make_vm(VmType::kSwProtected);
  auto gmem = *kvm->create_guest_memfd(4 * k64K, 0);
  UserspaceMemoryRegion2 r = gmem_region(0, 0, k64K, gmem, 0);
  ASSERT_EQ(err(set(r)), 0);
  r.guest_phys_addr = 2 * k64K;
  EXPECT_EQ(err(set(r)), kEinval);
  r.guest_phys_addr = 0;
  EXPECT_EQ(err(set(r)), kEinval);  // even unchanged: private slots can only be deleted
}

TEST_F(KvmMemslotTest, ChangingUserspaceAddressIsEinval) {
  UserspaceMemoryRegion2 r = region(0, 0, k64K);
  ASSERT_EQ(err(set(r)), 0);
  r.userspace_addr = mm.mmap(k64K);
  EXPECT_EQ(err(set(r)), kEinval);
}

TEST_F(KvmMemslotTest, ChangingSizeIsEinval) {
  UserspaceMemoryRegion2 r = region(0, 0, 2 * k64K);
  ASSERT_EQ(err(set(r)), 0);
  r.memory_size = k64K;
  EXPECT_EQ(err(set(r)), kEinval);
}

TEST_F(KvmMemslotTest, TogglingReadonlyIsEinval) {
  UserspaceMemoryRegion2 r = region(0, 0, k64K);
  ASSERT_EQ(err(set(r)), 0);
  r.flags = kMemReadonly;
  EXPECT_EQ(err(set(r)), kEinval);
}

TEST_F(KvmMemslotTest, GuestMemfdFlagWithoutAFileIsEinval) {
  make_vm(VmType::kSwProtected);
  EXPECT_EQ(err(set(region(0, 0, k64K, kMemGuestMemfd))), kEinval);
}

// --- The arch hooks ---------------------------------------------------------------------------

TEST_F(KvmMemslotTest, CreatePreparesUnderSlotsLockAndPublishes) {
  const uint64_t gen = kvm->memslots_generation();
  ASSERT_EQ(err(set(region(5, 0x100000, k64K))), 0);
  const auto calls = arch->calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].kind, Kind::kPrepare);
  EXPECT_EQ(calls[0].change, MemslotChange::kCreate);
  EXPECT_EQ(calls[0].slot_id, 5);
  EXPECT_EQ(calls[0].old_slot_id, -1);
  EXPECT_TRUE(calls[0].slots_lock_held);
  EXPECT_EQ(calls[0].mmu_lock, LockMode::kNotHeld);
  // Then the commit, once the slot is published, under the same locks.
  EXPECT_EQ(calls[1].kind, Kind::kCommit);
  EXPECT_EQ(calls[1].change, MemslotChange::kCreate);
  EXPECT_EQ(calls[1].slot_id, 5);
  EXPECT_TRUE(calls[1].slots_lock_held);
  EXPECT_EQ(calls[1].mmu_lock, LockMode::kNotHeld);
  EXPECT_EQ(kvm->memslots_generation(), gen + 1);
  const std::optional<Memslot> s = slot_copy(5);
  EXPECT_EQ(s->base_gfn, Gfn{0x100});
  EXPECT_EQ(s->npages, 16u);
  EXPECT_FALSE(s->invalid);
}

TEST_F(KvmMemslotTest, DeleteInvalidatesFlushesThenPrepares) {
  UserspaceMemoryRegion2 r = region(2, 0x200000, k64K);
  ASSERT_EQ(err(set(r)), 0);
  arch->clear();
  const uint64_t gen = kvm->memslots_generation();
  // From inside flush_shadow_memslot, the published slot is already the INVALID copy.
  std::optional<bool> invalid_during_flush;
  arch->on_call = [&](const FakeArchHooks::Call& c) {
    if (c.kind != Kind::kFlushShadowMemslot) return;
    invalid_during_flush = kvm->gfn_to_memslot(Gfn{0x200})->invalid;
  };
  ASSERT_EQ(err(set(deletion(r))), 0);
  EXPECT_EQ(arch->kinds(),
            (std::vector<Kind>{Kind::kFlushShadowMemslot, Kind::kPrepare, Kind::kCommit}));
  const auto calls = arch->calls();
  EXPECT_EQ(calls[0].slot_id, 2);
  EXPECT_FALSE(calls[0].slot_invalid);  // the hook gets the old slot itself
  EXPECT_EQ(calls[0].start, Gfn{0x200});
  EXPECT_EQ(calls[0].end, Gfn{0x210});
  EXPECT_TRUE(calls[0].slots_lock_held);
  EXPECT_EQ(calls[0].mmu_lock, LockMode::kNotHeld);
  EXPECT_EQ(calls[1].change, MemslotChange::kDelete);
  EXPECT_EQ(calls[1].old_slot_id, 2);
  EXPECT_TRUE(calls[1].slots_lock_held);
  EXPECT_EQ(invalid_during_flush, true);
  EXPECT_FALSE(slot_copy(2));
  EXPECT_EQ(kvm->memslots_generation(), gen + 2);  // the invalid set, then the final one
}

TEST_F(KvmMemslotTest, MoveInvalidatesFlushesPreparesAndRebases) {
  UserspaceMemoryRegion2 r = region(1, 0, k64K);
  ASSERT_EQ(err(set(r)), 0);
  arch->clear();
  r.guest_phys_addr = 0x400000;
  ASSERT_EQ(err(set(r)), 0);
  EXPECT_EQ(arch->kinds(),
            (std::vector<Kind>{Kind::kFlushShadowMemslot, Kind::kPrepare, Kind::kCommit}));
  const auto calls = arch->calls();
  EXPECT_EQ(calls[0].start, Gfn{0});
  EXPECT_EQ(calls[1].change, MemslotChange::kMove);
  EXPECT_EQ(calls[1].old_slot_id, 1);
  EXPECT_EQ(slot_copy(1)->base_gfn, Gfn{0x400});
  MutexLock l(kvm->slots_lock());
  EXPECT_EQ(kvm->gfn_to_memslot(Gfn{0}), nullptr);
  EXPECT_EQ(kvm->gfn_to_memslot(Gfn{0x40f})->id, 1);
}

TEST_F(KvmMemslotTest, FlagsOnlyPreparesWithoutFlushAndSharesTheBitmap) {
  UserspaceMemoryRegion2 r = region(0, 0, k64K);
  ASSERT_EQ(err(set(r)), 0);
  EXPECT_FALSE(slot_copy(0)->dirty_logging());
  arch->clear();
  r.flags = kMemLogDirtyPages;
  ASSERT_EQ(err(set(r)), 0);
  EXPECT_EQ(arch->kinds(), (std::vector<Kind>{Kind::kPrepare, Kind::kCommit}));
  EXPECT_EQ(arch->calls()[0].change, MemslotChange::kFlagsOnly);
  const std::optional<Memslot> logging = slot_copy(0);
  ASSERT_TRUE(logging->dirty_logging());
  logging->mark_page_dirty(Gfn{3});
  // A move keeps logging into the same bitmap.
  r.guest_phys_addr = 4 * k64K;
  ASSERT_EQ(err(set(r)), 0);
  EXPECT_TRUE(slot_copy(0)->test_dirty(Gfn{0x43}));
  r.flags = 0;
  ASSERT_EQ(err(set(r)), 0);
  EXPECT_FALSE(slot_copy(0)->dirty_logging());
}

TEST_F(KvmMemslotTest, SettingTheSameRegionAgainDoesNothing) {
  UserspaceMemoryRegion2 r = region(0, 0, k64K);
  ASSERT_EQ(err(set(r)), 0);
  arch->clear();
  const uint64_t gen = kvm->memslots_generation();
  EXPECT_EQ(err(set(r)), 0);
  EXPECT_TRUE(arch->calls().empty());
  EXPECT_EQ(kvm->memslots_generation(), gen);
}

TEST_F(KvmMemslotTest, PrepareFailureOnCreatePublishesNothing) {
  arch->fail_prepare = Errno::kEinval;
  EXPECT_EQ(err(set(region(0, 0, k64K))), kEinval);
  EXPECT_FALSE(slot_copy(0));
}

TEST_F(KvmMemslotTest, PrepareFailureOnDeleteRestoresTheOldSlot) {
  UserspaceMemoryRegion2 r = region(0, 0, k64K);
  ASSERT_EQ(err(set(r)), 0);
  arch->fail_prepare = Errno::kEnomem;
  EXPECT_EQ(err(set(deletion(r))), static_cast<int>(Errno::kEnomem));
  const std::optional<Memslot> s = slot_copy(0);
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->invalid);
  EXPECT_EQ(s->base_gfn, Gfn{0});
}

TEST_F(KvmMemslotTest, PrepareFailureUnbindsTheGuestMemfd) {
  make_vm(VmType::kSwProtected);
  auto gmem = *kvm->create_guest_memfd(k64K, 0);
  arch->fail_prepare = Errno::kEinval;
  EXPECT_EQ(err(set(gmem_region(0, 0, k64K, gmem, 0))), kEinval);
  arch->fail_prepare.reset();
  // The range is free again.
  EXPECT_EQ(err(set(gmem_region(1, 0, k64K, gmem, 0))), 0);
}

TEST_F(KvmMemslotTest, WithoutAnArchEveryChangeStillWorks) {
  kvm->set_arch(nullptr);
  UserspaceMemoryRegion2 r = region(0, 0, k64K);
  ASSERT_EQ(err(set(r)), 0);
  r.guest_phys_addr = k64K;
  ASSERT_EQ(err(set(r)), 0);
  ASSERT_EQ(err(set(deletion(r))), 0);
  EXPECT_TRUE(arch->calls().empty());
}

// --- Readers ------------------------------------------------------------------------------------

TEST_F(KvmMemslotTest, ReadersUnderRcuSeeEachPublishedSet) {
  UserspaceMemoryRegion2 r = region(0, 0, k64K);
  ASSERT_EQ(err(set(r)), 0);
  std::thread reader([&] {
    RcuThread rcu;
    RcuReadGuard g;
    const Memslot* s = kvm->gfn_to_memslot(Gfn{4});
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->id, 0);
    EXPECT_EQ(kvm->memslots().size(), 1u);
  });
  reader.join();
  ASSERT_EQ(err(set(deletion(r))), 0);
  RcuThread rcu;
  RcuReadGuard g;
  EXPECT_EQ(kvm->gfn_to_memslot(Gfn{4}), nullptr);
}

TEST_F(KvmMemslotTest, ReadingMemslotsWithoutRcuOrSlotsLockAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH((void)kvm->gfn_to_memslot(Gfn{0}), "outside RCU");
}

}  // namespace
}  // namespace tdxsim
