#include "kvm/guest_memfd.h"

#include <algorithm>

#include "base/check.h"
#include "kvm/kvm.h"

namespace tdxsim {
namespace {

bool page_aligned(uint64_t v) {
  return (v & (kPageSize - 1)) == 0;
}

}  // namespace

GuestMemfd::GuestMemfd(HostMemory& mem, uint64_t size, std::weak_ptr<const VmIdentity> owner)
    : mem_(mem),
      size_(size),
      owner_(std::move(owner)),
      invalidate_lock_("gmem->invalidate_lock"),
      pages_mu_("gmem->pages") {
  TDXSIM_CHECK(size > 0 && page_aligned(size), "guest_memfd size {:#x}", size);
}

GuestMemfd::~GuestMemfd() {
  {
    ReadLock l(invalidate_lock_);
    TDXSIM_CHECK(bindings_.empty(), "guest_memfd freed with {} bindings", bindings_.size());
  }
  MutexLock l(pages_mu_);
  for (const auto& [index, pfn] : pages_) mem_.free_frame(pfn);
}

bool GuestMemfd::owned_by(const std::shared_ptr<const VmIdentity>& id) const {
  return owner_.lock() == id;
}

KvmResult<> GuestMemfd::bind(Kvm& kvm, const Memslot& slot, uint64_t offset) {
  // kvm_gmem_bind: the fd must be this VM's guest_memfd and the range must lie within it.
  if (!owned_by(kvm.identity())) return std::unexpected(Errno::kEinval);
  const uint64_t bytes = slot.npages * kPageSize;
  if (!page_aligned(offset) || offset > size_ || bytes > size_ - offset) {
    return std::unexpected(Errno::kEinval);
  }
  const uint64_t start = offset >> kPageShift;
  const uint64_t end = start + slot.npages;
  WriteLock l(invalidate_lock_);
  for (const Binding& b : bindings_) {
    if (b.start < end && start < b.end) return std::unexpected(Errno::kEexist);
  }
  bindings_.push_back(Binding{&kvm, &slot, start, end});
  return {};
}

void GuestMemfd::unbind(const Kvm& kvm, const Memslot& slot) {
  WriteLock l(invalidate_lock_);
  std::erase_if(bindings_, [&](const Binding& b) {
    return b.kvm == &kvm && b.slot->as_id == slot.as_id && b.slot->id == slot.id;
  });
}

KvmResult<Pfn> GuestMemfd::get_pfn(const Kvm& kvm, const Memslot& slot, uint64_t index) {
  // Held for read across the allocation, so punch_hole (write) cannot free the page between
  // its allocation and the fault's snapshot of it: the invalidation it then runs is what
  // tells the fault to retry.
  ReadLock l(invalidate_lock_);
  const bool bound = std::ranges::any_of(bindings_, [&](const Binding& b) {
    return b.kvm == &kvm && b.slot->as_id == slot.as_id && b.slot->id == slot.id &&
           index >= b.start && index < b.end;
  });
  if (!bound) return std::unexpected(Errno::kEfault);
  MutexLock p(pages_mu_);
  if (auto it = pages_.find(index); it != pages_.end()) return it->second;
  const std::optional<Pfn> pfn = mem_.alloc_frame();
  if (!pfn) return std::unexpected(Errno::kEnomem);
  // kvm_gmem_prepare_folio clears a folio that is not yet uptodate.
  mem_.fill(*pfn, kHostKey, 0);
  pages_.emplace(index, *pfn);
  return *pfn;
}

KvmResult<> GuestMemfd::punch_hole(uint64_t offset, uint64_t len) {
  if (!page_aligned(offset) || !page_aligned(len) || len == 0 || offset > size_ ||
      len > size_ - offset) {
    return std::unexpected(Errno::kEinval);
  }
  const uint64_t start = offset >> kPageShift;
  const uint64_t end = start + (len >> kPageShift);
  WriteLock l(invalidate_lock_);
  // kvm_gmem_invalidate_begin: every bound slot the hole overlaps loses its private mappings
  // before a frame is freed.
  std::vector<GfnRange> ranges;
  Kvm* kvm = nullptr;
  for (const Binding& b : bindings_) {
    const uint64_t s = std::max(start, b.start);
    const uint64_t e = std::min(end, b.end);
    if (s >= e) continue;
    // A file binds to one VM only (bind checks the owner).
    TDXSIM_CHECK(kvm == nullptr || kvm == b.kvm, "guest_memfd bound to two VMs");
    kvm = b.kvm;
    ranges.push_back(GfnRange{.slot = b.slot,
                              .start = b.slot->base_gfn + (s - b.start),
                              .end = b.slot->base_gfn + (e - b.start),
                              .attr_filter = kFilterPrivate,
                              .may_block = true});
  }
  if (kvm) kvm->gmem_invalidate_begin(ranges);
  {
    MutexLock p(pages_mu_);
    for (auto it = pages_.begin(); it != pages_.end();) {
      if (it->first >= start && it->first < end) {
        mem_.free_frame(it->second);
        it = pages_.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (kvm) kvm->gmem_invalidate_end();
  return {};
}

void GuestMemfd::release(Kvm& kvm) {
  WriteLock l(invalidate_lock_);
  std::vector<GfnRange> ranges;
  for (const Binding& b : bindings_) {
    if (b.kvm != &kvm) continue;
    ranges.push_back(GfnRange{.slot = b.slot,
                              .start = b.slot->base_gfn,
                              .end = b.slot->base_gfn + (b.end - b.start),
                              .attr_filter = kFilterPrivate,
                              .may_block = true});
  }
  if (ranges.empty()) return;
  kvm.gmem_invalidate_begin(ranges);
  kvm.gmem_invalidate_end();
}

uint64_t GuestMemfd::allocated_pages() const {
  MutexLock p(pages_mu_);
  return pages_.size();
}

bool GuestMemfd::is_allocated(uint64_t index) const {
  MutexLock p(pages_mu_);
  return pages_.contains(index);
}

std::optional<Pfn> GuestMemfd::page_at(uint64_t index) const {
  MutexLock l(pages_mu_);
  auto it = pages_.find(index);
  if (it == pages_.end()) return std::nullopt;
  return it->second;
}

}  // namespace tdxsim
