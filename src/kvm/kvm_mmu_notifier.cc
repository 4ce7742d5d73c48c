// Kvm's MMU-notifier half (kvm_mmu_notifier_* of virt/kvm/kvm_main.c): changes to the VMM's
// mappings become unmaps and aging of the shared alias of the gfns those mappings back.
#include <algorithm>

#include "base/check.h"
#include "base/rcu.h"
#include "kvm/kvm.h"

namespace tdxsim {

std::vector<GfnRange> Kvm::hva_to_gfn_ranges(uint64_t start, uint64_t end, uint8_t filter) const {
  std::vector<GfnRange> ranges;
  // A linear walk where KVM keeps an interval tree by hva: slots are few.
  for (uint16_t as = 0; as < nr_memslot_as_ids(cfg_.type); ++as) {
    for (const Memslot& s : memslots(as)) {
      const uint64_t hs = std::max(start, s.userspace_addr);
      const uint64_t he = std::min(end, s.userspace_end());
      if (hs >= he) continue;
      // hva_to_gfn_memslot: a partial page at either end still covers its gfn.
      ranges.push_back(GfnRange{
          .slot = &s,
          .start = s.base_gfn + ((hs - s.userspace_addr) >> kPageShift),
          .end = s.base_gfn + ((he - s.userspace_addr + kPageSize - 1) >> kPageShift),
          .attr_filter = filter,
          // Private memory has no userspace mapping: only the shared alias can go stale.
          .may_block = true,
      });
    }
  }
  return ranges;
}

void Kvm::mn_invalidate_range_start(uint64_t start, uint64_t end) {
  {
    // Counted before the slots are read, so no memslot set is swapped until the end.
    MutexLock l(mn_invalidate_lock_);
    ++mn_active_invalidate_count_;
  }
  RcuThread rcu_thread;
  RcuReadGuard rcu;
  const std::vector<GfnRange> ranges = hva_to_gfn_ranges(start, end, kFilterShared);
  if (ranges.empty()) return;
  invalidate_begin_and_unmap(ranges);
}

void Kvm::mn_invalidate_range_end(uint64_t start, uint64_t end) {
  {
    // The same slots as at the start (no swap since): end exactly when start began.
    RcuThread rcu_thread;
    RcuReadGuard rcu;
    if (!hva_to_gfn_ranges(start, end, kFilterShared).empty()) {
      WriteLock m(mmu_lock_);
      mmu_invalidate_end();
    }
  }
  MutexLock l(mn_invalidate_lock_);
  TDXSIM_CHECK(mn_active_invalidate_count_ > 0, "notifier invalidate_range_end without start");
  if (--mn_active_invalidate_count_ == 0) mn_idle_.notify_all();
}

bool Kvm::mn_age(uint64_t start, uint64_t end, bool clear) {
  RcuThread rcu_thread;
  RcuReadGuard rcu;
  const std::vector<GfnRange> ranges = hva_to_gfn_ranges(start, end, kFilterShared);
  if (ranges.empty() || !arch_) return false;
  WriteLock m(mmu_lock_);
  bool young = false;
  for (const GfnRange& r : ranges) young |= clear ? arch_->age_gfn(r) : arch_->test_age_gfn(r);
  return young;
}

void Kvm::mn_release() {
  if (arch_) arch_->flush_shadow_all();
}

}  // namespace tdxsim
