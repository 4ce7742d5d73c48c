// Many threads hammer one TryLock with every kind of request. Every attempt must answer
// acquired or busy at once, exclusive holders must never overlap anyone, and the data the
// lock guards must be published holder to holder (TSan checks the memory orders).
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/atomic.h"
#include "base/try_lock.h"
#include "base/wait.h"

namespace tdxsim {
namespace {

constexpr int kThreads = 6;
constexpr int kAttempts = 20000;

struct Guarded {
  TryLock lock;
  uint64_t value TDXSIM_GUARDED_BY(lock) = 0;  // written exclusive, read shared
  AtomicWord exclusive_holders;
  AtomicWord shared_holders;
  Counter overlaps;
  Counter exclusive_acquired;
  Counter shared_acquired;
  Counter busy;
  Counter busy_host_priority;
  Counter sum_seen;
};

void count_busy(Guarded& g, TryLockResult r) {
  if (r == TryLockResult::kBusyHostPriority) {
    g.busy_host_priority.add();
  } else {
    g.busy.add();
  }
}

void exclusive_attempt(Guarded& g, Requester who) {
  TryLockResult r;
  if (!g.lock.try_acquire_exclusive(who, &r)) {
    count_busy(g, r);
    return;
  }
  if (g.exclusive_holders.fetch_add(1, std::memory_order_acq_rel) != 0) g.overlaps.add();
  if (g.shared_holders.load(std::memory_order_acquire) != 0) g.overlaps.add();
  ++g.value;
  g.exclusive_holders.fetch_sub(1, std::memory_order_acq_rel);
  g.exclusive_acquired.add();
  g.lock.unlock_exclusive();
}

void shared_attempt(Guarded& g, Requester who) {
  TryLockResult r;
  if (!g.lock.try_acquire_shared(who, &r)) {
    count_busy(g, r);
    return;
  }
  g.shared_holders.fetch_add(1, std::memory_order_acq_rel);
  if (g.exclusive_holders.load(std::memory_order_acquire) != 0) g.overlaps.add();
  g.sum_seen.add(g.value);
  g.shared_holders.fetch_sub(1, std::memory_order_acq_rel);
  g.shared_acquired.add();
  g.lock.unlock_shared();
}

TEST(TryLockStress, NeverBlocksNeverOverlaps) {
  Guarded g;
  Notification go;  // start together, or the first thread finishes before the last starts
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&g, &go, t] {
      go.wait();
      const Requester who = (t % 2 == 0) ? Requester::kHost : Requester::kGuest;
      for (int i = 0; i < kAttempts; ++i) {
        if ((i + t) % 3 == 0) {
          exclusive_attempt(g, who);
        } else {
          shared_attempt(g, who);
        }
      }
    });
  }
  go.notify();
  for (auto& t : threads) t.join();

  EXPECT_EQ(g.overlaps.value(), 0u);
  const uint64_t answered = g.exclusive_acquired.value() + g.shared_acquired.value() +
                            g.busy.value() + g.busy_host_priority.value();
  EXPECT_EQ(answered, uint64_t{kThreads} * kAttempts);
  EXPECT_GT(g.exclusive_acquired.value(), 0u);
  EXPECT_GT(g.shared_acquired.value(), 0u);
  EXPECT_FALSE(g.lock.is_locked_exclusive());
  EXPECT_EQ(g.lock.shared_count(), 0u);
  TryLockResult r;
  if (!g.lock.try_acquire_exclusive(Requester::kHost, &r)) FAIL() << to_string(r);
  EXPECT_EQ(g.value, g.exclusive_acquired.value());
  g.lock.unlock_exclusive();
  RecordProperty("busy", static_cast<int>(g.busy.value()));
  RecordProperty("busy_host_priority", static_cast<int>(g.busy_host_priority.value()));
}

}  // namespace
}  // namespace tdxsim
