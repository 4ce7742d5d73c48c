// TdpIter: the one walker of KVM's TDP page tables (tdp_iter), for every level and both
// kinds of root. Everything in the MMU that looks at more than one SPTE — faults, zaps,
// aging, teardown — walks with it.
//
// Order: pre-order over the gfns [start, end), from the root down to `min_level`:
//   1. Visit an entry: gfn, level, sptep and old_spte (the value read at the visit).
//   2. next(): if the entry is above min_level, re-read it (it may have changed since the
//      visit) and, if it is shadow-present and not last-level, descend into its table, at
//      the entry that covers the gfn the walk has reached.
//   3. Otherwise move to the next entry of the same table; at a table's last entry climb one
//      level and move there instead, until some table has a next entry. None has: done.
//   The walk ends at the first entry whose gfn is >= end.
// An upper-level entry is visited with its own (aligned) gfn, so the first entries of a walk
// that starts mid-table have gfn < start: they are the tables on the way down to it.
//
// GFN direct bits (shared/spec/kvm-tdx-mmu.md §1.3). A TD's direct root maps shared memory at
// gfn | gfn_bits (the shared bit); its mirror root maps private memory at gfn. The MMU never
// carries the bit in a gfn — faults strip it, memslots never have it — so it exists only
// here: the walk indexes tables by (gfn | gfn_bits) and reports plain gfns. The walkable
// gfns are those below the lowest direct bit; a range beyond it is cut there, so the walk
// never wraps into the alias it is offset by. Walking a whole root regardless of the offset
// (teardown) passes gfn_bits 0 and [0, root_end(root)).
//
// Yielding: a long walk may drop mmu_lock (cond_resched). Tables can change meanwhile, so
// the caller, having re-taken the lock, calls mark_yielded(); the next next() restarts from
// the root at the gfn the walk had reached and walks down to it again, revisiting the entry
// it yielded at: no gfn is skipped, and nothing read before the yield is trusted.
// made_progress_since_restart() tells whether yielding now would let the walk advance.
//
// Thread safety: an iterator belongs to one thread. The tables it walks may change under it
// (other threads compare-and-swap entries with mmu_lock held for read): every entry is read
// with acquire, pairing with the release that published it, so a child table reached
// through an entry is seen initialised. A table removed from the tree is freed only after
// an RCU grace period, so the caller walks inside an RcuReadGuard (or with mmu_lock held for
// write); old_spte may be stale the moment it is read, which is why writers compare-and-swap
// against it.
//
// Freed tables. A freed page-table page holds kFreedTablePoison (mmu_page.h) until its frame
// is reused; an iterator given a FreedTableReads reports every entry it reads with that
// value there — a walk inside a table freed under it. One compare per entry read.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <iterator>
#include <optional>

#include "base/addr.h"
#include "kvm/mmu_page.h"
#include "kvm/spte.h"
#include "platform/host_memory.h"

namespace tdxsim {

// Where walks report the entries they read as kFreedTablePoison: how many, and the first
// one's address. Thread safety: any thread may record and read.
class FreedTableReads {
 public:
  void record(Hpa sptep);
  uint64_t count() const { return count_.load(std::memory_order_acquire); }
  std::optional<Hpa> first() const;

 private:
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> first_{0};  // the first entry's address + 1; 0: none yet
};

class TdpIter {
 public:
  // REQUIRES: min_level <= root.level(); gfn_bits lies within the gfns the root maps;
  // `freed_reads`, when given, outlives the iterator.
  // An empty range, or a start already at or beyond the lowest direct bit, gives an iterator
  // that is not valid().
  TdpIter(const HostMemory& mem, const MmuPage& root, Level min_level, Gfn start, Gfn end,
          Gfn gfn_bits, FreedTableReads* freed_reads = nullptr);

  // The gfns a root maps: [0, root_end(root)).
  static Gfn root_end(const MmuPage& root);

  bool valid() const { return valid_; }
  // REQUIRES: valid().
  void next();

  // The lowest gfn the current entry maps, direct bits excluded. REQUIRES (all): valid().
  Gfn gfn() const { return gfn_; }
  Level level() const { return level_; }
  // Where the current entry lives in host memory (host key).
  Hpa sptep() const { return sptep_; }
  // The entry as read when the walk reached it (or by the last reread()).
  Spte old_spte() const { return old_spte_; }
  // Reads the current entry again into old_spte (after a failed compare-and-swap, say).
  Spte reread();

  // The caller dropped and re-took mmu_lock at the current entry: the next next() restarts.
  void mark_yielded() { yielded_ = true; }
  // Only the M8 bug switch calls this: the restart after a yield resumes past the entry the
  // walk yielded at instead of at it (the historic iterator advanced after restarting), so
  // that entry, and everything below it, is never visited.
  void skip_current_on_restart() { next_last_level_gfn_ = gfn_ + level_pages(level_); }
  bool yielded() const { return yielded_; }
  // Whether the walk moved past the gfn it last (re)started at: a yield before that would
  // restart at the same place again and could livelock.
  bool made_progress_since_restart() const { return next_last_level_gfn_ != yielded_gfn_; }

 private:
  static constexpr unsigned kMaxLevels = 5;

  void restart();
  bool try_step_down();
  bool try_step_side();
  bool try_step_up();
  // Points at the entry covering gfn_ | gfn_bits_ in the table at level_, and reads it.
  void refresh_sptep();
  Spte read(Hpa sptep) const;
  Hpa& table_at(Level l) { return pt_path_[level_num(l) - 1]; }

  const HostMemory* mem_;
  FreedTableReads* freed_reads_;
  // The table at each level on the path to the current entry ([level - 1]).
  std::array<Hpa, kMaxLevels> pt_path_{};
  Level root_level_;
  Level min_level_;
  Gfn gfn_bits_;
  Gfn end_;
  // Where a restart resumes: start, then the gfn of every entry reached sideways — the
  // lowest gfn not yet walked past at the last level.
  Gfn next_last_level_gfn_;
  // next_last_level_gfn_ at the last (re)start.
  Gfn yielded_gfn_;
  Gfn gfn_;
  Level level_;
  Hpa sptep_;
  Spte old_spte_;
  bool valid_ = false;
  bool yielded_ = false;
};

// The walk as a range: for (TdpIter& it : TdpRange(mem, root, min, start, end, bits)) { … }.
// The loop body may reread(), mark_yielded() and `continue` exactly as with a bare TdpIter.
class TdpRange {
 public:
  TdpRange(const HostMemory& mem, const MmuPage& root, Level min_level, Gfn start, Gfn end,
           Gfn gfn_bits)
      : it_(mem, root, min_level, start, end, gfn_bits) {}
  TdpRange(const TdpRange&) = delete;
  TdpRange& operator=(const TdpRange&) = delete;

  class Iterator {
   public:
    using value_type = TdpIter;
    using difference_type = std::ptrdiff_t;
    Iterator() = default;
    TdpIter& operator*() const { return *it_; }
    TdpIter* operator->() const { return it_; }
    Iterator& operator++() {
      it_->next();
      return *this;
    }
    void operator++(int) { it_->next(); }
    bool operator==(std::default_sentinel_t) const { return !it_->valid(); }

   private:
    friend class TdpRange;
    explicit Iterator(TdpIter* it) : it_(it) {}
    TdpIter* it_ = nullptr;
  };

  // Single pass: begin() once.
  Iterator begin() { return Iterator{&it_}; }
  std::default_sentinel_t end() const { return {}; }

 private:
  TdpIter it_;
};
static_assert(std::input_iterator<TdpRange::Iterator>);

}  // namespace tdxsim
