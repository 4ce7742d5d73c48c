// memslots_unaliased and sptes_backed_by_memslots against a real TDP MMU and real memslots:
// a leaf that maps the slot's own page is backed; one that maps another frame, or a gfn no
// slot holds, is not; a slot above a direct bit is an alias.
#include "check/memslot_backing.h"

#include <gtest/gtest.h>

#include <memory>

#include "base/rcu.h"
#include "kvm/fake_vendor_ops_for_test.h"
#include "kvm/host_mm.h"
#include "kvm/kvm.h"
#include "kvm/memslot.h"
#include "kvm/tdp_mmu.h"

namespace tdxsim {
namespace {

constexpr Gfn kSlotBase{0x100};
constexpr uint64_t kSlotPages = 16;

class MemslotBackingTest : public ::testing::Test {
 protected:
  explicit MemslotBackingTest(Gfn direct_bits = Gfn{0})
      : mmu_(std::make_unique<TdpMmu>(mem_, kvm_.mmu_lock(), ops_, &kvm_,
                                      TdpMmuConfig{.gfn_direct_bits = direct_bits})) {
    root_ = mmu_->get_direct_root();
  }
  ~MemslotBackingTest() override {
    {
      WriteLock l(kvm_.mmu_lock());
      mmu_->invalidate_direct_roots();
      mmu_->zap_invalidated_roots(/*shared=*/false);
    }
    mmu_->put_root(root_);
    TdpMmu::barrier();
  }

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
  void map(Gfn gfn, Pfn pfn) {
    KvmPageFault f{};
    f.gfn = gfn;
    f.addr = gfn.gpa();
    f.write = true;
    f.pfn = pfn;
    f.goal_level = Level::k4K;
    f.slot = reinterpret_cast<const Memslot*>(this);  // RAM, not MMIO
    ReadLock l(kvm_.mmu_lock());
    ASSERT_EQ(mmu_->map(root_, f), RetPf::kFixed);
  }

  RcuThread rcu_;
  HostMemory mem_{HostMemoryConfig{.bytes = 4096 * kPageSize}};
  HostMm mm_{mem_};
  Kvm kvm_{mem_, mm_, KvmConfig{}};
  FakeVendorOps ops_;
  std::unique_ptr<TdpMmu> mmu_;
  MmuPage* root_ = nullptr;
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
