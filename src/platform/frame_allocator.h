// FrameAllocator: which free host frame comes next, under each ReusePolicy.
//
// Frames never handed out are not listed anywhere: a bump index passes them out in
// ascending order, so a 64 GiB host costs nothing until its frames are used. Freed frames go
// into a per-policy structure, all of them the allocator's own (a free frame's metadata is
// not free to borrow: the TDX module may use a frame the host holds free, and its contents
// and key live on):
//   kLastFreedFirst   a stack of freed PFNs, drained before the bump index (a freed
//                     page-table page comes back at the same HPA);
//   kFirstFreedFirst  a ring of freed PFNs, behind the never-used frames (they count as
//                     freed first, at start-up);
//   kLowestFirst      a bitmap of freed frames with one summary level per 64x, so the lowest
//                     free frame is found in O(log64 frames); all freed frames lie below the
//                     bump index, so it is the lowest only when the bitmap is empty;
//   kRandom           a uniform, seeded choice among all free frames: a free-PFN array with
//                     swap-remove, lazily the identity (slot i holds pfn + 1, 0 meaning i).
//
// The stack, the ring and the random array are lazily resident (8 bytes a slot): they cost
// only the pages that frames given back have been written to.
//
// Thread safety: none. HostMemory serialises every call under its allocator lock.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "platform/host_memory.h"
#include "platform/lazy_words.h"

namespace tdxsim {

class FrameAllocator {
 public:
  FrameAllocator(ReusePolicy policy, uint64_t frames, uint64_t seed);
  FrameAllocator(const FrameAllocator&) = delete;
  FrameAllocator& operator=(const FrameAllocator&) = delete;

  // Returns: the next free frame under the policy, or nullopt when none is free.
  std::optional<uint64_t> take();
  // REQUIRES: `pfn` was returned by take() and not given back since (HostMemory checks).
  void give(uint64_t pfn);

  uint64_t free_count() const { return free_; }
  // Bytes of bookkeeping made resident (the stack, ring, bitmap or free-PFN array).
  uint64_t resident_bytes() const;

 private:
  std::optional<uint64_t> take_bump();
  std::optional<uint64_t> take_lowest();
  uint64_t take_random();
  void bitmap_set(uint64_t pfn);
  void bitmap_clear(uint64_t pfn);
  uint64_t random_below(uint64_t n);
  uint64_t random_slot(uint64_t i) const;

  const ReusePolicy policy_;
  const uint64_t frames_;
  uint64_t free_;
  uint64_t bump_ = 0;  // frames [bump_, frames_) have never been handed out
  // kLastFreedFirst: the stack, in list_[0, listed_). kFirstFreedFirst: the ring, listed_
  // entries from list_[front_] on, wrapping at frames_ (it never holds more).
  std::optional<LazyWords> list_;
  uint64_t listed_ = 0;
  uint64_t front_ = 0;
  // kLowestFirst: levels_[0] has a bit per frame (set: freed, below bump_); levels_[l + 1]
  // has a bit per word of levels_[l] (set: that word is non-zero). The last level is 1 word.
  std::vector<LazyWords> levels_;
  // kRandom: free frames in slots [0, free_); see the file comment for the encoding.
  std::optional<LazyWords> slots_;
  uint64_t rng_;
};

}  // namespace tdxsim
