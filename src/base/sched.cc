#include "base/sched.h"

#include <algorithm>
#include <utility>

#include "base/check.h"
#include "base/mix.h"

namespace tdxsim {
namespace sched_detail {

constinit thread_local PointState* t_point = nullptr;

namespace {

// Virtual time: a point stands for 10 ns of a thread's work, a pause for 10 µs of waiting,
// so a thread that polls a clock while others wait sees it move.
constexpr uint64_t kNsPerStep = 10;
constexpr uint64_t kStepsPerPause = 1000;
// A waiter's back-off, in steps: from one pause's worth to about 0.6 ms of virtual time.
constexpr uint64_t kMinBackoff = kStepsPerPause;
constexpr uint64_t kMaxBackoff = 1 << 16;

// The calling thread's full record.
ThreadRec* current_rec() {
  return static_cast<ThreadRec*>(t_point);
}

bool is_lock_point(SchedPoint p) {
  return p == SchedPoint::kLock || p == SchedPoint::kUnlock;
}

}  // namespace

class SchedCore {
 public:
  SchedCore(SchedOptions o, ScheduleSummary& out)
      : opts(std::move(o)), summary(out), rng(mix64(opts.seed ^ 0x5c4ed)) {
    mean = opts.mean_stretch != 0 ? opts.mean_stretch : uint64_t{1024} << (next_random() % 7);
  }

  bool scripted() const { return opts.script.has_value(); }

  uint64_t next_random() {
    rng += 0x9e3779b97f4a7c15ull;
    return mix64(rng);
  }
  uint64_t fresh_countdown() { return scripted() ? 1 : 1 + next_random() % (2 * mean); }

  std::shared_ptr<ThreadRec> add_thread() {
    auto rec = std::make_shared<ThreadRec>();
    rec->core = this;
    rec->steps = &steps;
    rec->id = static_cast<unsigned>(threads.size());
    threads.push_back(rec);
    return rec;
  }

  // Threads of the run that could take the token from `self` (not ended).
  std::vector<ThreadRec*> others(const ThreadRec& self) const {
    std::vector<ThreadRec*> out;
    for (const auto& t : threads) {
      if (t.get() != &self && !t->exited) out.push_back(t.get());
    }
    return out;
  }

  // Whether a thread of the run's own (not the RCU-callback thread) other than `self` could
  // run: an exploration asks at every lock point, so nothing is allocated.
  bool another_app_thread(const ThreadRec& self) const {
    return std::any_of(threads.begin(), threads.end(), [&](const auto& t) {
      return t.get() != &self && t != rcu_thread && !t->exited;
    });
  }

  // The thread after `self` in id order that has not ended (a script's hand-over when a
  // thread pauses or ends); null if none.
  ThreadRec* round_robin_after(const ThreadRec& self) const {
    const size_t n = threads.size();
    for (size_t k = 1; k < n; ++k) {
      ThreadRec* t = threads[(self.id + k) % n].get();
      if (!t->exited) return t;
    }
    return nullptr;
  }

  // A seeded choice among the other threads not backing off; null if none.
  ThreadRec* random_awake_other(const ThreadRec& self) {
    std::vector<ThreadRec*> cand = others(self);
    std::erase_if(cand, [&](const ThreadRec* t) { return t->wake_step > steps; });
    if (cand.empty()) return nullptr;
    return cand[next_random() % cand.size()];
  }

  // For a thread that cannot go on: an awake thread if any, else the one that wakes first,
  // with the clock moved on to its wake-up (nothing else could have run meanwhile).
  ThreadRec* next_after_pause(const ThreadRec& self) {
    if (scripted()) return round_robin_after(self);
    if (ThreadRec* t = random_awake_other(self)) return t;
    ThreadRec* first = nullptr;
    for (ThreadRec* t : others(self)) {
      if (first == nullptr || t->wake_step < first->wake_step) first = t;
    }
    if (first != nullptr) steps = std::max(steps, first->wake_step);
    return first;
  }

  // Gives the token from `from` to `to` and, unless `from` has ended, waits to get it back.
  void hand_over(ThreadRec& from, ThreadRec& to, SchedPoint p, bool preemption) {
    const uint64_t stretch = steps - stretch_start;
    stretch_start = steps;
    summary.digest = mix64(
        summary.digest ^
        mix64((uint64_t{from.id} << 40) ^ (uint64_t{to.id} << 24) ^ (uint64_t(p) << 8)) ^ stretch);
    ++summary.switches;
    if (preemption) ++summary.preemptions;
    to.countdown = fresh_countdown();
    from.clock += steps - from.taken_at;
    if (to.waiting) to.clock = std::max(to.clock, from.clock);
    to.taken_at = steps;
    std::unique_lock<std::mutex> l(mu);
    current = to.id;
    to.cv.notify_one();
    if (from.exited) return;
    from.cv.wait(l, [&] { return current == from.id; });
  }

  void at_point(ThreadRec& r, SchedPoint p) {
    if (!scripted()) {
      // A whole stretch run: the thread is making progress, not polling.
      r.backoff = 0;
      ThreadRec* to = random_awake_other(r);
      if (to == nullptr) {
        r.countdown = fresh_countdown();
        return;
      }
      hand_over(r, *to, p, true);
      return;
    }
    r.countdown = 1;
    if (is_lock_point(p) && &r != rcu_thread.get() && another_app_thread(r)) {
      summary.preemptible.push_back({steps, r.id});
    }
    const std::vector<Preemption>& script = *opts.script;
    while (script_next < script.size() && script[script_next].step < steps) ++script_next;
    if (script_next == script.size() || script[script_next].step != steps) return;
    const unsigned target = script[script_next++].thread;
    if (target >= threads.size() || target == r.id || threads[target]->exited) return;
    hand_over(r, *threads[target], p, true);
  }

  void pause(ThreadRec& r, SchedPoint p) {
    if (steps != last_pause_end) consecutive_pauses = 0;
    steps += kStepsPerPause;
    if (++consecutive_pauses > opts.deadlock_pauses) {
      std::string state;
      for (const auto& t : threads) {
        state += fmt::format(" T{}{}", t->id, t->exited ? "(ended)" : "");
      }
      TDXSIM_CHECK(false,
                   "deterministic schedule (seed {}): every thread has waited for {} hand-overs "
                   "in a row — a deadlock; T{} last waited at a {} point; threads:{}",
                   opts.seed, consecutive_pauses, r.id, to_string(p), state);
    }
    r.backoff = std::clamp(r.backoff * 2, kMinBackoff, kMaxBackoff);
    r.wake_step = steps + r.backoff;
    ThreadRec* to = next_after_pause(r);
    // Alone, the thread sleeps out its back-off: the clock skips to its wake-up.
    if (to == nullptr) steps = r.wake_step;
    last_pause_end = steps;  // after any skip to a wake-up: that is no progress either
    if (to == nullptr) return;
    r.waiting = true;
    hand_over(r, *to, p, false);
    r.waiting = false;
  }

  void leave(ThreadRec& r) {
    r.exited = true;
    ThreadRec* to = next_after_pause(r);
    if (to == nullptr) {
      std::lock_guard<std::mutex> l(mu);
      current = ~0u;
      return;
    }
    hand_over(r, *to, SchedPoint::kExit, false);
  }

  void wait_for_token(ThreadRec& r) {
    std::unique_lock<std::mutex> l(mu);
    r.cv.wait(l, [&] { return current == r.id; });
  }

  // RCU: a deferred callback waits for the read-side sections in progress when it was queued.
  struct Reader {
    ThreadRec* rec;
    uint64_t exits;
  };
  std::vector<Reader> readers_now(const ThreadRec* self) const {
    std::vector<Reader> out;
    for (const auto& t : threads) {
      if (t.get() != self && !t->exited && t->rcu_depth > 0) out.push_back({t.get(), t->rcu_exits});
    }
    return out;
  }
  static bool grace_elapsed(const std::vector<Reader>& readers) {
    return std::all_of(readers.begin(), readers.end(), [](const Reader& w) {
      return w.rec->exited || w.rec->rcu_depth == 0 || w.rec->rcu_exits > w.exits;
    });
  }
  struct Deferred {
    std::function<void()> fn;
    std::vector<Reader> readers;
  };

  void rcu_callback_loop() {
    for (;;) {
      if (!deferred.empty() && grace_elapsed(deferred.front().readers)) {
        std::function<void()> fn = std::move(deferred.front().fn);
        deferred.pop_front();
        callback_running = true;
        fn();
        fn = nullptr;
        callback_running = false;
        continue;
      }
      if (stopping && deferred.empty()) return;
      pause(*current_rec(), SchedPoint::kRcu);
    }
  }

  SchedOptions opts;
  ScheduleSummary& summary;
  uint64_t rng;
  uint64_t mean = 0;
  uint64_t steps = 0;
  uint64_t stretch_start = 0;
  uint64_t last_pause_end = ~0ull;
  uint64_t consecutive_pauses = 0;
  size_t script_next = 0;
  std::vector<std::shared_ptr<ThreadRec>> threads;  // by id
  std::shared_ptr<ThreadRec> rcu_thread;
  std::thread rcu_os_thread;
  std::deque<Deferred> deferred;
  bool callback_running = false;
  bool stopping = false;

  std::mutex mu;  // hand-overs only
  unsigned current = 0;
};

void reached(PointState& r, SchedPoint p) {
  auto& rec = static_cast<ThreadRec&>(r);
  rec.core->at_point(rec, p);
}

}  // namespace sched_detail

using sched_detail::current_rec;
using sched_detail::SchedCore;
using sched_detail::t_point;
using sched_detail::ThreadRec;

const char* to_string(SchedPoint p) {
  switch (p) {
    case SchedPoint::kAtomic:
      return "atomic";
    case SchedPoint::kLock:
      return "lock";
    case SchedPoint::kUnlock:
      return "unlock";
    case SchedPoint::kWait:
      return "wait";
    case SchedPoint::kRcu:
      return "rcu";
    case SchedPoint::kSpawn:
      return "spawn";
    case SchedPoint::kJoin:
      return "join";
    case SchedPoint::kExit:
      return "exit";
    case SchedPoint::kInsn:
      return "insn";
  }
  return "?";
}

void sched_pause(SchedPoint p) {
  if (t_point == nullptr) {
    std::this_thread::yield();
    return;
  }
  current_rec()->core->pause(*current_rec(), p);
}

std::chrono::steady_clock::time_point sched_now() {
  if (t_point == nullptr) return std::chrono::steady_clock::now();
  const ThreadRec& r = *current_rec();
  const uint64_t own = r.clock + (*r.steps - r.taken_at);
  return std::chrono::steady_clock::time_point(
      std::chrono::nanoseconds(own * sched_detail::kNsPerStep));
}

void sched_sleep_for(std::chrono::nanoseconds d) {
  if (t_point == nullptr) {
    std::this_thread::sleep_for(d);
    return;
  }
  const auto deadline = sched_now() + d;
  while (sched_now() < deadline) sched_pause(SchedPoint::kWait);
}

std::shared_ptr<ThreadRec> sched_register_child() {
  if (t_point == nullptr) return nullptr;
  return current_rec()->core->add_thread();
}

void sched_enter(const std::shared_ptr<ThreadRec>& rec) {
  if (rec == nullptr) return;
  TDXSIM_CHECK(t_point == nullptr, "a thread entered a deterministic run twice");
  t_point = rec.get();
  rec->core->wait_for_token(*rec);
}

void sched_leave(const std::shared_ptr<ThreadRec>& rec) {
  if (rec == nullptr) return;
  TDXSIM_CHECK(t_point == rec.get(), "sched_leave() on a thread other than the record's");
  TDXSIM_CHECK(rec->rcu_depth == 0, "thread T{} ended inside an RCU read-side section", rec->id);
  t_point = nullptr;
  rec->core->leave(*rec);
}

void sched_rcu_read_lock() {
  ++current_rec()->rcu_depth;
}

void sched_rcu_read_unlock() {
  if (--current_rec()->rcu_depth == 0) ++current_rec()->rcu_exits;
}

void sched_rcu_synchronize() {
  SchedCore& core = *current_rec()->core;
  const auto readers = core.readers_now(current_rec());
  while (!SchedCore::grace_elapsed(readers)) sched_pause(SchedPoint::kRcu);
}

void sched_rcu_defer(std::function<void()> fn) {
  SchedCore& core = *current_rec()->core;
  core.deferred.push_back({std::move(fn), core.readers_now(current_rec())});
}

void sched_rcu_barrier() {
  SchedCore& core = *current_rec()->core;
  while (!core.deferred.empty() || core.callback_running) sched_pause(SchedPoint::kRcu);
}

Scheduler::Scheduler(SchedOptions options)
    : core_(std::make_unique<SchedCore>(std::move(options), summary_)) {}

Scheduler::~Scheduler() {
  if (core_->rcu_os_thread.joinable()) core_->rcu_os_thread.join();
}

void Scheduler::run(const std::function<void()>& body) {
  TDXSIM_CHECK(t_point == nullptr, "Scheduler::run() on a thread already under a scheduler");
  TDXSIM_CHECK(core_->threads.empty(), "Scheduler::run() called twice");
  SchedCore& core = *core_;
  std::shared_ptr<ThreadRec> self = core.add_thread();
  self->countdown = core.fresh_countdown();
  core.current = self->id;
  t_point = self.get();

  // The RCU-callback thread (liburcu's call_rcu thread, under the token).
  core.rcu_thread = core.add_thread();
  core.rcu_os_thread = std::thread([&core, rec = core.rcu_thread] {
    sched_enter(rec);
    core.rcu_callback_loop();
    sched_leave(rec);
  });

  body();

  core.stopping = true;
  for (;;) {
    const bool all_ended = std::all_of(core.threads.begin(), core.threads.end(),
                                       [&](const auto& t) { return t == self || t->exited; });
    if (all_ended) break;
    sched_pause(SchedPoint::kJoin);
  }
  summary_.steps = core.steps;
  summary_.threads = static_cast<unsigned>(core.threads.size());
  t_point = nullptr;
  core.rcu_os_thread.join();
}

}  // namespace tdxsim
