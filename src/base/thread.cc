#include "base/thread.h"

#include "base/check.h"

namespace tdxsim {

Thread::Thread(std::function<void()> fn) : rec_(sched_register_child()) {
  os_ = std::thread([rec = rec_, fn = std::move(fn)]() mutable {
    sched_enter(rec);
    fn();
    // The closure's captures die while the thread still holds the token: their destructors
    // may touch the run's state.
    fn = nullptr;
    sched_leave(rec);
  });
  // Only now that the OS thread exists may the token go to it.
  if (rec_ != nullptr) sched_point(SchedPoint::kSpawn);
}

Thread::~Thread() {
  TDXSIM_CHECK(!os_.joinable(), "tdxsim::Thread destroyed while joinable (never joined)");
}

Thread& Thread::operator=(Thread&& other) noexcept {
  TDXSIM_CHECK(!os_.joinable(), "tdxsim::Thread assigned over a joinable thread");
  rec_ = std::move(other.rec_);
  os_ = std::move(other.os_);
  return *this;
}

void Thread::join() {
  TDXSIM_CHECK(os_.joinable(), "tdxsim::Thread::join() of a thread that is not joinable");
  if (rec_ != nullptr && sched_active()) {
    while (!rec_->exited) sched_pause(SchedPoint::kJoin);
  }
  os_.join();
  rec_ = nullptr;
}

}  // namespace tdxsim
