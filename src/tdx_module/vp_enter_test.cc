// TDH.VP.ENTER and the guest's TDCALLs through SEAMCALL, as KVM drives them: entry errors,
// TD-exit registers (abi §1.4), ACCEPT and its TD exit (rules §1, A10-A12), #VE on PENDING
// pages, TDG.VP.VMCALL register passing, TDG.VP.INFO / VEINFO.GET, the vCPU ↔ LP
// association, the removal protocol with a vCPU inside the TD (abi §5), and the zero-step
// filter (abi §6, rules A14).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "tdx_module/vcpu_harness.h"

namespace tdxsim {
namespace {

using SG = ScriptedGuest;
using test::accept;
using test::kGpa;
using test::kJunk;
using test::kTdHkid;
using test::kOk;
using test::pi;
using test::tdcall;
using test::operator+;
using test::SpinGuest;
using VpEnterTest = test::VcpuHarness;

TEST_F(VpEnterTest, EntryErrorsLeaveTheOutputRegistersAlone) {
  build();
  SeamcallRegs r;
  r.r8 = kJunk;
  r.r11 = kJunk;
  // Before TDH.MR.FINALIZE (rules A13): the low 32 bits are 0, not an exit reason.
  EXPECT_EQ(enter(r), raw(TdxStatus::kOpStateIncorrect));
  EXPECT_EQ(r.r8, kJunk);
  EXPECT_EQ(r.r11, kJunk);
  finalize();
  // A TDVPR operand that is not one: the TDR.
  SeamcallRegs bad;
  bad.rax = LeafAndVersion::of(SeamcallLeaf::kVpEnter).raw();
  bad.rcx = tdr_.raw();
  {
    CpuBinding b = platform_.bind(0);
    EXPECT_EQ(host_seamcall(b.cpu(), bad),
              with_operand(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRcx));
  }
  EXPECT_EQ(*module_.vcpu_assoc_lp(tdvprs_[0]), kNoLp);
}

TEST_F(VpEnterTest, AcceptZeroesThePageAndTheGuestOwnsItsContent) {
  runnable();
  const Hpa p = aug(kGpa);
  run(accept(kGpa) + std::vector<GuestInsn>{SG::load(kGpa, Gpr::kRbx), SG::store(kGpa + 8, 77),
                                            SG::load(kGpa + 8, Gpr::kRdx)});
  SeamcallRegs r;
  r.rbx = kJunk;
  expect_hlt_exit(enter(r), r);
  EXPECT_EQ(r.rbx, 0u) << "GPRs the guest did not expose come back zero";
  const GuestState g = guest();
  EXPECT_EQ(g.regs[Gpr::kRax], kOk) << "ACCEPT's status";
  EXPECT_EQ(g.regs[Gpr::kRbx], 0u) << "junk the host wrote before AUG is gone";
  EXPECT_EQ(g.regs[Gpr::kRdx], 77u);
  EXPECT_EQ(state(kGpa), SeptState::kMapped);
  EXPECT_EQ(mem().read(p + 8, KeyId{kTdHkid}).value, 77u);
  EXPECT_NE(mem().read(p + 8, kHostKey).value, 77u) << "the host reads ciphertext";
}

TEST_F(VpEnterTest, AcceptOfAPageNotThereIsAnEptViolationExitWithTheAcceptQualification) {
  runnable();
  run(accept(kGpa));
  SeamcallRegs r;
  const uint64_t s = enter(r);
  EXPECT_EQ(s, 0x30u);
  EXPECT_EQ(r.rcx, 0x2u);
  // info: requested level 0, walk stopped at level 0 (the PTE), state FREE, not a leaf.
  EXPECT_EQ(r.rdx, 1u);
  EXPECT_EQ(r.r8, kGpa.raw());
  const uint64_t rip = guest().rip;
  EXPECT_EQ(rip, 8u) << "RIP stays on the TDCALL";
  // The host AUGs and re-enters: the TDCALL runs again and succeeds.
  aug(kGpa);
  expect_hlt_exit(enter(r), r);
  EXPECT_EQ(guest().regs[Gpr::kRax], kOk);
  EXPECT_EQ(state(kGpa), SeptState::kMapped);
}

TEST_F(VpEnterTest, AcceptAnswersFromTheEntryItFinds) {
  runnable();
  const Gpa second = kGpa + kPageSize;
  aug(kGpa);
  aug(second);
  // 4K accepted twice; a 2M accept over a 2M mapped as 4K; a 1G level; a shared GPA.
  const Gpa shared{kGpa.raw() | (uint64_t{1} << 47)};
  run(accept(kGpa) + accept(second));
  SeamcallRegs r;
  expect_hlt_exit(enter(r), r);
  EXPECT_EQ(guest().regs[Gpr::kRax], kOk);

  struct Case {
    uint64_t rcx;
    uint64_t status;
  } cases[] = {
      {kGpa.raw(), with_details(TdxStatus::kPageAlreadyAccepted, 0)},
      {kGpa.align_down(Level::k2M).raw() | 1, with_details(TdxStatus::kPageSizeMismatch, 1)},
      {kGpa.raw() | 2, with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRcx)},
      {shared.raw(), with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRcx)},
      {kGpa.raw() | 8, with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRcx)},
  };
  for (const Case& c : cases) {
    run_from_here(tdcall(TdcallLeaf::kMemPageAccept, c.rcx));
    SeamcallRegs out;
    expect_hlt_exit(enter(out), out);
    EXPECT_EQ(guest().regs[Gpr::kRax], c.status) << std::hex << c.rcx;
  }
}

TEST_F(VpEnterTest, PendingAccessIsAVeUnlessSeptVeDisable) {
  runnable(/*attributes=*/0);
  aug(kGpa);
  // The #VE handler reads the #VE info, accepts the page and returns to the load.
  const std::vector<GuestInsn> handler =
      tdcall(TdcallLeaf::kVpVeinfoGet) + std::vector<GuestInsn>{SG::mov(Gpr::kR12, 0)} +
      // keep VEINFO's R9 (the GPA) in R9 across the ACCEPT, which only writes RAX
      accept(kGpa) + std::vector<GuestInsn>{SG::op(GuestInsnKind::kIret)};
  run({SG::load(kGpa + 16, Gpr::kRbx)}, handler);
  SeamcallRegs r;
  expect_hlt_exit(enter(r), r);
  const GuestState g = guest();
  EXPECT_EQ(g.regs[Gpr::kRbx], 0u);
  EXPECT_EQ(g.regs[Gpr::kR9], (kGpa + 16).raw()) << "VEINFO.GET's GPA";
  EXPECT_EQ(state(kGpa), SeptState::kMapped);
}

TEST_F(VpEnterTest, PendingAccessWithSeptVeDisableIsAPendingExit) {
  runnable(kTdAttrSeptVeDisable);
  aug(kGpa);
  run({SG::load(kGpa)});
  SeamcallRegs r;
  EXPECT_EQ(enter(r), static_cast<uint64_t>(VmxExitReason::kEptViolation));
  EXPECT_EQ(r.rdx & 0xF, static_cast<uint64_t>(ExtExitQualType::kPendingEptViolation));
  EXPECT_EQ(r.rcx & 0x38, 0u) << "no permission bits";
  EXPECT_EQ(r.r8, kGpa.raw());
}

TEST_F(VpEnterTest, VmcallPassesTheSelectedRegistersBothWays) {
  runnable();
  const uint64_t mask = (1u << 10) | (1u << 11) | (1u << 12) | (1u << 13);
  run({SG::mov(Gpr::kR10, 0), SG::mov(Gpr::kR11, 0x10001), SG::mov(Gpr::kR12, 0x1234000),
       SG::mov(Gpr::kR13, 0x2000), SG::mov(Gpr::kR14, kJunk), SG::mov(Gpr::kRcx, mask),
       SG::mov(Gpr::kRax, 0), SG::op(GuestInsnKind::kTdcall), SG::mov(Gpr::kRax, 0),
       SG::mov(Gpr::kRcx, (1u << 0) | (1u << 10)), SG::op(GuestInsnKind::kTdcall)});
  SeamcallRegs r;
  EXPECT_EQ(enter(r), static_cast<uint64_t>(VmxExitReason::kTdcall));
  EXPECT_EQ(r.rcx, mask);
  EXPECT_EQ(r.r10, 0u);
  EXPECT_EQ(r.r11, 0x10001u);
  EXPECT_EQ(r.r12, 0x1234000u);
  EXPECT_EQ(r.r13, 0x2000u);
  EXPECT_EQ(r.r14, 0u) << "not selected";
  // The host answers RETRY with R11 = where to resume; R14 is not the guest's to receive.
  r.r10 = static_cast<uint64_t>(TdVmCallStatus::kRetry);
  r.r11 = 0x1235000;
  r.r14 = 1;
  // The second VMCALL selects RAX: refused without an exit, then the program halts.
  expect_hlt_exit(enter(r), r);
  const GuestState g = guest();
  EXPECT_EQ(g.regs[Gpr::kR10], static_cast<uint64_t>(TdVmCallStatus::kRetry));
  EXPECT_EQ(g.regs[Gpr::kR11], 0x1235000u);
  EXPECT_EQ(g.regs[Gpr::kR14], kJunk);
  EXPECT_EQ(g.regs[Gpr::kRax], with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRcx));
}

TEST_F(VpEnterTest, VpInfoAndVeinfoGet) {
  runnable(kTdAttrSeptVeDisable, /*vcpus=*/2);
  run(tdcall(TdcallLeaf::kVpInfo), {}, /*v=*/1);
  SeamcallRegs r;
  expect_hlt_exit(enter(r, /*v=*/1, /*cpu=*/1), r);
  GuestState g = guest(1);
  EXPECT_EQ(g.regs[Gpr::kRax], kOk);
  EXPECT_EQ(g.regs[Gpr::kRcx], 48u);
  EXPECT_EQ(g.regs[Gpr::kRdx], kTdAttrSeptVeDisable);
  EXPECT_EQ(g.regs[Gpr::kR8], 2u | (uint64_t{2} << 32));
  EXPECT_EQ(g.regs[Gpr::kR9], 1u);
  run(tdcall(TdcallLeaf::kVpVeinfoGet));
  expect_hlt_exit(enter(r), r);
  EXPECT_EQ(guest().regs[Gpr::kRax], raw(TdxStatus::kNoValidVeInfo));
}

TEST_F(VpEnterTest, AnAssociatedVcpuEntersOnlyWhereItIsAssociated) {
  runnable();
  EXPECT_EQ(call(SeamcallLeaf::kVpFlush, tdvprs_[0].raw(), 0, 0, nullptr, 0),
            raw(TdxStatus::kVcpuNotAssociated));
  SeamcallRegs r;
  expect_hlt_exit(enter(r, 0, /*cpu=*/0), r);
  EXPECT_EQ(*module_.vcpu_assoc_lp(tdvprs_[0]), 0u);
  EXPECT_EQ(enter(0, /*cpu=*/2), raw(TdxStatus::kVcpuAssociated));
  EXPECT_EQ(call(SeamcallLeaf::kVpFlush, tdvprs_[0].raw(), 0, 0, nullptr, 2),
            raw(TdxStatus::kVcpuNotAssociated));
  EXPECT_EQ(call(SeamcallLeaf::kVpFlush, tdvprs_[0].raw(), 0, 0, nullptr, 0), kOk);
  expect_hlt_exit(enter(r, 0, /*cpu=*/2), r);
  EXPECT_EQ(*module_.vcpu_assoc_lp(tdvprs_[0]), 2u);
}

TEST_F(VpEnterTest, ReentryAfterAnEpochChangeFlushesTheTdsTranslations) {
  runnable();
  run({});
  enter();
  const uint64_t flushes = platform_.cpu(0).stats().invept_single.value();
  enter();
  EXPECT_EQ(platform_.cpu(0).stats().invept_single.value(), flushes) << "same vCPU, same epoch";
  ASSERT_EQ(call(SeamcallLeaf::kMemTrack, tdr_.raw()), kOk);
  enter();
  EXPECT_EQ(platform_.cpu(0).stats().invept_single.value(), flushes + 1);
}

}  // namespace
}  // namespace tdxsim
