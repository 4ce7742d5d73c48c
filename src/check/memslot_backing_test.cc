// memslots_unaliased and sptes_backed_by_memslots against a real TDP MMU and real memslots:
// a leaf that maps the slot's own page is backed; one that maps another frame, or a gfn no
// slot holds, is not; a slot above a direct bit is an alias.
#include "check/memslot_backing.h"

#include <gtest/gtest.h>

#include "check/direct_root_mmu_for_test.h"
#include "kvm/memslot.h"

namespace tdxsim {
namespace {

constexpr Gfn kSlotBase{0x100};
constexpr uint64_t kSlotPages = 16;

class MemslotBackingTest : public ::testing::Test, protected DirectRootMmu {
 protected:
  explicit MemslotBackingTest(Gfn direct_bits = Gfn{0})
      : DirectRootMmu(TdpMmuConfig{.gfn_direct_bits = direct_bits}) {}

  // A memslot of kSlotPages at `base` over fresh anonymous memory; returns its hva.
  uint64_t add_slot(uint32_t id, Gfn base) {
    UserspaceMemoryRegion2 r;
    r.slot = id;
    r.guest_phys_addr = base.gpa().raw();
    r.memory_size = kSlotPages * kPageSize;
    r.userspace_addr = mm_.mmap(r.memory_size);
    EXPECT_TRUE(kvm_.set_user_memory_region2(r).has_value());
    return r.userspace_addr;
  }
};

TEST_F(MemslotBackingTest, LeavesMappingTheSlotsOwnPagesAreBacked) {
  const uint64_t hva = add_slot(0, kSlotBase);
  for (uint64_t i = 0; i < 4; ++i) {
    map(kSlotBase + i, *mm_.get_user_page(hva + i * kPageSize, true));
  }
  const UnbackedSptes u = unbacked_sptes(kvm_, *mmu_);
  EXPECT_EQ(u.leaves_checked, 4u);
  EXPECT_EQ(u.unbacked, 0u) << (u.evidence.empty() ? "" : u.evidence.front());
  EXPECT_EQ(aliased_memslot(kvm_, *mmu_), std::nullopt);
}

TEST_F(MemslotBackingTest, ALeafToAnotherFrameOrWithoutASlotIsNot) {
  const uint64_t hva = add_slot(0, kSlotBase);
  map(kSlotBase, *mm_.get_user_page(hva, true));
  map(kSlotBase + 1, *mem_.alloc_frame());           // not the slot's page
  map(kSlotBase + kSlotPages, *mem_.alloc_frame());  // past the slot
  const UnbackedSptes u = unbacked_sptes(kvm_, *mmu_);
  EXPECT_EQ(u.leaves_checked, 3u);
  ASSERT_EQ(u.unbacked, 2u);
  EXPECT_NE(u.evidence[0].find("where memslot 0 has"), std::string::npos) << u.evidence[0];
  EXPECT_NE(u.evidence[1].find("no memslot"), std::string::npos) << u.evidence[1];
}

TEST_F(MemslotBackingTest, ALeafOverAPageTheHostMovedIsNot) {
  const uint64_t hva = add_slot(0, kSlotBase);
  map(kSlotBase, *mm_.get_user_page(hva, true));
  // Reclaim migrates the page without anyone zapping the leaf (no notifier registered here).
  mm_.reclaim(hva, kPageSize);
  const UnbackedSptes u = unbacked_sptes(kvm_, *mmu_);
  ASSERT_EQ(u.unbacked, 1u);
  EXPECT_NE(u.evidence[0].find("where memslot 0 has"), std::string::npos) << u.evidence[0];
}

class AliasedMemslotTest : public MemslotBackingTest {
 protected:
  AliasedMemslotTest() : MemslotBackingTest(Gfn{uint64_t{1} << 35}) {}
};

TEST_F(AliasedMemslotTest, ASlotAboveTheSharedBitIsAnAlias) {
  add_slot(0, kSlotBase);
  EXPECT_EQ(aliased_memslot(kvm_, *mmu_), std::nullopt);
  add_slot(1, Gfn{(uint64_t{1} << 35) | kSlotBase.raw()});
  const std::optional<std::string> v = aliased_memslot(kvm_, *mmu_);
  ASSERT_TRUE(v.has_value());
  EXPECT_NE(v->find("memslot 1"), std::string::npos) << *v;
}

}  // namespace
}  // namespace tdxsim
