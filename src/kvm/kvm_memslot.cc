// Kvm::set_user_memory_region2: KVM_SET_USER_MEMORY_REGION2 (kvm_set_memory_region and
// kvm_set_memslot of virt/kvm/kvm_main.c).
#include <algorithm>

#include "base/check.h"
#include "base/rcu.h"
#include "kvm/kvm.h"

namespace tdxsim {
namespace {

bool page_aligned(uint64_t v) {
  return (v & (kPageSize - 1)) == 0;
}

std::unexpected<Errno> fail(Errno e) {
  return std::unexpected(e);
}

// check_memory_region_flags: which flags this VM type accepts, given the others.
bool flags_valid(VmType type, uint32_t flags) {
  uint32_t valid = kMemLogDirtyPages;
  if (has_private_mem(type)) valid |= kMemGuestMemfd;
  // Private memory is never dirty-logged.
  if (flags & kMemGuestMemfd) valid &= ~kMemLogDirtyPages;
  // guest_memfd cannot back a read-only slot: KVM could not emulate the write.
  if (has_readonly_mem(type) && !(flags & kMemGuestMemfd)) valid |= kMemReadonly;
  return (flags & ~valid) == 0;
}

}  // namespace

struct Kvm::Update {
  MemslotChange change;
  uint16_t as_id;
  Memslots::SlotPtr old;              // null for kCreate
  std::shared_ptr<Memslot> new_slot;  // null for kDelete
  bool nothing_to_do = false;
};

KvmResult<Kvm::Update> Kvm::check_memory_region(const UserspaceMemoryRegion2& r) {
  const uint16_t as_id = static_cast<uint16_t>(r.slot >> 16);
  const uint16_t id = static_cast<uint16_t>(r.slot);
  if (id >= cfg_.max_memslots) return fail(Errno::kEinval);
  if (!flags_valid(cfg_.type, r.flags)) return fail(Errno::kEinval);
  if (!page_aligned(r.memory_size) || !page_aligned(r.guest_phys_addr) ||
      !page_aligned(r.userspace_addr)) {
    return fail(Errno::kEinval);
  }
  if ((r.flags & kMemGuestMemfd) && (!page_aligned(r.guest_memfd_offset) ||
                                     r.guest_memfd_offset + r.memory_size < r.guest_memfd_offset)) {
    return fail(Errno::kEinval);
  }
  if (as_id >= nr_memslot_as_ids(cfg_.type)) return fail(Errno::kEinval);
  if (r.guest_phys_addr + r.memory_size < r.guest_phys_addr) return fail(Errno::kEinval);
  const uint64_t npages = r.memory_size >> kPageShift;
  if (npages > kMemMaxNrPages) return fail(Errno::kEinval);

  const Memslots& slots = *load_memslots(as_id);
  Update u{MemslotChange::kCreate, as_id, slots.shared_by_id(id), nullptr};
  if (npages == 0) {
    if (!u.old) return fail(Errno::kEinval);
    u.change = MemslotChange::kDelete;
    return u;
  }
  const Gfn base_gfn = Gpa{r.guest_phys_addr}.gfn();
  if (u.old) {
    // guest_memfd slots are immutable: they can only be deleted.
    if (r.flags & kMemGuestMemfd) return fail(Errno::kEinval);
    if (r.userspace_addr != u.old->userspace_addr || npages != u.old->npages ||
        ((r.flags ^ u.old->flags) & kMemReadonly)) {
      return fail(Errno::kEinval);
    }
    if (base_gfn != u.old->base_gfn) {
      u.change = MemslotChange::kMove;
    } else if (r.flags != u.old->flags) {
      u.change = MemslotChange::kFlagsOnly;
    } else {
      u.nothing_to_do = true;
      return u;
    }
  }
  if ((u.change == MemslotChange::kCreate || u.change == MemslotChange::kMove) &&
      slots.overlaps(base_gfn, base_gfn + npages, id)) {
    return fail(Errno::kEexist);
  }
  if ((r.flags & kMemGuestMemfd) && !r.guest_memfd) return fail(Errno::kEinval);

  auto s = std::make_shared<Memslot>();
  s->id = id;
  s->as_id = as_id;
  s->base_gfn = base_gfn;
  s->npages = npages;
  s->userspace_addr = r.userspace_addr;
  s->flags = r.flags;
  if (r.flags & kMemGuestMemfd) {
    s->gmem = r.guest_memfd;
    s->gmem_pgoff = r.guest_memfd_offset >> kPageShift;
  }
  if (r.flags & kMemLogDirtyPages) {
    // A slot that keeps logging keeps its bitmap (kvm_prepare_memory_region).
    s->dirty_bitmap =
        u.old && u.old->dirty_bitmap
            ? u.old->dirty_bitmap
            : std::shared_ptr<AtomicWord[]>(new AtomicWord[Memslot::dirty_bitmap_words(npages)]);
  }
  u.new_slot = std::move(s);
  return u;
}

KvmResult<> Kvm::set_user_memory_region2(const UserspaceMemoryRegion2& region) {
  RcuThread rcu_thread;  // for rcu_defer and rcu_synchronize
  MutexLock l(slots_lock_);
  KvmResult<Update> checked = check_memory_region(region);
  if (!checked) return std::unexpected(checked.error());
  Update& u = *checked;
  if (u.nothing_to_do) return {};

  if (u.new_slot && u.new_slot->gmem) {
    if (KvmResult<> b = u.new_slot->gmem->bind(*this, *u.new_slot, region.guest_memfd_offset); !b) {
      return b;
    }
  }
  auto unbind_new = [&] {
    if (u.new_slot && u.new_slot->gmem) u.new_slot->gmem->unbind(*this, *u.new_slot);
  };

  const bool zaps = u.change == MemslotChange::kDelete || u.change == MemslotChange::kMove;
  if (zaps) {
    // kvm_invalidate_memslot: faults that find the slot from now on see it INVALID; once
    // the readers that may have seen it valid are gone, no new mapping of it can appear and
    // the arch drops the existing ones.
    auto invalid = std::make_shared<Memslot>(*u.old);
    invalid->invalid = true;
    publish_memslots(u.as_id, load_memslots(u.as_id)->with(std::move(invalid), next_generation()));
    rcu_synchronize();
    if (arch_) arch_->flush_shadow_memslot(*u.old);
  }

  if (arch_) {
    if (KvmResult<> p = arch_->prepare_memory_region(u.old.get(), u.new_slot.get(), u.change); !p) {
      // The old slot comes back as it was (its mappings are gone; faults rebuild them).
      if (zaps) publish_memslots(u.as_id, load_memslots(u.as_id)->with(u.old, next_generation()));
      unbind_new();
      return p;
    }
  }

  const Memslots& cur = *load_memslots(u.as_id);
  const uint64_t gen = next_generation();
  if (u.change == MemslotChange::kDelete) {
    publish_memslots(u.as_id, cur.without(u.old->id, gen));
    // kvm_free_memslot -> kvm_gmem_unbind, after the slot is unreachable.
    if (u.old->gmem) u.old->gmem->unbind(*this, *u.old);
  } else {
    publish_memslots(u.as_id, cur.with(u.new_slot, gen));
  }
  if (arch_) arch_->commit_memory_region(u.old.get(), u.new_slot.get(), u.change);
  report_dirty_logging(u.old.get(), u.new_slot.get(), u.change);
  return {};
}

void Kvm::report_dirty_logging(const Memslot* old, const Memslot* new_slot, MemslotChange change) {
  if (!events_.dirty_log.enabled()) return;
  const bool moved = change == MemslotChange::kMove;
  const bool was = old != nullptr && old->dirty_logging();
  const bool is = new_slot != nullptr && new_slot->dirty_logging();
  const auto emit = [&](DirtyLogOp op, const Memslot& s, uint16_t as_id) {
    events_.dirty_log.emit(
        DirtyLogEvent{op, (uint32_t{as_id} << 16) | s.id, s.base_gfn, s.npages, nullptr});
  };
  if (was && (!is || moved)) emit(DirtyLogOp::kStop, *old, old->as_id);
  if (is && (!was || moved)) emit(DirtyLogOp::kStart, *new_slot, new_slot->as_id);
}

void Kvm::mark_page_dirty(Gfn gfn) {
  RcuReadGuard rcu;
  if (const Memslot* s = gfn_to_memslot(gfn); s != nullptr && !s->invalid) s->mark_page_dirty(gfn);
}

KvmResult<std::vector<uint64_t>> Kvm::get_dirty_log(uint32_t slot) {
  RcuThread rcu_thread;
  MutexLock l(slots_lock_);
  const uint16_t as_id = static_cast<uint16_t>(slot >> 16);
  const uint16_t id = static_cast<uint16_t>(slot & 0xffff);
  if (as_id >= nr_memslot_as_ids(cfg_.type) || id >= cfg_.max_memslots) {
    return std::unexpected(Errno::kEinval);
  }
  const Memslot* s = load_memslots(as_id)->by_id(id);
  if (s == nullptr || !s->dirty_logging()) return std::unexpected(Errno::kEnoent);
  events_.dirty_log.emit_lazy([&] {
    return DirtyLogEvent{DirtyLogOp::kHarvestBegin, slot, s->base_gfn, s->npages, nullptr};
  });
  if (arch_) arch_->sync_dirty_log(*s);
  std::vector<uint64_t> bitmap = s->get_and_clear_dirty_log();
  bool harvested = false;
  {
    // Each harvested page is write-protected again before the log is returned, so a write
    // after the harvest faults and lands in the next one.
    WriteLock m(mmu_lock_);
    for (size_t i = 0; i < bitmap.size(); ++i) {
      if (bitmap[i] == 0 || !arch_) continue;
      arch_->enable_log_dirty_pt_masked(*s, s->base_gfn + i * 64, bitmap[i]);
      harvested = true;
    }
  }
  if (harvested) flush_remote_tlbs();
  events_.dirty_log.emit_lazy([&] {
    return DirtyLogEvent{DirtyLogOp::kHarvestEnd, slot, s->base_gfn, s->npages, &bitmap};
  });
  return bitmap;
}

}  // namespace tdxsim
