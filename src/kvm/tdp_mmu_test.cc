#include "kvm/tdp_mmu.h"

#include <gtest/gtest.h>

#include <memory>

#include "base/rcu.h"
#include "kvm/fake_vendor_ops_for_test.h"
#include "kvm/mirror_private_mem.h"
#include "kvm/tdp_mmu_peer_for_test.h"

namespace tdxsim {
namespace {

constexpr Gfn kShared{uint64_t{1} << (47 - 12)};  // a TD's shared bit (4-level EPT) as a gfn

class TdpMmuTest : public ::testing::Test {
 protected:
  explicit TdpMmuTest(Gfn direct_bits = Gfn{0}, unsigned yield_every = 512)
      : mem_(HostMemoryConfig{.bytes = 4096 * kPageSize}),
        mmu_(std::make_unique<TdpMmu>(
            mem_, mmu_lock_, ops_, nullptr,
            TdpMmuConfig{.gfn_direct_bits = direct_bits, .yield_every = yield_every})),
        base_free_(mem_.free_frame_count()) {}

  ~TdpMmuTest() override {
    if (mmu_) teardown();
  }

  // A referenced direct root, as a vCPU holds one.
  MmuPage* direct_root() {
    MmuPage* r = mmu_->get_direct_root();
    EXPECT_NE(r, nullptr);
    return r;
  }

  Pfn page() { return *mem_.alloc_frame(); }

  KvmPageFault fault(Gfn gfn, Pfn pfn, Level goal = Level::k4K, bool write = true) {
    KvmPageFault f{};
    f.gfn = gfn;
    f.addr = gfn.gpa();
    f.write = write;
    f.pfn = pfn;
    f.goal_level = goal;
    f.slot = reinterpret_cast<const Memslot*>(this);  // any non-null slot: RAM, not MMIO
    return f;
  }

  RetPf map(MmuPage* root, KvmPageFault f) {
    ReadLock l(mmu_lock_);
    return mmu_->map(root, f);
  }

  RetPf map_private(KvmPageFault f) {
    ReadLock l(mmu_lock_);
    return private_.fault_in(f);
  }

  // VM destruction: every root invalidated and zapped under the write lock, the vCPUs'
  // references put.
  void teardown(std::initializer_list<MmuPage*> vcpu_refs = {}) {
    {
      WriteLock l(mmu_lock_);
      mmu_->invalidate_direct_roots();
      private_.teardown();
      mmu_->zap_invalidated_roots(/*shared=*/false);
    }
    for (MmuPage* r : vcpu_refs) mmu_->put_root(r);
    TdpMmu::barrier();
  }

  RcuThread rcu_;
  HostMemory mem_;
  SharedMutex mmu_lock_{"kvm->mmu_lock"};
  FakeVendorOps ops_;
  std::unique_ptr<TdpMmu> mmu_;
  MirrorPrivateMem private_{*mmu_};
  uint64_t base_free_;
};

TEST_F(TdpMmuTest, FaultMaps4KThroughFreshTables) {
  MmuPage* root = direct_root();
  const Pfn pfn = page();
  EXPECT_EQ(map(root, fault(Gfn{0x12345}, pfn)), RetPf::kFixed);
  const std::optional<Spte> leaf = mmu_->leaf_for(root, Gfn{0x12345});
  ASSERT_TRUE(leaf);
  EXPECT_EQ(leaf->pfn(), pfn);
  EXPECT_TRUE(leaf->is_writable() && leaf->is_executable(SpteFormat::kEpt) && leaf->is_suppress_ve(SpteFormat::kEpt));
  EXPECT_EQ(Spte::EptMemType::get(leaf->raw()), static_cast<uint64_t>(EptMemType::kWB));
  EXPECT_EQ(mmu_->stats().pages_mapped(false, Level::k4K), 1);
  EXPECT_EQ(mmu_->live_table_pages(), 4u);  // root + 1G + 2M + 4K tables
  EXPECT_EQ(map(root, fault(Gfn{0x12345}, pfn)), RetPf::kSpurious);
  teardown({root});
  EXPECT_EQ(mmu_->live_table_pages(), 0u);
  EXPECT_EQ(mmu_->stats().pages_mapped(false, Level::k4K), 0);
}

TEST_F(TdpMmuTest, ReadOnlyHostPageMapsWithoutWrite) {
  MmuPage* root = direct_root();
  KvmPageFault f = fault(Gfn{7}, page(), Level::k4K, /*write=*/false);
  f.map_writable = false;
  EXPECT_EQ(map(root, f), RetPf::kFixed);
  const Spte leaf = *mmu_->leaf_for(root, Gfn{7});
  EXPECT_FALSE(leaf.is_writable());
  EXPECT_FALSE(leaf.is_host_writable(SpteFormat::kEpt));
  teardown({root});
}

TEST_F(TdpMmuTest, HugeLeafThenSmallFaultSplitsIt) {
  MmuPage* root = direct_root();
  const Pfn base{0x200};  // any 2M-aligned frame run (contents are not touched)
  EXPECT_EQ(map(root, fault(Gfn{0x400}, base, Level::k2M)), RetPf::kFixed);
  EXPECT_EQ(mmu_->leaf_for(root, Gfn{0x4ff})->pfn(), base);
  EXPECT_EQ(mmu_->stats().pages_mapped(false, Level::k2M), 1);
  // A 4K goal inside it: the 2M leaf becomes a table of 512 leaves with the same frames.
  EXPECT_EQ(map(root, fault(Gfn{0x401}, base + 1, Level::k4K)), RetPf::kSpurious);
  EXPECT_EQ(mmu_->stats().pages_mapped(false, Level::k2M), 0);
  EXPECT_EQ(mmu_->stats().pages_mapped(false, Level::k4K), 512);
  for (uint64_t i : {0u, 1u, 511u}) {
    EXPECT_EQ(mmu_->leaf_for(root, Gfn{0x400 + i})->pfn(), base + i);
  }
  teardown({root});
  EXPECT_EQ(mmu_->stats().pages_mapped(false, Level::k4K), 0);
}

TEST_F(TdpMmuTest, NoSlotMakesAnMmioSpteWithTheGeneration) {
  MmuPage* root = direct_root();
  KvmPageFault f = fault(Gfn{0xfee00}, Pfn{0});
  f.slot = nullptr;
  f.memslot_generation = 0x1234;
  EXPECT_EQ(map(root, f), RetPf::kEmulate);
  std::array<Spte, 5> sptes{};
  EXPECT_EQ(mmu_->get_walk(root, Gfn{0xfee00}.gpa(), sptes), Level::k4K);
  EXPECT_TRUE(sptes[0].is_mmio(MmioValue::kEptMisconfig));
  EXPECT_EQ(sptes[0].mmio_gfn(MmioSpteMasks::ept(MmioValue::kEptMisconfig)), Gfn{0xfee00});
  EXPECT_EQ(sptes[0].mmio_generation(), 0x1234u);
  EXPECT_FALSE(mmu_->leaf_for(root, Gfn{0xfee00}));
  teardown({root});
}

TEST_F(TdpMmuTest, FrozenEntryOnThePathMakesTheFaultRetry) {
  MmuPage* root = direct_root();
  ASSERT_EQ(map(root, fault(Gfn{0}, page())), RetPf::kFixed);
  // Freeze the 2M-level entry above gfn 0x10, as a thread mid-change would (the freeze is a
  // bare compare-and-swap: its owner handles the change only when it publishes the result).
  Hpa sptep;
  Spte before;
  {
    ReadLock l(mmu_lock_);
    RcuReadGuard g;
    TdpIter it(mem_, *root, Level::k2M, Gfn{0x10}, Gfn{0x11}, Gfn{0});
    while (it.level() != Level::k2M) it.next();
    sptep = it.sptep();
    before = it.old_spte();
    uint64_t expected = before.raw();
    ASSERT_TRUE(mem_.compare_exchange(sptep, kHostKey, expected, Spte::kFrozenValue,
                                      std::memory_order_acq_rel));
  }
  EXPECT_EQ(map(root, fault(Gfn{0x10}, page())), RetPf::kRetry);
  // The owner publishes the real value when done; then the fault goes through.
  mem_.store(sptep, kHostKey, before.raw(), std::memory_order_release);
  EXPECT_EQ(map(root, fault(Gfn{0x10}, page())), RetPf::kFixed);
  teardown({root});
}

TEST_F(TdpMmuTest, RootsAreSharedPerRoleAndFreedAfterInvalidation) {
  MmuPage* a = direct_root();
  MmuPage* b = direct_root();
  EXPECT_EQ(a, b);
  EXPECT_EQ(a->root_refcount(), 3u);  // two vCPUs and the MMU
  {
    WriteLock l(mmu_lock_);
    mmu_->invalidate_direct_roots();
  }
  EXPECT_TRUE(TdpMmu::is_obsolete_root(a));
  // A vCPU that reloads gets a fresh root.
  MmuPage* c = direct_root();
  EXPECT_NE(c, a);
  EXPECT_EQ(mmu_->root_count(), 2u);
  {
    ReadLock l(mmu_lock_);  // the fast zap runs under the read lock
    mmu_->zap_invalidated_roots(/*shared=*/true);
  }
  mmu_->put_root(a);
  mmu_->put_root(b);
  EXPECT_EQ(mmu_->root_count(), 1u);
  teardown({c});
  EXPECT_EQ(mmu_->root_count(), 0u);
  EXPECT_FALSE(mmu_->vm_bugged());
}

TEST_F(TdpMmuTest, PuttingTheLastReferenceOfAValidRootIsAVmBug) {
  MmuPage* r = direct_root();
  mmu_->put_root(r);  // the vCPU's
  mmu_->put_root(r);  // the MMU's own: only invalidation may drop it
  EXPECT_TRUE(mmu_->vm_bugged());
  EXPECT_EQ(mmu_->bug_message(), "the last reference to a valid root was put");
  TdpMmu::barrier();
}

class YieldingZapTest : public TdpMmuTest {
 protected:
  YieldingZapTest() : TdpMmuTest(Gfn{0}, /*yield_every=*/1) {}
};

TEST_F(YieldingZapTest, ZapLeafsYieldingEveryStepSkipsNoGfn) {
  MmuPage* root = direct_root();
  for (uint64_t g = 0; g < 1200; g += 3) ASSERT_EQ(map(root, fault(Gfn{g}, page())), RetPf::kFixed);
  bool flush;
  {
    WriteLock l(mmu_lock_);
    flush = mmu_->zap_direct_leafs(Gfn{0}, Gfn{1200}, ZapReason::kNotifier, true, false);
  }
  EXPECT_TRUE(flush || ops_.flushes() > 0);
  for (uint64_t g = 0; g < 1200; ++g) EXPECT_FALSE(mmu_->leaf_for(root, Gfn{g})) << g;
  EXPECT_EQ(mmu_->stats().zapped[static_cast<size_t>(ZapReason::kNotifier)][0].value(), 400u);
  EXPECT_EQ(mmu_->stats().pages_mapped(false, Level::k4K), 0);
  teardown({root});
}

TEST_F(TdpMmuTest, AgingClearsAccessedAndKeepsTheMapping) {
  MmuPage* root = direct_root();
  ASSERT_EQ(map(root, fault(Gfn{5}, page())), RetPf::kFixed);
  {
    ReadLock l(mmu_lock_);
    EXPECT_TRUE(mmu_->age_gfn_range(Gfn{0}, Gfn{16}, /*test_only=*/true));
    EXPECT_TRUE(mmu_->age_gfn_range(Gfn{0}, Gfn{16}, /*test_only=*/false));
    EXPECT_FALSE(mmu_->age_gfn_range(Gfn{0}, Gfn{16}, /*test_only=*/true));
  }
  EXPECT_TRUE(mmu_->leaf_for(root, Gfn{5}));
  teardown({root});
}

TEST_F(TdpMmuTest, WriteProtectKeepsMmuWritableSoTheNextWriteFaultRestoresW) {
  MmuPage* root = direct_root();
  const Pfn pfn = page();
  ASSERT_EQ(map(root, fault(Gfn{5}, pfn)), RetPf::kFixed);
  {
    ReadLock l(mmu_lock_);
    EXPECT_TRUE(mmu_->wrprot_range(Gfn{0}, Gfn{16}, Level::k4K));
  }
  Spte leaf = *mmu_->leaf_for(root, Gfn{5});
  EXPECT_FALSE(leaf.is_writable());
  EXPECT_TRUE(leaf.is_mmu_writable(SpteFormat::kEpt));
  // The next write faults (the leaf lacks W), and the fault rebuilds the same leaf with W.
  EXPECT_EQ(map(root, fault(Gfn{5}, pfn)), RetPf::kFixed);
  EXPECT_TRUE(mmu_->leaf_for(root, Gfn{5})->is_writable());
  teardown({root});
}

// --- The mirror ---------------------------------------------------------------------------

class MirrorTest : public TdpMmuTest {
 protected:
  MirrorTest() : TdpMmuTest(kShared) { EXPECT_TRUE(private_.load()); }

  void expect_mirror_matches_external() {
    const MirrorImage img = mirror_image(*mmu_, *private_.root());
    EXPECT_EQ(img.leaves, ops_.leaves());
    EXPECT_EQ(img.tables, ops_.tables());
    EXPECT_TRUE(ops_.violations().empty()) << ops_.violations().front();
  }
};

TEST_F(MirrorTest, PrivateFaultLinksEachExternalTableThenSetsTheLeaf) {
  const Pfn pfn = page();
  EXPECT_EQ(map_private(fault(Gfn{0x12345}, pfn)), RetPf::kFixed);
  const std::vector<FakeVendorOps::Call> calls = ops_.calls();
  ASSERT_EQ(calls.size(), 4u);
  // Top down: the 512G entry links the 1G table, …, then the 4K leaf.
  EXPECT_EQ(calls[0].kind, FakeVendorOps::Kind::kLink);
  EXPECT_EQ(calls[0].level, Level::k512G);
  EXPECT_EQ(calls[1].level, Level::k1G);
  EXPECT_EQ(calls[2].level, Level::k2M);
  EXPECT_EQ(calls[2].gfn, Gfn{0x12200});
  EXPECT_EQ(calls[3].kind, FakeVendorOps::Kind::kSet);
  EXPECT_EQ(calls[3].gfn, Gfn{0x12345});
  EXPECT_EQ(calls[3].arg, pfn.raw());
  const Spte leaf = *[&] {
    ReadLock l(mmu_lock_);
    return private_.walk(Gfn{0x12345});
  }();
  // Private leaves are RWX with no memory type: the module owns the S-EPT entry's.
  EXPECT_EQ(leaf.raw() & Spte::kEptRwxMask, Spte::kEptRwxMask);
  EXPECT_EQ(Spte::EptMemType::get(leaf.raw()), 0u);
  EXPECT_EQ(mmu_->stats().pages_mapped(true, Level::k4K), 1);
  expect_mirror_matches_external();
}

TEST_F(MirrorTest, BusySetLeavesNoFrozenEntryAndTheRetrySucceeds) {
  ops_.busy_sets(1);
  const Pfn pfn = page();
  EXPECT_EQ(map_private(fault(Gfn{0x40}, pfn)), RetPf::kRetry);
  {
    ReadLock l(mmu_lock_);
    EXPECT_FALSE(private_.walk(Gfn{0x40}));
  }
  std::array<Spte, 5> sptes{};
  mmu_->get_walk(private_.root(), Gfn{0x40}.gpa(), sptes);
  EXPECT_EQ(sptes[0], Spte::nonpresent());  // restored, not left FROZEN
  expect_mirror_matches_external();
  EXPECT_EQ(map_private(fault(Gfn{0x40}, pfn)), RetPf::kFixed);
  expect_mirror_matches_external();
}

TEST_F(MirrorTest, BusyLinkFreesTheUnpublishedTable) {
  const uint64_t tables = mmu_->live_table_pages();
  ops_.busy_links(1);
  EXPECT_EQ(map_private(fault(Gfn{0x40}, page())), RetPf::kRetry);
  EXPECT_EQ(mmu_->live_table_pages(), tables);
  expect_mirror_matches_external();
  EXPECT_EQ(map_private(fault(Gfn{0x40}, page())), RetPf::kFixed);
  expect_mirror_matches_external();
}

TEST_F(MirrorTest, ZapRemovesOnlyLeavesInTheRange) {
  for (uint64_t g : {0x10u, 0x11u, 0x12u, 0x400u}) {
    ASSERT_EQ(map_private(fault(Gfn{g}, page())), RetPf::kFixed);
  }
  ops_.clear_calls();
  {
    WriteLock l(mmu_lock_);
    EXPECT_TRUE(private_.zap_range(Gfn{0x11}, Gfn{0x13}, ZapReason::kAttributes, false));
  }
  const std::vector<FakeVendorOps::Call> calls = ops_.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].kind, FakeVendorOps::Kind::kRemove);
  EXPECT_EQ(calls[0].gfn, Gfn{0x11});
  EXPECT_EQ(calls[1].gfn, Gfn{0x12});
  expect_mirror_matches_external();
  EXPECT_EQ(mmu_->stats().zapped[static_cast<size_t>(ZapReason::kAttributes)][1].value(), 2u);
}

TEST_F(MirrorTest, TeardownRemovesLeavesBeforeFreeingTablesBottomUp) {
  for (uint64_t g : {0x10u, 0x400u, 0x40000u}) {
    ASSERT_EQ(map_private(fault(Gfn{g}, page())), RetPf::kFixed);
  }
  // One 1G-entry table, a 2M-entry table per 1G region touched (2), a 4K table per 2M (3).
  ASSERT_EQ(ops_.count(FakeVendorOps::Kind::kLink), 6u);
  ops_.clear_calls();
  teardown();
  // The fake refuses (as a violation) a free of a table that still has entries below it.
  EXPECT_TRUE(ops_.violations().empty()) << ops_.violations().front();
  EXPECT_TRUE(ops_.leaves().empty());
  EXPECT_TRUE(ops_.tables().empty());
  EXPECT_EQ(ops_.count(FakeVendorOps::Kind::kRemove), 3u);
  EXPECT_EQ(ops_.count(FakeVendorOps::Kind::kFree), 6u);
  EXPECT_EQ(mmu_->live_table_pages(), 0u);
  EXPECT_EQ(mmu_->stats().pages_mapped(true, Level::k4K), 0);
  mmu_.reset();
  // Every frame the MMU took (tables and S-EPT pages) is back, but the guest pages this
  // test allocated itself.
  EXPECT_EQ(mem_.free_frame_count(), base_free_ - 3);
}

TEST_F(MirrorTest, FailedFreeOfAnExternalTableLeaksItInsteadOfReturningIt) {
  ASSERT_EQ(map_private(fault(Gfn{0x10}, page())), RetPf::kFixed);
  ops_.fail_frees(true);
  teardown();
  mmu_.reset();
  // The three S-EPT pages stay out of the allocator: the module may still own them.
  EXPECT_EQ(mem_.free_frame_count(), base_free_ - 1 - 3);
}

TEST_F(MirrorTest, PrivateLeafThatIsNotRwxIsAVmBug) {
  ASSERT_EQ(map_private(fault(Gfn{0x10}, page())), RetPf::kFixed);
  {
    ReadLock l(mmu_lock_);
    RcuReadGuard g;
    TdpIter it(mem_, *private_.root(), Level::k4K, Gfn{0x11}, Gfn{0x12}, Gfn{0});
    while (it.level() != Level::k4K) it.next();
    const Spte ro = Spte::make_leaf(SpteFormat::kEpt, page(), Level::k4K, {.write = false});
    EXPECT_FALSE(TdpMmuTestPeer::set_spte_atomic(*mmu_, private_.root(), it, ro));
  }
  EXPECT_TRUE(mmu_->vm_bugged());
  expect_mirror_matches_external();
}

TEST_F(MirrorTest, AtomicZapOfAMirrorEntryIsAVmBug) {
  ASSERT_EQ(map_private(fault(Gfn{0x10}, page())), RetPf::kFixed);
  {
    ReadLock l(mmu_lock_);
    RcuReadGuard g;
    TdpIter it(mem_, *private_.root(), Level::k4K, Gfn{0x10}, Gfn{0x11}, Gfn{0});
    while (it.level() != Level::k4K) it.next();
    EXPECT_FALSE(TdpMmuTestPeer::set_spte_atomic(*mmu_, private_.root(), it, Spte::nonpresent()));
  }
  EXPECT_TRUE(mmu_->vm_bugged());
  EXPECT_EQ(mmu_->bug_message(), "atomic zap of a mirror SPTE");
}

TEST_F(MirrorTest, DirectBitsPlaceTheSharedAliasAndZapsOnlyTouchIt) {
  MmuPage* root = direct_root();
  const Pfn shared_pfn = page();
  const Pfn private_pfn = page();
  ASSERT_EQ(map(root, fault(Gfn{9}, shared_pfn)), RetPf::kFixed);
  ASSERT_EQ(map_private(fault(Gfn{9}, private_pfn)), RetPf::kFixed);
  // The direct root maps gfn 9 at the shared GPA; the walk the CPU does sees it there.
  std::array<Spte, 5> sptes{};
  EXPECT_EQ(mmu_->get_walk(root, Gpa{(kShared.raw() | 9) << 12}, sptes), Level::k4K);
  EXPECT_EQ(sptes[0].pfn(), shared_pfn);
  {
    WriteLock l(mmu_lock_);
    EXPECT_TRUE(mmu_->zap_direct_leafs(Gfn{0}, Gfn{16}, ZapReason::kAttributes, true, false));
    EXPECT_EQ(private_.walk(Gfn{9})->pfn(), private_pfn);
  }
  EXPECT_FALSE(mmu_->leaf_for(root, Gfn{9}));
  EXPECT_EQ(ops_.count(FakeVendorOps::Kind::kRemove), 0u);
  teardown({root});
}

}  // namespace
}  // namespace tdxsim
