// SpinLock under real contention: threads update two words that must stay equal, with a
// yield between the two writes to widen the window; TSan runs it too.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "base/spin_lock.h"

namespace tdxsim {
namespace {

struct Pair {
  SpinLock mu{"pair"};
  uint64_t a TDXSIM_GUARDED_BY(mu) = 0;
  uint64_t b TDXSIM_GUARDED_BY(mu) = 0;
};

TEST(SpinLockStress, ContendersNeverSeeAHalfDoneUpdate) {
  constexpr int kThreads = 4;
  constexpr int kIters = 200000;
  Pair p;
  std::atomic<uint64_t> torn{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIters; ++i) {
        SpinLockGuard l(p.mu);
        if (p.a != p.b) torn.fetch_add(1, std::memory_order_relaxed);
        ++p.a;
        if ((i + t) % 64 == 0) std::this_thread::yield();
        ++p.b;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  SpinLockGuard l(p.mu);
  EXPECT_EQ(torn.load(), 0u);
  EXPECT_EQ(p.a, uint64_t{kThreads} * kIters);
  EXPECT_EQ(p.b, p.a);
}

}  // namespace
}  // namespace tdxsim
