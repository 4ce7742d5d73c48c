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
      pages_mu_("gmem->pages"),
      pages_(size >> kPageShift) {
  TDXSIM_CHECK(size > 0 && page_aligned(size), "guest_memfd size {:#x}", size);
}

GuestMemfd::~GuestMemfd() {
  {
    ReadLock l(invalidate_lock_);
    TDXSIM_CHECK(bindings_.empty(), "guest_memfd freed with {} bindings", bindings_.size());
  }
  MutexLock l(pages_mu_);
  free_range(0, npages());
}

uint64_t GuestMemfd::slot_word(uint64_t index) const {
  return AtomicWordRef(pages_[index]).load(std::memory_order_acquire);
}

void GuestMemfd::free_range(uint64_t start, uint64_t end) {
  constexpr uint64_t kStride = LazyWords::kWordsPerPage;
  for (uint64_t i = start; i < end;) {
    // Whole pages of the array never written hold no frame: skip them.
    if (!pages_.is_touched(i)) {
      i = (i / kStride + 1) * kStride;
      continue;
    }
    if (const uint64_t w = slot_word(i); w != 0) {
      mem_.free_frame(Pfn{w - 1});
      AtomicWordRef(pages_[i]).store(0, std::memory_order_release);
      allocated_.fetch_sub(1, std::memory_order_relaxed);
    }
    ++i;
  }
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
  if (const uint64_t w = slot_word(index); w != 0) return Pfn{w - 1};
  MutexLock p(pages_mu_);
  if (const uint64_t w = slot_word(index); w != 0) return Pfn{w - 1};
  const std::optional<Pfn> pfn = mem_.alloc_frame(HostMemory::Clear::kNone);
  if (!pfn) return std::unexpected(Errno::kEnomem);
  // kvm_gmem_prepare_folio clears a folio that is not yet uptodate; the allocator did not.
  mem_.fill(*pfn, kHostKey, 0);
  pages_.note_touched(index);
  // Release: the cleared frame is visible before its number is.
  AtomicWordRef(pages_[index]).store(pfn->raw() + 1, std::memory_order_release);
  allocated_.fetch_add(1, std::memory_order_relaxed);
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
    free_range(start, end);
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
  return allocated_.load(std::memory_order_relaxed);
}

bool GuestMemfd::is_allocated(uint64_t index) const {
  return index < npages() && slot_word(index) != 0;
}

std::optional<Pfn> GuestMemfd::page_at(uint64_t index) const {
  if (index >= npages()) return std::nullopt;
  const uint64_t w = slot_word(index);
  if (w == 0) return std::nullopt;
  return Pfn{w - 1};
}

}  // namespace tdxsim
