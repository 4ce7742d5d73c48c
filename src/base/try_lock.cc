#include "base/try_lock.h"

#include "base/check.h"

namespace tdxsim {

const char* to_string(Requester r) {
  switch (r) {
    case Requester::kHost: return "host";
    case Requester::kGuest: return "guest";
  }
  return "?";
}

const char* to_string(TryLockResult r) {
  switch (r) {
    case TryLockResult::kAcquired: return "acquired";
    case TryLockResult::kBusy: return "busy";
    case TryLockResult::kBusyHostPriority: return "busy (host priority)";
  }
  return "?";
}

template <typename Word>
TryLockResult BasicTryLock<Word>::try_lock_exclusive(Requester r) {
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
TryLockResult BasicTryLock<Word>::try_lock_shared(Requester r) {
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
bool BasicTryLock<Word>::try_acquire_exclusive(Requester r, TryLockResult* result) {
  const TryLockResult got = try_lock_exclusive(r);
  if (result != nullptr) *result = got;
  return got == TryLockResult::kAcquired;
}

template <typename Word>
bool BasicTryLock<Word>::try_acquire_shared(Requester r, TryLockResult* result) {
  const TryLockResult got = try_lock_shared(r);
  if (result != nullptr) *result = got;
  return got == TryLockResult::kAcquired;
}

template <typename Word>
TryLockResult BasicTryLock<Word>::try_promote_to_exclusive() {
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
void BasicTryLock<Word>::unlock_exclusive() {
  // Clears the exclusive bit and the junk counter together, and keeps host priority.
  const uint64_t prev = word_.fetch_and(kHostPriority, std::memory_order_release);
  TDXSIM_CHECK(prev & kExclusive, "TryLock::unlock_exclusive() of a lock not held exclusively "
               "(word {:#x})", prev);
}

template <typename Word>
void BasicTryLock<Word>::unlock_shared() {
  const uint64_t prev = word_.fetch_sub(kOneReader, std::memory_order_release);
  TDXSIM_CHECK(!(prev & kExclusive) && (prev >> kCounterShift) != 0,
               "TryLock::unlock_shared() of a lock not held shared (word {:#x})", prev);
}

template <typename Word>
bool BasicTryLock<Word>::is_locked_exclusive() const {
  return word_.load(std::memory_order_relaxed) & kExclusive;
}

template <typename Word>
uint64_t BasicTryLock<Word>::shared_count() const {
  const uint64_t w = word_.load(std::memory_order_relaxed);
  return (w & kExclusive) ? 0 : w >> kCounterShift;
}

template <typename Word>
bool BasicTryLock<Word>::host_priority() const {
  return word_.load(std::memory_order_relaxed) & kHostPriority;
}

template class BasicTryLock<AtomicWord>;
template class BasicTryLock<AtomicWordRef>;

}  // namespace tdxsim
