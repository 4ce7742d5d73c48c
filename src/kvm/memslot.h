// Memslot and Memslots: KVM's kvm_memory_slot and kvm_memslots, the map from guest frames to
// the VMM's virtual addresses (and, for private-capable slots, to a guest_memfd range).
//
// A Memslot is immutable once published: KVM_SET_USER_MEMORY_REGION2 never edits a slot a
// reader may hold; it builds a new one (or an INVALID copy of the old one) and publishes a
// new Memslots. The one mutable part is the dirty bitmap, whose words are atomics shared by
// every copy of the slot (a FLAGS_ONLY or MOVE update keeps logging into the same bitmap, as
// KVM hands old->dirty_bitmap to the new slot).
//
// Memslots is one address space's immutable set, sorted by base gfn so that the fault path
// finds the slot of a gfn in O(log n). Slots are held by shared_ptr so that a new set shares
// the unchanged slots with the one it replaces; Kvm publishes sets with RCU (kvm.h).
//
// Thread safety: everything here is read-only after construction and may be read from any
// thread while the object is alive; mark_page_dirty / test_dirty / get_and_clear_dirty_log
// are single atomic operations per word.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/addr.h"
#include "base/atomic.h"

namespace tdxsim {

class GuestMemfd;

// KVM_MEM_* flags of struct kvm_userspace_memory_region2.
inline constexpr uint32_t kMemLogDirtyPages = 1u << 0;
inline constexpr uint32_t kMemReadonly = 1u << 1;
inline constexpr uint32_t kMemGuestMemfd = 1u << 2;

// KVM_MEM_MAX_NR_PAGES: npages is stored in an unsigned long but the rmap code indexes with
// int, so KVM caps a slot below 2^31 pages.
inline constexpr uint64_t kMemMaxNrPages = (uint64_t{1} << 31) - 1;
// KVM_USER_MEM_SLOTS on x86 (KVM_MEM_SLOTS_NUM minus the three private slots).
inline constexpr uint32_t kDefaultMaxMemslots = 32764;

// struct kvm_userspace_memory_region2. `guest_memfd` stands for the fd: a null one is what a
// non-guest_memfd fd would be.
struct UserspaceMemoryRegion2 {
  uint32_t slot = 0;  // as_id << 16 | id
  uint32_t flags = 0;
  uint64_t guest_phys_addr = 0;
  uint64_t memory_size = 0;
  uint64_t userspace_addr = 0;
  uint64_t guest_memfd_offset = 0;
  std::shared_ptr<GuestMemfd> guest_memfd;
};

struct Memslot {
  uint16_t id = 0;
  uint16_t as_id = 0;
  Gfn base_gfn;
  uint64_t npages = 0;
  uint64_t userspace_addr = 0;
  uint32_t flags = 0;
  // The guest_memfd backing private gfns (kMemGuestMemfd slots) and the page offset of
  // base_gfn in it.
  std::shared_ptr<GuestMemfd> gmem;
  uint64_t gmem_pgoff = 0;
  // KVM_MEMSLOT_INVALID: a DELETE or MOVE is under way; a fault that finds this slot must
  // retry (or fail) rather than map from it.
  bool invalid = false;
  // One bit per page, present iff kMemLogDirtyPages.
  std::shared_ptr<AtomicWord[]> dirty_bitmap;

  Gfn end() const { return base_gfn + npages; }
  bool contains(Gfn gfn) const { return gfn >= base_gfn && gfn < end(); }
  bool can_be_private() const { return (flags & kMemGuestMemfd) != 0; }
  bool readonly() const { return (flags & kMemReadonly) != 0; }
  bool dirty_logging() const { return dirty_bitmap != nullptr; }
  uint64_t userspace_end() const { return userspace_addr + npages * kPageSize; }
  // __gfn_to_hva_memslot. REQUIRES: contains(gfn).
  uint64_t gfn_to_hva(Gfn gfn) const;
  // The guest_memfd page index backing `gfn`. REQUIRES: contains(gfn).
  uint64_t gfn_to_gmem_index(Gfn gfn) const { return gmem_pgoff + (gfn - base_gfn); }

  // mark_page_dirty_in_slot: a no-op for a slot that does not log. REQUIRES: contains(gfn).
  void mark_page_dirty(Gfn gfn) const;
  bool test_dirty(Gfn gfn) const;
  // KVM_GET_DIRTY_LOG's harvest: the bitmap's words, each atomically swapped for zero.
  // Empty for a slot that does not log.
  std::vector<uint64_t> get_and_clear_dirty_log() const;
  static uint64_t dirty_bitmap_words(uint64_t npages) { return (npages + 63) / 64; }
};

// One address space's published slots.
class Memslots {
 public:
  using SlotPtr = std::shared_ptr<const Memslot>;

  // REQUIRES: every slot belongs to `as_id`, ids are unique and gfn ranges do not overlap.
  Memslots(uint16_t as_id, uint64_t generation, std::vector<SlotPtr> slots);

  uint16_t as_id() const { return as_id_; }
  // The Kvm-wide memslots generation at which this set was published.
  uint64_t generation() const { return generation_; }
  size_t size() const { return by_gfn_.size(); }
  bool empty() const { return by_gfn_.empty(); }

  // search_memslots: the slot containing `gfn` (invalid ones included), or nullptr.
  const Memslot* find(Gfn gfn) const;
  // id_to_memslot. The two-argument form answers nullptr for another address space.
  const Memslot* by_id(uint16_t id) const;
  const Memslot* by_id(uint16_t as_id, uint16_t id) const;
  SlotPtr shared_by_id(uint16_t id) const;
  // kvm_for_each_memslot_in_gfn_range: the slots overlapping [start, end), in gfn order.
  std::span<const SlotPtr> in_gfn_range(Gfn start, Gfn end) const;
  // Whether a slot other than `except_id` overlaps [start, end) (kvm_check_memslot_overlap).
  bool overlaps(Gfn start, Gfn end, uint16_t except_id) const;

  // Iteration in gfn order, yielding const Memslot&.
  class Iterator {
   public:
    explicit Iterator(std::vector<SlotPtr>::const_iterator it) : it_(it) {}
    const Memslot& operator*() const { return **it_; }
    const Memslot* operator->() const { return it_->get(); }
    Iterator& operator++() {
      ++it_;
      return *this;
    }
    bool operator==(const Iterator&) const = default;

   private:
    std::vector<SlotPtr>::const_iterator it_;
  };
  Iterator begin() const { return Iterator(by_gfn_.begin()); }
  Iterator end() const { return Iterator(by_gfn_.end()); }

  // Copy-on-write: this set with `slot` added, or replacing the slot of the same id.
  std::unique_ptr<Memslots> with(SlotPtr slot, uint64_t generation) const;
  // This set without slot `id` (which must be present).
  std::unique_ptr<Memslots> without(uint16_t id, uint64_t generation) const;

 private:
  uint16_t as_id_;
  uint64_t generation_;
  std::vector<SlotPtr> by_gfn_;
  // Indices into by_gfn_, sorted by slot id.
  std::vector<uint32_t> by_id_;
};

}  // namespace tdxsim
