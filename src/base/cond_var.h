// CondVar: waiting for a condition guarded by a tdxsim::Mutex.
//
// The platform's CPU mailboxes (who runs on a CPU, its queued IPIs) wait on a condition
// under the CPU's own Mutex; going through base/ keeps that wait visible to the lock
// assertions (the mutex is released and re-taken through Mutex::unlock/lock, so the
// held-locks table stays true) and to a future deterministic scheduler.
//
// Thread safety: as std::condition_variable_any. wait() REQUIRES the mutex, releases it
// while blocked and holds it again on return.
#pragma once

#include <condition_variable>

#include "base/lock.h"
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
    cv_.wait(mu, pred);
  }
  // Blocks until notified (or spuriously woken): callers re-check their condition.
  void wait(Mutex& mu) TDXSIM_REQUIRES(mu) { cv_.wait(mu); }

  void notify_all() { cv_.notify_all(); }
  void notify_one() { cv_.notify_one(); }

 private:
  std::condition_variable_any cv_;
};

}  // namespace tdxsim
