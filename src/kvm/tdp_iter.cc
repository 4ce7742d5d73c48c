#include "kvm/tdp_iter.h"

#include <algorithm>

#include "base/check.h"

namespace tdxsim {
namespace {

// The gfns one table at `level` spans.
constexpr uint64_t table_span(Level level) {
  return level_pages(level) * kPtesPerTable;
}

constexpr uint64_t lowest_set_bit(uint64_t m) {
  return m & (~m + 1);
}

}  // namespace

void FreedTableReads::record(Hpa sptep) {
  uint64_t none = 0;
  first_.compare_exchange_strong(none, sptep.raw() + 1, std::memory_order_acq_rel);
  count_.fetch_add(1, std::memory_order_acq_rel);
}

std::optional<Hpa> FreedTableReads::first() const {
  const uint64_t f = first_.load(std::memory_order_acquire);
  if (f == 0) return std::nullopt;
  return Hpa{f - 1};
}

TdpIter::TdpIter(const HostMemory& mem, const MmuPage& root, Level min_level, Gfn start, Gfn end,
                 Gfn gfn_bits, FreedTableReads* freed_reads)
    : mem_(&mem),
      freed_reads_(freed_reads),
      root_level_(root.level()),
      min_level_(min_level),
      gfn_bits_(gfn_bits),
      next_last_level_gfn_(start),
      yielded_gfn_(start),
      gfn_(start),
      level_(root.level()) {
  TDXSIM_CHECK(min_level_ <= root_level_, "min level {} above a {} root", level_name(min_level_),
               level_name(root_level_));
  const uint64_t span = table_span(root_level_);
  // A direct bit the root cannot index would silently alias the two halves.
  TDXSIM_CHECK(gfn_bits.raw() < span, "direct bits {} beyond a {} root", gfn_bits,
               level_name(root_level_));
  uint64_t limit = span;
  if (gfn_bits.raw() != 0) limit = std::min(limit, lowest_set_bit(gfn_bits.raw()));
  end_ = Gfn{std::min(end.raw(), limit)};
  table_at(root_level_) = root.spt();
  if (start >= end_) return;
  restart();
}

Gfn TdpIter::root_end(const MmuPage& root) {
  return Gfn{table_span(root.level())};
}

Spte TdpIter::read(Hpa sptep) const {
  const Spte s{mem_->load(sptep, kHostKey, std::memory_order_acquire)};
  if (s.raw() == kFreedTablePoison && freed_reads_ != nullptr) [[unlikely]] {
    freed_reads_->record(sptep);
  }
  return s;
}

void TdpIter::refresh_sptep() {
  const Gfn walked{gfn_.raw() | gfn_bits_.raw()};
  sptep_ = table_at(level_) + uint64_t{walked.index(level_)} * sizeof(uint64_t);
  old_spte_ = read(sptep_);
}

void TdpIter::restart() {
  yielded_ = false;
  yielded_gfn_ = next_last_level_gfn_;
  level_ = root_level_;
  gfn_ = next_last_level_gfn_.align_down(level_);
  refresh_sptep();
  valid_ = true;
}

bool TdpIter::try_step_down() {
  if (level_ == min_level_) return false;
  // The value read at the visit may be stale: descending through it could enter a table
  // that another thread has since unlinked (and queued for freeing).
  old_spte_ = read(sptep_);
  if (!old_spte_.is_shadow_present() || old_spte_.is_last(level_)) return false;
  const Hpa child = old_spte_.child_table();
  TDXSIM_CHECK(mem_->contains(child), "SPTE {:#x} at {} links a table outside memory",
               old_spte_.raw(), sptep_);
  level_ = level_down(level_);
  table_at(level_) = child;
  // The child entry that covers where the walk is, not its first one: a walk that starts
  // (or restarts) mid-table must not revisit what lies before.
  gfn_ = next_last_level_gfn_.align_down(level_);
  refresh_sptep();
  return true;
}

bool TdpIter::try_step_side() {
  const Gfn walked{gfn_.raw() | gfn_bits_.raw()};
  if (walked.index(level_) == kPtesPerTable - 1) return false;
  gfn_ += level_pages(level_);
  next_last_level_gfn_ = gfn_;
  sptep_ += sizeof(uint64_t);
  old_spte_ = read(sptep_);
  return true;
}

bool TdpIter::try_step_up() {
  if (level_ == root_level_) return false;
  level_ = level_up(level_);
  gfn_ = gfn_.align_down(level_);
  // No read: the parent entry was visited already, the walk only moves past it.
  const Gfn walked{gfn_.raw() | gfn_bits_.raw()};
  sptep_ = table_at(level_) + uint64_t{walked.index(level_)} * sizeof(uint64_t);
  return true;
}

void TdpIter::next() {
  TDXSIM_CHECK(valid_, "next() on a finished walk");
  if (yielded_) {
    restart();
    return;
  }
  if (try_step_down()) return;
  do {
    if (try_step_side()) {
      // Only a sideways step moves past the range; stepping down stays inside the entry.
      if (gfn_ >= end_) valid_ = false;
      return;
    }
  } while (try_step_up());
  valid_ = false;
}

Spte TdpIter::reread() {
  TDXSIM_CHECK(valid_, "reread() on a finished walk");
  old_spte_ = read(sptep_);
  return old_spte_;
}

}  // namespace tdxsim
