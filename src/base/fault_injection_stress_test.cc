// Concurrent take() must never fire an armed fault more often than its count, with exact
// and any-key arms mixed, while other threads flip bug switches.
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/atomic.h"
#include "base/fault_injection.h"
#include "base/wait.h"

namespace tdxsim {
namespace {

TEST(FaultInjectionStress, TakeNeverOverFires) {
  constexpr int kTakers = 4;
  constexpr int kAttempts = 5000;
  constexpr uint32_t kExact = 6000;
  constexpr uint32_t kAny = 3000;
  constexpr uint64_t kLeaf = 0x1e;
  FaultInjection f;
  f.arm(EnvFaultKind::kForceOperandBusy, kLeaf, kExact, /*param=*/1);
  f.arm(EnvFaultKind::kForceOperandBusy, FaultInjection::kAnyKey, kAny, /*param=*/2);

  Counter exact_hits;
  Counter any_hits;
  Counter wrong;
  AtomicWord stop{0};
  Notification go;
  std::vector<std::thread> threads;
  for (int t = 0; t < kTakers; ++t) {
    threads.emplace_back([&] {
      go.wait();
      for (int i = 0; i < kAttempts; ++i) {
        const auto p = f.take(EnvFaultKind::kForceOperandBusy, kLeaf);
        if (!p) continue;
        if (*p == 1) {
          exact_hits.add();
        } else if (*p == 2) {
          any_hits.add();
        } else {
          wrong.add();
        }
        if (f.take(EnvFaultKind::kDelayTdExit, 0)) wrong.add();  // never armed
      }
    });
  }
  threads.emplace_back([&] {
    while (stop.load(std::memory_order_acquire) == 0) {
      f.enable(BugId::M2);
      (void)f.bug(BugId::T12);
      f.disable(BugId::M2);
    }
  });
  go.notify();
  for (int t = 0; t < kTakers; ++t) threads[t].join();
  stop.store(1, std::memory_order_release);
  threads.back().join();

  EXPECT_EQ(wrong.value(), 0u);
  EXPECT_EQ(exact_hits.value(), kExact);  // 20000 attempts > 9000 armed: both used up
  EXPECT_EQ(any_hits.value(), kAny);
  EXPECT_EQ(f.fired(EnvFaultKind::kForceOperandBusy), uint64_t{kExact} + kAny);
  EXPECT_EQ(f.take(EnvFaultKind::kForceOperandBusy, kLeaf), std::nullopt);
  EXPECT_FALSE(f.bug(BugId::T12));
}

}  // namespace
}  // namespace tdxsim
