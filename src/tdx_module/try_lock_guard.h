// TryLockGuard: holds a module TryLock (KOT, op_state, CACHE.WB, SYS locks) in one mode
// until destroyed, after a try_lock that succeeded. The module's lock sets are chosen at
// run time (shared or exclusive per leaf), which clang's analysis cannot follow, so the
// guard is not annotated (as PamtLock is not).
//
// Thread safety: a guard belongs to the SEAMCALL that took the lock.
#pragma once

#include <utility>

#include "base/thread_annotations.h"
#include "base/try_lock.h"

namespace tdxsim {

class TryLockGuard {
 public:
  TryLockGuard() = default;
  TryLockGuard(TryLockGuard&& o) noexcept
      : lock_(std::exchange(o.lock_, nullptr)), exclusive_(o.exclusive_) {}
  TryLockGuard& operator=(TryLockGuard&&) = delete;
  TryLockGuard(const TryLockGuard&) = delete;
  ~TryLockGuard() { release(); }

  // Returns: true and holds `lock` (host request) in the asked mode, or false holding
  // nothing (the lock was busy).
  // REQUIRES: this guard holds nothing.
  [[nodiscard]] bool try_lock(TryLock& lock, bool exclusive) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
    const TryLockResult r = exclusive ? lock.try_lock_exclusive(Requester::kHost)
                                      : lock.try_lock_shared(Requester::kHost);
    if (r != TryLockResult::kAcquired) return false;
    lock_ = &lock;
    exclusive_ = exclusive;
    return true;
  }
  bool held() const { return lock_ != nullptr; }

  void release() TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
    if (lock_ == nullptr) return;
    if (exclusive_) {
      lock_->unlock_exclusive();
    } else {
      lock_->unlock_shared();
    }
    lock_ = nullptr;
  }

 private:
  TryLock* lock_ = nullptr;
  bool exclusive_ = false;
};

}  // namespace tdxsim
