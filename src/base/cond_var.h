// CondVar: waiting for a condition guarded by a tdxsim::Mutex.
//
// The platform's CPU mailboxes (who runs on a CPU, its queued IPIs) wait on a condition
// under the CPU's own Mutex; going through base/ keeps that wait visible to the lock
// assertions (the mutex is released and re-taken through Mutex::unlock/lock, so the
// held-locks table stays true) and to the deterministic scheduler, under which a wait polls
// (sched.h).
//
// Thread safety: as std::condition_variable_any. wait() REQUIRES the mutex, releases it
// while blocked and holds it again on return.
#pragma once

#include <condition_variable>

#include "base/lock.h"
#include "base/sched_point.h"
#include "base/thread_annotations.h"

namespace tdxsim {

class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Blocks until `pred()` holds (checked with `mu` held).
  template <typename Pred>
  void wait(Mutex& mu, Pred pred) TDXSIM_REQUIRES(mu) {
    if (!sched_active()) {
      cv_.wait(mu, pred);
      return;
    }
    poll(mu, pred);
  }
  // Blocks until notified (or spuriously woken): callers re-check their condition.
  void wait(Mutex& mu) TDXSIM_REQUIRES(mu) {
    if (!sched_active()) {
      cv_.wait(mu);
      return;
    }
    pause(mu);
  }

  void notify_all() { cv_.notify_all(); }
  void notify_one() { cv_.notify_one(); }

 private:
  // The analysis cannot tie the caller's predicate (annotated with the caller's mutex) to
  // `mu`; wait()'s REQUIRES states what holds.
  template <typename Pred>
  static void poll(Mutex& mu, Pred& pred) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
    while (!pred()) pause(mu);
  }
  // Under a scheduler: lets the other threads run with `mu` free, as a wake-up would.
  static void pause(Mutex& mu) TDXSIM_REQUIRES(mu) {
    mu.unlock();
    sched_pause(SchedPoint::kWait);
    mu.lock();
  }

  std::condition_variable_any cv_;
};

}  // namespace tdxsim
