#include "kvm/mem_attributes.h"

#include "base/check.h"

namespace tdxsim {

MemAttributes::MemAttributes() : mu_("kvm->mem_attr_array") {}

uint64_t MemAttributes::get(Gfn gfn) const {
  ReadLock l(mu_);
  auto it = map_.upper_bound(gfn);
  if (it == map_.begin()) return 0;
  --it;
  return gfn < it->second.end ? it->second.attributes : 0;
}

bool MemAttributes::range_has(Gfn start, Gfn end, uint64_t mask, uint64_t attrs) const {
  if (attrs & ~mask) return false;
  if (start >= end) return true;
  ReadLock l(mu_);
  // Walk [start, end) through the entries that cover it; a gap reads as attributes 0.
  Gfn cur = start;
  auto it = map_.upper_bound(start);
  if (it != map_.begin() && std::prev(it)->second.end > start) --it;
  for (; cur < end; ++it) {
    if (it == map_.end() || it->first > cur) {
      // A gap [cur, next start).
      if (attrs != 0) return false;
      if (it == map_.end()) return true;
      cur = it->first;
      if (cur >= end) return true;
    }
    if ((it->second.attributes & mask) != attrs) return false;
    cur = it->second.end;
  }
  return true;
}

void MemAttributes::set(Gfn start, Gfn end, uint64_t attrs) {
  TDXSIM_CHECK(start < end, "empty attribute range [{}, {})", start, end);
  WriteLock l(mu_);
  // Cut the entries that straddle start and end, so [start, end) is made of whole entries.
  auto split_at = [this](Gfn at) TDXSIM_REQUIRES(mu_) {
    auto it = map_.upper_bound(at);
    if (it == map_.begin()) return;
    --it;
    if (it->first < at && at < it->second.end) {
      map_.emplace(at, Entry{it->second.end, it->second.attributes});
      it->second.end = at;
    }
  };
  split_at(start);
  split_at(end);
  map_.erase(map_.lower_bound(start), map_.lower_bound(end));
  if (attrs == 0) return;
  auto it = map_.emplace(start, Entry{end, attrs}).first;
  // Merge with an equal neighbour on either side.
  if (auto next = std::next(it);
      next != map_.end() && next->first == end && next->second.attributes == attrs) {
    it->second.end = next->second.end;
    map_.erase(next);
  }
  if (it != map_.begin()) {
    auto prev = std::prev(it);
    if (prev->second.end == start && prev->second.attributes == attrs) {
      prev->second.end = it->second.end;
      map_.erase(it);
    }
  }
}

std::vector<MemAttributes::Range> MemAttributes::ranges() const {
  ReadLock l(mu_);
  std::vector<Range> out;
  out.reserve(map_.size());
  for (const auto& [start, e] : map_) out.push_back(Range{start, e.end, e.attributes});
  return out;
}

}  // namespace tdxsim
