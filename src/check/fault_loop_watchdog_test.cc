// The fault-loop half of "progress": a vCPU retrying one fault for longer than the bound with
// the host standing still is a violation; the same streak with an invalidation in it, a fixed
// fault, another GPA or a shorter span is not.
#include "check/fault_loop_watchdog.h"

#include <gtest/gtest.h>

#include "kvm/host_mm.h"
#include "kvm/kvm.h"

namespace tdxsim {
namespace {

using Clock = std::chrono::steady_clock;

class FaultLoopWatchdogTest : public ::testing::Test {
 protected:
  // `n` retried faults of vCPU 0 at `gpa`, spread evenly over `span`.
  void retries(uint64_t n, Clock::duration span, Gpa gpa = Gpa{0x5000}) {
    for (uint64_t i = 0; i < n; ++i) {
      watchdog_.on_fault(PageFaultEvent{0, gpa, 0x2, RetPf::kRetry},
                         t0_ + span * static_cast<int64_t>(i) / static_cast<int64_t>(n));
    }
  }

  HostMemory mem_{HostMemoryConfig{.bytes = 64 * kPageSize}};
  HostMm mm_{mem_};
  Kvm kvm_{mem_, mm_, KvmConfig{}};
  FaultLoopWatchdog watchdog_{kvm_};
  Clock::time_point t0_ = Clock::now();
};

TEST_F(FaultLoopWatchdogTest, RetryingOneFaultPastTheBoundWithNoHostProgressIsAViolation) {
  retries(4 * FaultLoopWatchdog::kCheckEvery, FaultLoopWatchdog::kBound * 2);
  ASSERT_EQ(watchdog_.violations(), 1u);  // once per streak
  EXPECT_NE(watchdog_.evidence().front().find("vCPU 0 faulted at"), std::string::npos)
      << watchdog_.evidence().front();
}

TEST_F(FaultLoopWatchdogTest, AShorterStreakIsNot) {
  retries(4 * FaultLoopWatchdog::kCheckEvery, FaultLoopWatchdog::kBound / 2);
  EXPECT_EQ(watchdog_.violations(), 0u);
}

TEST_F(FaultLoopWatchdogTest, HostProgressOrAnotherOutcomeEndsTheStreak) {
  const auto half = FaultLoopWatchdog::kBound * 2 / 3;
  retries(2 * FaultLoopWatchdog::kCheckEvery, half);
  {
    // An invalidation came and went: the host moved.
    WriteLock l(kvm_.mmu_lock());
    kvm_.mmu_invalidate_begin(Gfn{0}, Gfn{1});
    kvm_.mmu_invalidate_end();
  }
  t0_ += half;
  retries(2 * FaultLoopWatchdog::kCheckEvery, half);
  EXPECT_EQ(watchdog_.violations(), 0u);
  // A fault that got fixed, or one at another GPA, starts over too.
  t0_ += half;
  watchdog_.on_fault(PageFaultEvent{0, Gpa{0x5000}, 0x2, RetPf::kFixed}, t0_);
  retries(2 * FaultLoopWatchdog::kCheckEvery, half);
  retries(2 * FaultLoopWatchdog::kCheckEvery, half, Gpa{0x6000});
  EXPECT_EQ(watchdog_.violations(), 0u);
}

}  // namespace
}  // namespace tdxsim
