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
// The lock has no writer preference (neither has the module's): a reader preempted inside
// its section makes every exclusive attempt busy for a whole time slice, and on a loaded
// 2-core machine under TSan 6 x 20,000 attempts once ended with no exclusive success at all.
// So a thread goes on past kAttempts until each kind has kMinEach successes, up to
// kMaxAttempts; threads that stop leave less contention to the rest.
constexpr uint64_t kMinEach = 100;
constexpr int kMaxAttempts = 10 * kAttempts;

bool enough(const Counter& exclusive, const Counter& shared) {
  return exclusive.value() >= kMinEach && shared.value() >= kMinEach;
}

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
  Counter attempts;
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
      int i = 0;
      for (; i < kMaxAttempts; ++i) {
        if (i >= kAttempts && enough(g.exclusive_acquired, g.shared_acquired)) break;
        if ((i + t) % 3 == 0) {
          exclusive_attempt(g, who);
        } else {
          shared_attempt(g, who);
        }
      }
      g.attempts.add(i);
    });
  }
  go.notify();
  for (auto& t : threads) t.join();

  EXPECT_EQ(g.overlaps.value(), 0u);
  const uint64_t answered = g.exclusive_acquired.value() + g.shared_acquired.value() +
                            g.busy.value() + g.busy_host_priority.value();
  EXPECT_EQ(answered, g.attempts.value());
  EXPECT_GE(g.exclusive_acquired.value(), kMinEach);
  EXPECT_GE(g.shared_acquired.value(), kMinEach);
  EXPECT_FALSE(g.lock.is_locked_exclusive());
  EXPECT_EQ(g.lock.shared_count(), 0u);
  TryLockResult r;
  if (!g.lock.try_acquire_exclusive(Requester::kHost, &r)) FAIL() << to_string(r);
  EXPECT_EQ(g.value, g.exclusive_acquired.value());
  g.lock.unlock_exclusive();
  RecordProperty("busy", static_cast<int>(g.busy.value()));
  RecordProperty("busy_host_priority", static_cast<int>(g.busy_host_priority.value()));
  RecordProperty("attempts", static_cast<int>(g.attempts.value()));
}

// The same contract through TryLockRef, as the PAMT uses it: the lock words live in a plain
// array, every attempt builds its own short-lived TryLockRef, and host readers try to
// promote. Neighbouring words must not disturb each other.
constexpr int kWords = 4;

struct RefGuarded {
  uint64_t value = 0;  // guarded by the word's lock; written only exclusively
  AtomicWord exclusive_holders;
  AtomicWord shared_holders;
};

struct RefShared {
  uint64_t words[kWords] = {};
  RefGuarded guarded[kWords];
  Counter overlaps;
  Counter exclusive_acquired;
  Counter promoted;
  Counter shared_acquired;
  Counter busy;
  Counter sum_seen;
  Counter attempts;
};

// Runs with the lock held exclusively (acquired or promoted).
void exclusive_section(RefShared& s, int w) {
  RefGuarded& g = s.guarded[w];
  if (g.exclusive_holders.fetch_add(1, std::memory_order_acq_rel) != 0) s.overlaps.add();
  if (g.shared_holders.load(std::memory_order_acquire) != 0) s.overlaps.add();
  ++g.value;
  g.exclusive_holders.fetch_sub(1, std::memory_order_acq_rel);
}

// The enum API and promotion are outside clang's analysis (see try_lock.h).
void ref_attempt(RefShared& s, int w, Requester who, int kind) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  TryLockRef lock{s.words[w]};
  RefGuarded& g = s.guarded[w];
  if (kind == 0) {
    if (lock.try_lock_exclusive(who) != TryLockResult::kAcquired) {
      s.busy.add();
      return;
    }
    exclusive_section(s, w);
    s.exclusive_acquired.add();
    lock.unlock_exclusive();
    return;
  }
  if (lock.try_lock_shared(who) != TryLockResult::kAcquired) {
    s.busy.add();
    return;
  }
  if (kind == 2 && who == Requester::kHost) {
    // Promote before counting ourselves a reader: success makes us the writer.
    if (lock.try_promote_to_exclusive() == TryLockResult::kAcquired) {
      exclusive_section(s, w);
      s.promoted.add();
      lock.unlock_exclusive();
      return;
    }
  }
  g.shared_holders.fetch_add(1, std::memory_order_acq_rel);
  if (g.exclusive_holders.load(std::memory_order_acquire) != 0) s.overlaps.add();
  s.sum_seen.add(g.value);
  g.shared_holders.fetch_sub(1, std::memory_order_acq_rel);
  s.shared_acquired.add();
  lock.unlock_shared();
}

TEST(TryLockRefStress, RefsOverArrayWordsNeverBlockNeverOverlap) {
  RefShared s;
  Notification go;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&s, &go, t] {
      go.wait();
      const Requester who = (t % 2 == 0) ? Requester::kHost : Requester::kGuest;
      int i = 0;
      for (; i < kMaxAttempts; ++i) {
        if (i >= kAttempts && enough(s.exclusive_acquired, s.shared_acquired)) break;
        ref_attempt(s, (i + t) % kWords, who, (i + t) % 3);
      }
      s.attempts.add(i);
    });
  }
  go.notify();
  for (auto& t : threads) t.join();

  EXPECT_EQ(s.overlaps.value(), 0u);
  const uint64_t answered = s.exclusive_acquired.value() + s.promoted.value() +
                            s.shared_acquired.value() + s.busy.value();
  EXPECT_EQ(answered, s.attempts.value());
  EXPECT_GE(s.exclusive_acquired.value(), kMinEach);
  EXPECT_GE(s.shared_acquired.value(), kMinEach);
  uint64_t writes = 0;
  for (int w = 0; w < kWords; ++w) {
    TryLockRef lock{s.words[w]};
    EXPECT_FALSE(lock.is_locked_exclusive());
    EXPECT_EQ(lock.shared_count(), 0u);
    writes += s.guarded[w].value;
  }
  EXPECT_EQ(writes, s.exclusive_acquired.value() + s.promoted.value());
  RecordProperty("promoted", static_cast<int>(s.promoted.value()));
  RecordProperty("attempts", static_cast<int>(s.attempts.value()));
}

}  // namespace
}  // namespace tdxsim
