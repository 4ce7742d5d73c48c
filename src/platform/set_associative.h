// A set-associative cache array, as TLBs and paging-structure caches are built: `sets` × `ways`
// slots, an entry living only in the set its index selects, a fill taking a free way of that
// set or evicting one the caller's seeded random value chooses.
//
// Bounded (capacity > 0): the sets are indexed by the low bits of the entry's page number,
// as hardware indexes by virtual page number, so pages that share those bits compete for one
// set's ways (conflict misses, as on hardware). `sets` is the largest power of two that
// divides the capacity and leaves at least kMinWays ways (a 1536-entry STLB: 128 sets of 12
// ways); a capacity with no such split is one fully associative set.
//
// Unbounded (capacity 0): never evicts. Sets are indexed by a hash of page number and tag, and
// a fill into a full set doubles the sets and re-places every entry, so the array behaves as
// a hash table with buckets of kUnboundedWays slots.
//
// Not thread-safe: its owner serialises every call.
#pragma once

#include <cstdint>
#include <vector>

#include "base/check.h"
#include "base/mix.h"

namespace tdxsim {

template <typename Entry>
class SetAssociative {
 public:
  static constexpr uint32_t kMinWays = 12;
  static constexpr uint32_t kUnboundedWays = 8;
  static constexpr uint64_t kUnboundedSets = 64;  // to start with

  explicit SetAssociative(uint32_t capacity) : bounded_(capacity != 0) {
    uint64_t sets = kUnboundedSets;
    ways_ = kUnboundedWays;
    if (bounded_) {
      sets = 1;
      while (capacity % (sets * 2) == 0 && capacity / (sets * 2) >= kMinWays) sets *= 2;
      ways_ = static_cast<uint32_t>(capacity / sets);
    }
    resize(sets);
  }

  uint32_t ways() const { return ways_; }
  uint64_t sets() const { return mask_ + 1; }
  size_t size() const { return size_; }

  // The entry stored with this `vpn` (page number at its size) and `tag_hash` that `match`
  // accepts (the full key compare), or nullptr.
  template <typename Match>
  Entry* find(uint64_t vpn, uint64_t tag_hash, Match match) {
    const uint64_t sig = signature(vpn, tag_hash);
    const size_t first = first_way(vpn, sig);
    for (size_t i = first; i < first + ways_; ++i) {
      if (sigs_[i] == sig && match(entries_[i])) return &entries_[i];
    }
    return nullptr;
  }

  // Stores `entry` where `find(vpn, tag_hash, same)` would find it: over the entry `same`
  // selects, else in a free way, else (bounded) over a way chosen by `random` (a uniform
  // 64-bit value), after calling `evicted` with the entry it held.
  // Returns: false when it replaced the entry of the same key, true when the key is new.
  template <typename Match, typename Evicted>
  bool insert(uint64_t vpn, uint64_t tag_hash, const Entry& entry, Match same, uint64_t random,
              Evicted evicted) {
    const uint64_t sig = signature(vpn, tag_hash);
    for (;;) {
      const size_t first = first_way(vpn, sig);
      size_t free = kNone;
      for (size_t i = first; i < first + ways_; ++i) {
        if (sigs_[i] == 0) {
          if (free == kNone) free = i;
        } else if (sigs_[i] == sig && same(entries_[i])) {
          entries_[i] = entry;
          return false;
        }
      }
      if (free != kNone) {
        sigs_[free] = sig;
        entries_[free] = entry;
        ++size_;
        return true;
      }
      if (bounded_) {
        // Multiply-shift: a uniform way without a division.
        const size_t i =
            first + static_cast<size_t>((static_cast<unsigned __int128>(random) * ways_) >> 64);
        evicted(static_cast<const Entry&>(entries_[i]));
        sigs_[i] = sig;
        entries_[i] = entry;
        return true;
      }
      grow();
    }
  }

  // Drops the entries `pred` selects. Returns: how many.
  template <typename Pred>
  size_t erase_if(Pred pred) {
    size_t n = 0;
    for (size_t i = 0; i < sigs_.size(); ++i) {
      if (sigs_[i] != 0 && pred(static_cast<const Entry&>(entries_[i]))) {
        sigs_[i] = 0;
        ++n;
      }
    }
    size_ -= n;
    return n;
  }

  // Drops the entry `find(vpn, tag_hash, match)` would return. Returns: whether there was one.
  template <typename Match>
  bool erase(uint64_t vpn, uint64_t tag_hash, Match match) {
    Entry* e = find(vpn, tag_hash, match);
    if (e == nullptr) return false;
    sigs_[static_cast<size_t>(e - entries_.data())] = 0;
    --size_;
    return true;
  }

  template <typename F>
  void for_each(F f) const {
    for (size_t i = 0; i < sigs_.size(); ++i)
      if (sigs_[i] != 0) f(entries_[i]);
  }

 private:
  static constexpr size_t kNone = ~size_t{0};
  static constexpr uint64_t kSigBit = uint64_t{1} << 63;

  // Never 0 (a free slot). Equal signatures are a quick filter, not a match: `match` decides.
  // Unbounded, its low bits also choose the set, so growing re-places an entry by it alone.
  static uint64_t signature(uint64_t vpn, uint64_t tag_hash) {
    return mix64(vpn ^ tag_hash) | kSigBit;
  }
  size_t first_way(uint64_t vpn, uint64_t sig) const {
    return static_cast<size_t>(((bounded_ ? vpn : sig) & mask_) * ways_);
  }

  void resize(uint64_t sets) {
    mask_ = sets - 1;
    sigs_.assign(sets * ways_, 0);
    entries_.assign(sets * ways_, Entry{});
  }

  // Doubles the sets until every entry finds a way in its set (a hash that crowds one set
  // doubles again).
  void grow() {
    TDXSIM_CHECK(!bounded_, "a bounded set-associative array grows");
    const std::vector<uint64_t> old_sigs = std::move(sigs_);
    const std::vector<Entry> old = std::move(entries_);
    for (uint64_t sets = (mask_ + 1) * 2;; sets *= 2) {
      if (place_all(old_sigs, old, sets)) return;
    }
  }

  bool place_all(const std::vector<uint64_t>& sigs, const std::vector<Entry>& from, uint64_t sets) {
    resize(sets);
    for (size_t j = 0; j < sigs.size(); ++j) {
      if (sigs[j] == 0) continue;
      const size_t first = first_way(0, sigs[j]);
      size_t i = first;
      while (i < first + ways_ && sigs_[i] != 0) ++i;
      if (i == first + ways_) return false;
      sigs_[i] = sigs[j];
      entries_[i] = from[j];
    }
    return true;
  }

  bool bounded_;
  uint32_t ways_ = 0;
  uint64_t mask_ = 0;  // sets - 1
  size_t size_ = 0;
  std::vector<uint64_t> sigs_;  // by slot: the entry's signature, 0 when free
  std::vector<Entry> entries_;
};

}  // namespace tdxsim
