// Readers and writers of an mmu_lock-like SharedMutex, checking an invariant that a torn
// write would break, plus the lockdep-style assertions under contention.
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/atomic.h"
#include "base/lock.h"
#include "base/wait.h"

namespace tdxsim {
namespace {

constexpr int kWriters = 2;
constexpr int kReaders = 4;
constexpr int kWriterIters = 4000;
constexpr int kReaderIters = 10000;

// Invariant: a == b, and both only grow. Writers update them one at a time.
struct Shared {
  SharedMutex mu{"mmu_lock"};
  uint64_t a TDXSIM_GUARDED_BY(mu) = 0;
  uint64_t b TDXSIM_GUARDED_BY(mu) = 0;
};

void writer(Shared& s, int iters) {
  for (int i = 0; i < iters; ++i) {
    if (i % 4 == 0 && s.mu.try_lock()) {
      s.mu.assert_held_write();
      ++s.a;
      ++s.b;
      s.mu.unlock();
      continue;
    }
    WriteLock l(s.mu);
    s.mu.assert_held_write();
    ++s.a;
    std::this_thread::yield();  // widen the window in which a reader could see a != b
    ++s.b;
  }
}

void reader(Shared& s, int iters, Counter& violations) {
  uint64_t last = 0;
  for (int i = 0; i < iters; ++i) {
    uint64_t a = 0;
    uint64_t b = 0;
    if (i % 3 == 0) {
      if (!s.mu.try_lock_shared()) continue;
      s.mu.assert_held_read();
      a = s.a;
      b = s.b;
      s.mu.unlock_shared();
    } else {
      ReadLock l(s.mu);
      s.mu.assert_held_read();
      s.mu.assert_held();
      a = s.a;
      b = s.b;
    }
    if (a != b || a < last) violations.add();
    last = a;
  }
}

TEST(SharedMutexStress, ReadersNeverSeeAHalfWrite) {
  Shared s;
  Counter violations;
  Notification go;
  std::vector<std::thread> threads;
  for (int i = 0; i < kWriters; ++i) {
    threads.emplace_back([&] {
      go.wait();
      writer(s, kWriterIters);
    });
  }
  for (int i = 0; i < kReaders; ++i) {
    threads.emplace_back([&] {
      go.wait();
      reader(s, kReaderIters, violations);
    });
  }
  go.notify();
  for (auto& t : threads) t.join();
  EXPECT_EQ(violations.value(), 0u);
  ReadLock l(s.mu);
  EXPECT_EQ(s.a, uint64_t{kWriters} * kWriterIters);
  EXPECT_EQ(s.b, s.a);
}

struct Count {
  Mutex mu{"counter"};
  uint64_t n TDXSIM_GUARDED_BY(mu) = 0;
};

TEST(MutexStress, CounterIsExact) {
  Count c;
  constexpr int kThreads = 4;
  constexpr int kIters = 10000;
  Notification go;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      go.wait();
      for (int i = 0; i < kIters; ++i) {
        MutexLock l(c.mu);
        c.mu.assert_held();
        ++c.n;
      }
    });
  }
  go.notify();
  for (auto& t : threads) t.join();
  MutexLock l(c.mu);
  EXPECT_EQ(c.n, uint64_t{kThreads} * kIters);
}

}  // namespace
}  // namespace tdxsim
