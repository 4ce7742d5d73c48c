#include "base/spin_lock.h"

#include <thread>

#include "base/check.h"

namespace tdxsim {

namespace spin_lock_detail {
constinit thread_local char t_self = 0;
}  // namespace spin_lock_detail

namespace {

// Polls before the free-running waiter gives the CPU away: a holder that is running leaves
// within a few hundred cycles; one that is not will not leave while we spin.
constexpr unsigned kPollsBeforeYield = 64;

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

void SpinLock::lock_contended() {
  TDXSIM_CHECK(owner_.load(std::memory_order_relaxed) != self(),
               "recursive locking: lock() of spin lock '{}' which this thread holds", name_);
  for (unsigned polls = 0;; ++polls) {
    if (sched_active()) {
      sched_pause(SchedPoint::kWait);
    } else if (polls < kPollsBeforeYield) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
    if (!held_.load(std::memory_order_relaxed) &&
        !held_.exchange(true, std::memory_order_acquire)) {
      return;
    }
  }
}

void SpinLock::bad_unlock() const {
  TDXSIM_CHECK(false, "unlock() of spin lock '{}' which this thread does not hold", name_);
  __builtin_unreachable();
}

}  // namespace tdxsim
