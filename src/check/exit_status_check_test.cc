// Exit handling after a TD-entry status: SUCCESS and NON_RECOVERABLE statuses are exits; a
// failed entry whose low bits look like an exit reason is a violation naming the vCPU, the
// handler and the status.
#include "check/exit_status_check.h"

#include <gtest/gtest.h>

#include "check/td_checks_for_test.h"
#include "check/vm_health.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {
namespace {

static_assert(vp_enter_status_has_exit(0));
static_assert(vp_enter_status_has_exit(48));  // SUCCESS | EPT violation
static_assert(vp_enter_status_has_exit(raw(TdxStatus::kNonRecoverableVcpu) | 2));
static_assert(vp_enter_status_has_exit(raw(TdxStatus::kNonRecoverableTdWrongApicMode)));
static_assert(!vp_enter_status_has_exit(raw(TdxStatus::kTscRollback)));
static_assert(!vp_enter_status_has_exit(raw(TdxStatus::kOpStateIncorrect)));
static_assert(!vp_enter_status_has_exit(raw(TdxStatus::kVcpuAssociated)));
static_assert(!vp_enter_status_has_exit(0xC000'0006'0000'0000));  // TDX_INVALID_RESUMPTION
static_assert(!vp_enter_status_has_exit(0x8000'FF00'0000'0000));  // TDX_SW_ERROR

TEST(ExitStatusCheckTest, HandlersAfterRealExitsAreQuiet) {
  SmallTd td(0);
  ExitStatusCheck check(td.ops(), td.vm().kvm_vm());
  td.ops().exit_dispatch_trace.emit(
      TdxExitDispatchEvent{td.tdr(), 0, TdxExitHandler::kNmi, 0, Gpa{0}});
  td.ops().exit_dispatch_trace.emit(
      TdxExitDispatchEvent{td.tdr(), 0, TdxExitHandler::kTdvmcall, 77, Gpa{0}});
  td.ops().exit_dispatch_trace.emit(
      TdxExitDispatchEvent{td.tdr(), 0, TdxExitHandler::kEptViolation, 48, Gpa{0}});
  EXPECT_EQ(check.violations(), 0u);
}

TEST(ExitStatusCheckTest, AnNmiHandledAfterAFailedEntryIsAViolation) {
  SmallTd td(0);
  ExitStatusCheck check(td.ops(), td.vm().kvm_vm());
  td.ops().exit_dispatch_trace.emit(TdxExitDispatchEvent{td.tdr(), 3, TdxExitHandler::kNmi,
                                                         raw(TdxStatus::kTscRollback), Gpa{0}});
  // Another TD's dispatches are not this check's.
  const Hpa other{td.tdr().raw() + kPageSize};
  td.ops().exit_dispatch_trace.emit(
      TdxExitDispatchEvent{other, 0, TdxExitHandler::kNmi, raw(TdxStatus::kTscRollback), Gpa{0}});
  ASSERT_EQ(check.violations(), 1u);
  const std::string e = check.evidence().front();
  EXPECT_NE(e.find("vCPU 3"), std::string::npos) << e;
  EXPECT_NE(e.find("NMI"), std::string::npos) << e;
  EXPECT_NE(e.find("0xc000070600000000"), std::string::npos) << e;
}

TEST(VmBugTest, ReportsTheFirstBugsMessage) {
  SmallTd td(0);
  EXPECT_FALSE(vm_bug_violation(td.vm().kvm()).has_value());
  td.vm().kvm().bug_on(true, "first");
  td.vm().kvm().bug_on(true, "second");
  const std::optional<std::string> v = vm_bug_violation(td.vm().kvm());
  ASSERT_TRUE(v.has_value());
  EXPECT_NE(v->find("first"), std::string::npos) << *v;
}

}  // namespace
}  // namespace tdxsim
