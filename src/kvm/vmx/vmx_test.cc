// The VMX vendor and the vCPU run loop on a plain VM: RAM accesses through the MMU, MMIO
// out to userspace and back, hypercalls, HLT, migration between CPUs.
#include "kvm/vmx/vmx.h"

#include <gtest/gtest.h>

#include "kvm/vmx/vmx_fixture_for_test.h"
#include "platform/scripted_guest.h"

namespace tdxsim {
namespace {

using G = ScriptedGuest;

class VmxTest : public VmxFixture {};

TEST_F(VmxTest, GuestWritesRamTheHostReadsAndHaltExitsToUserspace) {
  make_vm();
  const uint64_t hva = add_ram(0, 0, 1 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  G guest({G::store(Gpa{0x1000}, 0x1111), G::store(Gpa{0x8'0008}, 0x2222),
           G::load(Gpa{0x1000}, Gpr::kRbx), G::op(GuestInsnKind::kHlt)});
  vt.set_guest(*vcpu, &guest, 4096);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  EXPECT_EQ(vcpu->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(*mm.read(hva + 0x1000), 0x1111u);
  EXPECT_EQ(*mm.read(hva + 0x8'0008), 0x2222u);
  EXPECT_EQ(vcpu->vendor_as<VmxVcpu>().regs.regs[Gpr::kRbx], 0x1111u);
  EXPECT_GE(vmx.stats().ept_violations.value(), 2u);
  EXPECT_EQ(vm->mmu().stats().faults[static_cast<size_t>(RetPf::kFixed)].value(), 2u);
}

TEST_F(VmxTest, MmioWriteAndReadGoToUserspaceAndTheReadCompletesOnTheNextRun) {
  make_vm();
  add_ram(0, 0, 1 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  const Gpa mmio{0xFEE0'0000};
  G guest({G::store(mmio, 0xABCD), G::load(mmio + 8, Gpr::kRcx), G::load(mmio + 8, Gpr::kRdx),
           G::op(GuestInsnKind::kHlt)});
  vt.set_guest(*vcpu, &guest, 4096);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  KvmRun& run = vcpu->run_state();
  ASSERT_EQ(run.exit_reason, KvmExitReason::kMmio);
  EXPECT_TRUE(run.mmio.is_write);
  EXPECT_EQ(run.mmio.phys_addr, mmio);
  EXPECT_EQ(run.mmio.data, 0xABCDu);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  ASSERT_EQ(run.exit_reason, KvmExitReason::kMmio);
  EXPECT_FALSE(run.mmio.is_write);
  EXPECT_EQ(run.mmio.phys_addr, mmio + 8);
  run.mmio.data = 0x77;
  // The second read hits the MMIO SPTE the first one left: an EPT misconfig, emulated too.
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  ASSERT_EQ(run.exit_reason, KvmExitReason::kMmio);
  run.mmio.data = 0x88;
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  EXPECT_EQ(run.exit_reason, KvmExitReason::kHlt);
  const VmxVcpu& v = vcpu->vendor_as<VmxVcpu>();
  EXPECT_EQ(v.regs.regs[Gpr::kRcx], 0x77u);
  EXPECT_EQ(v.regs.regs[Gpr::kRdx], 0x88u);
  EXPECT_GE(vmx.stats().ept_misconfigs.value(), 1u);
}

TEST_F(VmxTest, MapGpaHypercallExitsOnlyForAVmWithPrivateMemory) {
  for (VmType type : {VmType::kDefault, VmType::kSwProtected}) {
    make_vm(type);
    add_ram(0, 0, 1 << 20);
    KvmVcpu* vcpu = add_vcpu(0);
    G guest({G::mov(Gpr::kRax, kKvmHcMapGpaRange), G::mov(Gpr::kRbx, 0x4000), G::mov(Gpr::kRcx, 3),
             G::mov(Gpr::kRdx, kKvmMapGpaRangeEncrypted), G::op(GuestInsnKind::kVmcall),
             G::op(GuestInsnKind::kHlt)});
    vt.set_guest(*vcpu, &guest, 4096);
    ASSERT_TRUE(run_on(*vcpu, 2).has_value());
    KvmRun& run = vcpu->run_state();
    if (type == VmType::kDefault) {
      EXPECT_EQ(run.exit_reason, KvmExitReason::kHlt);
      EXPECT_EQ(vcpu->vendor_as<VmxVcpu>().regs.regs[Gpr::kRax], static_cast<uint64_t>(-1000));
    } else {
      ASSERT_EQ(run.exit_reason, KvmExitReason::kHypercall);
      EXPECT_EQ(run.hypercall.nr, kKvmHcMapGpaRange);
      EXPECT_EQ(run.hypercall.args[0], 0x4000u);
      EXPECT_EQ(run.hypercall.args[1], 3u);
      EXPECT_EQ(run.hypercall.args[2], kKvmMapGpaRangeEncrypted);
      run.hypercall.ret = 0;
      ASSERT_TRUE(run_on(*vcpu, 2).has_value());
      EXPECT_EQ(run.exit_reason, KvmExitReason::kHlt);
      EXPECT_EQ(vcpu->vendor_as<VmxVcpu>().regs.regs[Gpr::kRax], 0u);
    }
    vm.reset();
  }
}

TEST_F(VmxTest, SoftwareProtectedVmMapsAPageFromWhereItsAttributeSays) {
  make_vm(VmType::kSwProtected);
  auto gmem = vm->kvm().create_guest_memfd(1 << 20, 0);
  ASSERT_TRUE(gmem.has_value());
  UserspaceMemoryRegion2 r;
  r.slot = 0;
  r.flags = kMemGuestMemfd;
  r.memory_size = 1 << 20;
  r.userspace_addr = mm.mmap(1 << 20);
  r.guest_memfd = *gmem;
  ASSERT_TRUE(vm->kvm().set_user_memory_region2(r).has_value());
  ASSERT_TRUE(vm->kvm().set_memory_attributes(Gfn{0}, Gfn{256}, kMemAttrPrivate).has_value());
  KvmVcpu* vcpu = add_vcpu(0);
  G guest({G::store(Gpa{0x3000}, 5), G::op(GuestInsnKind::kHlt)});
  vt.set_guest(*vcpu, &guest, 4096);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());  // private memory from guest_memfd
  EXPECT_EQ(vcpu->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ((*gmem)->allocated_pages(), 1u);
  EXPECT_EQ(*mm.read(r.userspace_addr + 0x3000), 0u);
  ASSERT_TRUE(vm->kvm().set_memory_attributes(Gfn{3}, Gfn{4}, 0).has_value());
  // A software-protected VM's access is private iff the attribute says so: after the
  // conversion the same store lands in the userspace mapping, not in guest_memfd.
  vcpu->vendor_as<VmxVcpu>().regs.rip = 0;
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  EXPECT_EQ(vcpu->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(*mm.read(r.userspace_addr + 0x3000), 5u);
}

TEST_F(VmxTest, MovingToAnotherCpuFlushesEverythingBeforeTheNextEntry) {
  make_vm();
  add_ram(0, 0, 1 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  G guest({G::load(Gpa{0x1000}), G::op(GuestInsnKind::kHlt), G::op(GuestInsnKind::kHlt)});
  vt.set_guest(*vcpu, &guest, 4096);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  const uint64_t flushes = vcpu->stats().tlb_flushes.value();
  const uint64_t invept_on_3 = platform.cpu(3).stats().invept_all.value();
  ASSERT_TRUE(run_on(*vcpu, 3).has_value());
  EXPECT_EQ(vcpu->stats().migrations.value(), 1u);
  EXPECT_EQ(vcpu->stats().tlb_flushes.value(), flushes + 1);
  EXPECT_EQ(platform.cpu(3).stats().invept_all.value(), invept_on_3 + 1);
  EXPECT_EQ(vcpu->cpu(), &platform.cpu(3));
}

}  // namespace
}  // namespace tdxsim
