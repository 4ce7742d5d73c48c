// The progress watchdog on crafted exits of a real TD: the same private fault past the bound
// with no page added is a violation naming the vCPU and GPA; an AUG in between, another GPA,
// another exit or a shared GPA starts over.
#include "check/progress_watchdog.h"

#include <gtest/gtest.h>

#include "check/td_checks_for_test.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {
namespace {

constexpr Gpa kGpa{0x7000};

class ProgressWatchdogTest : public ::testing::Test {
 protected:
  ProgressWatchdogTest() : check(td.ops(), td.vm().kvm_vm()) {}

  void ept_exits(unsigned n, Gpa gpa = kGpa, int vcpu = 0) {
    for (unsigned i = 0; i < n; ++i) {
      td.ops().exit_dispatch_trace.emit(
          TdxExitDispatchEvent{td.tdr(), vcpu, TdxExitHandler::kEptViolation, 48, gpa});
    }
  }
  void aug(uint64_t status = 0) {
    td.ops().sept_seamcall_trace.emit(
        TdxSeamcallEvent{td.tdr(), SeamcallLeaf::kMemPageAug, status, kGpa.gfn(), 0});
  }

  SmallTd td{0};
  ProgressWatchdog check;
};

TEST_F(ProgressWatchdogTest, TheBoundItselfIsQuiet) {
  ept_exits(ProgressWatchdog::kMaxSameFaultExits);
  EXPECT_EQ(check.violations(), 0u);
}

TEST_F(ProgressWatchdogTest, OneExitPastTheBoundIsAViolation) {
  ept_exits(ProgressWatchdog::kMaxSameFaultExits + 3);
  ASSERT_EQ(check.violations(), 1u);  // one per streak
  const std::string e = check.evidence().front();
  EXPECT_NE(e.find("vCPU 0"), std::string::npos) << e;
  EXPECT_NE(e.find("gpa:0x7000"), std::string::npos) << e;
}

TEST_F(ProgressWatchdogTest, AnSeptChangeInBetweenIsProgress) {
  ept_exits(3);
  aug(with_operand(TdxStatus::kOperandBusy, TdxOperand::kSeptEntry));  // refused: no progress
  ept_exits(2);
  aug();
  ept_exits(ProgressWatchdog::kMaxSameFaultExits - 1);
  // Another page's removal: the host is at work (and its kick sends vCPUs back in).
  td.ops().sept_seamcall_trace.emit(
      TdxSeamcallEvent{td.tdr(), SeamcallLeaf::kMemTrack, 0, Gfn{0}, 0});
  ept_exits(ProgressWatchdog::kMaxSameFaultExits - 1);
  // A zap of shared memory finished: so did a remote flush.
  td.vm().kvm().events().remote_flush.emit(RemoteFlushEvent{EventPhase::kEnd, Gfn{0}, 0, true});
  ept_exits(ProgressWatchdog::kMaxSameFaultExits);
  EXPECT_EQ(check.violations(), 0u);
}

TEST_F(ProgressWatchdogTest, OtherGpasVcpusExitsAndSharedGpasStartOver) {
  ept_exits(4);
  ept_exits(1, Gpa{0x8000});
  ept_exits(4);
  ept_exits(4, kGpa, /*vcpu=*/1);
  td.ops().exit_dispatch_trace.emit(
      TdxExitDispatchEvent{td.tdr(), 0, TdxExitHandler::kTdvmcall, 77, Gpa{0}});
  ept_exits(4);
  const Gpa shared{kGpa.raw() | (uint64_t{1} << 47)};
  ept_exits(ProgressWatchdog::kMaxSameFaultExits + 2, shared);
  EXPECT_EQ(check.violations(), 0u) << check.evidence().front();
}

}  // namespace
}  // namespace tdxsim
