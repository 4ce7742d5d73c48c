// The TD run loop: a failed TD entry (seed 002), vCPU migration between CPUs, and the
// TDVMCALLs that go to userspace (MapGPA, MMIO) or end the run (HLT, fatal error).
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "kvm/vmx/tdx_fixture_for_test.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {
namespace {

using L = SeamcallLeaf;

class TdxRunTest : public TdxFixture {
 protected:
  GuestState guest_state(int i) { return *module_.vcpu_guest_state(tdx_vcpu(i).tdvpr()); }
};

// Seed 002: TDH.VP.ENTER failing as an instruction (VMfailInvalid: 0x8000FF00FFFF0000, low 16
// bits 0 = "exception or NMI") is no TD exit: no host NMI handler, no TDVMCALL, an internal
// error for userspace and a bugged VM.
TEST_F(TdxRunTest, VpEnterInstructionFailureIsNoExitAndNoNmi) {
  build_td(1, 0);
  faults_.arm(EnvFaultKind::kFailSeamcallInsn, static_cast<uint64_t>(L::kVpEnter), 1,
              static_cast<uint64_t>(SeamcallInsnFault::kVmFailInvalid));
  const CpuStats& cpu = platform_.cpu(1).stats();
  const uint64_t spurious = cpu.spurious_nmis.value(), handled = cpu.nmis_handled.value();
  ASSERT_TRUE(run_on(*vcpus_[0], 1));
  EXPECT_EQ(faults_.fired(EnvFaultKind::kFailSeamcallInsn), 1u);
  EXPECT_EQ(tdx_vcpu(0).vp_enter_ret(), linux_status::kSeamcallVmFailInvalid);
  EXPECT_EQ(tdx_vcpu(0).exit_reason(), TdxVcpu::kInvalidExitReason);
  EXPECT_EQ(cpu.spurious_nmis.value(), spurious) << "a spurious host NMI for a failed entry";
  EXPECT_EQ(cpu.nmis_handled.value(), handled);
  EXPECT_EQ(td().stats().host_nmis.value(), 0u);
  const KvmRun& run = vcpus_[0]->run_state();
  ASSERT_EQ(run.exit_reason, KvmExitReason::kInternalError) << "no HLT or other TDVMCALL";
  EXPECT_EQ(run.internal.suberror, kKvmInternalErrorUnexpectedExitReason);
  EXPECT_EQ(run.internal.data[0], linux_status::kSeamcallVmFailInvalid);
  EXPECT_EQ(run.internal.data[1], 1u);
  EXPECT_TRUE(kvm().vm_bugged());
  // The guest never ran: its HLT is still ahead of it.
  EXPECT_EQ(guest_state(0).retired, 0u);
  EXPECT_EQ(err(run_on(*vcpus_[0], 1)), static_cast<int>(Errno::kEio));
}

// The same after a real NMI exit: the registers of that exit (an NMI's interruption info)
// are still there when the next entry fails, and must not be read as a second NMI.
TEST_F(TdxRunTest, FailedEntryAfterAnNmiExitDoesNotRunTheNmiHandlerAgain) {
  build_td(1, 0);
  ThenSpin guest({});
  vt_->set_guest(*vcpus_[0], &guest, /*instruction_budget=*/0);
  std::future<KvmResult<>> run = start_run(*vcpus_[0], 1);
  while (!guest.spinning() || !platform_.cpu(1).in_guest_mode()) std::this_thread::yield();
  const CpuStats& cpu = platform_.cpu(1).stats();
  const uint64_t spurious = cpu.spurious_nmis.value(), handled = cpu.nmis_handled.value();
  // The re-entry after the NMI exit fails.
  faults_.arm(EnvFaultKind::kFailSeamcallInsn, static_cast<uint64_t>(L::kVpEnter), 1,
              static_cast<uint64_t>(SeamcallInsnFault::kVmFailInvalid));
  platform_.cpu(1).send_nmi();
  ASSERT_TRUE(wait(run));
  EXPECT_EQ(cpu.nmis_handled.value(), handled + 1) << "the real NMI";
  EXPECT_EQ(cpu.spurious_nmis.value(), spurious) << "the failed entry read as an NMI";
  EXPECT_EQ(td().stats().host_nmis.value(), 1u);
  EXPECT_EQ(vcpus_[0]->run_state().exit_reason, KvmExitReason::kInternalError);
  EXPECT_EQ(vcpus_[0]->run_state().internal.data[0], linux_status::kSeamcallVmFailInvalid);
  EXPECT_TRUE(kvm().vm_bugged());
}

TEST_F(TdxRunTest, MigrationFlushesTheVcpuOnItsOldCpuFirst) {
  build_td(1, 0);
  ASSERT_TRUE(run_on(*vcpus_[0], 1));
  EXPECT_EQ(module_.vcpu_assoc_lp(tdx_vcpu(0).tdvpr()), 1u);
  std::vector<TdxSeamcallEvent> seen;
  std::mutex mu;
  auto sub = tdx_->seamcall_trace.attach([&](const TdxSeamcallEvent& e) {
    std::lock_guard l(mu);
    seen.push_back(e);
  });
  // CPU 5 is on the other package.
  ASSERT_TRUE(run_on(*vcpus_[0], 5));
  EXPECT_EQ(vcpus_[0]->run_state().exit_reason, KvmExitReason::kHlt);
  std::lock_guard l(mu);
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[0].leaf, L::kVpFlush);
  EXPECT_EQ(seen[0].cpu, 1u);
  EXPECT_EQ(seen[0].status, 0u);
  const auto enter = std::find_if(seen.begin(), seen.end(),
                                  [](const TdxSeamcallEvent& e) { return e.leaf == L::kVpEnter; });
  ASSERT_NE(enter, seen.end());
  EXPECT_EQ(enter->cpu, 5u);
  EXPECT_EQ(status_of(enter->status), TdxStatus::kSuccess) << describe_status(enter->status);
  EXPECT_EQ(module_.vcpu_assoc_lp(tdx_vcpu(0).tdvpr()), 5u);
  EXPECT_EQ(tdx_vcpu(0).associated_cpu(), &platform_.cpu(5));
  EXPECT_EQ(vcpus_[0]->stats().migrations.value(), 1u);
  EXPECT_FALSE(kvm().vm_bugged()) << kvm().bug_message();
}

TEST_F(TdxRunTest, MapGpaGoesToUserspaceTwoMegabytesAtATime) {
  build_td(2, 0);
  const uint64_t gpa = kTdMemGpa.raw();
  // vCPU 0 converts 4 MiB to shared; vCPU 1 4 MiB to private, with a request pending after
  // the first chunk.
  ScriptedGuest to_shared(vmcall(TdVmCall::kMapGpa, gpa | kTdSharedBit, uint64_t{4} << 20));
  ScriptedGuest to_private(vmcall(TdVmCall::kMapGpa, gpa, uint64_t{4} << 20));
  vt_->set_guest(*vcpus_[0], &to_shared, 4096);
  vt_->set_guest(*vcpus_[1], &to_private, 4096);

  for (uint64_t chunk = 0; chunk < 2; ++chunk) {
    ASSERT_TRUE(run_on(*vcpus_[0], 1));
    const KvmRun& run = vcpus_[0]->run_state();
    ASSERT_EQ(run.exit_reason, KvmExitReason::kHypercall) << chunk;
    EXPECT_EQ(run.hypercall.nr, kKvmHcMapGpaRange);
    EXPECT_EQ(run.hypercall.args[0], gpa + chunk * (uint64_t{2} << 20)) << "shared bit stripped";
    EXPECT_EQ(run.hypercall.args[1], 512u);
    EXPECT_EQ(run.hypercall.args[2], kKvmMapGpaRangeDecrypted);
    EXPECT_EQ(run.hypercall.flags, kKvmExitHypercallLongMode);
  }
  ASSERT_TRUE(run_on(*vcpus_[0], 1));
  EXPECT_EQ(vcpus_[0]->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(guest_state(0).regs[Gpr::kR10], static_cast<uint64_t>(TdVmCallStatus::kSuccess));

  ASSERT_TRUE(run_on(*vcpus_[1], 2));
  ASSERT_EQ(vcpus_[1]->run_state().exit_reason, KvmExitReason::kHypercall);
  EXPECT_EQ(vcpus_[1]->run_state().hypercall.args[2], kKvmMapGpaRangeEncrypted);
  vcpus_[1]->make_request(KvmRequest::kTlbFlush);
  ASSERT_TRUE(run_on(*vcpus_[1], 2));
  // RETRY from the next chunk: the guest got its chance to take events.
  EXPECT_EQ(vcpus_[1]->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(guest_state(1).regs[Gpr::kR10], static_cast<uint64_t>(TdVmCallStatus::kRetry));
  EXPECT_EQ(guest_state(1).regs[Gpr::kR11], gpa + (uint64_t{2} << 20));
  EXPECT_FALSE(kvm().vm_bugged()) << kvm().bug_message();
}

TEST_F(TdxRunTest, MapGpaErrorsAnswerTheGuestWithoutAnExit) {
  build_td(3, 0);
  const uint64_t gpa = kTdMemGpa.raw();
  // Misaligned size; a range across the shared bit; userspace refusing the chunk.
  ScriptedGuest misaligned(vmcall(TdVmCall::kMapGpa, gpa, 100));
  ScriptedGuest across(vmcall(TdVmCall::kMapGpa, kTdSharedBit - kPageSize, 2 * kPageSize));
  ScriptedGuest refused(vmcall(TdVmCall::kMapGpa, gpa, kPageSize));
  vt_->set_guest(*vcpus_[0], &misaligned, 4096);
  vt_->set_guest(*vcpus_[1], &across, 4096);
  vt_->set_guest(*vcpus_[2], &refused, 4096);
  ASSERT_TRUE(run_on(*vcpus_[0], 1));
  EXPECT_EQ(vcpus_[0]->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(guest_state(0).regs[Gpr::kR10], static_cast<uint64_t>(TdVmCallStatus::kAlignError));
  EXPECT_EQ(guest_state(0).regs[Gpr::kR11], gpa);
  ASSERT_TRUE(run_on(*vcpus_[1], 1));
  EXPECT_EQ(vcpus_[1]->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(guest_state(1).regs[Gpr::kR10], static_cast<uint64_t>(TdVmCallStatus::kInvalidOperand));
  ASSERT_TRUE(run_on(*vcpus_[2], 1));
  ASSERT_EQ(vcpus_[2]->run_state().exit_reason, KvmExitReason::kHypercall);
  vcpus_[2]->run_state().hypercall.ret = 22;
  ASSERT_TRUE(run_on(*vcpus_[2], 1));
  EXPECT_EQ(vcpus_[2]->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(guest_state(2).regs[Gpr::kR10], static_cast<uint64_t>(TdVmCallStatus::kInvalidOperand));
  EXPECT_EQ(guest_state(2).regs[Gpr::kR11], gpa);
}

TEST_F(TdxRunTest, MmioRequestsGoToUserspaceWithTheSharedBitStripped) {
  build_td(3, 0);
  const uint64_t mmio = 0xFEE0'0000;
  ScriptedGuest read(vmcall(TdVmCall::kEptViolation, 4, 0, mmio | kTdSharedBit));
  ScriptedGuest write(vmcall(TdVmCall::kEptViolation, 8, 1, mmio | kTdSharedBit, 0x1234));
  ScriptedGuest private_gpa(vmcall(TdVmCall::kEptViolation, 4, 0, mmio));
  vt_->set_guest(*vcpus_[0], &read, 4096);
  vt_->set_guest(*vcpus_[1], &write, 4096);
  vt_->set_guest(*vcpus_[2], &private_gpa, 4096);

  ASSERT_TRUE(run_on(*vcpus_[0], 1));
  KvmRun& run = vcpus_[0]->run_state();
  ASSERT_EQ(run.exit_reason, KvmExitReason::kMmio);
  EXPECT_EQ(run.mmio.phys_addr, Gpa{mmio});
  EXPECT_EQ(run.mmio.len, 4u);
  EXPECT_FALSE(run.mmio.is_write);
  run.mmio.data = 0x1122'3344'5566'7788;
  ASSERT_TRUE(run_on(*vcpus_[0], 1));
  EXPECT_EQ(run.exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(guest_state(0).regs[Gpr::kR10], 0u);
  EXPECT_EQ(guest_state(0).regs[Gpr::kR11], 0x5566'7788u) << "the read's 4 bytes";

  ASSERT_TRUE(run_on(*vcpus_[1], 2));
  ASSERT_EQ(vcpus_[1]->run_state().exit_reason, KvmExitReason::kMmio);
  EXPECT_TRUE(vcpus_[1]->run_state().mmio.is_write);
  EXPECT_EQ(vcpus_[1]->run_state().mmio.data, 0x1234u);
  EXPECT_EQ(vcpus_[1]->run_state().mmio.len, 8u);
  ASSERT_TRUE(run_on(*vcpus_[1], 2));
  EXPECT_EQ(vcpus_[1]->run_state().exit_reason, KvmExitReason::kHlt);

  ASSERT_TRUE(run_on(*vcpus_[2], 2));
  EXPECT_EQ(vcpus_[2]->run_state().exit_reason, KvmExitReason::kHlt) << "no MMIO exit";
  EXPECT_EQ(guest_state(2).regs[Gpr::kR10], static_cast<uint64_t>(TdVmCallStatus::kInvalidOperand));
}

TEST_F(TdxRunTest, UnknownTdvmcallIsRefusedAndFatalErrorEndsTheRun) {
  build_td(2, 0);
  std::vector<GuestInsn> code = vmcall(static_cast<TdVmCall>(0x1'0099));
  ScriptedGuest unknown(code);
  ScriptedGuest fatal(vmcall(TdVmCall::kReportFatalError, 0xDEAD));
  vt_->set_guest(*vcpus_[0], &unknown, 4096);
  vt_->set_guest(*vcpus_[1], &fatal, 4096);
  ASSERT_TRUE(run_on(*vcpus_[0], 1));
  EXPECT_EQ(vcpus_[0]->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(guest_state(0).regs[Gpr::kR10],
            static_cast<uint64_t>(TdVmCallStatus::kSubfuncUnsupported));
  ASSERT_TRUE(run_on(*vcpus_[1], 1));
  const KvmRun& run = vcpus_[1]->run_state();
  ASSERT_EQ(run.exit_reason, KvmExitReason::kSystemEvent);
  EXPECT_EQ(run.system_event.type, kKvmSystemEventTdxFatal);
  EXPECT_EQ(run.system_event.ndata, 16u);
  EXPECT_EQ(run.system_event.data[12], 0xDEADu) << "R12";
}

}  // namespace
}  // namespace tdxsim
