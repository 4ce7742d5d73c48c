// Blocking waits for kicks, IPIs and their acknowledgements.
//
// Notification is a one-shot event (a vCPU told to exit once). AckCounter is a monotonic
// sequence number that one side advances and others wait to reach (a kick generation, a TLB
// flush request acknowledged by every vCPU).
//
// Thread safety: every member may be called from any thread. Both classes are built on
// std::mutex + std::condition_variable, so the sanitizers see every edge: whatever a thread
// wrote before notify()/advance() is visible to a thread after its wait returns success
// (the mutex orders them). Under a deterministic scheduler a wait polls (sched.h). They
// deliberately carry no thread-safety annotations: the mutex is private and never held across a
// call into other code.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "base/check.h"
#include "base/sched.h"

namespace tdxsim {

// One-shot event: notify() once, any number of waiters see it forever after.
class Notification {
 public:
  Notification() = default;
  Notification(const Notification&) = delete;
  Notification& operator=(const Notification&) = delete;

  // REQUIRES: not yet notified (a second notify() is a logic error and aborts, as in
  // absl::Notification: one-shot means one signaller).
  void notify() {
    std::lock_guard<std::mutex> l(mu_);
    TDXSIM_CHECK(!notified_, "Notification::notify() called twice");
    notified_ = true;
    // Under the mutex: a waiter may destroy the Notification as soon as it sees the flag.
    cv_.notify_all();
  }

  bool has_been_notified() const {
    std::lock_guard<std::mutex> l(mu_);
    return notified_;
  }

  void wait() const {
    std::unique_lock<std::mutex> l(mu_);
    block_until(l, cv_, [this] { return notified_; });
  }

  // Returns: true if notified within `timeout` (or before the call); false on timeout.
  [[nodiscard]] bool wait_for(std::chrono::nanoseconds timeout) const {
    std::unique_lock<std::mutex> l(mu_);
    return block_until_for(l, cv_, timeout, [this] { return notified_; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool notified_ = false;
};

// A monotonically increasing 64-bit sequence number that starts at 0. Producers advance
// it; consumers wait until it reaches a value they computed (a request's ticket).
class AckCounter {
 public:
  AckCounter() = default;
  AckCounter(const AckCounter&) = delete;
  AckCounter& operator=(const AckCounter&) = delete;

  // Returns: the new value (the previous one plus 1).
  uint64_t advance() {
    std::lock_guard<std::mutex> l(mu_);
    ++value_;
    cv_.notify_all();
    return value_;
  }

  uint64_t current() const {
    std::lock_guard<std::mutex> l(mu_);
    return value_;
  }

  // Blocks until current() >= target.
  void wait_until(uint64_t target) const {
    std::unique_lock<std::mutex> l(mu_);
    block_until(l, cv_, [&] { return value_ >= target; });
  }

  // Returns: true if current() >= target within `timeout`; false on timeout.
  [[nodiscard]] bool wait_until_for(uint64_t target, std::chrono::nanoseconds timeout) const {
    std::unique_lock<std::mutex> l(mu_);
    return block_until_for(l, cv_, timeout, [&] { return value_ >= target; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  uint64_t value_ = 0;
};

}  // namespace tdxsim
