// Kvm's guest_memfd half: creating files, the fault path's pfn lookup, and the MMU
// invalidation a hole punch runs.
#include <algorithm>

#include "base/check.h"
#include "kvm/kvm.h"

namespace tdxsim {

KvmResult<std::shared_ptr<GuestMemfd>> Kvm::create_guest_memfd(uint64_t size, uint64_t flags) {
  if (!has_private_mem(cfg_.type) || flags != 0 || size == 0 || (size & (kPageSize - 1))) {
    return std::unexpected(Errno::kEinval);
  }
  return std::make_shared<GuestMemfd>(mem_, size, identity_);
}

KvmResult<GmemPfn> Kvm::gmem_get_pfn(const Memslot& slot, Gfn gfn) {
  TDXSIM_CHECK(slot.contains(gfn), "{} outside slot {}", gfn, slot.id);
  if (!slot.gmem) return std::unexpected(Errno::kEfault);
  const uint64_t index = slot.gfn_to_gmem_index(gfn);
  KvmResult<Pfn> pfn = slot.gmem->get_pfn(*this, slot, index);
  if (!pfn) return std::unexpected(pfn.error());
  // The file holds order-0 pages (upstream's kvm_gmem_get_pfn reports max_order 0 until
  // guest_memfd has huge folios): a larger leaf would name 512 frames that are not one run.
  GmemPfn out{*pfn, Level::k4K};
  return out;
}

void Kvm::gmem_invalidate_begin(std::span<const GfnRange> ranges) {
  TDXSIM_CHECK(!ranges.empty(), "gmem invalidation of nothing");
  invalidate_begin_and_unmap(ranges);
}

void Kvm::invalidate_begin_and_unmap(std::span<const GfnRange> ranges) {
  WriteLock m(mmu_lock_);
  mmu_invalidate_begin(ranges.front().start, ranges.front().end);
  bool flush = false;
  for (const GfnRange& r : ranges) {
    mmu_invalidate_range_add(r.start, r.end);
    if (arch_) flush |= arch_->unmap_gfn_range(r);
  }
  if (flush) flush_remote_tlbs();
}

void Kvm::gmem_invalidate_end() {
  WriteLock m(mmu_lock_);
  mmu_invalidate_end();
}

}  // namespace tdxsim
