// Kvm's memory-attribute half: kvm_vm_set_mem_attributes and the fault path's readers.
#include <algorithm>

#include "base/check.h"
#include "kvm/kvm.h"

namespace tdxsim {
namespace {

uint64_t supported_attributes(VmType type) {
  return has_private_mem(type) ? kMemAttrPrivate : 0;
}

}  // namespace

uint64_t Kvm::get_memory_attributes(Gfn gfn) const {
  return attrs_.get(gfn);
}

bool Kvm::mem_is_private(Gfn gfn) const {
  return has_private_mem(cfg_.type) && (attrs_.get(gfn) & kMemAttrPrivate) != 0;
}

bool Kvm::range_has_memory_attributes(Gfn start, Gfn end, uint64_t mask, uint64_t attrs) const {
  mask &= supported_attributes(cfg_.type);
  return attrs_.range_has(start, end, mask, attrs);
}

KvmResult<> Kvm::set_memory_attributes(Gfn start, Gfn end, uint64_t attrs) {
  if (start >= end || (attrs & ~kMemAttrPrivate) || !has_private_mem(cfg_.type)) {
    return std::unexpected(Errno::kEinval);
  }
  MutexLock l(slots_lock_);
  if (range_has_memory_attributes(start, end, ~uint64_t{0}, attrs)) return {};
  (attrs & kMemAttrPrivate ? converted_to_private_ : converted_to_shared_).add(end - start);

  // kvm_handle_gfn_range over every address space: the slot-clipped pieces of the range.
  // Gfns no slot covers have no mapping to retire; they only get the attributes stored.
  std::vector<GfnRange> ranges;
  for (uint16_t as = 0; as < nr_memslot_as_ids(cfg_.type); ++as) {
    for (const Memslots::SlotPtr& s : memslots(as).in_gfn_range(start, end)) {
      ranges.push_back(GfnRange{.slot = s.get(),
                                .start = std::max(start, s->base_gfn),
                                .end = std::min(end, s->end()),
                                .attr_filter = 0,  // the arch picks the alias to retire
                                .may_block = true,
                                .attributes = attrs});
    }
  }

  if (!ranges.empty()) {
    WriteLock m(mmu_lock_);
    mmu_invalidate_begin(ranges.front().start, ranges.front().end);
    bool flush = false;
    for (const GfnRange& r : ranges) {
      mmu_invalidate_range_add(r.start, r.end);
      if (arch_) flush |= arch_->pre_set_memory_attributes(r);
    }
    if (flush) flush_remote_tlbs();
  }
  // Between the two halves the range stays invalidated: a fault that looked up the old
  // attributes retries, one that sees the new ones waits for the end to map.
  attrs_.set(start, end, attrs);
  if (!ranges.empty()) {
    WriteLock m(mmu_lock_);
    bool flush = false;
    for (const GfnRange& r : ranges) {
      if (arch_) flush |= arch_->post_set_memory_attributes(r);
    }
    if (flush) flush_remote_tlbs();
    mmu_invalidate_end();
  }
  return {};
}

}  // namespace tdxsim
