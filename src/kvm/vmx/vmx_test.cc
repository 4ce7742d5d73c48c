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

// Dirty logging end to end, with PML (the CPU logs each page whose D it sets, KVM clears D to
// re-arm) and without (KVM write-protects, the write faults): each harvest returns exactly
// the pages written since the previous one.
class VmxDirtyLogTest : public VmxFixture, public ::testing::WithParamInterface<bool> {};

TEST_P(VmxDirtyLogTest, EachHarvestReturnsThePagesWrittenSinceThePreviousOne) {
  const bool pml = GetParam();
  vmx.set_enable_pml(pml);
  make_vm();
  UserspaceMemoryRegion2 r;
  r.slot = 0;
  r.memory_size = 64 * kPageSize;
  r.userspace_addr = mm.mmap(r.memory_size);
  ASSERT_TRUE(vm->kvm().set_user_memory_region2(r).has_value());
  KvmVcpu* vcpu = add_vcpu(0);
  const auto page = [](uint64_t n) { return Gpa{n * kPageSize}; };
  G guest({G::store(page(1), 1), G::store(page(2), 2), G::store(page(40), 3),
           G::op(GuestInsnKind::kHlt),  // logging starts
           G::store(page(2) + 8, 4), G::load(page(1)), G::store(page(40) + 8, 5),
           G::op(GuestInsnKind::kHlt),  // harvest
           G::op(GuestInsnKind::kHlt),  // harvest
           G::store(page(2), 6), G::op(GuestInsnKind::kHlt)});
  vt.set_guest(*vcpu, &guest, 4096);
  const auto run = [&] {
    ASSERT_TRUE(run_on(*vcpu, 1).has_value());
    ASSERT_EQ(vcpu->run_state().exit_reason, KvmExitReason::kHlt);
  };
  run();
  r.flags = kMemLogDirtyPages;
  ASSERT_TRUE(vm->kvm().set_user_memory_region2(r).has_value());
  const uint64_t violations_before = vmx.stats().ept_violations.value();
  run();
  EXPECT_EQ(*vm->kvm().get_dirty_log(0), (std::vector<uint64_t>{(1u << 2) | (uint64_t{1} << 40)}));
  // PML logs without a fault; write-protection faults once per page.
  EXPECT_EQ(vmx.stats().ept_violations.value() - violations_before, pml ? 0u : 2u);
  EXPECT_EQ(vmx.stats().pml_pages_logged.value(), pml ? 2u : 0u);
  run();
  EXPECT_EQ(*vm->kvm().get_dirty_log(0), (std::vector<uint64_t>{0}));
  run();
  EXPECT_EQ(*vm->kvm().get_dirty_log(0), (std::vector<uint64_t>{1u << 2}));
  EXPECT_EQ(*mm.read(r.userspace_addr + 2 * kPageSize), 6u);
}

// More dirty pages than the 512-entry log holds in one entry: the full log is a PML-full exit,
// emptied at the exit, and the write that met it runs again and is logged.
TEST_F(VmxTest, APmlFullExitEmptiesTheLogAndTheWriteRunsAgain) {
  make_vm();
  constexpr uint64_t kPages = 600;
  UserspaceMemoryRegion2 r;
  r.slot = 0;
  r.memory_size = kPages * kPageSize;
  r.userspace_addr = mm.mmap(r.memory_size);
  ASSERT_TRUE(vm->kvm().set_user_memory_region2(r).has_value());
  KvmVcpu* vcpu = add_vcpu(0);
  std::vector<GuestInsn> code;
  for (int round = 0; round < 2; ++round) {
    for (uint64_t p = 0; p < kPages; ++p) code.push_back(G::store(Gpa{p * kPageSize}, p));
    code.push_back(G::op(GuestInsnKind::kHlt));
  }
  G guest(std::move(code));
  vt.set_guest(*vcpu, &guest, 0);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  r.flags = kMemLogDirtyPages;
  ASSERT_TRUE(vm->kvm().set_user_memory_region2(r).has_value());
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  EXPECT_EQ(vcpu->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(vmx.stats().pml_full_exits.value(), 1u);
  EXPECT_EQ(vmx.stats().pml_pages_logged.value(), kPages);
  const std::vector<uint64_t> log = *vm->kvm().get_dirty_log(0);
  uint64_t set = 0;
  for (uint64_t w : log) set += static_cast<uint64_t>(__builtin_popcountll(w));
  EXPECT_EQ(set, kPages);
}

INSTANTIATE_TEST_SUITE_P(Pml, VmxDirtyLogTest, ::testing::Bool(),
                         [](const auto& p) { return p.param ? "On" : "Off"; });

}  // namespace
}  // namespace tdxsim
