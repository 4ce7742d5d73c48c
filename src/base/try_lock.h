// TryLock: the TDX module's internal shared/exclusive lock with host priority.
//
// The TDX module never blocks and never spins waiting for a lock: a SEAMCALL (host) or
// TDCALL (guest) that finds a resource locked returns TDX_OPERAND_BUSY at once and the
// caller decides whether to retry (KVM retries a bounded number of times; a blind retry
// loop is bug T1). The module's sharex_hp_lock_t packs the whole lock into one word:
//
//     63                                   2    1           0
//    +--------------------------------------+-----------+-----------+
//    | shared counter                       | host prio | exclusive |
//    +--------------------------------------+-----------+-----------+
//
// Host priority keeps a guest from starving the host (TDX module, tdx_locks.h,
// acquire_sharex_lock_hp_{sh,ex}): when a HOST request fails, it sets the host-priority
// bit; while the bit is set GUEST requests fail with TDX_OPERAND_BUSY_HOST_PRIORITY even if
// the lock is free; the next successful HOST acquisition clears the bit. Releasing keeps
// the bit. This class reproduces the module's result for every case:
//   - exclusive, guest: free -> acquired; only host-prio set -> kBusyHostPriority;
//     locked (with or without host prio) -> kBusy.
//   - shared, guest: host prio set -> kBusyHostPriority; else exclusive held -> kBusy;
//     else acquired.
//   - exclusive or shared, host: acquired if compatible (clears host prio), else kBusy
//     and host prio set.
// Like the module, a shared attempt increments the counter first and looks afterwards; while
// the exclusive bit is set the counter is meaningless and releasing the exclusive lock
// clears it. (The module also decrements after a guest fails on host priority even when the
// exclusive bit was set, which can underflow the counter if the exclusive holder released in
// between; tdxsim leaves the counter alone in that case, with the same result code.)
//
// Storage. The algorithm is written once, over any word type with AtomicWord's interface:
//   TryLock     owns its word (a lock field of a module structure, e.g. the TDR's);
//   TryLockRef  works on a word that lives elsewhere, through AtomicWordRef — the PAMT keeps
//               one lock word per entry in a lazily-resident array of frame metadata, and
//               each access builds a short-lived TryLockRef over it.
//   FreeRunningTryLockRef  TryLockRef without scheduling points (FreeRunningWordRef), for
//               a walk that tested !sched_active() once (the PAMT's).
// All answer every request identically; any number of TryLockRefs over one word behave as
// one lock. A TryLockRef's word must stay mapped for the TryLockRef's lifetime.
//
// Promotion (PAMT walks only): try_promote_to_exclusive() turns the caller's shared hold
// into an exclusive one when it is the only reader (module promote_sharex_lock_hp). It has
// no guest form, as in the module: a guest never takes a PAMT entry exclusively.
//
// Thread safety: every member may be called from any thread; the lock word is one
// AtomicWord (or AtomicWordRef). A successful acquisition is an acquire operation and a
// release is a release operation, so data guarded by the lock is published from one holder
// to the next. Setting and clearing host priority is relaxed: the bit orders no other
// memory. The lock has no owner: any thread may release it (in the module, the logical CPU
// that took it does).
//
// Clang's analysis: try_acquire_*() return bool and are annotated TDXSIM_TRY_ACQUIRE, so
// `if (!l.try_acquire_exclusive(r, &why)) return busy(why);` proves the lock held below.
// The enum-returning try_lock_*() and try_promote_to_exclusive() are not annotated: clang
// follows a try-lock result only through a bool/int branch condition, never through an enum
// comparison, and has no notion of promotion. Use them where the analysis is not wanted
// (tests, unannotated code, lock sets chosen at run time such as a PAMT walk).
#pragma once

#include <cstdint>
#include <type_traits>

#include "base/atomic.h"
#include "base/check.h"
#include "base/thread_annotations.h"

namespace tdxsim {

// Who asks: the host VMM through a SEAMCALL, or the TD through a TDCALL.
enum class Requester : uint8_t { kHost, kGuest };

// kBusy: TDX_OPERAND_BUSY. kBusyHostPriority: TDX_OPERAND_BUSY_HOST_PRIORITY (guest only).
enum class TryLockResult : uint8_t { kAcquired, kBusy, kBusyHostPriority };

const char* to_string(Requester r);
const char* to_string(TryLockResult r);

template <typename Word>
class TDXSIM_CAPABILITY("tdx_lock") BasicTryLock {
 public:
  // A free lock (TryLock).
  BasicTryLock() requires std::is_default_constructible_v<Word> = default;
  // A lock over `word`, which holds a lock word (zero = free) and outlives this object
  // (TryLockRef).
  explicit BasicTryLock(uint64_t& word) requires std::is_constructible_v<Word, uint64_t&> &&
                                                 (!std::is_default_constructible_v<Word>)
      : word_(word) {}
  // The word's access type; its operations and points are the lock's.
  using word_type = Word;

  BasicTryLock(const BasicTryLock&) = delete;
  BasicTryLock& operator=(const BasicTryLock&) = delete;

  // Returns: kAcquired (the caller now holds the lock), kBusy, or kBusyHostPriority.
  [[nodiscard]] TryLockResult try_lock_exclusive(Requester r);
  [[nodiscard]] TryLockResult try_lock_shared(Requester r);

  // The same, as a bool clang's analysis can follow. Returns: true iff acquired; the
  // detailed result is stored in *result when result is not null.
  [[nodiscard]] bool try_acquire_exclusive(Requester r, TryLockResult* result = nullptr)
      TDXSIM_TRY_ACQUIRE(true);
  [[nodiscard]] bool try_acquire_shared(Requester r, TryLockResult* result = nullptr)
      TDXSIM_TRY_ACQUIRE_SHARED(true);

  // REQUIRES: the caller (a host request) holds the lock shared (checked as far as the word
  // shows: no reader at all, or an exclusive holder, aborts).
  // Returns: kAcquired: the caller's shared hold is now the exclusive hold (host priority
  // cleared); kBusy: other readers hold it too — the caller still holds it shared, and host
  // priority is set (or was, when the caller lost a race for a word showing it).
  // Release the promoted hold with unlock_exclusive().
  [[nodiscard]] TryLockResult try_promote_to_exclusive();

  // REQUIRES: the lock is held exclusively / shared (checked: a release of a lock not held
  // in that mode aborts, as the module's sanity check halts).
  void unlock_exclusive() TDXSIM_RELEASE();
  void unlock_shared() TDXSIM_RELEASE_SHARED();

  // Snapshots, for tests and diagnostics; stale as soon as they return.
  bool is_locked_exclusive() const;
  uint64_t shared_count() const;  // 0 while exclusively held (the counter is meaningless then)
  bool host_priority() const;

 private:
  static constexpr uint64_t kExclusive = uint64_t{1} << 0;
  static constexpr uint64_t kHostPriority = uint64_t{1} << 1;
  static constexpr unsigned kCounterShift = 2;
  static constexpr uint64_t kOneReader = uint64_t{1} << kCounterShift;

  Word word_;
};

// The algorithm lives in try_lock.cc, compiled once for each storage.
// Defined here, not in try_lock.cc: every TDX-module leaf takes several of these locks,
// and a call per acquire and release is a measurable part of a SEAMCALL's cost.
template <typename Word>
inline TryLockResult BasicTryLock<Word>::try_lock_exclusive(Requester r) {
  Word::point(SchedPoint::kLock);
  // One compare-exchange from "free", never a loop: contention is the caller's problem.
  uint64_t seen = 0;
  if (word_.compare_exchange(seen, kExclusive, std::memory_order_acquire)) {
    return TryLockResult::kAcquired;
  }
  if (seen == kHostPriority) {
    // Free, but a host request failed earlier and is owed the next turn.
    if (r == Requester::kGuest) return TryLockResult::kBusyHostPriority;
    // Taking it clears host priority; losing this race to another host is plain busy.
    return word_.compare_exchange(seen, kExclusive, std::memory_order_acquire)
               ? TryLockResult::kAcquired
               : TryLockResult::kBusy;
  }
  if (r == Requester::kHost) word_.fetch_or(kHostPriority, std::memory_order_relaxed);
  return TryLockResult::kBusy;
}

template <typename Word>
inline TryLockResult BasicTryLock<Word>::try_lock_shared(Requester r) {
  Word::point(SchedPoint::kLock);
  // Count ourselves in first, then look: no compare-exchange, so concurrent readers never
  // make each other busy.
  const uint64_t prev = word_.fetch_add(kOneReader, std::memory_order_acquire);
  if (prev & kExclusive) {
    // The counter is meaningless while the exclusive bit is set and the exclusive release
    // clears it, so our increment needs no undo (undoing it could underflow the counter if
    // the holder released in between).
    if (r == Requester::kHost) {
      word_.fetch_or(kHostPriority, std::memory_order_relaxed);
      return TryLockResult::kBusy;
    }
    return (prev & kHostPriority) ? TryLockResult::kBusyHostPriority : TryLockResult::kBusy;
  }
  TDXSIM_CHECK((prev >> kCounterShift) + 1 < (~uint64_t{0} >> kCounterShift),
               "TryLock shared counter overflow");
  if (prev & kHostPriority) {
    if (r == Requester::kGuest) {
      // Not exclusive, so the counter is real and ours to take back.
      word_.fetch_sub(kOneReader, std::memory_order_relaxed);
      return TryLockResult::kBusyHostPriority;
    }
    word_.fetch_and(~kHostPriority, std::memory_order_relaxed);
  }
  return TryLockResult::kAcquired;
}

template <typename Word>
inline bool BasicTryLock<Word>::try_acquire_exclusive(Requester r, TryLockResult* result) {
  const TryLockResult got = try_lock_exclusive(r);
  if (result != nullptr) *result = got;
  return got == TryLockResult::kAcquired;
}

template <typename Word>
inline bool BasicTryLock<Word>::try_acquire_shared(Requester r, TryLockResult* result) {
  const TryLockResult got = try_lock_shared(r);
  if (result != nullptr) *result = got;
  return got == TryLockResult::kAcquired;
}

template <typename Word>
inline TryLockResult BasicTryLock<Word>::try_promote_to_exclusive() {
  Word::point(SchedPoint::kLock);
  // Only a sole reader may promote; the exclusive value also drops the count and host
  // priority, exactly what a successful host acquisition does.
  uint64_t seen = kOneReader;
  if (word_.compare_exchange(seen, kExclusive, std::memory_order_acquire)) {
    return TryLockResult::kAcquired;
  }
  TDXSIM_CHECK(!(seen & kExclusive) && (seen >> kCounterShift) != 0,
               "TryLock::try_promote_to_exclusive() without a shared hold (word {:#x})", seen);
  if (seen == (kOneReader | kHostPriority)) {
    // Still the sole reader; a host that failed earlier is owed the lock, and we are a host.
    // Losing this race (a reader arrived) is plain busy, as in the module: no second OR.
    return word_.compare_exchange(seen, kExclusive, std::memory_order_acquire)
               ? TryLockResult::kAcquired
               : TryLockResult::kBusy;
  }
  word_.fetch_or(kHostPriority, std::memory_order_relaxed);
  return TryLockResult::kBusy;
}

template <typename Word>
inline void BasicTryLock<Word>::unlock_exclusive() {
  // Clears the exclusive bit and the junk counter together, and keeps host priority.
  const uint64_t prev = word_.fetch_and(kHostPriority, std::memory_order_release);
  TDXSIM_CHECK(prev & kExclusive, "TryLock::unlock_exclusive() of a lock not held exclusively "
               "(word {:#x})", prev);
  Word::point(SchedPoint::kUnlock);
}

template <typename Word>
inline void BasicTryLock<Word>::unlock_shared() {
  const uint64_t prev = word_.fetch_sub(kOneReader, std::memory_order_release);
  TDXSIM_CHECK(!(prev & kExclusive) && (prev >> kCounterShift) != 0,
               "TryLock::unlock_shared() of a lock not held shared (word {:#x})", prev);
  Word::point(SchedPoint::kUnlock);
}

template <typename Word>
inline bool BasicTryLock<Word>::is_locked_exclusive() const {
  return word_.load(std::memory_order_relaxed) & kExclusive;
}

template <typename Word>
inline uint64_t BasicTryLock<Word>::shared_count() const {
  const uint64_t w = word_.load(std::memory_order_relaxed);
  return (w & kExclusive) ? 0 : w >> kCounterShift;
}

template <typename Word>
inline bool BasicTryLock<Word>::host_priority() const {
  return word_.load(std::memory_order_relaxed) & kHostPriority;
}


using TryLock = BasicTryLock<AtomicWord>;
using TryLockRef = BasicTryLock<AtomicWordRef>;
// TryLockRef without scheduling points: see FreeRunningWordRef.
using FreeRunningTryLockRef = BasicTryLock<FreeRunningWordRef>;

}  // namespace tdxsim
