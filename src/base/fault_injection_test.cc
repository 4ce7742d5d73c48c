#include "base/fault_injection.h"

#include <set>
#include <string>

#include <gtest/gtest.h>

namespace tdxsim {
namespace {

using enum EnvFaultKind;
constexpr uint64_t kAug = 0x1e;     // a SEAMCALL leaf number, as a key
constexpr uint64_t kRemove = 0x1d;  // another one

TEST(BugId, NamesRoundTrip) {
  const auto ids = all_bug_ids();
  EXPECT_EQ(ids.size(), kNumBugIds);
  EXPECT_EQ(ids.size(), 18u);  // the 16 catalogue rows with switches, and the planted P1, P2
  std::set<std::string> names;
  for (BugId id : ids) {
    names.insert(to_string(id));
    EXPECT_EQ(parse_bug_id(to_string(id)), id);
  }
  EXPECT_EQ(names.size(), ids.size());
  EXPECT_STREQ(to_string(BugId::M2), "M2");
  EXPECT_STREQ(to_string(BugId::T12), "T12");
  EXPECT_EQ(parse_bug_id("t12"), BugId::T12);
  EXPECT_EQ(parse_bug_id("s0"), BugId::S0);
  EXPECT_EQ(parse_bug_id("M5"), std::nullopt);
  EXPECT_EQ(parse_bug_id("T1 "), std::nullopt);
  EXPECT_EQ(parse_bug_id(""), std::nullopt);
}

TEST(FaultInjection, BugSwitchesAreOffByDefault) {
  FaultInjection f;
  for (BugId id : all_bug_ids()) EXPECT_FALSE(f.bug(id)) << to_string(id);
  f.enable(BugId::M2);
  f.enable(BugId::T12);
  EXPECT_TRUE(f.bug(BugId::M2));
  EXPECT_TRUE(f.bug(BugId::T12));
  EXPECT_FALSE(f.bug(BugId::M3));
  f.disable(BugId::M2);
  EXPECT_FALSE(f.bug(BugId::M2));
  EXPECT_TRUE(f.bug(BugId::T12));
}

TEST(FaultInjection, NothingArmedTakesNothing) {
  FaultInjection f;
  EXPECT_EQ(f.take(kForceOperandBusy, kAug), std::nullopt);
  EXPECT_EQ(f.fired(kForceOperandBusy), 0u);
}

TEST(FaultInjection, CountedArmFiresExactlyCountTimes) {
  FaultInjection f;
  f.arm(kForceOperandBusy, kAug, 2, /*param=*/0x92);
  EXPECT_EQ(f.take(kForceOperandBusy, kRemove), std::nullopt);  // other key
  EXPECT_EQ(f.take(kFailSeamcallInsn, kAug), std::nullopt);     // other kind
  EXPECT_EQ(f.take(kForceOperandBusy, kAug), 0x92u);
  EXPECT_EQ(f.take(kForceOperandBusy, kAug), 0x92u);
  EXPECT_EQ(f.take(kForceOperandBusy, kAug), std::nullopt);
  EXPECT_EQ(f.fired(kForceOperandBusy), 2u);
  EXPECT_EQ(f.fired(kFailSeamcallInsn), 0u);
}

TEST(FaultInjection, ExactKeyWinsOverAnyKey) {
  FaultInjection f;
  f.arm(kFailSeamcallInsn, FaultInjection::kAnyKey, 1, /*param=*/7);
  f.arm(kFailSeamcallInsn, kAug, 1, /*param=*/3);
  EXPECT_EQ(f.take(kFailSeamcallInsn, kAug), 3u);
  EXPECT_EQ(f.take(kFailSeamcallInsn, kAug), 7u);  // exact arm used up; any-key fires
  EXPECT_EQ(f.take(kFailSeamcallInsn, kRemove), std::nullopt);
  EXPECT_EQ(f.fired(kFailSeamcallInsn), 2u);
}

TEST(FaultInjection, ForeverNeverRunsOut) {
  FaultInjection f;
  f.arm(kDelayTdExit, FaultInjection::kAnyKey, FaultInjection::kForever, 5);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(f.take(kDelayTdExit, i), 5u);
  EXPECT_EQ(f.fired(kDelayTdExit), 1000u);
  f.disarm_all();
  EXPECT_EQ(f.take(kDelayTdExit, 0), std::nullopt);
  EXPECT_EQ(f.fired(kDelayTdExit), 1000u);  // disarming keeps the history
}

TEST(FaultInjection, RearmReplacesAndDisarmRemoves) {
  FaultInjection f;
  f.arm(kArmZeroStep, 1, 5, 10);
  f.arm(kArmZeroStep, 1, 1, 20);
  f.arm(kArmZeroStep, 2, 1, 30);
  EXPECT_EQ(f.take(kArmZeroStep, 1), 20u);
  EXPECT_EQ(f.take(kArmZeroStep, 1), std::nullopt);
  f.disarm(kArmZeroStep, 2);
  EXPECT_EQ(f.take(kArmZeroStep, 2), std::nullopt);
  f.arm(kForcePreviousEpochBusy, kRemove, 1);
  EXPECT_EQ(f.take(kForcePreviousEpochBusy, kRemove), 0u);  // default param
}

TEST(FaultInjection, KindNames) {
  EXPECT_STREQ(to_string(kForceOperandBusy), "force_operand_busy");
  EXPECT_STREQ(to_string(kFailSeamcallInsn), "fail_seamcall_insn");
  EXPECT_STREQ(to_string(kArmZeroStep), "arm_zero_step");
  EXPECT_STREQ(to_string(kForcePreviousEpochBusy), "force_previous_epoch_busy");
  EXPECT_STREQ(to_string(kDelayTdExit), "delay_td_exit");
}

TEST(FaultInjectionDeathTest, ArmWithZeroCount) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  FaultInjection f;
  EXPECT_DEATH(f.arm(kForceOperandBusy, kAug, 0), "count 0");
}

}  // namespace
}  // namespace tdxsim
