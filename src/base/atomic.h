// Atomic words: the one way any thread in tdxsim shares a 64-bit value with another.
//
// Every cross-thread interaction of the project goes through base/ so that a deterministic
// scheduler (sched.h) takes them all over; these wrappers are the choke point for plain
// words (page-table entries, flags): every operation is a scheduling point. Statistics
// counters are not (they order nothing). Every operation names its memory order:
// there is no default, so a reader always sees what a load is meant to synchronise with.
#pragma once

#include <atomic>
#include <cstdint>

#include "base/sched_point.h"

namespace tdxsim {

// An atomic 64-bit word that owns its storage. The operations are forced inline: with the
// order a constant at the call, each is the one instruction it names, where GCC otherwise
// calls a function that switches on the order (the memory model's hot paths are made of them).
class AtomicWord {
 public:
  constexpr AtomicWord() = default;
  constexpr explicit AtomicWord(uint64_t v) : v_(v) {}
  AtomicWord(const AtomicWord&) = delete;
  AtomicWord& operator=(const AtomicWord&) = delete;

  // The scheduling point of a primitive built on this word (a lock's acquire or release).
  [[gnu::always_inline]] static void point(SchedPoint p) { sched_point(p); }

  [[gnu::always_inline]] uint64_t load(std::memory_order o) const {
    sched_point(SchedPoint::kAtomic);
    return v_.load(o);
  }
  [[gnu::always_inline]] void store(uint64_t v, std::memory_order o) {
    sched_point(SchedPoint::kAtomic);
    v_.store(v, o);
  }
  [[gnu::always_inline]] uint64_t exchange(uint64_t v, std::memory_order o) {
    sched_point(SchedPoint::kAtomic);
    return v_.exchange(v, o);
  }
  // Returns: true if the word was `expected` and is now `desired`; otherwise false with
  // `expected` updated to the current value.
  [[gnu::always_inline]] bool compare_exchange(uint64_t& expected, uint64_t desired,
                                               std::memory_order o) {
    sched_point(SchedPoint::kAtomic);
    return v_.compare_exchange_strong(expected, desired, o, failure_order(o));
  }
  [[gnu::always_inline]] uint64_t fetch_add(uint64_t v, std::memory_order o) {
    sched_point(SchedPoint::kAtomic);
    return v_.fetch_add(v, o);
  }
  [[gnu::always_inline]] uint64_t fetch_sub(uint64_t v, std::memory_order o) {
    sched_point(SchedPoint::kAtomic);
    return v_.fetch_sub(v, o);
  }
  [[gnu::always_inline]] uint64_t fetch_or(uint64_t v, std::memory_order o) {
    sched_point(SchedPoint::kAtomic);
    return v_.fetch_or(v, o);
  }
  [[gnu::always_inline]] uint64_t fetch_and(uint64_t v, std::memory_order o) {
    sched_point(SchedPoint::kAtomic);
    return v_.fetch_and(v, o);
  }
  // Blocks while the word still holds `old` (std::atomic::wait: spurious wake-ups are
  // possible, so callers re-check); notify_all wakes every waiter. Under a deterministic
  // scheduler it polls, pausing, instead.
  void wait(uint64_t old, std::memory_order o) const {
    if (!sched_active()) {
      v_.wait(old, o);
      return;
    }
    while (v_.load(o) == old) sched_pause(SchedPoint::kWait);
  }
  void notify_all() { v_.notify_all(); }

  static constexpr std::memory_order failure_order(std::memory_order o) {
    return o == std::memory_order_acq_rel   ? std::memory_order_acquire
           : o == std::memory_order_release ? std::memory_order_relaxed
                                            : o;
  }

 private:
  std::atomic<uint64_t> v_{0};
};

// Atomic access to a 64-bit word that lives elsewhere (a frame's contents, a metadata
// array obtained from mmap): std::atomic_ref with the same explicit-order interface.
class AtomicWordRef {
 public:
  explicit AtomicWordRef(uint64_t& w) : r_(w) {}

  [[gnu::always_inline]] static void point(SchedPoint p) { sched_point(p); }

  [[gnu::always_inline]] uint64_t load(std::memory_order o) const {
    sched_point(SchedPoint::kAtomic);
    return r_.load(o);
  }
  [[gnu::always_inline]] void store(uint64_t v, std::memory_order o) const {
    sched_point(SchedPoint::kAtomic);
    r_.store(v, o);
  }
  [[gnu::always_inline]] uint64_t exchange(uint64_t v, std::memory_order o) const {
    sched_point(SchedPoint::kAtomic);
    return r_.exchange(v, o);
  }
  [[gnu::always_inline]] bool compare_exchange(uint64_t& expected, uint64_t desired,
                                               std::memory_order o) const {
    sched_point(SchedPoint::kAtomic);
    return r_.compare_exchange_strong(expected, desired, o, AtomicWord::failure_order(o));
  }
  [[gnu::always_inline]] uint64_t fetch_add(uint64_t v, std::memory_order o) const {
    sched_point(SchedPoint::kAtomic);
    return r_.fetch_add(v, o);
  }
  [[gnu::always_inline]] uint64_t fetch_sub(uint64_t v, std::memory_order o) const {
    sched_point(SchedPoint::kAtomic);
    return r_.fetch_sub(v, o);
  }
  [[gnu::always_inline]] uint64_t fetch_or(uint64_t v, std::memory_order o) const {
    sched_point(SchedPoint::kAtomic);
    return r_.fetch_or(v, o);
  }
  [[gnu::always_inline]] uint64_t fetch_and(uint64_t v, std::memory_order o) const {
    sched_point(SchedPoint::kAtomic);
    return r_.fetch_and(v, o);
  }

 private:
  std::atomic_ref<uint64_t> r_;
};

// AtomicWordRef's operations without their scheduling points, for a hot path that tested
// !sched_active() once and then passes several words (where every point would be a no-op
// whose slow-path call still costs the fast path its register saves). Under a scheduler the
// same path must use AtomicWordRef, so that every point is taken as before.
class FreeRunningWordRef {
 public:
  explicit FreeRunningWordRef(uint64_t& w) : r_(w) {}

  [[gnu::always_inline]] static void point(SchedPoint) {}
  [[gnu::always_inline]] uint64_t load(std::memory_order o) const { return r_.load(o); }
  [[gnu::always_inline]] void store(uint64_t v, std::memory_order o) const { r_.store(v, o); }
  [[gnu::always_inline]] bool compare_exchange(uint64_t& expected, uint64_t desired,
                                               std::memory_order o) const {
    return r_.compare_exchange_strong(expected, desired, o, AtomicWord::failure_order(o));
  }
  [[gnu::always_inline]] uint64_t fetch_add(uint64_t v, std::memory_order o) const {
    return r_.fetch_add(v, o);
  }
  [[gnu::always_inline]] uint64_t fetch_sub(uint64_t v, std::memory_order o) const {
    return r_.fetch_sub(v, o);
  }
  [[gnu::always_inline]] uint64_t fetch_or(uint64_t v, std::memory_order o) const {
    return r_.fetch_or(v, o);
  }
  [[gnu::always_inline]] uint64_t fetch_and(uint64_t v, std::memory_order o) const {
    return r_.fetch_and(v, o);
  }

 private:
  std::atomic_ref<uint64_t> r_;
};

// A statistics counter: many writers, readers that only want a total. Relaxed on purpose:
// a counter never orders other memory.
class Counter {
 public:
  void add(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }
  void reset() { v_.store(0, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};  // not an AtomicWord: a count is no scheduling point
};

// A statistics counter written by one thread at a time — a logical CPU's own counters,
// written by the thread bound to it (or, while it is idle, by the one running its
// interrupts; the CPU's mailbox lock orders the hand-off) — and read by anyone. A load and a
// store instead of a locked add: the guest's hot path counts every instruction.
class OwnerCounter {
 public:
  void add(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }
  void reset() { v_.store(0, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

}  // namespace tdxsim
