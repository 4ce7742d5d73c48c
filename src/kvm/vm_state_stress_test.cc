// Generic VM state under concurrency: fault-like readers against every writer of it at once.
//
// Readers do what the x86 fault path does: snapshot mmu_invalidate_seq, find the gfn's slot
// under RCU, look up a pfn (HostMm's hva_to_pfn, or guest_memfd), then take mmu_lock for
// read and ask mmu_invalidate_retry_gfn. Writers delete and re-create slots (shared and
// guest_memfd), flip memory attributes, punch guest_memfd holes and reclaim the VMM's pages.
//
// What is checked:
//   - no reader touches a freed slot or set (ASan; RCU must keep them alive);
//   - the retry protocol: the arch below counts, per gfn, every unmap made inside an MMU
//     invalidation. A reader that was told not to retry must find that count unchanged
//     since its snapshot: an invalidation covering its gfn that began after the snapshot is
//     either still in progress (so the gfn is in the range) or over (so the seq moved);
//   - no deadlock between rcu_synchronize, slots_lock, the gmem lock, mmap_lock and mmu_lock.
// Run under TSan and ASan as well.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "base/atomic.h"
#include "base/rcu.h"
#include "kvm/kvm.h"

namespace tdxsim {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kSlotPages = 64;
constexpr uint64_t kGfns = 4 * kSlotPages;

// The arch: counts invalidation-covered unmaps per gfn; flush_shadow_memslot takes mmu_lock
// as the real one does.
class CountingArch : public KvmArchHooks {
 public:
  explicit CountingArch(Kvm& kvm) : kvm_(kvm) { kvm.set_arch(this); }

  KvmResult<> prepare_memory_region(const Memslot*, const Memslot*, MemslotChange) override {
    return {};
  }
  void flush_shadow_memslot(const Memslot&) override { WriteLock l(kvm_.mmu_lock()); }
  void flush_shadow_all() override {}
  bool unmap_gfn_range(const GfnRange& r) override { return zap(r); }
  bool age_gfn(const GfnRange&) override { return false; }
  bool test_age_gfn(const GfnRange&) override { return false; }
  bool pre_set_memory_attributes(const GfnRange& r) override { return zap(r); }
  bool post_set_memory_attributes(const GfnRange&) override { return false; }
  void flush_remote_tlbs() override {}
  void commit_memory_region(const Memslot*, const Memslot*, MemslotChange) override {}
  void enable_log_dirty_pt_masked(const Memslot&, Gfn, uint64_t) override {}

  uint64_t zaps(Gfn gfn) const { return zaps_[gfn.raw()].load(std::memory_order_acquire); }
  uint64_t bad_zaps() const { return bad_zaps_.value(); }

 private:
  bool zap(const GfnRange& r) {
    // The contract: mmu_lock for write and an invalidation in progress covering the range.
    kvm_.mmu_lock().assert_held_write();
    if (!kvm_.mmu_invalidate_retry_gfn(kvm_.mmu_invalidate_seq(), r.start)) bad_zaps_.add();
    for (Gfn g = r.start; g < r.end; g += 1) {
      if (g.raw() < kGfns) zaps_[g.raw()].fetch_add(1, std::memory_order_release);
    }
    return true;
  }

  Kvm& kvm_;
  AtomicWord zaps_[kGfns];
  Counter bad_zaps_;
};

TEST(VmStateStress, FaultsRetryExactlyWhenTheirGfnWasInvalidated) {
  HostMemory mem(HostMemoryConfig{.bytes = 4096 * kPageSize});
  HostMm mm(mem);
  Kvm kvm(mem, mm, KvmConfig{.type = VmType::kSwProtected});
  CountingArch arch(kvm);

  // Slots 0, 1: shared, gfns [0, 64) and [64, 128). Slots 2, 3: guest_memfd halves, gfns
  // [128, 192) and [192, 256).
  const uint64_t hva = mm.mmap(kGfns * kPageSize);
  std::shared_ptr<GuestMemfd> gmem = *kvm.create_guest_memfd(2 * kSlotPages * kPageSize, 0);
  auto region = [&](uint16_t id, bool create) {
    UserspaceMemoryRegion2 r;
    r.slot = id;
    r.guest_phys_addr = id * kSlotPages * kPageSize;
    r.memory_size = create ? kSlotPages * kPageSize : 0;
    r.userspace_addr = hva + id * kSlotPages * kPageSize;
    if (id >= 2) {
      r.flags = kMemGuestMemfd;
      r.guest_memfd = gmem;
      r.guest_memfd_offset = (id - 2) * kSlotPages * kPageSize;
    }
    return r;
  };
  for (uint16_t id = 0; id < 4; ++id) ASSERT_TRUE(kvm.set_user_memory_region2(region(id, true)));

  AtomicWord stop;
  Counter checked, retried, no_slot, stale_ok;
  Counter violations;
  auto reader = [&](unsigned seed) {
    RcuThread rcu;
    std::mt19937_64 rng(seed);
    while (stop.load(std::memory_order_acquire) == 0) {
      const Gfn gfn{rng() % kGfns};
      const uint64_t seq = kvm.mmu_invalidate_seq();
      const uint64_t zaps_before = arch.zaps(gfn);
      RcuReadGuard g;
      const Memslot* slot = kvm.gfn_to_memslot(gfn);
      if (slot == nullptr || slot->invalid) {
        no_slot.add();
        continue;
      }
      // Use the slot as the fault path would; ASan reports it if RCU let it go.
      bool have_pfn;
      if (slot->can_be_private()) {
        have_pfn = kvm.gmem_get_pfn(*slot, gfn).has_value();
      } else {
        have_pfn = mm.get_user_page(slot->gfn_to_hva(gfn), true).has_value();
      }
      if (!have_pfn) {
        stale_ok.add();  // a slot being deleted, or memory full: the fault gives up
        continue;
      }
      ReadLock l(kvm.mmu_lock());
      if (kvm.mmu_invalidate_retry_gfn(seq, gfn)) {
        retried.add();
        continue;
      }
      checked.add();
      if (arch.zaps(gfn) != zaps_before) violations.add();
    }
  };

  constexpr auto kRun = 1500ms;
  auto writer = [&](unsigned seed, auto&& step) {
    return [&, seed, step] {
      RcuThread rcu;
      std::mt19937_64 rng(seed);
      const auto until = std::chrono::steady_clock::now() + kRun;
      while (std::chrono::steady_clock::now() < until) step(rng);
    };
  };

  std::vector<std::thread> threads;
  threads.emplace_back(reader, 1);
  threads.emplace_back(reader, 2);
  std::vector<std::thread> writers;
  // Slot churn: delete and re-create a shared and a guest_memfd slot.
  writers.emplace_back(writer(3, [&](std::mt19937_64& rng) {
    const uint16_t id = rng() % 2 ? 0 : 3;
    EXPECT_TRUE(kvm.set_user_memory_region2(region(id, false)));
    EXPECT_TRUE(kvm.set_user_memory_region2(region(id, true)));
  }));
  // Attribute conversions over random ranges (slot-covered or not).
  writers.emplace_back(writer(4, [&](std::mt19937_64& rng) {
    const uint64_t start = rng() % kGfns;
    const uint64_t len = 1 + rng() % 32;
    EXPECT_TRUE(
        kvm.set_memory_attributes(Gfn{start}, Gfn{start + len}, rng() % 2 ? kMemAttrPrivate : 0));
  }));
  // Hole punches in the guest_memfd.
  writers.emplace_back(writer(5, [&](std::mt19937_64& rng) {
    const uint64_t first = rng() % (2 * kSlotPages);
    const uint64_t pages = 1 + rng() % std::min<uint64_t>(16, 2 * kSlotPages - first);
    EXPECT_TRUE(gmem->punch_hole(first * kPageSize, pages * kPageSize));
  }));
  // Host memory pressure on the shared slots' pages, and aging.
  writers.emplace_back(writer(6, [&](std::mt19937_64& rng) {
    const uint64_t first = rng() % (2 * kSlotPages);
    const uint64_t pages = 1 + rng() % 8;
    if (rng() % 4 == 0) {
      mm.age(hva + first * kPageSize, pages * kPageSize);
    } else {
      mm.reclaim(hva + first * kPageSize, pages * kPageSize);
    }
  }));
  for (std::thread& t : writers) t.join();
  stop.store(1, std::memory_order_release);
  for (std::thread& t : threads) t.join();

  EXPECT_EQ(violations.value(), 0u);
  EXPECT_EQ(arch.bad_zaps(), 0u);
  EXPECT_GT(checked.value(), 0u);
  EXPECT_GT(retried.value(), 0u);
  EXPECT_EQ(kvm.mmu_invalidate_in_progress(), 0u);
  RecordProperty("checked", static_cast<int>(checked.value()));
  RecordProperty("retried", static_cast<int>(retried.value()));
}

}  // namespace
}  // namespace tdxsim
