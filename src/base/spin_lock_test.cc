#include "base/spin_lock.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/atomic.h"
#include "base/sched.h"
#include "base/thread.h"

namespace tdxsim {
namespace {

// Guarded data, as the TLB keeps it: clang's analysis follows SpinLock like Mutex.
class Counted {
 public:
  void bump() TDXSIM_EXCLUDES(mu_) {
    SpinLockGuard l(mu_);
    bump_locked();
  }
  uint64_t read() TDXSIM_EXCLUDES(mu_) {
    SpinLockGuard l(mu_);
    return n_;
  }

 private:
  void bump_locked() TDXSIM_REQUIRES(mu_) { ++n_; }

  SpinLock mu_{"counted"};
  uint64_t n_ TDXSIM_GUARDED_BY(mu_) = 0;
};

TEST(SpinLockTest, LocksAndUnlocksAgainAndAgain) {
  Counted c;
  for (int i = 0; i < 1000; ++i) c.bump();
  EXPECT_EQ(c.read(), 1000u);
}

TEST(SpinLockTest, NamesItself) {
  SpinLock mu("tlb");
  EXPECT_EQ(mu.name(), "tlb");
}

// Under the deterministic scheduler a contended SpinLock hands the token on instead of
// spinning (a spinning thread would keep the token, and the run would never end). The
// critical section holds scheduling points — the AtomicWord operations — so holders are
// preempted inside it and others arrive to find it taken; a load-and-store increment there
// loses updates unless the lock excludes.
TEST(SpinLockTest, ContendedUnderTheSchedulerHandsOver) {
  uint64_t found_taken = 0;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    SchedOptions o;
    o.seed = seed;
    o.mean_stretch = 3;  // preempt often, inside the critical section too
    Scheduler s(o);
    uint64_t total = 0;
    s.run([&] {
      SpinLock mu("counter");
      AtomicWord inside;
      AtomicWord counter;
      AtomicWord taken;
      std::vector<Thread> threads;
      for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
          for (int i = 0; i < 200; ++i) {
            if (inside.load(std::memory_order_relaxed) != 0) {
              taken.fetch_add(1, std::memory_order_relaxed);
            }
            SpinLockGuard l(mu);
            inside.store(1, std::memory_order_relaxed);
            const uint64_t v = counter.load(std::memory_order_relaxed);
            counter.store(v + 1, std::memory_order_relaxed);
            inside.store(0, std::memory_order_relaxed);
          }
        });
      }
      for (Thread& t : threads) t.join();
      total = counter.load(std::memory_order_relaxed);
      found_taken += taken.load(std::memory_order_relaxed);
    });
    EXPECT_EQ(total, 800u) << "seed " << seed;
  }
  EXPECT_GT(found_taken, 0u) << "no thread ever found the lock taken: the test tests nothing";
}

// ---- death tests: each breaks the discipline on purpose, so clang's analysis is off ----

class SpinLockDeathTest : public testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

void lock_twice(SpinLock& mu) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  mu.lock();
  mu.lock();
}
void unlock_unheld(SpinLock& mu) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  mu.unlock();
}
void lock_and_keep(SpinLock& mu) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  mu.lock();
}
void other_thread_locks_then_unlock(SpinLock& mu) {
  Thread holder([&] { lock_and_keep(mu); });  // held by a thread that has ended, not by us
  holder.join();
  unlock_unheld(mu);
}

TEST_F(SpinLockDeathTest, TakingItTwiceAbortsInsteadOfSpinning) {
  SpinLock mu("tlb");
  EXPECT_DEATH(lock_twice(mu),
               "recursive locking: lock\\(\\) of spin lock 'tlb' which this thread holds");
}

TEST_F(SpinLockDeathTest, ReleasingItUnheldAborts) {
  SpinLock mu("tlb");
  EXPECT_DEATH(unlock_unheld(mu),
               "unlock\\(\\) of spin lock 'tlb' which this thread does not hold");
}

TEST_F(SpinLockDeathTest, ReleasingAnotherThreadsHoldAborts) {
  SpinLock mu("tlb");
  EXPECT_DEATH(other_thread_locks_then_unlock(mu), "which this thread does not hold");
}

}  // namespace
}  // namespace tdxsim
