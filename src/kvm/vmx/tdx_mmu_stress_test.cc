// The TDP MMU's mirror against the real TDX module through TdxOps (mmu_stress_test.cc runs
// the same kind of load against FakeVendorOps): threads fault private and shared GPAs on two
// vCPUs' MMUs (SEPT.ADD and PAGE.AUG under mmu_lock for read) while others convert
// attributes and punch guest_memfd holes (BLOCK/TRACK/REMOVE under mmu_lock for write).
// Afterwards every GFN's mirror leaf agrees with TDH.MEM.SEPT.RD, and the TD's destruction
// gives back every frame.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "kvm/vmx/tdx_fixture_for_test.h"
#include "tdx_module/sept_entry.h"
#include "tdx_module/tdx_status.h"
#include "tdxsim/seamcall.h"

namespace tdxsim {
namespace {

constexpr uint64_t kHotPages = 64;  // every thread works on the same 64 gfns
constexpr int kFaultsPerThread = 20000;

class TdxMmuStress : public TdxFixture {};

TEST_F(TdxMmuStress, MirrorMatchesTheSeptAfterFaultsConversionsAndPunches) {
  build_td(2, 0);
  const Gfn base = kTdMemGpa.gfn();
  std::atomic<int> faulting{2};
  std::atomic<uint64_t> fixed{0}, retried{0}, exits{0};
  std::vector<std::thread> threads;
  const unsigned fault_cpus[2] = {1, 5};
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      RcuThread rcu;
      CpuBinding b = platform_.bind(fault_cpus[t]);
      KvmVcpu& vcpu = *vcpus_[static_cast<size_t>(t)];
      std::mt19937_64 rng(100 + static_cast<uint64_t>(t));
      ASSERT_TRUE(vm_->mmu().load(vcpu.mmu()));
      for (int i = 0; i < kFaultsPerThread; ++i) {
        Gpa gpa = (base + rng() % kHotPages).gpa();
        if (rng() % 4 == 0) gpa = Gpa{gpa.raw() | kTdSharedBit};
        const FaultResult r = vm_->mmu().page_fault(vcpu.mmu(), gpa, kPferrWrite);
        switch (r.ret) {
          case RetPf::kFixed:
          case RetPf::kSpurious:
            fixed.fetch_add(1, std::memory_order_relaxed);
            break;
          case RetPf::kRetry:
            retried.fetch_add(1, std::memory_order_relaxed);
            ASSERT_TRUE(vm_->mmu().load(vcpu.mmu()));
            break;
          default:
            ASSERT_TRUE(r.memory_fault) << to_string(r.ret);
            exits.fetch_add(1, std::memory_order_relaxed);
        }
      }
      vm_->mmu().unload(vcpu.mmu());
      faulting.fetch_sub(1, std::memory_order_release);
    });
  }
  std::atomic<uint64_t> conversions{0}, punches{0};
  threads.emplace_back([&] {
    RcuThread rcu;
    CpuBinding b = platform_.bind(2);
    std::mt19937_64 rng(1);
    do {
      const Gfn start = base + rng() % kHotPages;
      ASSERT_TRUE(kvm().set_memory_attributes(start, start + 1 + rng() % 8,
                                              rng() % 3 != 0 ? kMemAttrPrivate : 0));
      conversions.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::yield();
    } while (faulting.load(std::memory_order_acquire) > 0);
  });
  threads.emplace_back([&] {
    RcuThread rcu;
    CpuBinding b = platform_.bind(6);
    std::mt19937_64 rng(2);
    do {
      ASSERT_TRUE(gmem_->punch_hole((rng() % kHotPages) * kPageSize, (1 + rng() % 4) * kPageSize));
      punches.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::yield();
    } while (faulting.load(std::memory_order_acquire) > 0);
  });
  {
    LogicalCpu::BlockedScope blocked(main_cpu());
    for (std::thread& th : threads) th.join();
  }
  EXPECT_FALSE(kvm().vm_bugged()) << kvm().bug_message();
  EXPECT_GT(fixed.load(), 0u);
  EXPECT_GT(conversions.load(), 0u);
  EXPECT_GT(punches.load(), 0u);
  EXPECT_GT(td().stats().count(SeamcallLeaf::kMemPageAug), 0u);
  EXPECT_GT(td().stats().count(SeamcallLeaf::kMemPageRemove), 0u);

  // Quiescent: the mirror and the S-EPT agree on every gfn of the slot.
  const PhysAddrLayout& layout = platform_.memory().layout();
  uint64_t mapped = 0;
  for (uint64_t i = 0; i < kTdMemPages; ++i) {
    const Gfn gfn = base + i;
    std::optional<Spte> leaf;
    {
      ReadLock l(kvm().mmu_lock());
      leaf = vm_->mmu().private_path()->walk(gfn);
    }
    uint64_t entry = 0, level_state = 0;
    const uint64_t s = tdh_mem_sept_rd(main_cpu(), td().tdr(), PageInfo::of(gfn.gpa(), Level::k4K),
                                       &entry, &level_state);
    const bool sept_leaf = s == 0 && SeptEntry{entry}.is_leaf() &&
                           (SeptEntry{entry}.state() == SeptState::kPending ||
                            SeptEntry{entry}.state() == SeptState::kMapped);
    ASSERT_EQ(leaf.has_value(), sept_leaf)
        << "gfn " << gfn.raw() << ": SEPT.RD " << describe_status(s) << " entry " << entry;
    if (leaf) {
      ++mapped;
      EXPECT_EQ(SeptEntry{entry}.hpa(layout), leaf->pfn().hpa()) << "gfn " << gfn.raw();
      EXPECT_TRUE(kvm().mem_is_private(gfn)) << "gfn " << gfn.raw();
    }
  }
  RecordProperty("mapped_at_end", static_cast<int>(mapped));
  RecordProperty("augs", static_cast<int>(td().stats().count(SeamcallLeaf::kMemPageAug)));
  RecordProperty("removes", static_cast<int>(td().stats().count(SeamcallLeaf::kMemPageRemove)));
  RecordProperty("conversions", static_cast<int>(conversions.load()));
  destroy_and_expect_everything_back();
}

}  // namespace
}  // namespace tdxsim
