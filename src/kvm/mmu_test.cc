#include "kvm/mmu.h"

#include <gtest/gtest.h>

#include <memory>

#include "base/rcu.h"
#include "kvm/fake_vendor_ops_for_test.h"
#include "kvm/mirror_private_mem.h"
#include "kvm/tdp_iter.h"
#include "kvm/tdp_mmu_peer_for_test.h"

namespace tdxsim {
namespace {

constexpr uint64_t kSharedGpaBit = uint64_t{1} << 47;

// One VM with its MMU and one vCPU's MMU context, memslots added by the test.
class KvmMmuTest : public ::testing::Test {
 protected:
  void start(VmType type, KvmMmuConfig cfg = {}) {
    kvm_ = std::make_unique<Kvm>(mem_, mm_, KvmConfig{.type = type});
    mmu_ = std::make_unique<KvmMmu>(*kvm_, ops_, cfg);
    ASSERT_TRUE(mmu_->load(vcpu_));
  }

  void TearDown() override {
    if (mmu_) {
      mmu_->unload(vcpu_);
      mmu_.reset();
    }
    kvm_.reset();
    TdpMmu::barrier();
  }

  // A memslot of `pages` at `gfn`, backed by fresh VMM memory (and a guest_memfd when the
  // VM has private memory and `gmem` is asked for).
  void add_slot(uint16_t id, Gfn gfn, uint64_t pages, bool gmem = false, uint32_t flags = 0) {
    UserspaceMemoryRegion2 r;
    r.slot = id;
    r.flags = flags;
    r.guest_phys_addr = gfn.gpa().raw();
    r.memory_size = pages * kPageSize;
    r.userspace_addr = mm_.mmap(r.memory_size);
    if (gmem) {
      KvmResult<std::shared_ptr<GuestMemfd>> f = kvm_->create_guest_memfd(r.memory_size, 0);
      ASSERT_TRUE(f);
      r.flags |= kMemGuestMemfd;
      r.guest_memfd = *f;
    }
    ASSERT_TRUE(kvm_->set_user_memory_region2(r)) << "slot " << id;
    regions_[id] = r;
  }
  void delete_slot(uint16_t id) {
    UserspaceMemoryRegion2 r = regions_.at(id);
    r.memory_size = 0;
    r.flags &= ~kMemGuestMemfd;
    r.guest_memfd = nullptr;
    ASSERT_TRUE(kvm_->set_user_memory_region2(r));
  }

  FaultResult fault(Gpa gpa, uint64_t error_code = kPferrWrite) {
    return mmu_->page_fault(vcpu_, gpa, error_code);
  }
  // A shared GPA of a TD (its alias bit set).
  static Gpa shared(Gfn gfn) { return Gpa{gfn.gpa().raw() | kSharedGpaBit}; }

  bool mapped(Gpa gpa) {
    ReadLock l(kvm_->mmu_lock());
    return mmu_->gpa_is_mapped(vcpu_, gpa);
  }

  RcuThread rcu_;
  HostMemory mem_{HostMemoryConfig{.bytes = 8192 * kPageSize, .huge_2m_pages = 4}};
  HostMm mm_{mem_};
  FakeVendorOps ops_;
  std::unique_ptr<Kvm> kvm_;
  std::unique_ptr<KvmMmu> mmu_;
  VcpuMmu vcpu_;
  std::map<uint16_t, UserspaceMemoryRegion2> regions_;
};

// --- Fault outcomes ------------------------------------------------------------------------

TEST_F(KvmMmuTest, SharedFaultIsFixedThenSpurious) {
  start(VmType::kDefault);
  add_slot(0, Gfn{0x100}, 16);
  EXPECT_EQ(fault(Gfn{0x105}.gpa()).ret, RetPf::kFixed);
  EXPECT_TRUE(mapped(Gfn{0x105}.gpa()));
  EXPECT_EQ(fault(Gfn{0x105}.gpa()).ret, RetPf::kSpurious);
  EXPECT_EQ(mmu_->stats().fault_count(RetPf::kFixed), 1u);
  EXPECT_EQ(mmu_->stats().fault_count(RetPf::kSpurious), 1u);
}

TEST_F(KvmMmuTest, FaultMapsTheFrameTheVmmSees) {
  start(VmType::kDefault);
  add_slot(0, Gfn{0x100}, 16);
  ASSERT_TRUE(mm_.write(regions_[0].userspace_addr + 3 * kPageSize, 0x1234));
  ASSERT_EQ(fault(Gfn{0x103}.gpa()).ret, RetPf::kFixed);
  std::array<Spte, 5> sptes{};
  mmu_->tdp_mmu().get_walk(vcpu_.root, Gfn{0x103}.gpa(), sptes);
  EXPECT_EQ(sptes[0].pfn(), *mm_.resident_pfn(regions_[0].userspace_addr + 3 * kPageSize));
}

TEST_F(KvmMmuTest, NoSlotIsMmio) {
  start(VmType::kDefault);
  const FaultResult r = fault(Gpa{0xfee00000});
  EXPECT_EQ(r.ret, RetPf::kEmulate);
  EXPECT_FALSE(mapped(Gpa{0xfee00000}));
}

TEST_F(KvmMmuTest, TdSharedMmioSpteIsZeroSoTheGuestTakesVe) {
  start(VmType::kTdx);
  const Gpa gpa = shared(Gfn{0xfee00});
  EXPECT_EQ(fault(gpa).ret, RetPf::kEmulate);
  std::array<Spte, 5> sptes{};
  mmu_->tdp_mmu().get_walk(vcpu_.root, gpa, sptes);
  EXPECT_TRUE(sptes[0].is_mmio(MmioValue::kTdVe));
  EXPECT_FALSE(sptes[0].is_suppress_ve(SpteFormat::kEpt));
}

TEST_F(KvmMmuTest, WriteToReadOnlySlotIsEmulated) {
  start(VmType::kDefault);
  add_slot(0, Gfn{0x100}, 4, false, kMemReadonly);
  EXPECT_EQ(fault(Gfn{0x100}.gpa(), kPferrWrite).ret, RetPf::kEmulate);
  EXPECT_EQ(fault(Gfn{0x100}.gpa(), 0).ret, RetPf::kFixed);
  std::array<Spte, 5> sptes{};
  mmu_->tdp_mmu().get_walk(vcpu_.root, Gfn{0x100}.gpa(), sptes);
  EXPECT_FALSE(sptes[0].is_writable());
}

TEST_F(KvmMmuTest, FaultRetriesWhenAnInvalidationCoversItsGfn) {
  start(VmType::kDefault);
  add_slot(0, Gfn{0x100}, 16);
  {
    WriteLock l(kvm_->mmu_lock());
    kvm_->mmu_invalidate_begin(Gfn{0x104}, Gfn{0x108});
  }
  EXPECT_EQ(fault(Gfn{0x105}.gpa()).ret, RetPf::kRetry);
  EXPECT_EQ(fault(Gfn{0x109}.gpa()).ret, RetPf::kFixed);  // outside the range
  {
    WriteLock l(kvm_->mmu_lock());
    kvm_->mmu_invalidate_end();
  }
  EXPECT_EQ(fault(Gfn{0x105}.gpa()).ret, RetPf::kFixed);
}

TEST_F(KvmMmuTest, FaultRetriesWhenAnInvalidationCompletedAfterItsSnapshot) {
  start(VmType::kDefault);
  add_slot(0, Gfn{0x100}, 16);
  // Between the pfn lookup and mmu_lock: the host reclaims the page (the pfn just looked up
  // is freed) — the fault must not map it.
  mmu_->set_fault_tracepoint([&](const KvmPageFault& f) {
    if (f.gfn == Gfn{0x105}) mm_.reclaim(regions_[0].userspace_addr + 5 * kPageSize, kPageSize);
  });
  EXPECT_EQ(fault(Gfn{0x105}.gpa()).ret, RetPf::kRetry);
  mmu_->set_fault_tracepoint(nullptr);
  EXPECT_EQ(fault(Gfn{0x105}.gpa()).ret, RetPf::kFixed);
  std::array<Spte, 5> sptes{};
  mmu_->tdp_mmu().get_walk(vcpu_.root, Gfn{0x105}.gpa(), sptes);
  EXPECT_EQ(sptes[0].pfn(), *mm_.resident_pfn(regions_[0].userspace_addr + 5 * kPageSize));
}

TEST_F(KvmMmuTest, FaultRetriesWhenAFastZapMadeItsRootObsolete) {
  start(VmType::kDefault);
  add_slot(0, Gfn{0x100}, 16);
  ASSERT_EQ(fault(Gfn{0x101}.gpa()).ret, RetPf::kFixed);
  MmuPage* const old_root = vcpu_.root;
  // Between the pfn lookup and mmu_lock: a memslot update whose generation's MMIO bits wrap
  // invalidates every root and zaps it, the vCPU's included (it keeps its reference).
  mmu_->set_fault_tracepoint([&](const KvmPageFault& f) {
    if (f.gfn == Gfn{0x105}) mmu_->memslots_updated(0);
  });
  EXPECT_EQ(fault(Gfn{0x105}.gpa()).ret, RetPf::kRetry);
  mmu_->set_fault_tracepoint(nullptr);
  EXPECT_TRUE(TdpMmu::is_obsolete_root(old_root));
  // Nothing was built under the zapped root: its last put leaves no table behind.
  ASSERT_TRUE(mmu_->load(vcpu_));
  EXPECT_TRUE(mmu_->tdp_mmu().table_census().balanced());
  EXPECT_EQ(fault(Gfn{0x105}.gpa()).ret, RetPf::kFixed);
  EXPECT_TRUE(mmu_->tdp_mmu().table_census().balanced());
}

TEST_F(KvmMmuTest, LoadProgramsTheDirectRootAndFlushesIt) {
  start(VmType::kTdx);
  std::vector<FakeVendorOps::Call> calls = ops_.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].kind, FakeVendorOps::Kind::kLoadPgd);
  // The shared EPT's root, never the mirror's (the module owns the secure EPTP).
  EXPECT_EQ(calls[0].arg, vcpu_.root->spt().raw());
  EXPECT_NE(calls[0].arg,
            static_cast<MirrorPrivateMem*>(mmu_->private_path())->root()->spt().raw());
  EXPECT_EQ(calls[0].level, Level::k512G);
  EXPECT_EQ(calls[1].kind, FakeVendorOps::Kind::kFlushCurrent);
  // A reload with a valid root changes nothing.
  ASSERT_TRUE(mmu_->load(vcpu_));
  EXPECT_EQ(ops_.calls().size(), 2u);
}

TEST_F(KvmMmuTest, ObsoleteRootRetriesAndTheReloadGetsAFreshOne) {
  start(VmType::kDefault);
  add_slot(0, Gfn{0x100}, 16);
  MmuPage* old = vcpu_.root;
  ASSERT_EQ(fault(Gfn{0x100}.gpa()).ret, RetPf::kFixed);
  delete_slot(0);  // the default VM fast-zaps: every direct root becomes obsolete
  add_slot(0, Gfn{0x100}, 16);
  EXPECT_EQ(fault(Gfn{0x100}.gpa()).ret, RetPf::kRetry);
  ASSERT_TRUE(mmu_->load(vcpu_));
  EXPECT_NE(vcpu_.root, old);
  EXPECT_EQ(fault(Gfn{0x100}.gpa()).ret, RetPf::kFixed);
}

TEST_F(KvmMmuTest, DirtyLoggingSlotRecordsMappedWrites) {
  start(VmType::kDefault);
  add_slot(0, Gfn{0x100}, 16, false, kMemLogDirtyPages);
  ASSERT_EQ(fault(Gfn{0x103}.gpa()).ret, RetPf::kFixed);
  RcuReadGuard g;
  EXPECT_TRUE(kvm_->gfn_to_memslot(Gfn{0x103})->test_dirty(Gfn{0x103}));
  EXPECT_FALSE(kvm_->gfn_to_memslot(Gfn{0x104})->test_dirty(Gfn{0x104}));
}

TEST_F(KvmMmuTest, EnablingDirtyLoggingWriteProtectsAndEachHarvestReprotects) {
  start(VmType::kDefault);
  add_slot(0, Gfn{0x100}, 128);
  for (uint64_t g = 0x100; g < 0x180; ++g) ASSERT_EQ(fault(Gfn{g}.gpa()).ret, RetPf::kFixed);
  auto leaf = [&](uint64_t g) {
    std::array<Spte, 5> sptes{};
    mmu_->tdp_mmu().get_walk(vcpu_.root, Gfn{g}.gpa(), sptes);
    return sptes[0];
  };
  ASSERT_TRUE(leaf(0x105).is_writable());
  // FLAGS_ONLY: start logging. Every writable leaf loses W (and keeps MMU-writable).
  UserspaceMemoryRegion2 r = regions_[0];
  r.flags = kMemLogDirtyPages;
  ASSERT_TRUE(kvm_->set_user_memory_region2(r));
  for (uint64_t g = 0x100; g < 0x180; ++g) {
    ASSERT_FALSE(leaf(g).is_writable()) << g;
    ASSERT_TRUE(leaf(g).is_mmu_writable(SpteFormat::kEpt)) << g;
  }
  EXPECT_EQ(kvm_->get_dirty_log(0)->at(0), 0u);  // nothing written yet
  // Two writes: they fault, are logged, and get W back.
  ASSERT_EQ(fault(Gfn{0x105}.gpa(), kPferrWrite | kPferrPresent).ret, RetPf::kFixed);
  ASSERT_EQ(fault(Gfn{0x141}.gpa(), kPferrWrite | kPferrPresent).ret, RetPf::kFixed);
  EXPECT_TRUE(leaf(0x105).is_writable());
  const std::vector<uint64_t> log = *kvm_->get_dirty_log(0);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0], uint64_t{1} << 5);
  EXPECT_EQ(log[1], uint64_t{1} << 1);
  // The harvest protected them again: the next write is logged again.
  EXPECT_FALSE(leaf(0x105).is_writable());
  EXPECT_FALSE(leaf(0x141).is_writable());
  EXPECT_EQ(kvm_->get_dirty_log(0)->at(0), 0u);
  ASSERT_EQ(fault(Gfn{0x105}.gpa(), kPferrWrite | kPferrPresent).ret, RetPf::kFixed);
  EXPECT_EQ(kvm_->get_dirty_log(0)->at(0), uint64_t{1} << 5);
}

// With a CPU that logs the pages whose D it sets (PML), logging clears D and keeps W; each
// harvest clears D of the pages it returns, and only a change that cleared a D flushes.
TEST_F(KvmMmuTest, WithPmlLoggingClearsDirtyInsteadOfWriteProtecting) {
  ops_.set_cpu_dirty_log_size(512);
  start(VmType::kDefault);
  add_slot(0, Gfn{0x100}, 64);
  for (uint64_t g = 0x100; g < 0x140; ++g) ASSERT_EQ(fault(Gfn{g}.gpa()).ret, RetPf::kFixed);
  auto leaf = [&](uint64_t g) {
    std::array<Spte, 5> sptes{};
    mmu_->tdp_mmu().get_walk(vcpu_.root, Gfn{g}.gpa(), sptes);
    return sptes[0];
  };
  ASSERT_TRUE(leaf(0x105).is_dirty(SpteFormat::kEpt));
  UserspaceMemoryRegion2 r = regions_[0];
  r.flags = kMemLogDirtyPages;
  const uint64_t flushes_before = ops_.flushes();
  ASSERT_TRUE(kvm_->set_user_memory_region2(r));
  EXPECT_GT(ops_.flushes(), flushes_before);
  for (uint64_t g = 0x100; g < 0x140; ++g) {
    ASSERT_TRUE(leaf(g).is_writable()) << g;
    ASSERT_FALSE(leaf(g).is_dirty(SpteFormat::kEpt)) << g;
  }
  // The CPU sets D in two leaves and logs them (PML, then the flush at the exit).
  for (uint64_t g : {0x105, 0x13f}) {
    RcuReadGuard rcu;
    for (TdpIter it(mem_, *vcpu_.root, Level::k4K, Gfn{g}, Gfn{g + 1}, Gfn{0}); it.valid();
         it.next()) {
      if (it.level() != Level::k4K) continue;
      mem_.store(it.sptep(), kHostKey, it.old_spte().with_dirty(SpteFormat::kEpt, true).raw(),
                 std::memory_order_release);
    }
    kvm_->mark_page_dirty(Gfn{g});
  }
  const uint64_t flushes_at_harvest = ops_.flushes();
  const std::vector<uint64_t> log = *kvm_->get_dirty_log(0);
  EXPECT_EQ(log, (std::vector<uint64_t>{(uint64_t{1} << 5) | (uint64_t{1} << 63)}));
  EXPECT_GT(ops_.flushes(), flushes_at_harvest);
  EXPECT_FALSE(leaf(0x105).is_dirty(SpteFormat::kEpt));
  EXPECT_FALSE(leaf(0x13f).is_dirty(SpteFormat::kEpt));
  EXPECT_TRUE(leaf(0x105).is_writable());
  // Nothing logged since: nothing harvested, nothing flushed.
  const uint64_t flushes_after = ops_.flushes();
  EXPECT_EQ(*kvm_->get_dirty_log(0), (std::vector<uint64_t>{0}));
  EXPECT_EQ(ops_.flushes(), flushes_after);
}

TEST_F(KvmMmuTest, DirtyLogOfASlotThatDoesNotLogIsEnoent) {
  start(VmType::kDefault);
  add_slot(0, Gfn{0x100}, 16);
  EXPECT_EQ(kvm_->get_dirty_log(0).error(), Errno::kEnoent);
  EXPECT_EQ(kvm_->get_dirty_log(7).error(), Errno::kEnoent);
}

// 2M mappings: over a 2M host page, for a range wholly in the slot, with one attribute.
class HugeMappingTest : public KvmMmuTest {
 protected:
  // A slot at `gfn` of `pages`, backed by a THP mapping offset `hva_skew` bytes into it.
  void add_thp_slot(uint16_t id, Gfn gfn, uint64_t pages, uint64_t hva_skew = 0) {
    UserspaceMemoryRegion2 r;
    r.slot = id;
    r.guest_phys_addr = gfn.gpa().raw();
    r.memory_size = pages * kPageSize;
    r.userspace_addr = mm_.mmap(r.memory_size + level_bytes(Level::k2M), Level::k2M) + hva_skew;
    ASSERT_TRUE(kvm_->set_user_memory_region2(r));
    regions_[id] = r;
  }
  std::array<Spte, 5> walk(Gfn g) {
    std::array<Spte, 5> sptes{};
    mmu_->tdp_mmu().get_walk(vcpu_.root, g.gpa(), sptes);
    return sptes;
  }
};

TEST_F(HugeMappingTest, ThpBackedSlotMapsA2MLeafOverTheHugePage) {
  start(VmType::kDefault);
  add_thp_slot(0, Gfn{0x200}, 1024);
  ASSERT_EQ(fault(Gfn{0x234}.gpa()).ret, RetPf::kFixed);
  const std::array<Spte, 5> s = walk(Gfn{0x234});
  ASSERT_TRUE(s[1].is_shadow_present() && s[1].is_large());
  EXPECT_EQ(mm_.mapping_level(regions_[0].userspace_addr), Level::k2M);
  EXPECT_EQ(s[1].pfn(), *mm_.resident_pfn(regions_[0].userspace_addr));
  EXPECT_EQ(mmu_->stats().pages_mapped(false, Level::k2M), 1);
  // The whole 2M is mapped by that one fault.
  EXPECT_EQ(fault(Gfn{0x3ff}.gpa()).ret, RetPf::kSpurious);
}

TEST_F(HugeMappingTest, MisalignedHostMappingOrPartialSlotMaps4K) {
  start(VmType::kDefault);
  add_thp_slot(0, Gfn{0x200}, 512, /*hva_skew=*/kPageSize);  // guest and host offsets differ
  add_thp_slot(1, Gfn{0x1000}, 256);                         // half a 2M range
  ASSERT_EQ(fault(Gfn{0x200}.gpa()).ret, RetPf::kFixed);
  ASSERT_EQ(fault(Gfn{0x1000}.gpa()).ret, RetPf::kFixed);
  EXPECT_FALSE(walk(Gfn{0x200})[1].is_large());
  EXPECT_TRUE(walk(Gfn{0x200})[0].is_shadow_present());
  EXPECT_FALSE(walk(Gfn{0x1000})[1].is_large());
  EXPECT_EQ(mmu_->stats().pages_mapped(false, Level::k2M), 0);
}

TEST_F(HugeMappingTest, MixedAttributesInThe2MRangeMap4K) {
  start(VmType::kSwProtected);
  add_thp_slot(0, Gfn{0x200}, 512);
  ASSERT_TRUE(kvm_->set_memory_attributes(Gfn{0x3f0}, Gfn{0x3f1}, kMemAttrPrivate));
  ASSERT_EQ(fault(Gfn{0x200}.gpa()).ret, RetPf::kFixed);
  EXPECT_FALSE(walk(Gfn{0x200})[1].is_large());
  // Back to one attribute: a fault after the zap maps 2M again.
  ASSERT_TRUE(kvm_->set_memory_attributes(Gfn{0x3f0}, Gfn{0x3f1}, 0));
  {
    WriteLock l(kvm_->mmu_lock());
    mmu_->tdp_mmu().zap_direct_leafs(Gfn{0x200}, Gfn{0x400}, ZapReason::kRoots, false, false);
  }
  ASSERT_EQ(fault(Gfn{0x200}.gpa()).ret, RetPf::kFixed);
  EXPECT_TRUE(walk(Gfn{0x200})[1].is_large());
}

// A zap that yields mmu_lock mid-invalidation (a conversion of one gfn, say) must not let a
// fault elsewhere in the 2M range map a leaf covering that gfn: it would outlive the zap.
// Found by the MMU stress under TSan (a shared 2M leaf left over a gfn just made private).
TEST_F(HugeMappingTest, AHugeLeafIsNotBuiltOverAGfnBeingInvalidated) {
  start(VmType::kSwProtected);
  add_thp_slot(0, Gfn{0x200}, 512);
  {
    WriteLock l(kvm_->mmu_lock());
    kvm_->mmu_invalidate_begin(Gfn{0x21f}, Gfn{0x220});
  }
  EXPECT_EQ(fault(Gfn{0x205}.gpa()).ret, RetPf::kRetry);
  EXPECT_FALSE(walk(Gfn{0x205})[1].is_shadow_present());
  {
    WriteLock l(kvm_->mmu_lock());
    kvm_->mmu_invalidate_end();
  }
  ASSERT_EQ(fault(Gfn{0x205}.gpa()).ret, RetPf::kFixed);
  EXPECT_TRUE(walk(Gfn{0x205})[1].is_large());
}

TEST_F(HugeMappingTest, ReclaimMigratesTheHugePageAndTheRefaultMapsTheNewOne) {
  start(VmType::kDefault);
  add_thp_slot(0, Gfn{0x200}, 512);
  ASSERT_TRUE(mm_.write(regions_[0].userspace_addr + 5 * kPageSize, 0xabc));
  ASSERT_EQ(fault(Gfn{0x200}.gpa()).ret, RetPf::kFixed);
  const Pfn before = walk(Gfn{0x200})[1].pfn();
  // One 4K page under pressure: the whole 2M page moves, and its 2M leaf goes.
  mm_.reclaim(regions_[0].userspace_addr + 5 * kPageSize, kPageSize);
  EXPECT_FALSE(walk(Gfn{0x205})[1].is_shadow_present() && walk(Gfn{0x205})[1].is_large());
  ASSERT_EQ(fault(Gfn{0x205}.gpa()).ret, RetPf::kFixed);
  const Spte after = walk(Gfn{0x205})[1];
  ASSERT_TRUE(after.is_large());
  EXPECT_NE(after.pfn(), before);
  EXPECT_EQ(mem_.read((after.pfn() + 5).hpa(), kHostKey).value, 0xabcu);
}

// Memory-fault exits, TD: the GPA's alias says what the guest wanted.
TEST_F(KvmMmuTest, TdPrivateAccessToSharedGfnExitsWithPrivateFlag) {
  start(VmType::kTdx);
  add_slot(0, Gfn{0x100}, 16, /*gmem=*/true);
  const FaultResult r = fault(Gfn{0x102}.gpa());
  EXPECT_EQ(r.ret, RetPf::kInvalid);
  EXPECT_EQ(r.error, Errno::kEfault);
  ASSERT_TRUE(r.memory_fault);
  EXPECT_EQ(*r.memory_fault,
            (MemoryFaultExit{Gfn{0x102}.gpa(), kPageSize, kMemoryExitFlagPrivate}));
  // Userspace converts; the retry maps it privately.
  ASSERT_TRUE(kvm_->set_memory_attributes(Gfn{0x102}, Gfn{0x103}, kMemAttrPrivate));
  EXPECT_EQ(fault(Gfn{0x102}.gpa()).ret, RetPf::kFixed);
  EXPECT_TRUE(mapped(Gfn{0x102}.gpa()));
  EXPECT_EQ(ops_.leaves().size(), 1u);
}

TEST_F(KvmMmuTest, TdSharedAccessToPrivateGfnExitsWithoutPrivateFlag) {
  start(VmType::kTdx);
  add_slot(0, Gfn{0x100}, 16, /*gmem=*/true);
  ASSERT_TRUE(kvm_->set_memory_attributes(Gfn{0x100}, Gfn{0x110}, kMemAttrPrivate));
  const FaultResult r = fault(shared(Gfn{0x102}));
  ASSERT_TRUE(r.memory_fault);
  // The exit names the gfn without the shared bit.
  EXPECT_EQ(*r.memory_fault, (MemoryFaultExit{Gfn{0x102}.gpa(), kPageSize, 0}));
}

TEST_F(KvmMmuTest, SwProtectedPrivateAccessToANonGmemSlotExits) {
  start(VmType::kSwProtected);
  add_slot(0, Gfn{0x100}, 16, /*gmem=*/false);
  ASSERT_TRUE(kvm_->set_memory_attributes(Gfn{0x100}, Gfn{0x101}, kMemAttrPrivate));
  const FaultResult r = fault(Gfn{0x100}.gpa());
  ASSERT_TRUE(r.memory_fault);
  EXPECT_EQ(*r.memory_fault,
            (MemoryFaultExit{Gfn{0x100}.gpa(), kPageSize, kMemoryExitFlagPrivate}));
  EXPECT_EQ(fault(Gfn{0x101}.gpa()).ret, RetPf::kFixed);  // shared: ordinary memory
}

TEST_F(KvmMmuTest, SwProtectedPrivateAccessAfterTheSlotIsDeletedExits) {
  start(VmType::kSwProtected);
  add_slot(0, Gfn{0xc0000}, 1, /*gmem=*/true);
  ASSERT_TRUE(kvm_->set_memory_attributes(Gfn{0xc0000}, Gfn{0xc0001}, kMemAttrPrivate));
  ASSERT_EQ(fault(Gfn{0xc0000}.gpa(), 0).ret, RetPf::kFixed);
  delete_slot(0);
  const FaultResult r = fault(Gfn{0xc0000}.gpa(), 0);
  ASSERT_TRUE(r.memory_fault);
  EXPECT_EQ(*r.memory_fault, (MemoryFaultExit{Gpa{0xc0000000}, kPageSize, kMemoryExitFlagPrivate}));
}

TEST_F(KvmMmuTest, SwProtectedPrivateMemoryMapsInTheDirectRootFromGuestMemfd) {
  start(VmType::kSwProtected);
  add_slot(0, Gfn{0x100}, 16, /*gmem=*/true);
  ASSERT_TRUE(kvm_->set_memory_attributes(Gfn{0x100}, Gfn{0x110}, kMemAttrPrivate));
  ASSERT_EQ(fault(Gfn{0x100}.gpa()).ret, RetPf::kFixed);
  std::array<Spte, 5> sptes{};
  mmu_->tdp_mmu().get_walk(vcpu_.root, Gfn{0x100}.gpa(), sptes);
  // Not the VMM's page: guest_memfd's.
  EXPECT_NE(sptes[0].pfn(), mm_.resident_pfn(regions_[0].userspace_addr).value_or(Pfn{~0ull}));
  EXPECT_EQ(mmu_->private_path(), nullptr);
}

// FROZEN handling: a busy hook, then agreement.
TEST_F(KvmMmuTest, TdBusyExternalHookRetriesAndMirrorAgreesWithExternal) {
  start(VmType::kTdx);
  add_slot(0, Gfn{0x100}, 16, /*gmem=*/true);
  ASSERT_TRUE(kvm_->set_memory_attributes(Gfn{0x100}, Gfn{0x110}, kMemAttrPrivate));
  ops_.busy_sets(2);
  EXPECT_EQ(fault(Gfn{0x101}.gpa()).ret, RetPf::kRetry);
  EXPECT_EQ(fault(Gfn{0x101}.gpa()).ret, RetPf::kRetry);
  EXPECT_EQ(fault(Gfn{0x101}.gpa()).ret, RetPf::kFixed);
  auto* mirror = static_cast<MirrorPrivateMem*>(mmu_->private_path());
  const MirrorImage img = mirror_image(mmu_->tdp_mmu(), *mirror->root());
  EXPECT_EQ(img.leaves, ops_.leaves());
  EXPECT_EQ(img.tables, ops_.tables());
  EXPECT_TRUE(ops_.violations().empty());
  EXPECT_EQ(mmu_->stats().fault_count(RetPf::kRetry), 2u);
}

TEST_F(KvmMmuTest, TdSlotWhoseGfnsCarryTheSharedBitIsRejected) {
  start(VmType::kTdx);
  UserspaceMemoryRegion2 r;
  r.slot = 0;
  r.guest_phys_addr = kSharedGpaBit - 2 * kPageSize;  // last page crosses into the alias
  r.memory_size = 4 * kPageSize;
  r.userspace_addr = mm_.mmap(r.memory_size);
  EXPECT_EQ(kvm_->set_user_memory_region2(r).error(), Errno::kEinval);
  r.guest_phys_addr = kSharedGpaBit - 4 * kPageSize;  // ends just below it: fine
  EXPECT_TRUE(kvm_->set_user_memory_region2(r));
}

// --- Zap rules (seed 001) ----------------------------------------------------------------

class TdZapTest : public KvmMmuTest {
 protected:
  // gfns 0x100..0x110 in slot 0 and 0x200..0x210 in slot 1; in each, even gfns private and
  // faulted through the private alias, odd gfns shared and faulted through the shared one.
  void SetUp() override {
    start(VmType::kTdx);
    add_slot(0, Gfn{0x100}, 16, true);
    add_slot(1, Gfn{0x200}, 16, true);
    for (uint64_t base : {0x100u, 0x200u}) {
      for (uint64_t g = base; g < base + 16; g += 2) {
        ASSERT_TRUE(kvm_->set_memory_attributes(Gfn{g}, Gfn{g + 1}, kMemAttrPrivate));
        ASSERT_EQ(fault(Gfn{g}.gpa()).ret, RetPf::kFixed);
        ASSERT_EQ(fault(shared(Gfn{g + 1})).ret, RetPf::kFixed);
      }
    }
  }
  bool private_mapped(uint64_t g) { return mapped(Gfn{g}.gpa()); }
  bool shared_mapped(uint64_t g) { return mapped(shared(Gfn{g})); }
  uint64_t zapped(ZapReason r, ZapAlias a) {
    return mmu_->stats().zapped[static_cast<size_t>(r)][static_cast<size_t>(a)].value();
  }
};

TEST_F(TdZapTest, MemslotDeletionZapsBothAliasesOfThatSlotOnly) {
  delete_slot(0);
  for (uint64_t g = 0x100; g < 0x110; g += 2) {
    EXPECT_FALSE(private_mapped(g));
    EXPECT_FALSE(shared_mapped(g + 1));
  }
  for (uint64_t g = 0x200; g < 0x210; g += 2) {
    EXPECT_TRUE(private_mapped(g));
    EXPECT_TRUE(shared_mapped(g + 1));
  }
  EXPECT_EQ(zapped(ZapReason::kMemslot, ZapAlias::kPrivate), 8u);
  EXPECT_EQ(zapped(ZapReason::kMemslot, ZapAlias::kShared), 8u);
  EXPECT_FALSE(TdpMmu::is_obsolete_root(vcpu_.root));  // never a fast zap for a TD
  EXPECT_EQ(ops_.count(FakeVendorOps::Kind::kRemove), 8u);
}

TEST_F(TdZapTest, NotifierZapsSharedOnly) {
  // The host reclaims the VMM's memory behind the whole of slot 0.
  mm_.reclaim(regions_[0].userspace_addr, 16 * kPageSize);
  for (uint64_t g = 0x100; g < 0x110; g += 2) {
    EXPECT_TRUE(private_mapped(g));
    EXPECT_FALSE(shared_mapped(g + 1));
  }
  EXPECT_EQ(zapped(ZapReason::kNotifier, ZapAlias::kShared), 8u);
  EXPECT_EQ(ops_.count(FakeVendorOps::Kind::kRemove), 0u);
}

TEST_F(TdZapTest, ConversionToSharedZapsPrivateOnly) {
  ASSERT_TRUE(kvm_->set_memory_attributes(Gfn{0x100}, Gfn{0x110}, 0));
  for (uint64_t g = 0x100; g < 0x110; g += 2) {
    EXPECT_FALSE(private_mapped(g));
    EXPECT_TRUE(shared_mapped(g + 1));
  }
  EXPECT_EQ(zapped(ZapReason::kAttributes, ZapAlias::kPrivate), 8u);
  EXPECT_EQ(zapped(ZapReason::kAttributes, ZapAlias::kShared), 0u);
}

TEST_F(TdZapTest, ConversionToPrivateZapsSharedOnly) {
  ASSERT_TRUE(kvm_->set_memory_attributes(Gfn{0x100}, Gfn{0x110}, kMemAttrPrivate));
  for (uint64_t g = 0x100; g < 0x110; g += 2) {
    EXPECT_TRUE(private_mapped(g));
    EXPECT_FALSE(shared_mapped(g + 1));
  }
  EXPECT_EQ(zapped(ZapReason::kAttributes, ZapAlias::kShared), 8u);
  EXPECT_EQ(ops_.count(FakeVendorOps::Kind::kRemove), 0u);
}

TEST_F(TdZapTest, GuestMemfdPunchZapsPrivateOnly) {
  ASSERT_TRUE(regions_[0].guest_memfd->punch_hole(0, 16 * kPageSize));
  for (uint64_t g = 0x100; g < 0x110; g += 2) {
    EXPECT_FALSE(private_mapped(g));
    EXPECT_TRUE(shared_mapped(g + 1));
  }
  EXPECT_EQ(zapped(ZapReason::kGmemPunch, ZapAlias::kPrivate), 8u);
}

TEST_F(TdZapTest, MtrrCr0CdAndApicvZapsAreNotSupportedForTds) {
  for (GfnZapCause c : {GfnZapCause::kMtrr, GfnZapCause::kCr0Cd, GfnZapCause::kApicv}) {
    EXPECT_EQ(mmu_->zap_gfn_range(Gfn{0}, Gfn{0x1000}, c).error(), Errno::kEopnotsupp);
  }
  for (uint64_t g = 0x100; g < 0x110; g += 2) {
    EXPECT_TRUE(private_mapped(g));
    EXPECT_TRUE(shared_mapped(g + 1));
  }
}

TEST_F(TdZapTest, NoncoherentDmaChangeLeavesPrivateMemoryAlone) {
  ASSERT_TRUE(mmu_->zap_gfn_range(Gfn{0}, Gfn{0x1000}, GfnZapCause::kNoncoherentDma));
  for (uint64_t g = 0x100; g < 0x110; g += 2) {
    EXPECT_TRUE(private_mapped(g));
    EXPECT_FALSE(shared_mapped(g + 1));
  }
}

TEST_F(TdZapTest, NotifierReleaseZapsSharedRootsAndLeavesTheMirror) {
  mm_.exit();
  for (uint64_t g = 0x100; g < 0x110; g += 2) {
    EXPECT_TRUE(private_mapped(g));
    EXPECT_FALSE(shared_mapped(g + 1));
  }
}

class DefaultVmSlotZapTest : public KvmMmuTest, public ::testing::WithParamInterface<bool> {};

TEST_P(DefaultVmSlotZapTest, MemslotDeletionHonoursTheQuirk) {
  const bool quirk = GetParam();
  start(VmType::kDefault, KvmMmuConfig{.quirk_slot_zap_all = quirk});
  add_slot(0, Gfn{0x100}, 16);
  add_slot(1, Gfn{0x200}, 16);
  ASSERT_EQ(fault(Gfn{0x100}.gpa()).ret, RetPf::kFixed);
  ASSERT_EQ(fault(Gfn{0x200}.gpa()).ret, RetPf::kFixed);
  delete_slot(0);
  if (quirk) {
    // Zap all: every direct root is obsolete; the vCPU reloads an empty one.
    EXPECT_TRUE(TdpMmu::is_obsolete_root(vcpu_.root));
    ASSERT_TRUE(mmu_->load(vcpu_));
    EXPECT_FALSE(mapped(Gfn{0x200}.gpa()));
  } else {
    EXPECT_FALSE(TdpMmu::is_obsolete_root(vcpu_.root));
    EXPECT_TRUE(mapped(Gfn{0x200}.gpa()));
  }
  EXPECT_FALSE(mapped(Gfn{0x100}.gpa()));
  // Gone memory is MMIO now, either way.
  EXPECT_EQ(fault(Gfn{0x100}.gpa()).ret, RetPf::kEmulate);
}
INSTANTIATE_TEST_SUITE_P(QuirkOnAndOff, DefaultVmSlotZapTest, ::testing::Bool());

TEST_F(KvmMmuTest, SwProtectedMemslotDeletionIgnoresTheQuirk) {
  start(VmType::kSwProtected, KvmMmuConfig{.quirk_slot_zap_all = true});
  add_slot(0, Gfn{0x100}, 16, true);
  add_slot(1, Gfn{0x200}, 16, true);
  ASSERT_EQ(fault(Gfn{0x100}.gpa()).ret, RetPf::kFixed);
  ASSERT_EQ(fault(Gfn{0x200}.gpa()).ret, RetPf::kFixed);
  delete_slot(0);
  EXPECT_FALSE(TdpMmu::is_obsolete_root(vcpu_.root));
  EXPECT_FALSE(mapped(Gfn{0x100}.gpa()));
  EXPECT_TRUE(mapped(Gfn{0x200}.gpa()));
}

TEST_F(KvmMmuTest, DefaultVmMtrrZapZapsTheRange) {
  start(VmType::kDefault);
  add_slot(0, Gfn{0x100}, 16);
  ASSERT_EQ(fault(Gfn{0x100}.gpa()).ret, RetPf::kFixed);
  ASSERT_TRUE(mmu_->zap_gfn_range(Gfn{0x100}, Gfn{0x101}, GfnZapCause::kMtrr));
  EXPECT_FALSE(mapped(Gfn{0x100}.gpa()));
}

TEST_F(KvmMmuTest, VmTeardownRemovesEveryPrivatePageAndReturnsEveryTable) {
  start(VmType::kTdx);
  add_slot(0, Gfn{0x100}, 64, true);
  ASSERT_TRUE(kvm_->set_memory_attributes(Gfn{0x100}, Gfn{0x120}, kMemAttrPrivate));
  for (uint64_t g = 0x100; g < 0x120; ++g) ASSERT_EQ(fault(Gfn{g}.gpa()).ret, RetPf::kFixed);
  for (uint64_t g = 0x120; g < 0x140; ++g) ASSERT_EQ(fault(shared(Gfn{g})).ret, RetPf::kFixed);
  mmu_->unload(vcpu_);
  mmu_.reset();
  EXPECT_TRUE(ops_.leaves().empty());
  EXPECT_TRUE(ops_.tables().empty());
  EXPECT_TRUE(ops_.violations().empty());
}

}  // namespace
}  // namespace tdxsim
