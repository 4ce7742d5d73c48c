// LazyWords: a zero-initialised array of 64-bit words whose pages become resident only when
// written, so that bookkeeping sized for every frame of a large host costs nothing for the
// frames no one touches.
//
// The array is an anonymous MAP_NORESERVE mapping: untouched pages read as zero (the kernel's
// zero page) and cost no memory or swap reservation. Transparent huge pages are refused for
// it, so that one touched word makes 4 KiB resident, not 2 MiB, and resident_bytes() stays
// an honest estimate.
//
// Thread safety: the words themselves are plain memory; whoever shares them decides how
// (HostMemory accesses its metadata only through AtomicWordRef). The residency record is
// atomic, so that note_touched(), is_touched() and resident_bytes() may be called from any
// thread: HostMemory's metadata is written by whichever thread first touches a frame, not
// only under a lock.
#pragma once

#include <cstdint>
#include <vector>

#include "base/atomic.h"
#include "base/sched_point.h"

namespace tdxsim {

class LazyWords {
 public:
  // An array of `count` zero words (count may be 0).
  explicit LazyWords(uint64_t count);
  ~LazyWords();
  LazyWords(LazyWords&& o) noexcept;
  LazyWords(const LazyWords&) = delete;
  LazyWords& operator=(const LazyWords&) = delete;

  uint64_t size() const { return count_; }
  uint64_t* data() const { return base_; }
  uint64_t& operator[](uint64_t i) const { return base_[i]; }

  // Plain write that also records the page as resident (single-threaded owners).
  void set(uint64_t i, uint64_t v) {
    note_touched(i);
    base_[i] = v;
  }
  // Records that the page holding word `i` has been (or is about to be) written.
  void note_touched(uint64_t i) {
    const uint64_t page = i / kWordsPerPage;
    // Nearly every call finds the bit set. Free-running, that check is inline and passes no
    // scheduling point (a no-op there); under a scheduler it takes the out-of-line path,
    // whose points are the same as ever, so replays do not change.
    if (!sched_active()) [[likely]] {
      const uint64_t bit = uint64_t{1} << (page % 64);
      if ((FreeRunningWordRef(touched_[page / 64]).load(std::memory_order_relaxed) & bit) != 0)
          [[likely]]
        return;
    }
    note_page_touched(page);
  }
  // Returns: whether note_touched() has seen the page holding word `i`. Words of a page
  // that was never touched are all zero.
  bool is_touched(uint64_t i) const {
    const uint64_t page = i / kWordsPerPage;
    const uint64_t bit = uint64_t{1} << (page % 64);
    return (AtomicWordRef(touched_[page / 64]).load(std::memory_order_relaxed) & bit) != 0;
  }
  // Bytes of the array that note_touched() has seen written.
  uint64_t resident_bytes() const {
    return touched_pages_.load(std::memory_order_relaxed) * kPageBytes;
  }

  static constexpr uint64_t kPageBytes = 4096;
  static constexpr uint64_t kWordsPerPage = kPageBytes / sizeof(uint64_t);

 private:
  uint64_t* base_ = nullptr;
  uint64_t count_ = 0;
  uint64_t bytes_ = 0;           // the mapping's length, whole pages
  // One bit per page of the mapping; mutable: AtomicWordRef needs a non-const word even to
  // load it.
  mutable std::vector<uint64_t> touched_;
  AtomicWord touched_pages_;

  [[gnu::noinline]] void note_page_touched(uint64_t page);
};

}  // namespace tdxsim
