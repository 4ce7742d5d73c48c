// RCU: read-copy-update over liburcu's membarrier flavor (urcu-memb).
//
// KVM's TDP MMU reads page tables under rcu_read_lock() without mmu_lock for write, and
// frees a removed page-table page only after a grace period (call_rcu in
// handle_removed_pt). tdxsim uses real RCU for the same purpose, so a reader that outlives
// its read-side section is a genuine use-after-free the sanitizers report.
//
// Usage:
//   RcuThread rcu;                      // once per thread that reads or defers
//   { RcuReadGuard g; p = slot.load(std::memory_order_acquire); use(*p); }
//   old = slot.exchange(new, std::memory_order_release);
//   rcu_defer([old] { delete old; });   // or rcu_synchronize(); delete old;
//
// Thread safety: all functions may be called from any thread, subject to the REQUIRES
// clauses (checked). What RCU protects is the caller's: an object unpublished before
// rcu_synchronize() starts (or before rcu_defer()) is no longer referenced by any reader
// once it returns (or when the callback runs). Readers must load published pointers with
// acquire (or consume) and writers publish with release; RCU orders only the free.
// Deferred callbacks run on liburcu's single default call_rcu worker thread, one at a
// time, in call_rcu order. Under a deterministic scheduler (sched.h) liburcu is not used:
// the scheduler tracks each thread's read-side sections itself (a grace period waits, by
// pausing, for the sections in progress at its start) and runs deferred callbacks, in
// order, on its own callback thread, which holds the token like any other.
//
// ThreadSanitizer: liburcu is not instrumented, so TSan cannot see that a grace period
// orders a reader's last access before the free, and would report every deferred free as
// a race. Rather than suppress (which would also hide real races), rcu.cc tells TSan the
// happens-before edges RCU guarantees, when built with TDXSIM_TSAN:
//   - read-side unlock        __tsan_release(grace token)
//   - rcu_synchronize return  __tsan_acquire(grace token)
//   - callback start          __tsan_acquire(grace token), __tsan_acquire(node)
//   - rcu_defer               __tsan_release(node) before call_rcu (publishes the closure)
// rcu_barrier() needs no annotation: it waits for a sentinel callback through a
// Notification (see rcu.cc for why it does not call urcu_memb_barrier).
// The grace token is one object for all readers, so TSan also sees edges from read-side
// sections that began after the grace period started (more order than RCU promises). That
// can only hide a race, never invent one; the real accesses are still checked by ASan.
#pragma once

#include <functional>

namespace tdxsim {

// Registers the calling thread as an RCU reader for the object's lifetime
// (urcu_memb_register_thread / unregister). Nested RcuThreads in one thread are counted;
// only the outermost registers and unregisters.
// REQUIRES (destruction): not inside a read-side section of the same thread.
class RcuThread {
 public:
  RcuThread();
  ~RcuThread();
  RcuThread(const RcuThread&) = delete;
  RcuThread& operator=(const RcuThread&) = delete;

 private:
  bool registered_here_;
};

// A read-side critical section for the guard's lifetime (rcu_read_lock/unlock). Nests.
// REQUIRES: the calling thread is registered (an RcuThread, or an RCU callback).
class RcuReadGuard {
 public:
  RcuReadGuard();
  ~RcuReadGuard();
  RcuReadGuard(const RcuReadGuard&) = delete;
  RcuReadGuard& operator=(const RcuReadGuard&) = delete;
};

// Waits for every read-side section that began before the call to end.
// REQUIRES: not inside a read-side section (self-deadlock) nor in an RCU callback.
void rcu_synchronize();

// Runs `fn` on the call_rcu thread after a grace period (call_rcu). Returns at once.
// REQUIRES: the calling thread is registered; fn is not empty.
void rcu_defer(std::function<void()> fn);

// Waits until every callback deferred before the call (by any thread) has run.
// REQUIRES: not inside a read-side section nor in an RCU callback.
void rcu_barrier();

// Whether the calling thread is inside a read-side section: for assertions such as
// TDXSIM_CHECK(rcu_read_held() || mmu_lock.held_mode() != LockMode::kNotHeld).
bool rcu_read_held();

// Whether the calling thread may enter a read-side section.
bool rcu_thread_registered();

}  // namespace tdxsim
