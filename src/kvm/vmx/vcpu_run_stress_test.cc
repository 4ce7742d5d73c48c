// The vCPU run loop's contract with other threads: requests reach a vCPU in guest mode by a
// kick, a waiting request returns only after the vCPU left guest mode, a signal ends
// KVM_RUN with EINTR, a dead VM's vCPUs fail with EIO, and the MMU's remote flush without a
// vendor hook becomes KVM_REQ_TLB_FLUSH on every vCPU.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "kvm/vcpu.h"
#include "kvm/vmx/vmx_fixture_for_test.h"
#include "platform/scripted_guest.h"

namespace tdxsim {
namespace {

using G = ScriptedGuest;

class VcpuRunTest : public VmxFixture {};

// A guest that loops at RIP 0 forever: PAUSE, then jump back (the next fetch is RIP 4: make
// the program answer PAUSE everywhere).
class Spinner : public GuestProgram {
 public:
  GuestInsn fetch(GuestState&) override { return G::op(GuestInsnKind::kPause); }
  uint64_t ve_handler_rip() const override { return G::kVeHandlerRip; }
};

TEST_F(VcpuRunTest, WaitingRequestReturnsOnlyAfterTheVcpuLeftGuestModeAndSignalEndsTheRun) {
  make_vm();
  add_ram(0, 0, 1 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  Spinner guest;
  vt.set_guest(*vcpu, &guest, /*instruction_budget=*/0);
  std::atomic<int> result{1};
  std::thread t([&] {
    RcuThread rcu;
    KvmResult<> r = run_on(*vcpu, 2);
    result = r ? 0 : static_cast<int>(r.error());
  });
  while (vcpu->mode() != VcpuMode::kInGuestMode) std::this_thread::yield();
  const uint64_t exits = vcpu->stats().exits.value();
  vm->make_all_cpus_request(KvmRequest::kOutsideGuestMode);
  // The request waited for the exit the kick caused.
  EXPECT_GT(vcpu->stats().exits.value(), exits);
  EXPECT_GE(vcpu->stats().kicks.value(), 1u);
  vcpu->signal();
  t.join();
  EXPECT_EQ(result.load(), static_cast<int>(Errno::kEintr));
  EXPECT_EQ(vcpu->run_state().exit_reason, KvmExitReason::kIntr);
}

TEST_F(VcpuRunTest, RemoteFlushWithoutAVendorHookFlushesEveryVcpuBeforeItReturns) {
  make_vm();
  add_ram(0, 0, 1 << 20);
  KvmVcpu* a = add_vcpu(0);
  KvmVcpu* b = add_vcpu(1);
  Spinner guest;
  vt.set_guest(*a, &guest, 0);
  vt.set_guest(*b, &guest, 0);
  std::thread ta([&] {
    RcuThread rcu;
    (void)run_on(*a, 1);
  });
  std::thread tb([&] {
    RcuThread rcu;
    (void)run_on(*b, 3);
  });
  while (a->mode() != VcpuMode::kInGuestMode || b->mode() != VcpuMode::kInGuestMode) {
    std::this_thread::yield();
  }
  const uint64_t fa = a->stats().tlb_flushes.value(), fb = b->stats().tlb_flushes.value();
  vm->mmu().flush_remote_tlbs();
  // The waiting request returned: both left guest mode; each flushes before its next entry.
  while (a->mode() != VcpuMode::kInGuestMode || b->mode() != VcpuMode::kInGuestMode) {
    std::this_thread::yield();
  }
  EXPECT_EQ(a->stats().tlb_flushes.value(), fa + 1);
  EXPECT_EQ(b->stats().tlb_flushes.value(), fb + 1);
  a->signal();
  b->signal();
  ta.join();
  tb.join();
}

TEST_F(VcpuRunTest, AVmBugKillsEveryVcpuWithEio) {
  make_vm();
  add_ram(0, 0, 1 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  Spinner guest;
  vt.set_guest(*vcpu, &guest, 0);
  std::atomic<int> result{0};
  std::thread t([&] {
    RcuThread rcu;
    KvmResult<> r = run_on(*vcpu, 2);
    result = r ? 0 : static_cast<int>(r.error());
  });
  while (vcpu->mode() != VcpuMode::kInGuestMode) std::this_thread::yield();
  EXPECT_TRUE(vm->kvm().bug_on(true, "test"));
  t.join();
  EXPECT_EQ(result.load(), static_cast<int>(Errno::kEio));
  EXPECT_FALSE(run_on(*vcpu, 2).has_value());
}

TEST_F(VcpuRunTest, ARequestSetBeforeEntryIsHandledWithoutAKick) {
  make_vm();
  add_ram(0, 0, 1 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  G guest({G::op(GuestInsnKind::kHlt)});
  vt.set_guest(*vcpu, &guest, 0);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  vcpu->make_request(KvmRequest::kTlbFlushCurrent);
  const uint64_t single = platform.cpu(1).stats().invept_single.value();
  vcpu->vendor_as<VmxVcpu>().regs.rip = 0;
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  EXPECT_EQ(platform.cpu(1).stats().invept_single.value(), single + 1);
  EXPECT_EQ(vcpu->stats().kicks.value(), 0u);
  EXPECT_FALSE(vcpu->has_requests());
}

TEST_F(VcpuRunTest, FastZapReturnsOnlyOnceNoVcpuRunsOnAnObsoleteRoot) {
  // KVM_X86_QUIRK_SLOT_ZAP_ALL: deleting a slot invalidates every direct root; a vCPU in
  // guest mode must be out of it (and load a new root before it enters again) by the time
  // the ioctl returns, else its TLB keeps serving the deleted slot's frames.
  make_vm();
  const uint64_t hva = add_ram(0, 0, 1 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  Spinner guest;
  vt.set_guest(*vcpu, &guest, 0);
  std::thread t([&] {
    RcuThread rcu;
    (void)run_on(*vcpu, 2);
  });
  while (vcpu->mode() != VcpuMode::kInGuestMode) std::this_thread::yield();
  const uint64_t exits = vcpu->stats().exits.value();
  const uint64_t loads = vcpu->stats().root_loads.value();
  UserspaceMemoryRegion2 del;
  del.slot = 0;
  del.userspace_addr = hva;
  ASSERT_TRUE(vm->kvm().set_user_memory_region2(del).has_value());
  EXPECT_GT(vcpu->stats().exits.value(), exits);
  while (vcpu->mode() != VcpuMode::kInGuestMode) std::this_thread::yield();
  EXPECT_GT(vcpu->stats().root_loads.value(), loads);
  vcpu->signal();
  t.join();
}

}  // namespace
}  // namespace tdxsim
