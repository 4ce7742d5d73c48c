// guest_memfd: creation, binding to slots, pfns for faults, and punch-hole invalidation.
#include "kvm/guest_memfd.h"

#include <gtest/gtest.h>

#include "kvm/kvm_fixture_for_test.h"

namespace tdxsim {
namespace {

using Kind = FakeArchHooks::Kind;
constexpr int kEinval = static_cast<int>(Errno::kEinval);
constexpr int kEexist = static_cast<int>(Errno::kEexist);
constexpr int kEfault = static_cast<int>(Errno::kEfault);
constexpr uint64_t k2M = level_bytes(Level::k2M);

class GuestMemfdTest : public KvmFixture {
 protected:
  void SetUp() override { make_vm(VmType::kSwProtected); }
  std::shared_ptr<GuestMemfd> create(uint64_t size) { return *kvm->create_guest_memfd(size, 0); }
  // The slot as published now; stays valid while the test does not change slots.
  const Memslot& slot(uint16_t id) {
    MutexLock l(kvm->slots_lock());
    return *kvm->memslots().by_id(id);
  }
};

TEST_F(GuestMemfdTest, CreateErrors) {
  EXPECT_EQ(err(kvm->create_guest_memfd(0, 0)), kEinval);
  EXPECT_EQ(err(kvm->create_guest_memfd(kPageSize + 1, 0)), kEinval);
  EXPECT_EQ(err(kvm->create_guest_memfd(kPageSize, 1)), kEinval);
  EXPECT_EQ(err(kvm->create_guest_memfd(kPageSize, 0)), 0);
  make_vm(VmType::kDefault);
  EXPECT_EQ(err(kvm->create_guest_memfd(kPageSize, 0)), kEinval);
}

TEST_F(GuestMemfdTest, AnotherVmsFileIsEinval) {
  Kvm other(mem, mm, KvmConfig{.type = VmType::kSwProtected});
  auto foreign = *other.create_guest_memfd(k2M, 0);
  EXPECT_EQ(err(set(gmem_region(0, 0, k2M, foreign, 0))), kEinval);
}

TEST_F(GuestMemfdTest, RangeBeyondTheFileIsEinval) {
  auto gmem = create(k2M);
  EXPECT_EQ(err(set(gmem_region(0, 0, k2M, gmem, kPageSize))), kEinval);
  EXPECT_EQ(err(set(gmem_region(0, 0, kPageSize, gmem, k2M))), kEinval);
  EXPECT_EQ(err(set(gmem_region(0, 0, 2 * k2M, gmem, 0))), kEinval);
}

TEST_F(GuestMemfdTest, OverlappingBindingsAreEexistFrontAndBack) {
  // Two slots over disjoint halves, then each overlapping one of them.
  auto gmem = create(2 * k2M);
  ASSERT_EQ(err(set(gmem_region(0, 0, k2M, gmem, 0))), 0);
  ASSERT_EQ(err(set(gmem_region(1, 4 * k2M, k2M, gmem, k2M))), 0);
  EXPECT_EQ(err(set(gmem_region(2, 8 * k2M, k2M, gmem, k2M / 2))), kEexist);  // back of 0
  EXPECT_EQ(err(set(gmem_region(2, 8 * k2M, k2M / 2, gmem, 0))), kEexist);    // front of 0
  EXPECT_EQ(err(set(gmem_region(2, 8 * k2M, kPageSize, gmem, 2 * k2M - kPageSize))), kEexist);
  // Deleting a slot frees its range.
  ASSERT_EQ(err(set(deletion(gmem_region(0, 0, 0, gmem, 0)))), 0);
  EXPECT_EQ(err(set(gmem_region(2, 8 * k2M, k2M, gmem, 0))), 0);
}

TEST_F(GuestMemfdTest, PagesAreZeroedOnFirstUseAndStable) {
  auto gmem = create(k2M);
  ASSERT_EQ(err(set(gmem_region(0, 0, k2M, gmem, 0))), 0);
  const uint64_t free_before = mem.free_frame_count();
  const KvmResult<GmemPfn> a = kvm->gmem_get_pfn(slot(0), Gfn{5});
  ASSERT_TRUE(a);
  EXPECT_EQ(mem.read(a->pfn.hpa() + 8, kHostKey).value, 0u);
  EXPECT_EQ(kvm->gmem_get_pfn(slot(0), Gfn{5})->pfn, a->pfn);
  EXPECT_EQ(mem.free_frame_count(), free_before - 1);
  EXPECT_TRUE(gmem->is_allocated(5));
  EXPECT_EQ(gmem->allocated_pages(), 1u);
}

TEST_F(GuestMemfdTest, MaxLevelIs4KBecauseTheFileHoldsSeparateFrames) {
  auto gmem = create(4 * k2M);
  // gfns [0x200, 0x600) at file offset 0: 2M-congruent and wholly covered, and still 4K.
  ASSERT_EQ(err(set(gmem_region(0, k2M, 2 * k2M, gmem, 0))), 0);
  EXPECT_EQ(kvm->gmem_get_pfn(slot(0), Gfn{0x3ff})->max_level, Level::k4K);
}

TEST_F(GuestMemfdTest, SharedSlotHasNoPfn) {
  ASSERT_EQ(err(set(region(0, 0, k2M))), 0);
  EXPECT_EQ(err(kvm->gmem_get_pfn(slot(0), Gfn{0})), kEfault);
}

TEST_F(GuestMemfdTest, RunsOutOfMemory) {
  HostMemory tiny(HostMemoryConfig{.bytes = 4 * kPageSize});
  HostMm tiny_mm(tiny);
  Kvm vm(tiny, tiny_mm, KvmConfig{.type = VmType::kSwProtected});
  auto gmem = *vm.create_guest_memfd(k2M, 0);
  UserspaceMemoryRegion2 r = gmem_region(0, 0, k2M, gmem, 0);
  r.userspace_addr = tiny_mm.mmap(k2M);
  ASSERT_EQ(err(vm.set_user_memory_region2(r)), 0);
  MutexLock l(vm.slots_lock());
  const Memslot& s = *vm.memslots().by_id(0);
  KvmResult<GmemPfn> last;
  for (uint64_t i = 0; i < 8 && (last = vm.gmem_get_pfn(s, Gfn{i})); ++i) {
  }
  EXPECT_EQ(err(last), static_cast<int>(Errno::kEnomem));
}

TEST_F(GuestMemfdTest, PunchHoleErrors) {
  auto gmem = create(k2M);
  EXPECT_EQ(err(gmem->punch_hole(1, kPageSize)), kEinval);
  EXPECT_EQ(err(gmem->punch_hole(0, kPageSize + 1)), kEinval);
  EXPECT_EQ(err(gmem->punch_hole(0, 0)), kEinval);
  EXPECT_EQ(err(gmem->punch_hole(k2M, kPageSize)), kEinval);
  EXPECT_EQ(err(gmem->punch_hole(k2M - kPageSize, 2 * kPageSize)), kEinval);
  EXPECT_EQ(err(gmem->punch_hole(0, k2M)), 0);
}

TEST_F(GuestMemfdTest, PunchHoleUnmapsThePrivateAliasOfExactlyTheBoundGfnsThenFrees) {
  // One file, two slots: file pages [0, 16) at gfn 0x1000, [16, 32) at gfn 0x2000.
  auto gmem = create(32 * kPageSize);
  ASSERT_EQ(err(set(gmem_region(0, 0x1000 * kPageSize, 16 * kPageSize, gmem, 0))), 0);
  ASSERT_EQ(err(set(gmem_region(1, 0x2000 * kPageSize, 16 * kPageSize, gmem, 16 * kPageSize))), 0);
  const Memslot& s0 = slot(0);
  const Memslot& s1 = slot(1);
  const uint64_t free_before = mem.free_frame_count();
  const Pfn p12 = kvm->gmem_get_pfn(s0, Gfn{0x100c})->pfn;
  const Pfn p17 = kvm->gmem_get_pfn(s1, Gfn{0x2001})->pfn;
  (void)kvm->gmem_get_pfn(s1, Gfn{0x200f});
  mem.write(p12.hpa(), kHostKey, 0xdead);
  mem.write(p17.hpa(), kHostKey, 0xbeef);
  const uint64_t seq = kvm->mmu_invalidate_seq();
  arch->clear();
  arch->unmap_flushes = true;
  // File pages [12, 20): gfns 0x100c..0x100f of slot 0 and 0x2000..0x2003 of slot 1.
  std::vector<bool> retry_inside;
  arch->on_call = [&](const FakeArchHooks::Call& c) {
    if (c.kind == Kind::kUnmap) {
      retry_inside.push_back(kvm->mmu_invalidate_retry_gfn(seq, c.start));
    }
  };
  ASSERT_EQ(err(gmem->punch_hole(12 * kPageSize, 8 * kPageSize)), 0);
  const auto unmaps = arch->calls(Kind::kUnmap);
  ASSERT_EQ(unmaps.size(), 2u);
  EXPECT_EQ(unmaps[0].slot_id, 0);
  EXPECT_EQ(unmaps[0].start, Gfn{0x100c});
  EXPECT_EQ(unmaps[0].end, Gfn{0x1010});
  EXPECT_EQ(unmaps[1].slot_id, 1);
  EXPECT_EQ(unmaps[1].start, Gfn{0x2000});
  EXPECT_EQ(unmaps[1].end, Gfn{0x2004});
  for (const auto& c : unmaps) {
    EXPECT_EQ(c.attr_filter, kFilterPrivate);
    EXPECT_EQ(c.mmu_lock, LockMode::kExclusive);
    EXPECT_EQ(c.invalidate_in_progress, 1u);
  }
  EXPECT_EQ(retry_inside, (std::vector<bool>{true, true}));
  EXPECT_EQ(arch->calls(Kind::kFlushRemoteTlbs).size(), 1u);
  EXPECT_EQ(kvm->mmu_invalidate_seq(), seq + 1);
  EXPECT_EQ(kvm->mmu_invalidate_in_progress(), 0u);
  // The two pages in the hole went back; the one outside stays.
  EXPECT_EQ(mem.free_frame_count(), free_before - 1);
  EXPECT_FALSE(gmem->is_allocated(12));
  EXPECT_TRUE(gmem->is_allocated(31));
  // A refault gets a zeroed page.
  const Pfn again = kvm->gmem_get_pfn(s0, Gfn{0x100c})->pfn;
  EXPECT_EQ(mem.read(again.hpa(), kHostKey).value, 0u);
}

TEST_F(GuestMemfdTest, PunchOfAnUnboundRangeTouchesNoVm) {
  auto gmem = create(32 * kPageSize);
  ASSERT_EQ(err(set(gmem_region(0, 0, 16 * kPageSize, gmem, 0))), 0);
  arch->clear();
  const uint64_t seq = kvm->mmu_invalidate_seq();
  ASSERT_EQ(err(gmem->punch_hole(16 * kPageSize, 16 * kPageSize)), 0);
  EXPECT_TRUE(arch->calls().empty());
  EXPECT_EQ(kvm->mmu_invalidate_seq(), seq);
}

TEST_F(GuestMemfdTest, DeletedSlotIsUnboundAndItsStaleCopyGetsNoPfn) {
  auto gmem = create(16 * kPageSize);
  UserspaceMemoryRegion2 r = gmem_region(0, 0, 16 * kPageSize, gmem, 0);
  ASSERT_EQ(err(set(r)), 0);
  const Memslot stale = slot(0);
  ASSERT_EQ(err(set(deletion(r))), 0);
  EXPECT_EQ(err(kvm->gmem_get_pfn(stale, Gfn{0})), kEfault);
  arch->clear();
  ASSERT_EQ(err(gmem->punch_hole(0, 16 * kPageSize)), 0);
  EXPECT_TRUE(arch->calls().empty());
}

TEST_F(GuestMemfdTest, FileOutlivesItsVm) {
  const uint64_t free_before = mem.free_frame_count();
  std::shared_ptr<GuestMemfd> gmem = create(16 * kPageSize);
  ASSERT_EQ(err(set(gmem_region(0, 0, 16 * kPageSize, gmem, 0))), 0);
  ASSERT_TRUE(kvm->gmem_get_pfn(slot(0), Gfn{3}));
  arch.reset();
  kvm.reset();
  // After the VM closed, punching and reallocating still work and touch no VM.
  EXPECT_EQ(gmem->allocated_pages(), 1u);
  ASSERT_EQ(err(gmem->punch_hole(0, 16 * kPageSize)), 0);
  EXPECT_EQ(gmem->allocated_pages(), 0u);
  gmem.reset();
  EXPECT_EQ(mem.free_frame_count(), free_before);
}

}  // namespace
}  // namespace tdxsim
