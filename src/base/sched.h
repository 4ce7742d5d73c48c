// The deterministic scheduler: one token, handed between the threads of a run at base/'s
// synchronisation points by a seeded choice, so that a seed names one interleaving and a
// failure found under it replays exactly.
//
// Every thread of a deterministic run (the run's own thread, each base::Thread it starts, and
// the scheduler's RCU-callback thread) runs only while it holds the token. base/'s
// primitives call sched_point() at every atomic operation, lock, unlock and try-lock; a
// thread whose condition another thread must change (a contended lock, a wait, a join, a
// spin on a flag) calls sched_pause(), which hands the token to another thread instead of
// blocking the OS thread. Nothing else ever blocks a thread of the run: blocking while
// holding the token would stop the whole run.
//
// Between hand-overs a thread runs a stretch of points whose length the seed draws (mean
// SchedOptions::mean_stretch), so a run is mostly long stretches of one thread — fast, as one
// core runs it — with preemptions at seeded points. An exploration (SchedOptions::script)
// names the preemptions instead: at the given global steps the token goes to the given
// threads, and otherwise a thread runs until it pauses or ends.
//
// Time: sched_now() is virtual under a scheduler, so that timeouts and watchdogs fire at the
// same step of every replay: each thread has its own clock, as if it had a core of its own
// (each point it runs is 10 ns, each pause 10 µs), and a thread that waited catches up with
// the one whose hand-over let it go on.
//
// Free-running (no scheduler on the calling thread) every function here is what a thread
// would do anyway: sched_point() nothing, sched_pause() std::this_thread::yield(), block_until
// a condition-variable wait, sched_now() the steady clock.
//
// Thread safety: a Scheduler's state is touched only by the thread holding its token (and by
// hand-overs, under its internal mutex). Threads outside the run (a progress ticker) see
// sched_point() as a no-op and must not use the run's locks.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/sched_point.h"

namespace tdxsim {

const char* to_string(SchedPoint p);

// One preemption an exploration forces: at global step `step`, the token goes to `thread`.
struct Preemption {
  uint64_t step = 0;
  unsigned thread = 0;
  bool operator==(const Preemption&) const = default;
};

struct SchedOptions {
  uint64_t seed = 1;
  // Mean points a thread runs before a seeded preemption. 0: drawn from the seed (1024 to
  // 65536, so that seeds vary the grain as well as the places; a hand-over costs a few µs of
  // the host's time, a point a few ns).
  uint64_t mean_stretch = 0;
  // When set, an exploration: no seeded preemptions; these (sorted by step) instead, and a
  // thread that pauses or ends hands over round-robin.
  std::optional<std::vector<Preemption>> script;
  // A run in which every thread waits this many hand-overs in a row is a deadlock (aborts
  // with the threads' state).
  uint64_t deadlock_pauses = 1u << 22;
};

// What a run's schedule was, for the report and for explorations.
struct ScheduleSummary {
  uint64_t digest = 0;       // hash of every hand-over (from, to, kind, stretch length)
  uint64_t steps = 0;        // points passed, all threads
  uint64_t switches = 0;     // hand-overs
  uint64_t preemptions = 0;  // hand-overs away from a thread that could have gone on
  unsigned threads = 0;      // threads that took part (the RCU-callback thread included)
  // For explorations only: the lock and unlock points reached while another thread of the
  // run's own could have run instead — where a preemption can go — each as its global step
  // and the thread that reached it.
  std::vector<Preemption> preemptible;
};

namespace sched_detail {

class SchedCore;

struct ThreadRec : PointState {
  SchedCore* core = nullptr;
  unsigned id = 0;
  bool exited = false;
  // A thread that paused is not chosen again before `wake_step` (unless no other can run):
  // each failed poll in a row doubles the back-off, so a waiter costs few hand-overs.
  uint64_t wake_step = 0;
  uint64_t backoff = 0;
  // The thread's own virtual time, in steps: the points it ran and the pauses it waited, as
  // if every thread had a core of its own. A waiter that is handed the token catches up
  // with the thread that hands it over (it could not have gone on earlier).
  uint64_t clock = 0;
  uint64_t taken_at = 0;  // the global step count when it last took the token
  bool waiting = false;
  unsigned rcu_depth = 0;
  uint64_t rcu_exits = 0;  // outermost read-side sections left, for grace periods
  std::condition_variable cv;
};

}  // namespace sched_detail

// Blocks until pred() holds: a wait on `cv` free-running; polls with sched_pause() under a
// scheduler (unlocking `l` around each pause). REQUIRES: `l` holds its mutex.
template <class Lock, class Cv, class Pred>
void block_until(Lock& l, Cv& cv, Pred pred) {
  if (!sched_active()) {
    cv.wait(l, pred);
    return;
  }
  while (!pred()) {
    l.unlock();
    sched_pause(SchedPoint::kWait);
    l.lock();
  }
}

// The same with a timeout. Returns: pred() at the end.
template <class Lock, class Cv, class Pred>
bool block_until_for(Lock& l, Cv& cv, std::chrono::nanoseconds timeout, Pred pred);

// The run's clock: virtual under a scheduler, steady otherwise.
std::chrono::steady_clock::time_point sched_now();
// Sleeps for `d` of that clock (under a scheduler: pauses until it has passed).
void sched_sleep_for(std::chrono::nanoseconds d);

// The scheduler of one deterministic run.
class Scheduler {
 public:
  explicit Scheduler(SchedOptions options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Runs `body` on the calling thread as the run's first thread; returns when it has
  // returned and every thread it started has ended. REQUIRES: the calling thread is not
  // under a scheduler; once per Scheduler.
  void run(const std::function<void()>& body);

  const ScheduleSummary& summary() const { return summary_; }

 private:
  std::unique_ptr<sched_detail::SchedCore> core_;
  ScheduleSummary summary_;
};

// Under a scheduler: registers a thread that the caller is about to start and returns its
// record; free-running: null. Used by base::Thread, which passes the spawn point once the
// OS thread exists.
std::shared_ptr<sched_detail::ThreadRec> sched_register_child();
// On the new thread: waits for the token (no-op for a null record).
void sched_enter(const std::shared_ptr<sched_detail::ThreadRec>& rec);
// On the thread, as its last act under the scheduler: hands the token on for good.
void sched_leave(const std::shared_ptr<sched_detail::ThreadRec>& rec);

// RCU under a scheduler (rcu.cc): read-side bookkeeping, grace periods, deferred callbacks.
// Each REQUIRES sched_active().
void sched_rcu_read_lock();
void sched_rcu_read_unlock();
void sched_rcu_synchronize();
void sched_rcu_defer(std::function<void()> fn);
void sched_rcu_barrier();

template <class Lock, class Cv, class Pred>
bool block_until_for(Lock& l, Cv& cv, std::chrono::nanoseconds timeout, Pred pred) {
  if (!sched_active()) return cv.wait_for(l, timeout, pred);
  const auto deadline = sched_now() + timeout;
  while (!pred()) {
    if (sched_now() >= deadline) return false;
    l.unlock();
    sched_pause(SchedPoint::kWait);
    l.lock();
  }
  return true;
}

}  // namespace tdxsim
