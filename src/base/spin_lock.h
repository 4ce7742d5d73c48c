// SpinLock: a lock for the platform's critical sections of a few dozen instructions that are
// almost never contended. A logical CPU's TLB is the case it was made for: its own thread
// takes the lock on every guest access, another thread only for Hyper-V's flush-every-TLB
// hypercalls.
//
// Why not Mutex: Mutex is KVM's lock (base/lock.h), with lockdep's bookkeeping — the
// held-locks table, the recursion and release checks — over std::mutex: two locked
// instructions and about 130 others a lock and unlock. No hardware structure needs lockdep.
// A SpinLock is one exchange to take and a release store to give back; as the TLB's lock it
// took a TLB hit from 50 to 46 ns and a miss from 145 to 132 (bench/cpu_translate_bench.cc,
// docs/benchmarks.md).
//
// Checks kept, both TDXSIM_CHECKs: a thread that takes a SpinLock it holds (which would spin
// forever) aborts naming it — the holder is recorded with a relaxed store, and only the
// contended path looks at it; releasing a SpinLock the calling thread does not hold aborts.
// SpinLocks stay out of the held-locks table, so Mutex's assertions do not see them.
//
// Waiting: under a deterministic scheduler (sched.h) a contended lock hands the token on, as
// Mutex does; free-running it polls a plain load with a pause, and yields the CPU after a
// while (a holder preempted on an oversubscribed machine: the sanitizer runs).
//
// Thread safety: every member may be called from any thread; lock() synchronises-with the
// previous unlock(). Not for critical sections that block, wait or take another lock.
#pragma once

#include <atomic>
#include <string_view>

#include "base/sched_point.h"
#include "base/thread_annotations.h"

namespace tdxsim {

namespace spin_lock_detail {
// Its address names the calling thread (constinit: no TLS init guard on the fast path).
extern constinit thread_local char t_self;
}  // namespace spin_lock_detail

class TDXSIM_CAPABILITY("mutex") SpinLock {
 public:
  // `name` (a string literal or other static string) appears in the diagnostics.
  explicit constexpr SpinLock(std::string_view name) : name_(name) {}
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  // REQUIRES: the calling thread does not hold this lock (checked when it is contended).
  void lock() TDXSIM_ACQUIRE() {
    sched_point(SchedPoint::kLock);
    if (held_.exchange(true, std::memory_order_acquire)) [[unlikely]]
      lock_contended();
    owner_.store(self(), std::memory_order_relaxed);
  }

  // REQUIRES: the calling thread holds this lock (checked).
  void unlock() TDXSIM_RELEASE() {
    if (owner_.load(std::memory_order_relaxed) != self()) [[unlikely]]
      bad_unlock();
    owner_.store(nullptr, std::memory_order_relaxed);
    held_.store(false, std::memory_order_release);
    sched_point(SchedPoint::kUnlock);
  }

  std::string_view name() const { return name_; }

 private:
  static const void* self() { return &spin_lock_detail::t_self; }
  [[gnu::noinline]] void lock_contended();
  [[noreturn, gnu::noinline]] void bad_unlock() const;

  std::atomic<bool> held_{false};
  // The holder while it holds the lock, else null: only ever this thread's own address if
  // this thread holds it, which is all the recursion check needs.
  std::atomic<const void*> owner_{nullptr};
  std::string_view name_;
};

// RAII: holds a SpinLock for the guard's lifetime.
class TDXSIM_SCOPED_CAPABILITY SpinLockGuard {
 public:
  explicit SpinLockGuard(SpinLock& mu) TDXSIM_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~SpinLockGuard() TDXSIM_RELEASE() { mu_.unlock(); }
  SpinLockGuard(const SpinLockGuard&) = delete;
  SpinLockGuard& operator=(const SpinLockGuard&) = delete;

 private:
  SpinLock& mu_;
};

}  // namespace tdxsim
