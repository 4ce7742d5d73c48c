// sched_point(): where base/'s primitives let a deterministic scheduler (sched.h) take over.
// Split from sched.h so that atomic.h, included everywhere, pulls in nothing else: a point
// free-running is one thread-local load and a branch.
#pragma once

#include <cstdint>

namespace tdxsim {

// Where a thread reached the scheduler; hashed into the digest at each hand-over.
enum class SchedPoint : uint8_t {
  kAtomic,  // an AtomicWord / AtomicWordRef operation
  kLock,    // a lock or try-lock attempt
  kUnlock,  // a lock released
  kWait,    // a failed poll: a contended lock, a condition, a flag another thread sets
  kRcu,     // waiting for a grace period or for deferred callbacks
  kSpawn,   // a thread started another
  kJoin,    // waiting for a thread to end
  kExit,    // a thread ended
  kInsn,    // a guest instruction boundary
};

namespace sched_detail {

// The part of a thread's scheduler record the fast path touches.
struct PointState {
  uint64_t countdown = 0;     // points left in this stretch (1 under a script: every point)
  uint64_t* steps = nullptr;  // the run's global step count
};

// The calling thread's record while it takes part in a deterministic run; null otherwise.
extern constinit thread_local PointState* t_point;

[[gnu::cold]] void reached(PointState& r, SchedPoint p);

}  // namespace sched_detail

// Whether the calling thread runs under a scheduler.
inline bool sched_active() {
  return sched_detail::t_point != nullptr;
}

// A synchronisation point: under a scheduler, possibly a hand-over. Always inlined: every
// atomic operation of the model passes here (about 200 a private page fault), and GCC,
// left to itself, makes it a call.
[[gnu::always_inline]] inline void sched_point(SchedPoint p) {
  sched_detail::PointState* r = sched_detail::t_point;
  if (r == nullptr) [[likely]]
    return;
  ++*r->steps;
  if (--r->countdown == 0) sched_detail::reached(*r, p);
}

// A failed poll of a condition another thread must change: hand the token on (free-running:
// std::this_thread::yield()).
void sched_pause(SchedPoint p = SchedPoint::kWait);

}  // namespace tdxsim
