// GuestMemfd: KVM's guest_memfd (virt/kvm/guest_memfd.c), the file that backs a VM's private
// memory. Userspace never maps it; KVM binds ranges of it to memslots and the fault path takes
// pfns from it (Kvm::gmem_get_pfn).
//
// Pages are host frames allocated on first use, zero-filled as KVM clears a fresh folio, and
// kept per page index until punch_hole frees them (fallocate(PUNCH_HOLE)) or the file dies.
//
// Bindings: each memslot bound to the file records (Kvm, slot, page-index range). A page
// index is bound to at most one slot. Before punch_hole frees a page, it has every VM that
// maps it unmap the private alias of the bound gfns (attr_filter kFilterPrivate) inside an
// MMU invalidation, so no SPTE can still point at a freed frame.
//
// Lifetime: memslots hold the file (shared_ptr), and a slot's binding lives exactly as long as
// the slot is in its VM's memslots (bound before the slot is published, unbound after its
// deletion is published, and by ~Kvm). The file keeps working after its VM is gone: with no
// bindings, punch_hole frees pages and touches no VM. The file remembers its VM only weakly,
// to refuse binding to another one.
//
// Thread safety: every member may be called from any thread. The invalidate lock
// (filemap_invalidate_lock, "gmem->invalidate_lock") is held for write by punch_hole and
// (un)binding and for read by page lookups; page allocation has its own leaf mutex. Lock
// order: slots_lock -> gmem invalidate lock -> mmu_lock.
// REQUIRES: the HostMemory outlives the file.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "base/addr.h"
#include "base/lock.h"
#include "base/thread_annotations.h"
#include "kvm/kvm_errno.h"
#include "platform/host_memory.h"
#include "platform/lazy_words.h"

namespace tdxsim {

class Kvm;
struct Memslot;

// Who owns a guest_memfd: a token each Kvm holds for its lifetime.
struct VmIdentity {};

class GuestMemfd {
 public:
  // Use Kvm::create_guest_memfd. REQUIRES: size > 0 and page aligned.
  GuestMemfd(HostMemory& mem, uint64_t size, std::weak_ptr<const VmIdentity> owner);
  // Frees every page. REQUIRES: no bindings (slots hold the file, so none can be left).
  ~GuestMemfd();
  GuestMemfd(const GuestMemfd&) = delete;
  GuestMemfd& operator=(const GuestMemfd&) = delete;

  uint64_t size() const { return size_; }
  uint64_t npages() const { return size_ / kPageSize; }
  // Whether the file was created by the VM holding `id` (which must be alive).
  bool owned_by(const std::shared_ptr<const VmIdentity>& id) const;

  // fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE). EINVAL unless offset and len are
  // page aligned, len > 0 and the range lies within the file.
  KvmResult<> punch_hole(uint64_t offset, uint64_t len) TDXSIM_EXCLUDES(invalidate_lock_);

  // Pages with a frame right now, and whether one index has one.
  uint64_t allocated_pages() const;
  bool is_allocated(uint64_t index) const;
  // The frame at `index`, if one is allocated (checks compare SPTEs with it).
  std::optional<Pfn> page_at(uint64_t index) const;

  // --- For Kvm ------------------------------------------------------------------------------
  // kvm_gmem_bind: binds [offset, offset + slot.npages pages) to `slot` of `kvm`. EINVAL for
  // another VM's file or a range beyond the file, EEXIST if part of it is bound already.
  // REQUIRES: slots_lock held; `slot` stays alive until unbind.
  KvmResult<> bind(Kvm& kvm, const Memslot& slot, uint64_t offset)
      TDXSIM_EXCLUDES(invalidate_lock_);
  // kvm_gmem_unbind: drops the binding of slot (kvm, slot.as_id, slot.id), if any.
  void unbind(const Kvm& kvm, const Memslot& slot) TDXSIM_EXCLUDES(invalidate_lock_);
  // kvm_gmem_release's invalidation: every private mapping `kvm` has of this file is
  // removed (the frames stay in the file). VM destruction runs it first, while the vendor
  // can still remove private pages (a TD's HKID is assigned until vm_pre_destroy).
  void release(Kvm& kvm) TDXSIM_EXCLUDES(invalidate_lock_);
  // __kvm_gmem_get_pfn: the frame at `index`, allocated on first use. EFAULT unless
  // (kvm, as_id, id) is bound at `index`; ENOMEM if host memory is exhausted.
  KvmResult<Pfn> get_pfn(const Kvm& kvm, const Memslot& slot, uint64_t index)
      TDXSIM_EXCLUDES(invalidate_lock_, pages_mu_);

 private:
  // The word of page `index` (pfn + 1, or 0).
  uint64_t slot_word(uint64_t index) const;
  // Frees every frame in [start, end). REQUIRES: pages_mu_ held.
  void free_range(uint64_t start, uint64_t end) TDXSIM_REQUIRES(pages_mu_);

  struct Binding {
    Kvm* kvm;
    const Memslot* slot;
    uint64_t start;  // page indices [start, end)
    uint64_t end;
  };

  HostMemory& mem_;
  const uint64_t size_;
  const std::weak_ptr<const VmIdentity> owner_;
  mutable SharedMutex invalidate_lock_;
  std::vector<Binding> bindings_ TDXSIM_GUARDED_BY(invalidate_lock_);
  // The file's pages: page index -> pfn + 1 (0: a hole), read locklessly (acquire), set and
  // cleared under pages_mu_. A lazily resident array: 8 bytes a page of the file that has
  // ever held a frame, where a hash map cost five times that and a probe per fault.
  mutable Mutex pages_mu_;
  LazyWords pages_;
  AtomicWord allocated_;
};

}  // namespace tdxsim
