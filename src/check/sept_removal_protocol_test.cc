// The removal protocol on crafted SEAMCALL streams of a real TD: the fixed order passes, each
// missing step is a violation naming the GPA; before finalization nothing is required.
#include "check/sept_removal_protocol.h"

#include <gtest/gtest.h>

#include "check/td_checks_for_test.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {
namespace {

constexpr Gfn kGfn{0x42};
const uint64_t kOk = raw(TdxStatus::kSuccess);

class SeptRemovalProtocolTest : public ::testing::Test {
 protected:
  SeptRemovalProtocolTest() : check(td.ops(), td.vm().kvm_vm(), [this] { return vcpus; }) {}

  void call(SeamcallLeaf leaf, uint64_t status = kOk, Gfn gfn = kGfn) {
    check.on_seamcall(TdxSeamcallEvent{td.tdr(), leaf, status, gfn, 0});
  }
  // vCPU `id` enters the guest (kBegin) or leaves it (kEnd), as its mode word tells.
  void entry(int id, EventPhase phase) {
    for (SeptRemovalProtocol::VcpuView& v : vcpus) {
      if (v.id != id) continue;
      v.in_guest = phase == EventPhase::kBegin;
      if (phase == EventPhase::kEnd) ++v.exits;
    }
  }
  std::string first() {
    const std::vector<std::string> e = check.evidence();
    return e.empty() ? std::string() : e.front();
  }

  std::vector<SeptRemovalProtocol::VcpuView> vcpus{{0, false, 0}, {1, false, 0}};
  SmallTd td{0};
  SeptRemovalProtocol check;
};

TEST_F(SeptRemovalProtocolTest, BlockTrackKickRemoveIsQuiet) {
  call(SeamcallLeaf::kMrFinalize);
  entry(0, EventPhase::kBegin);
  call(SeamcallLeaf::kMemRangeBlock, with_operand(TdxStatus::kOperandBusy, TdxOperand::kSeptTree));
  call(SeamcallLeaf::kMemRangeBlock);
  call(SeamcallLeaf::kMemTrack, kOk, Gfn{0});
  entry(0, EventPhase::kEnd);  // the kick
  call(SeamcallLeaf::kMemPageRemove);
  EXPECT_EQ(check.violations(), 0u) << first();
  EXPECT_EQ(check.removals(), 1u);
}

TEST_F(SeptRemovalProtocolTest, BeforeFinalizeARemoveNeedsNothing) {
  call(SeamcallLeaf::kMemPageRemove);
  EXPECT_EQ(check.violations(), 0u) << first();
}

TEST_F(SeptRemovalProtocolTest, ARemoveWithoutTrackIsAViolation) {
  call(SeamcallLeaf::kMrFinalize);
  call(SeamcallLeaf::kMemRangeBlock);
  call(SeamcallLeaf::kMemPageRemove,
       with_operand(TdxStatus::kTlbTrackingNotDone, TdxOperand::kRcx));
  ASSERT_EQ(check.violations(), 1u);
  EXPECT_NE(first().find("no TRACK after its BLOCK"), std::string::npos) << first();
  EXPECT_NE(first().find("gpa:0x42000"), std::string::npos) << first();
}

TEST_F(SeptRemovalProtocolTest, ATrackBeforeTheBlockDoesNotCount) {
  call(SeamcallLeaf::kMrFinalize);
  call(SeamcallLeaf::kMemTrack, kOk, Gfn{0});
  call(SeamcallLeaf::kMemRangeBlock);
  call(SeamcallLeaf::kMemPageRemove);
  EXPECT_EQ(check.violations(), 1u);
}

TEST_F(SeptRemovalProtocolTest, ARemoveAfterAFailedBlockIsAViolation) {
  call(SeamcallLeaf::kMrFinalize);
  call(SeamcallLeaf::kMemRangeBlock,
       with_operand(TdxStatus::kEptEntryStateIncorrect, TdxOperand::kRcx));
  call(SeamcallLeaf::kMemTrack, kOk, Gfn{0});
  call(SeamcallLeaf::kMemPageRemove);
  ASSERT_EQ(check.violations(), 1u);
  EXPECT_NE(first().find("follows a BLOCK that failed"), std::string::npos) << first();
}

TEST_F(SeptRemovalProtocolTest, AVcpuStillInTheGuestAfterTheTrackIsAViolation) {
  call(SeamcallLeaf::kMrFinalize);
  entry(0, EventPhase::kBegin);
  call(SeamcallLeaf::kMemRangeBlock);
  call(SeamcallLeaf::kMemTrack, kOk, Gfn{0});
  call(SeamcallLeaf::kMemPageRemove);
  ASSERT_EQ(check.violations(), 1u);
  EXPECT_NE(first().find("vCPU 0 was in the guest"), std::string::npos) << first();
}

TEST_F(SeptRemovalProtocolTest, AnotherTdsCallsAreNotWatched) {
  call(SeamcallLeaf::kMrFinalize);
  // Through the tracepoint, as KVM emits: another TDR is filtered out.
  td.ops().sept_seamcall_trace.emit(TdxSeamcallEvent{Hpa{td.tdr().raw() + kPageSize},
                                                     SeamcallLeaf::kMemPageRemove, kOk, kGfn, 0});
  EXPECT_EQ(check.removals(), 0u);
  td.ops().sept_seamcall_trace.emit(
      TdxSeamcallEvent{td.tdr(), SeamcallLeaf::kMemPageRemove, kOk, kGfn, 0});
  EXPECT_EQ(check.removals(), 1u);
  EXPECT_EQ(check.violations(), 1u);
}

}  // namespace
}  // namespace tdxsim
