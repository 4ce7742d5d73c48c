#include "tdx_module/pamt.h"

#include <utility>

#include "base/check.h"

namespace tdxsim {
namespace {

// Word 1 of an entry.
using MetaType = BitField<7, 0>;
using MetaOwner = BitField<47, 8>;

constexpr size_t level_index(Level l) { return level_num(l) - 1; }
// Entries one level down that a large entry covers.
constexpr uint64_t kEntriesPerLevel = uint64_t{1} << kLevelBits;

uint64_t entries_for(uint64_t frames, Level l) {
  const uint64_t per = level_pages(l);
  return (frames + per - 1) / per;
}

template <typename Word = AtomicWordRef>
PamtPageType type_in(uint64_t* entry) {
  return static_cast<PamtPageType>(MetaType::get(Word(entry[1]).load(std::memory_order_relaxed)));
}

}  // namespace

const char* to_string(PamtPageType t) {
  switch (t) {
    case PamtPageType::kNda: return "PT_NDA";
    case PamtPageType::kRsvd: return "PT_RSVD";
    case PamtPageType::kReg: return "PT_REG";
    case PamtPageType::kTdr: return "PT_TDR";
    case PamtPageType::kTdcx: return "PT_TDCX";
    case PamtPageType::kTdvpr: return "PT_TDVPR";
    case PamtPageType::kEpt: return "PT_EPT";
  }
  return "?";
}

// --- PamtLock -----------------------------------------------------------------------------

PamtLock& PamtLock::operator=(PamtLock&& o) noexcept {
  if (this != &o) {
    unlock();
    pamt_ = std::exchange(o.pamt_, nullptr);
    leaf_ = o.leaf_;
    pfn_ = o.pfn_;
    level_ = o.level_;
    exclusive_ = o.exclusive_;
  }
  return *this;
}

void PamtLock::unlock() {
  if (pamt_ == nullptr) return;
  // Leaf first, then up the path, as the module's pamt_unwalk does.
  pamt_->unwalk(leaf_, exclusive_, pfn_, level_);
  pamt_ = nullptr;
}

PamtPageType PamtLock::type() const {
  TDXSIM_CHECK(held(), "PamtLock::type() after unlock");
  return type_in(leaf_);
}

Pfn PamtLock::owner() const {
  TDXSIM_CHECK(held(), "PamtLock::owner() after unlock");
  AtomicWordRef meta(leaf_[1]);
  return Pfn{MetaOwner::get(meta.load(std::memory_order_relaxed))};
}

uint64_t PamtLock::bepoch() const {
  TDXSIM_CHECK(held(), "PamtLock::bepoch() after unlock");
  return AtomicWordRef(leaf_[2]).load(std::memory_order_relaxed);
}

void PamtLock::set_type(PamtPageType t) {
  TDXSIM_CHECK(held() && exclusive_, "PAMT entry {} written without its exclusive lock", pfn_);
  AtomicWordRef meta(leaf_[1]);
  const uint64_t old = meta.load(std::memory_order_relaxed);
  meta.store(MetaType::set(old, static_cast<uint64_t>(t)), std::memory_order_relaxed);
  pamt_->note_typed(leaf_, level_);
}

void PamtLock::set_owner(Pfn tdr) {
  TDXSIM_CHECK(held() && exclusive_, "PAMT entry {} written without its exclusive lock", pfn_);
  TDXSIM_CHECK(tdr.raw() <= MetaOwner::kMax, "owner {} beyond 40 bits", tdr);
  AtomicWordRef meta(leaf_[1]);
  meta.store(MetaOwner::set(meta.load(std::memory_order_relaxed), tdr.raw()),
             std::memory_order_relaxed);
}

void PamtLock::set_bepoch(uint64_t bepoch) {
  TDXSIM_CHECK(held() && exclusive_, "PAMT entry {} written without its exclusive lock", pfn_);
  AtomicWordRef(leaf_[2]).store(bepoch, std::memory_order_relaxed);
}

void PamtLock::assign(PamtPageType t, Pfn owner, uint64_t bepoch) {
  TDXSIM_CHECK(held() && exclusive_, "PAMT entry {} written without its exclusive lock", pfn_);
  TDXSIM_CHECK(owner.raw() <= MetaOwner::kMax, "owner {} beyond 40 bits", owner);
  AtomicWordRef meta(leaf_[1]);
  const uint64_t old = meta.load(std::memory_order_relaxed);
  meta.store(MetaOwner::set(MetaType::set(old, static_cast<uint64_t>(t)), owner.raw()),
             std::memory_order_relaxed);
  AtomicWordRef(leaf_[2]).store(bepoch, std::memory_order_relaxed);
  pamt_->note_typed(leaf_, level_);
}

// --- Pamt ---------------------------------------------------------------------------------

Pamt::Pamt(uint64_t frames)
    : frames_(frames),
      words_4k_(entries_for(frames, Level::k4K) * kWordsPerEntry),
      words_2m_(entries_for(frames, Level::k2M) * kWordsPerEntry),
      words_1g_(entries_for(frames, Level::k1G) * kWordsPerEntry),
      base_{words_4k_.data(), words_2m_.data(), words_1g_.data()} {}

LazyWords& Pamt::words(Level level) {
  switch (level) {
    case Level::k4K: return words_4k_;
    case Level::k2M: return words_2m_;
    case Level::k1G: return words_1g_;
    default: break;
  }
  TDXSIM_CHECK(false, "no PAMT level {}", level_name(level));
  return words_4k_;
}

const LazyWords& Pamt::words(Level level) const { return const_cast<Pamt*>(this)->words(level); }


void Pamt::note_typed(uint64_t* e, Level level) {
  LazyWords& w = words(level);
  w.note_touched(static_cast<uint64_t>(e - w.data()) + 1);
}

// The walk chooses its locks at run time: clang cannot name them, so releasing them is
// outside its analysis.
template <typename LockRef>
void Pamt::release_as(uint64_t* lock_word, bool exclusive) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  LockRef lock(*lock_word);
  if (exclusive) {
    lock.unlock_exclusive();
  } else {
    lock.unlock_shared();
  }
}

template <typename LockRef>
void Pamt::release_above_as(Pfn pfn, Level level) {
  for (Level l = level; l != Level::k1G;) {
    l = level_up(l);
    release_as<LockRef>(entry(pfn, l), false);
  }
}

void Pamt::unwalk(uint64_t* leaf, bool exclusive, Pfn pfn, Level level) {
  if (sched_active()) [[unlikely]] {
    release_as<TryLockRef>(leaf, exclusive);
    release_above_as<TryLockRef>(pfn, level);
  } else {
    release_as<FreeRunningTryLockRef>(leaf, exclusive);
    release_above_as<FreeRunningTryLockRef>(pfn, level);
  }
}

void Pamt::release_above(Pfn pfn, Level level) {
  if (sched_active()) [[unlikely]] {
    release_above_as<TryLockRef>(pfn, level);
  } else {
    release_above_as<FreeRunningTryLockRef>(pfn, level);
  }
}

std::expected<PamtLock, TryLockResult> Pamt::lock(Pfn pfn, Level target, Requester r,
                                                   bool exclusive) {
  TDXSIM_CHECK(pfn.raw() < frames_, "PAMT lock of {} beyond {} frames", pfn, frames_);
  TDXSIM_CHECK(target <= Level::k1G, "no PAMT level {}", level_name(target));
  TDXSIM_CHECK(r == Requester::kHost || !exclusive, "a guest request locks a PAMT entry "
               "exclusively");
  if (sched_active()) [[unlikely]]
    return walk_and_lock<TryLockRef>(pfn, target, r, exclusive);
  return walk_and_lock<FreeRunningTryLockRef>(pfn, target, r, exclusive);
}

template <typename LockRef>
std::expected<PamtLock, TryLockResult> Pamt::walk_and_lock(Pfn pfn, Level target, Requester r,
                                                           bool exclusive) {
  // Until the leaf is settled everything held is shared: a failure releases what is above.
  for (Level l = Level::k1G;; l = level_down(l)) {
    uint64_t* e = entry(pfn, l);
    LockRef lock(e[0]);
    if (l == Level::k4K) {
      // The smallest entry is always the leaf: lock it in the requested mode directly.
      const TryLockResult got = exclusive ? lock.try_lock_exclusive(r) : lock.try_lock_shared(r);
      if (got != TryLockResult::kAcquired) [[unlikely]]
        return walk_failed(pfn, l, got);
      return PamtLock(this, e, pfn, l, exclusive);
    }
    const TryLockResult got = lock.try_lock_shared(r);
    if (got != TryLockResult::kAcquired) [[unlikely]]
      return walk_failed(pfn, l, got);
    // A larger entry is the leaf if it is the target or already assigned as a page.
    if (l == target || type_in<typename LockRef::word_type>(e) != PamtPageType::kNda) {
      if (exclusive && lock.try_promote_to_exclusive() != TryLockResult::kAcquired) {
        release_as<LockRef>(e, false);
        return walk_failed(pfn, l, TryLockResult::kBusy);
      }
      return PamtLock(this, e, pfn.align_down(l), l, exclusive);
    }
  }
}

std::unexpected<TryLockResult> Pamt::walk_failed(Pfn pfn, Level level, TryLockResult why) {
  release_above(pfn, level);
  return std::unexpected(why);
}

std::expected<PamtLock, uint64_t> Pamt::check_hpa_operand(Hpa hpa, Level size,
                                                          PamtPageType expected, TdxOperand op,
                                                          Requester r, bool exclusive,
                                                          const PhysAddrLayout& layout) {
  // 1. The operand's format (module hpa_check_with_pwr_2_alignment): no HKID bits, below
  // MAX_PA — every bit above the frame mask clear —, then the alignment (lock_hpa_operand).
  if ((hpa.raw() & ~layout.frame_mask()) != 0) {
    return std::unexpected(with_operand(TdxStatus::kOperandInvalid, op));
  }
  return lock_hpa_operand(hpa, size, expected, op, r, exclusive);
}

std::expected<PamtLock, uint64_t> Pamt::lock_hpa_operand(Hpa hpa, Level size, PamtPageType expected,
                                                         TdxOperand op, Requester r,
                                                         bool exclusive) {
  TDXSIM_CHECK(size <= Level::k1G, "no PAMT level {}", level_name(size));
  TDXSIM_CHECK(size != Level::k1G || expected != PamtPageType::kNda,
               "no leaf takes a free 1G page");
  if (!hpa.is_aligned(size)) return std::unexpected(with_operand(TdxStatus::kOperandInvalid, op));
  // 2. Covered by a TDMR (pamt_get_block). tdxsim's TDMR need not be a multiple of 1G, so
  // the whole page must fit, not just its first byte.
  const uint64_t first = hpa.pfn().raw();
  if (first >= frames_ || frames_ - first < level_pages(size)) {
    return std::unexpected(with_operand(TdxStatus::kOperandAddrRangeError, op));
  }
  // 3. Walk and lock.
  std::expected<PamtLock, TryLockResult> locked = lock(hpa.pfn(), size, r, exclusive);
  if (!locked) {
    return std::unexpected(with_operand(locked.error() == TryLockResult::kBusyHostPriority
                                            ? TdxStatus::kOperandBusyHostPriority
                                            : TdxStatus::kOperandBusy,
                                        op));
  }
  // 4. Metadata (non_shared_hpa_metadata_check_and_lock, check_and_lock_free_range_hpa).
  // Returning the error destroys `locked`, which releases the walk.
  if (locked->level() != size || locked->type() != expected ||
      (size == Level::k2M && expected == PamtPageType::kNda && !is_2m_range_free(hpa.pfn()))) {
    return std::unexpected(with_operand(TdxStatus::kPageMetadataIncorrect, op));
  }
  return std::move(*locked);
}

void Pamt::demote(PamtLock& page) {
  TDXSIM_CHECK(page.held() && page.exclusive_ && page.pamt_ == this,
               "PAMT demote of {} without its exclusive lock", page.pfn_);
  const Level level = page.level_;
  TDXSIM_CHECK(level == Level::k2M || level == Level::k1G, "PAMT demote of a {} page",
               level_name(level));
  const PamtPageType type = page.type();
  TDXSIM_CHECK(type != PamtPageType::kNda, "PAMT demote of a free page {}", page.pfn_);
  const Pfn owner = page.owner();
  const Level child = level_down(level);
  for (uint64_t i = 0; i < kEntriesPerLevel; ++i) {
    uint64_t* e = entry(page.pfn_ + i * level_pages(child), child);
    AtomicWordRef meta(e[1]);
    const PamtPageType old = type_in(e);
    TDXSIM_CHECK(old == PamtPageType::kNda, "PAMT entry under a {} page is {}", to_string(type),
                 to_string(old));
    meta.store(MetaOwner::set(MetaType::set(meta.load(std::memory_order_relaxed),
                                            static_cast<uint64_t>(type)),
                              owner.raw()),
               std::memory_order_relaxed);
    AtomicWordRef(e[2]).store(0, std::memory_order_relaxed);
    note_typed(e, child);
  }
  page.set_type(PamtPageType::kNda);
}

void Pamt::promote(PamtLock& range) {
  TDXSIM_CHECK(range.held() && range.exclusive_ && range.pamt_ == this,
               "PAMT promote of {} without its exclusive lock", range.pfn_);
  const Level level = range.level_;
  TDXSIM_CHECK(level == Level::k2M || level == Level::k1G, "PAMT promote to a {} page",
               level_name(level));
  TDXSIM_CHECK(range.type() == PamtPageType::kNda, "PAMT promote over an assigned {} page",
               to_string(range.type()));
  const Level child = level_down(level);
  uint64_t* first = entry(range.pfn_, child);
  const PamtPageType type = type_in(first);
  const uint64_t owner = MetaOwner::get(AtomicWordRef(first[1]).load(std::memory_order_relaxed));
  TDXSIM_CHECK(type != PamtPageType::kNda, "PAMT promote of free pages at {}", range.pfn_);
  for (uint64_t i = 0; i < kEntriesPerLevel; ++i) {
    uint64_t* e = entry(range.pfn_ + i * level_pages(child), child);
    AtomicWordRef meta(e[1]);
    const uint64_t m = meta.load(std::memory_order_relaxed);
    TDXSIM_CHECK(type_in(e) == type && MetaOwner::get(m) == owner,
                 "PAMT promote at {}: child {} is {} of {:#x}, child 0 {} of {:#x}", range.pfn_, i,
                 to_string(type_in(e)), MetaOwner::get(m), to_string(type), owner);
    meta.store(MetaType::set(m, static_cast<uint64_t>(PamtPageType::kNda)),
               std::memory_order_relaxed);
    note_typed(e, child);
  }
  range.assign(type, Pfn{owner}, /*bepoch=*/0);
}

bool Pamt::is_2m_range_free(Pfn pfn) const {
  TDXSIM_CHECK(pfn.is_aligned(Level::k2M) && pfn.raw() < frames_ &&
                   frames_ - pfn.raw() >= level_pages(Level::k2M),
               "{} is not a 2M page inside {} frames", pfn, frames_);
  if (type_in(entry(pfn, Level::k2M)) != PamtPageType::kNda) return false;
  for (uint64_t i = 0; i < level_pages(Level::k2M); ++i) {
    if (type_in(entry(pfn + i, Level::k4K)) != PamtPageType::kNda) return false;
  }
  return true;
}

PamtPageType Pamt::peek_type(Pfn pfn, Level level) const {
  TDXSIM_CHECK(pfn.raw() < frames_, "{} beyond {} frames", pfn, frames_);
  return type_in(entry(pfn, level));
}

uint64_t Pamt::count(PamtPageType t, Level level) const {
  TDXSIM_CHECK(t != PamtPageType::kNda, "PT_NDA entries are not counted");
  const LazyWords& w = words(level);
  uint64_t n = 0;
  for (uint64_t meta = 1; meta < w.size(); meta += kWordsPerEntry) {
    if (w.is_touched(meta) && type_in(w.data() + meta - 1) == t) ++n;
  }
  return n;
}

uint64_t Pamt::count_owned(PamtPageType t, Level level, Pfn owner) const {
  TDXSIM_CHECK(t != PamtPageType::kNda, "PT_NDA entries are not counted");
  const LazyWords& w = words(level);
  uint64_t n = 0;
  for (uint64_t meta = 1; meta < w.size(); meta += kWordsPerEntry) {
    if (!w.is_touched(meta) || type_in(w.data() + meta - 1) != t) continue;
    const uint64_t m = AtomicWordRef(w.data()[meta]).load(std::memory_order_relaxed);
    if (MetaOwner::get(m) == owner.raw()) ++n;
  }
  return n;
}

std::map<uint64_t, Pamt::OwnedEntries> Pamt::count_by_owner() const {
  std::map<uint64_t, OwnedEntries> out;
  for (const Level level : {Level::k4K, Level::k2M, Level::k1G}) {
    const LazyWords& w = words(level);
    for (uint64_t meta = 1; meta < w.size(); meta += kWordsPerEntry) {
      if (!w.is_touched(meta)) continue;
      const uint64_t m = AtomicWordRef(w.data()[meta]).load(std::memory_order_relaxed);
      const auto t = static_cast<PamtPageType>(MetaType::get(m));
      if (t == PamtPageType::kNda) continue;
      OwnedEntries& e = out[MetaOwner::get(m)];
      ++e.by_type[static_cast<uint8_t>(t) % e.by_type.size()][level_index(level)];
    }
  }
  return out;
}

uint64_t Pamt::count(PamtPageType t) const {
  return count(t, Level::k4K) + count(t, Level::k2M) + count(t, Level::k1G);
}

void Pamt::mark_reserved(Pfn first, uint64_t n) {
  TDXSIM_CHECK(first.raw() <= frames_ && frames_ - first.raw() >= n,
               "reserved range {} + {} beyond {} frames", first, n, frames_);
  for (uint64_t i = 0; i < n; ++i) {
    AtomicWordRef meta(entry(first + i, Level::k4K)[1]);
    const uint64_t old = meta.load(std::memory_order_relaxed);
    meta.store(MetaType::set(old, static_cast<uint64_t>(PamtPageType::kRsvd)),
               std::memory_order_relaxed);
    note_typed(entry(first + i, Level::k4K), Level::k4K);
  }
}

}  // namespace tdxsim
