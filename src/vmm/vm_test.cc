// The VMM's own rules, beside what the scenarios exercise: what it refuses, and the exits it
// stops on instead of looping.
#include "vmm/vm.h"

#include <gtest/gtest.h>

#include "base/rcu.h"
#include "guest/program.h"

namespace tdxsim::vmm {
namespace {

MachineConfig small(bool tdx) {
  MachineConfig mc;
  mc.memory_bytes = uint64_t{64} << 20;
  mc.tdx = tdx;
  return mc;
}

TEST(VmTest, ATdNeedsAHostWithTdx) {
  RcuThread rcu;
  Machine machine(small(/*tdx=*/false));
  auto vm = Vm::create(machine, VmShape::of(VmType::kTdx));
  ASSERT_FALSE(vm.has_value());
  EXPECT_EQ(vm.error(), Errno::kEinval);
  EXPECT_TRUE(Vm::create(machine, VmShape::of(VmType::kSwProtected)).has_value());
}

TEST(VmTest, NoMemoryRegionMayCoverTheUcallGpa) {
  RcuThread rcu;
  Machine machine(small(false));
  auto vm = Vm::create(machine, VmShape::of(VmType::kDefault));
  ASSERT_TRUE(vm.has_value());
  const Gpa ucall = (*vm)->flavour().ucall_gpa;
  const auto r = (*vm)->add_memory_region(0, Gpa{ucall.raw() & ~uint64_t{0xFFFFF}}, 1 << 20);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Errno::kEinval);
}

TEST(VmTest, AMemoryFaultNoConversionCanResolveStopsTheVcpu) {
  // A private access to a slot without guest_memfd: converting changes nothing, so the VMM
  // stops with KVM_RUN's EFAULT instead of converting and re-running forever.
  RcuThread rcu;
  Machine machine(small(false));
  auto vm_or = Vm::create(machine, VmShape::of(VmType::kSwProtected));
  ASSERT_TRUE(vm_or.has_value());
  Vm& vm = **vm_or;
  ASSERT_TRUE(vm.add_memory_region(0, Gpa{0}, 1 << 20).has_value());
  ASSERT_TRUE(vm.set_private(Gpa{0}, 1 << 20).has_value());
  guest::Program program(vm.flavour(), [](guest::Guest& g) -> guest::GuestTask {
    co_await g.write(Gpa{0x2000}, 1);
    co_await g.done();
  });
  vm.vcpu(0).set_guest(&program);
  const VcpuStop stop = vm.vcpu(0).run_to_ucall();
  EXPECT_FALSE(stop.ucall.has_value());
  ASSERT_TRUE(stop.error.has_value());
  EXPECT_EQ(*stop.error, Errno::kEfault);
  EXPECT_EQ(stop.exit, KvmExitReason::kMemoryFault);
  EXPECT_EQ(vm.vcpu(0).run_state().memory_fault.gpa, Gpa{0x2000});
  EXPECT_EQ(vm.vcpu(0).exit_stats().memory_faults, 1u);
}

TEST(VmTest, GuestWritesReachTheHostThroughTheSharedMappingAndUcallsStopTheRun) {
  RcuThread rcu;
  Machine machine(small(false));
  auto vm_or = Vm::create(machine, VmShape::of(VmType::kDefault));
  ASSERT_TRUE(vm_or.has_value());
  Vm& vm = **vm_or;
  ASSERT_TRUE(vm.add_memory_region(0, Gpa{0}, 1 << 20).has_value());
  guest::Program program(vm.flavour(), [](guest::Guest& g) -> guest::GuestTask {
    co_await g.write(Gpa{0x3008}, 0xAB);
    co_await g.sync(7);
    co_await g.done();
  });
  vm.vcpu(0).set_guest(&program);
  VcpuStop stop = vm.vcpu(0).run_to_ucall();
  ASSERT_TRUE(stop.ucall.has_value());
  EXPECT_EQ(stop.ucall->cmd, guest::UcallCmd::kSync);
  EXPECT_EQ(stop.ucall->arg, 7u);
  EXPECT_EQ(*vm.host_read(Gpa{0x3008}), 0xABu);
  stop = vm.vcpu(0).run_to_ucall();
  ASSERT_TRUE(stop.ucall.has_value());
  EXPECT_EQ(stop.ucall->cmd, guest::UcallCmd::kDone);
  EXPECT_FALSE(vm.host_read(Gpa{uint64_t{1} << 30}).has_value());
}

}  // namespace
}  // namespace tdxsim::vmm
