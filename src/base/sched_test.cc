#include "base/sched.h"

#include <gtest/gtest.h>

#include <set>

#include "base/atomic.h"
#include "base/cond_var.h"
#include "base/lock.h"
#include "base/rcu.h"
#include "base/thread.h"
#include "base/wait.h"

namespace tdxsim {
namespace {

struct Outcome {
  ScheduleSummary summary;
  uint64_t value = 0;
};

// Runs `body` under a scheduler seeded with `seed`; returns the schedule and whatever the body
// reports.
template <class Body>
Outcome run_with(uint64_t seed, Body body, uint64_t mean_stretch = 0) {
  SchedOptions o;
  o.seed = seed;
  o.mean_stretch = mean_stretch;
  Scheduler s(o);
  Outcome out;
  s.run([&] { out.value = body(); });
  out.summary = s.summary();
  return out;
}

// Four threads increment a locked counter and an atomic word.
uint64_t locked_increments() {
  Mutex mu("test counter");
  uint64_t counter = 0;
  AtomicWord word;
  std::vector<Thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        MutexLock l(mu);
        ++counter;
        word.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (Thread& t : threads) t.join();
  EXPECT_EQ(word.load(std::memory_order_relaxed), 2000u);
  return counter;
}

// Two threads each add 1 by a load and a store: an update is lost when a preemption falls
// between them.
uint64_t racy_increments() {
  AtomicWord word;
  std::vector<Thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        const uint64_t v = word.load(std::memory_order_relaxed);
        word.store(v + 1, std::memory_order_relaxed);
      }
    });
  }
  for (Thread& t : threads) t.join();
  return word.load(std::memory_order_relaxed);
}

TEST(SchedTest, ASeedRepeatsItsScheduleExactly) {
  const Outcome a = run_with(42, locked_increments);
  const Outcome b = run_with(42, locked_increments);
  EXPECT_EQ(a.value, 2000u);
  EXPECT_EQ(a.summary.digest, b.summary.digest);
  EXPECT_EQ(a.summary.steps, b.summary.steps);
  EXPECT_EQ(a.summary.switches, b.summary.switches);
  EXPECT_GT(a.summary.switches, 0u);
  EXPECT_EQ(a.summary.threads, 6u);  // the run's, four workers, the RCU-callback thread
}

TEST(SchedTest, SeedsGiveDifferentSchedules) {
  std::set<uint64_t> digests;
  for (uint64_t seed = 1; seed <= 16; ++seed) {
    const Outcome o = run_with(seed, locked_increments);
    EXPECT_EQ(o.value, 2000u) << "seed " << seed;
    digests.insert(o.summary.digest);
  }
  EXPECT_EQ(digests.size(), 16u);
}

TEST(SchedTest, ARaceFoundUnderOneSeedReplaysUnderIt) {
  std::optional<uint64_t> racy_seed;
  for (uint64_t seed = 1; seed <= 200 && !racy_seed; ++seed) {
    if (run_with(seed, racy_increments, 64).value < 400) racy_seed = seed;
  }
  ASSERT_TRUE(racy_seed) << "no seed in 1..200 preempted a load-store window";
  const Outcome first = run_with(*racy_seed, racy_increments, 64);
  for (int i = 0; i < 10; ++i) {
    const Outcome again = run_with(*racy_seed, racy_increments, 64);
    EXPECT_EQ(again.value, first.value);
    EXPECT_EQ(again.summary.digest, first.summary.digest);
  }
}

TEST(SchedTest, WaitsPollInsteadOfBlocking) {
  const Outcome o = run_with(5, [] {
    Mutex mu("test mailbox");
    CondVar cv;
    uint64_t mailbox = 0;
    Notification done;
    AckCounter acks;
    Thread consumer([&] {
      uint64_t sum = 0;
      for (uint64_t i = 1; i <= 50; ++i) {
        MutexLock l(mu);
        cv.wait(mu, [&]() TDXSIM_REQUIRES(mu) { return mailbox != 0; });
        sum += mailbox;
        mailbox = 0;
        acks.advance();
      }
      EXPECT_EQ(sum, 50u * 51 / 2);
      done.notify();
    });
    for (uint64_t i = 1; i <= 50; ++i) {
      {
        MutexLock l(mu);
        mailbox = i;
        cv.notify_all();
      }
      acks.wait_until(i);
    }
    done.wait();
    consumer.join();
    return acks.current();
  });
  EXPECT_EQ(o.value, 50u);
}

TEST(SchedTest, SharedMutexWritersAndReadersInterleave) {
  const Outcome o = run_with(
      9,
      [] {
        SharedMutex mu("test mmu_lock");
        uint64_t a = 0, b = 0;  // written together under the write lock
        uint64_t torn = 0;
        std::vector<Thread> threads;
        for (int t = 0; t < 3; ++t) {
          threads.emplace_back([&, t] {
            for (int i = 0; i < 200; ++i) {
              if ((i + t) % 4 == 0) {
                WriteLock l(mu);
                ++a;
                sched_point(SchedPoint::kAtomic);
                ++b;
              } else {
                ReadLock l(mu);
                if (a != b) ++torn;
              }
            }
          });
        }
        for (Thread& t : threads) t.join();
        EXPECT_EQ(torn, 0u);
        return a;
      },
      16);
  EXPECT_EQ(o.value, 150u);
  EXPECT_GT(o.summary.preemptions, 0u);
}

TEST(SchedTest, DeferredFreesWaitForReadersInProgress) {
  run_with(
      3,
      [] {
        RcuThread rcu;
        AtomicWord in_section, freed, freed_inside;
        Thread reader([&] {
          RcuThread r;
          RcuReadGuard g;
          in_section.store(1, std::memory_order_release);
          for (int i = 0; i < 2000; ++i) {
            if (freed.load(std::memory_order_acquire) != 0)
              freed_inside.store(1, std::memory_order_relaxed);
          }
        });
        while (in_section.load(std::memory_order_acquire) == 0) sched_pause();
        rcu_defer([&] { freed.store(1, std::memory_order_release); });
        rcu_barrier();
        EXPECT_EQ(freed.load(std::memory_order_acquire), 1u);
        reader.join();
        EXPECT_EQ(freed_inside.load(std::memory_order_relaxed), 0u);
        rcu_synchronize();
        return uint64_t{0};
      },
      16);
}

TEST(SchedTest, TheClockIsVirtualAndMovesWhileAThreadSleeps) {
  run_with(1, [] {
    const auto t0 = sched_now();
    sched_sleep_for(std::chrono::milliseconds(5));
    EXPECT_GE(sched_now() - t0, std::chrono::milliseconds(5));
    // Virtual: far less than 5 ms of the host's time stood for 5 ms.
    Notification never;
    EXPECT_FALSE(never.wait_for(std::chrono::seconds(1)));
    return uint64_t{0};
  });
}

TEST(SchedTest, AScriptPreemptsExactlyWhereItSays) {
  auto body = [] {
    AtomicWord order;
    Thread other([&] { order.fetch_add(1, std::memory_order_relaxed); });
    for (int i = 0; i < 100; ++i) order.load(std::memory_order_relaxed);
    other.join();
    return order.load(std::memory_order_relaxed);
  };
  SchedOptions base;
  base.script = std::vector<Preemption>{};
  Scheduler plain(base);
  plain.run([&] { body(); });
  EXPECT_EQ(plain.summary().preemptions, 0u);

  SchedOptions forced = base;
  forced.script = std::vector<Preemption>{{10, 2}};  // thread 2: `other` (1 is RCU's)
  Scheduler s(forced);
  s.run([&] { body(); });
  EXPECT_EQ(s.summary().preemptions, 1u);
  EXPECT_NE(s.summary().digest, plain.summary().digest);
}

TEST(SchedDeathTest, ADeadlockAbortsNamingIt) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        SchedOptions o;
        o.deadlock_pauses = 1000;
        Scheduler s(o);
        s.run([] {
          Notification never;
          Thread t([&] { never.wait(); });
          never.wait();
          t.join();
        });
      },
      "deadlock");
}

TEST(SchedTest, FreeRunningEverythingIsPlain) {
  EXPECT_FALSE(sched_active());
  sched_point(SchedPoint::kAtomic);
  sched_pause();
  Thread t([] { EXPECT_FALSE(sched_active()); });
  t.join();
}

}  // namespace
}  // namespace tdxsim
