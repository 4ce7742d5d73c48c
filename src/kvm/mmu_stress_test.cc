// The MMU under real concurrency: vCPU threads fault overlapping private and shared ranges
// while other threads convert attributes, punch guest_memfd holes, have the host reclaim
// the VMM's memory (notifier invalidations) and delete and re-add a memslot. A checker takes
// mmu_lock for write now and then and compares the mirror with the external tables.
//
// Afterwards (quiescent): the mirror agrees with the external tables; every leaf in every
// root, valid or invalid, maps what the VM's state says it must (a current slot, the
// gfn's attribute, and the frame the backing holds right now) — so no zapped range is still
// mapped; and every page-table page allocated is either reachable from a root or freed.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "base/rcu.h"
#include "kvm/fake_vendor_ops_for_test.h"
#include "kvm/mirror_private_mem.h"
#include "kvm/mmu.h"
#include "kvm/tdp_mmu_peer_for_test.h"

namespace tdxsim {
namespace {

constexpr uint64_t kSharedGpaBit = uint64_t{1} << 47;
constexpr uint64_t kSlotPages = 512;
constexpr Gfn kSlotGfn[2] = {Gfn{0x1000}, Gfn{0x2000}};
constexpr int kFaultThreads = 4;
constexpr int kFaultsPerThread = 20000;
constexpr int kSideThreads = 5;

class MmuStress : public ::testing::TestWithParam<VmType> {
 protected:
  void SetUp() override {
    kvm_ = std::make_unique<Kvm>(mem_, mm_, KvmConfig{.type = GetParam()});
    // Yield often, so that zaps drop and re-take mmu_lock in the middle of their walks.
    mmu_ = std::make_unique<KvmMmu>(*kvm_, ops_, KvmMmuConfig{.yield_every = 16});
    gmem_ = *kvm_->create_guest_memfd(2 * kSlotPages * kPageSize, 0);
    add_slot(0);
    add_slot(1);
  }

  void add_slot(int i) {
    UserspaceMemoryRegion2 r;
    r.slot = static_cast<uint32_t>(i);
    r.flags = kMemGuestMemfd;
    r.guest_phys_addr = kSlotGfn[i].gpa().raw();
    r.memory_size = kSlotPages * kPageSize;
    // Slot 0's VMM memory is a THP mapping: its 2M range maps with one 2M leaf whenever its
    // attribute is uniform, so zaps and migrations also meet huge leaves.
    r.userspace_addr = mm_.mmap(r.memory_size, i == 0 ? Level::k2M : Level::k4K);
    r.guest_memfd = gmem_;
    r.guest_memfd_offset = static_cast<uint64_t>(i) * kSlotPages * kPageSize;
    ASSERT_TRUE(kvm_->set_user_memory_region2(r));
    hva_[i].store(r.userspace_addr);
  }

  void delete_slot(int i) {
    UserspaceMemoryRegion2 r;
    r.slot = static_cast<uint32_t>(i);
    r.guest_phys_addr = kSlotGfn[i].gpa().raw();
    ASSERT_TRUE(kvm_->set_user_memory_region2(r));
  }

  // What every leaf must map once the VM is quiescent.
  void check_every_root() {
    RcuReadGuard rcu;
    const bool td = GetParam() == VmType::kTdx;
    for (MmuPage* root : TdpMmuTestPeer::roots(mmu_->tdp_mmu())) {
      const Gfn bits = mmu_->tdp_mmu().root_bits(root);
      for (TdpIter it(mem_, *root, Level::k4K, Gfn{0}, TdpIter::root_end(*root), Gfn{0});
           it.valid(); it.next()) {
        const Spte s = it.old_spte();
        ASSERT_FALSE(s.is_frozen()) << "FROZEN left at " << it.gfn().raw();
        if (!s.is_shadow_present() || !s.is_last(it.level())) continue;
        ASSERT_EQ(it.gfn().raw() & bits.raw(), bits.raw()) << "direct leaf outside its alias";
        const Gfn first{it.gfn().raw() & ~bits.raw()};
        const uint64_t pages = level_pages(it.level());
        const Memslot* slot = kvm_->gfn_to_memslot(first);
        ASSERT_NE(slot, nullptr) << first.raw() << " mapped with no memslot";
        ASSERT_FALSE(slot->invalid);
        ASSERT_LE((first + pages).raw(), slot->end().raw()) << "leaf beyond its slot";
        const bool private_attr = kvm_->mem_is_private(first);
        const bool private_leaf = root->is_mirror() || (!td && private_attr);
        ASSERT_EQ(private_leaf, private_attr) << first.raw() << " mapped in the wrong alias";
        ASSERT_TRUE(kvm_->range_has_memory_attributes(first, first + pages, kMemAttrPrivate,
                                                      private_attr ? kMemAttrPrivate : 0))
            << "a " << level_name(it.level()) << " leaf at " << first.raw() << " mixes attributes";
        for (uint64_t i = 0; i < pages; ++i) {
          const Gfn gfn = first + i;
          if (private_leaf) {
            const std::optional<Pfn> page = gmem_->page_at(slot->gfn_to_gmem_index(gfn));
            ASSERT_TRUE(page) << gfn.raw() << " maps a punched guest_memfd page";
            ASSERT_EQ(s.pfn() + i, *page) << gfn.raw();
          } else {
            const std::optional<Pfn> page = mm_.resident_pfn(slot->gfn_to_hva(gfn));
            ASSERT_TRUE(page) << gfn.raw() << " maps a page the host no longer has";
            ASSERT_EQ(s.pfn() + i, *page) << gfn.raw() << " maps a frame the host migrated away";
          }
        }
        if (it.level() != Level::k4K) huge_leaves_seen_ = true;
      }
    }
  }

  // Page-table pages reachable from the roots (roots included).
  uint64_t reachable_tables() {
    RcuReadGuard rcu;
    uint64_t n = 0;
    for (MmuPage* root : TdpMmuTestPeer::roots(mmu_->tdp_mmu())) {
      ++n;
      for (TdpIter it(mem_, *root, Level::k4K, Gfn{0}, TdpIter::root_end(*root), Gfn{0});
           it.valid(); it.next()) {
        const Spte s = it.old_spte();
        if (s.is_shadow_present() && !s.is_last(it.level())) ++n;
      }
    }
    return n;
  }

  void expect_mirror_matches_external() {
    auto* mirror = static_cast<MirrorPrivateMem*>(mmu_->private_path());
    if (mirror == nullptr || mirror->root() == nullptr) return;
    const MirrorImage img = mirror_image(mmu_->tdp_mmu(), *mirror->root());
    EXPECT_EQ(img.leaves, ops_.leaves());
    EXPECT_EQ(img.tables, ops_.tables());
  }

  RcuThread rcu_;
  HostMemory mem_{HostMemoryConfig{.bytes = 16384 * kPageSize, .huge_2m_pages = 8}};
  bool huge_leaves_seen_ = false;
  HostMm mm_{mem_};
  FakeVendorOps ops_;
  std::unique_ptr<Kvm> kvm_;
  std::unique_ptr<KvmMmu> mmu_;
  std::shared_ptr<GuestMemfd> gmem_;
  std::atomic<uint64_t> hva_[2];
};

TEST_P(MmuStress, FaultsAgainstConversionsPunchesReclaimAndSlotChurn) {
  const bool td = GetParam() == VmType::kTdx;
  std::atomic<int> faulting{kFaultThreads};
  std::atomic<uint64_t> fixed{0}, retried{0}, exits{0}, mmio{0};
  // Side threads count their operations; faults start once every side thread is running.
  std::atomic<int> side_started{0};
  std::atomic<uint64_t> side_ops[kSideThreads] = {};
  auto busy = [&] { return faulting.load(std::memory_order_acquire) > 0; };
  std::atomic<uint64_t> faults_done{0};
  // Each side thread runs at most one operation per 8 faults, so the run's length is set by
  // the faults and not by how the scheduler shares two cores among ten threads.
  auto side_loop = [&](int k, auto&& op) {
    RcuThread rcu;
    // One operation before the faults may start, so every kind of interference happens at
    // least once whatever the scheduler does.
    op();
    side_ops[k].fetch_add(1, std::memory_order_relaxed);
    side_started.fetch_add(1, std::memory_order_release);
    while (busy()) {
      if (side_ops[k].load(std::memory_order_relaxed) * 8 >
          faults_done.load(std::memory_order_relaxed)) {
        std::this_thread::sleep_for(std::chrono::microseconds(20));
        continue;
      }
      op();
      side_ops[k].fetch_add(1, std::memory_order_relaxed);
    }
  };
  std::vector<std::thread> threads;

  for (int t = 0; t < kFaultThreads; ++t) {
    threads.emplace_back([&, t] {
      RcuThread rcu;
      std::mt19937_64 rng(1000 + static_cast<uint64_t>(t));
      while (side_started.load(std::memory_order_acquire) < kSideThreads) std::this_thread::yield();
      VcpuMmu vcpu;
      ASSERT_TRUE(mmu_->load(vcpu));
      for (int i = 0; i < kFaultsPerThread; ++i) {
        const int s = static_cast<int>(rng() % 2);
        // Overlapping: every thread picks from the same 64 gfns of each slot.
        const Gfn gfn = kSlotGfn[s] + rng() % 64;
        Gpa gpa = gfn.gpa();
        if (td && rng() % 2) gpa = Gpa{gpa.raw() | kSharedGpaBit};
        const FaultResult r = mmu_->page_fault(vcpu, gpa, rng() % 2 ? kPferrWrite : 0);
        faults_done.fetch_add(1, std::memory_order_relaxed);
        switch (r.ret) {
          case RetPf::kFixed:
          case RetPf::kSpurious:
            fixed.fetch_add(1);
            break;
          case RetPf::kRetry:
            retried.fetch_add(1);
            ASSERT_TRUE(mmu_->load(vcpu));
            break;
          case RetPf::kEmulate:
            mmio.fetch_add(1);
            break;  // slot 1 deleted meanwhile
          default:
            ASSERT_TRUE(r.memory_fault) << to_string(r.ret);
            exits.fetch_add(1);
        }
      }
      mmu_->unload(vcpu);
      faulting.fetch_sub(1, std::memory_order_release);
    });
  }
  std::mt19937_64 rng_convert(1), rng_punch(2), rng_reclaim(3);
  threads.emplace_back(side_loop, 0, [&] {  // conversions
    const Gfn slot = kSlotGfn[rng_convert() % 2];
    if (rng_convert() % 8 == 0) {
      // Now and then a whole slot goes shared (or private), so 2M leaves come and go too.
      ASSERT_TRUE(kvm_->set_memory_attributes(slot, slot + kSlotPages,
                                              rng_convert() % 2 ? kMemAttrPrivate : 0));
      return;
    }
    const Gfn start = slot + rng_convert() % 64;
    ASSERT_TRUE(kvm_->set_memory_attributes(start, start + 1 + rng_convert() % 8,
                                            rng_convert() % 2 ? kMemAttrPrivate : 0));
  });
  threads.emplace_back(side_loop, 1, [&] {  // guest_memfd holes
    const uint64_t page = (rng_punch() % 2) * kSlotPages + rng_punch() % 64;
    ASSERT_TRUE(gmem_->punch_hole(page * kPageSize, (1 + rng_punch() % 4) * kPageSize));
  });
  threads.emplace_back(side_loop, 2, [&] {  // host memory pressure: notifier invalidations
    const uint64_t hva = hva_[rng_reclaim() % 2].load() + (rng_reclaim() % 64) * kPageSize;
    mm_.reclaim(hva, (1 + rng_reclaim() % 4) * kPageSize);
  });
  threads.emplace_back(side_loop, 3, [&] {  // memslot churn
    const uint64_t old_hva = hva_[1].load();
    delete_slot(1);
    // The VMM frees the old backing, as it would with a slot it no longer needs.
    ASSERT_TRUE(mm_.munmap(old_hva, kSlotPages * kPageSize));
    add_slot(1);
  });
  std::atomic<int64_t> max_huge{0};
  threads.emplace_back(side_loop, 4, [&] {  // the checker
    {
      WriteLock l(kvm_->mmu_lock());
      expect_mirror_matches_external();
      const int64_t huge = mmu_->stats().pages_mapped(false, Level::k2M);
      if (huge > max_huge.load()) max_huge.store(huge);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  for (std::thread& th : threads) th.join();

  EXPECT_FALSE(mmu_->tdp_mmu().vm_bugged()) << mmu_->tdp_mmu().bug_message();
  EXPECT_TRUE(ops_.violations().empty()) << ops_.violations().front();
  expect_mirror_matches_external();
  check_every_root();
  TdpMmu::barrier();
  EXPECT_EQ(reachable_tables(), mmu_->tdp_mmu().live_table_pages());
  // Every fault ended in one of the expected outcomes, some mapped, and every side thread
  // interfered (at least once by construction; how much more depends on the scheduler).
  EXPECT_EQ(fixed.load() + retried.load() + exits.load() + mmio.load(),
            uint64_t{kFaultThreads} * kFaultsPerThread);
  EXPECT_GT(fixed.load(), 0u);
  for (int k = 0; k < kSideThreads; ++k) EXPECT_GT(side_ops[k].load(), 0u) << "side thread " << k;
  RecordProperty("fixed", static_cast<int>(fixed.load()));
  RecordProperty("retried", static_cast<int>(retried.load()));
  RecordProperty("exits", static_cast<int>(exits.load()));
  std::printf(
      "mmu_stress[%s]: %llu mapped, %llu retried, %llu memory-fault exits, %llu mmio; "
      "%llu conversions, %llu punches, %llu reclaims, %llu slot re-adds, %llu checks; "
      "2M leaves at the end: %s, at most %lld during the run\n",
      to_string(GetParam()), static_cast<unsigned long long>(fixed.load()),
      static_cast<unsigned long long>(retried.load()),
      static_cast<unsigned long long>(exits.load()), static_cast<unsigned long long>(mmio.load()),
      static_cast<unsigned long long>(side_ops[0].load()),
      static_cast<unsigned long long>(side_ops[1].load()),
      static_cast<unsigned long long>(side_ops[2].load()),
      static_cast<unsigned long long>(side_ops[3].load()),
      static_cast<unsigned long long>(side_ops[4].load()), huge_leaves_seen_ ? "yes" : "no",
      static_cast<long long>(max_huge.load()));
}

INSTANTIATE_TEST_SUITE_P(VmTypes, MmuStress, ::testing::Values(VmType::kTdx, VmType::kSwProtected),
                         [](const auto& p) {
                           return p.param == VmType::kTdx ? "Tdx" : "SwProtected";
                         });

}  // namespace
}  // namespace tdxsim
