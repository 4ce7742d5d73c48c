#include "kvm/memslot.h"

#include <algorithm>

#include "base/check.h"

namespace tdxsim {

uint64_t Memslot::gfn_to_hva(Gfn gfn) const {
  TDXSIM_CHECK(contains(gfn), "{} outside slot {}", gfn, id);
  return userspace_addr + (gfn - base_gfn) * kPageSize;
}

void Memslot::mark_page_dirty(Gfn gfn) const {
  if (!dirty_bitmap) return;
  TDXSIM_CHECK(contains(gfn), "{} outside slot {}", gfn, id);
  const uint64_t rel = gfn - base_gfn;
  // Relaxed: the bit orders nothing; the harvest's exchange sees every set that preceded it
  // in the word's modification order, which is all the dirty log promises.
  dirty_bitmap[rel / 64].fetch_or(uint64_t{1} << (rel % 64), std::memory_order_relaxed);
}

bool Memslot::test_dirty(Gfn gfn) const {
  if (!dirty_bitmap || !contains(gfn)) return false;
  const uint64_t rel = gfn - base_gfn;
  return (dirty_bitmap[rel / 64].load(std::memory_order_relaxed) >> (rel % 64)) & 1;
}

std::vector<uint64_t> Memslot::get_and_clear_dirty_log() const {
  std::vector<uint64_t> out;
  if (!dirty_bitmap) return out;
  const uint64_t n = dirty_bitmap_words(npages);
  out.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    out.push_back(dirty_bitmap[i].exchange(0, std::memory_order_relaxed));
  }
  return out;
}

Memslots::Memslots(uint16_t as_id, uint64_t generation, std::vector<SlotPtr> slots)
    : as_id_(as_id), generation_(generation), by_gfn_(std::move(slots)) {
  std::ranges::sort(by_gfn_, {}, [](const SlotPtr& s) { return s->base_gfn; });
  by_id_.resize(by_gfn_.size());
  for (uint32_t i = 0; i < by_id_.size(); ++i) by_id_[i] = i;
  std::ranges::sort(by_id_, {}, [this](uint32_t i) { return by_gfn_[i]->id; });
  for (size_t i = 0; i < by_gfn_.size(); ++i) {
    TDXSIM_CHECK(by_gfn_[i]->as_id == as_id, "slot {} of as {} in set of as {}", by_gfn_[i]->id,
                 by_gfn_[i]->as_id, as_id);
    TDXSIM_CHECK(i == 0 || by_gfn_[i - 1]->end() <= by_gfn_[i]->base_gfn, "slots {} and {} overlap",
                 by_gfn_[i - 1]->id, by_gfn_[i]->id);
    TDXSIM_CHECK(i == 0 || by_gfn_[by_id_[i - 1]]->id != by_gfn_[by_id_[i]]->id, "slot id {} twice",
                 by_gfn_[by_id_[i]]->id);
  }
}

const Memslot* Memslots::find(Gfn gfn) const {
  // The first slot that starts above gfn; the one before it is the only candidate.
  auto it =
      std::ranges::upper_bound(by_gfn_, gfn, {}, [](const SlotPtr& s) { return s->base_gfn; });
  if (it == by_gfn_.begin()) return nullptr;
  const Memslot* s = std::prev(it)->get();
  return s->contains(gfn) ? s : nullptr;
}

Memslots::SlotPtr Memslots::shared_by_id(uint16_t id) const {
  auto it = std::ranges::lower_bound(by_id_, id, {}, [this](uint32_t i) { return by_gfn_[i]->id; });
  if (it == by_id_.end() || by_gfn_[*it]->id != id) return nullptr;
  return by_gfn_[*it];
}

const Memslot* Memslots::by_id(uint16_t id) const {
  return shared_by_id(id).get();
}

const Memslot* Memslots::by_id(uint16_t as_id, uint16_t id) const {
  return as_id == as_id_ ? by_id(id) : nullptr;
}

std::span<const Memslots::SlotPtr> Memslots::in_gfn_range(Gfn start, Gfn end) const {
  if (start >= end) return {};
  // Non-overlapping slots sorted by base are sorted by end too.
  auto first = std::ranges::partition_point(
      by_gfn_, [start](const SlotPtr& s) { return s->end() <= start; });
  auto last = std::ranges::partition_point(first, by_gfn_.end(),
                                           [end](const SlotPtr& s) { return s->base_gfn < end; });
  return {first, last};
}

bool Memslots::overlaps(Gfn start, Gfn end, uint16_t except_id) const {
  return std::ranges::any_of(in_gfn_range(start, end),
                             [except_id](const SlotPtr& s) { return s->id != except_id; });
}

std::unique_ptr<Memslots> Memslots::with(SlotPtr slot, uint64_t generation) const {
  std::vector<SlotPtr> slots;
  slots.reserve(by_gfn_.size() + 1);
  for (const SlotPtr& s : by_gfn_) {
    if (s->id != slot->id) slots.push_back(s);
  }
  slots.push_back(std::move(slot));
  return std::make_unique<Memslots>(as_id_, generation, std::move(slots));
}

std::unique_ptr<Memslots> Memslots::without(uint16_t id, uint64_t generation) const {
  TDXSIM_CHECK(by_id(id) != nullptr, "no slot {} to remove", id);
  std::vector<SlotPtr> slots;
  slots.reserve(by_gfn_.size());
  for (const SlotPtr& s : by_gfn_) {
    if (s->id != id) slots.push_back(s);
  }
  return std::make_unique<Memslots>(as_id_, generation, std::move(slots));
}

}  // namespace tdxsim
