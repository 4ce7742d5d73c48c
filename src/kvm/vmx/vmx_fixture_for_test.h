// VmxFixture: a bare-metal Intel host (no TDX) with the VMX vendor behind the vt table, one
// VM of a chosen type, memory regions over the VMM's address space, and vCPUs run by bound
// threads — what the vCPU and VMX tests share.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "base/fault_injection.h"
#include "base/rcu.h"
#include "kvm/kvm_vm.h"
#include "kvm/vmx/vmx.h"
#include "kvm/vmx/vt_ops.h"
#include "platform/platform.h"

namespace tdxsim {

class VmxFixture : public ::testing::Test {
 protected:
  static PlatformConfig platform_config() {
    PlatformConfig c;
    c.packages = 2;
    c.cpus_per_package = 2;
    c.memory.bytes = uint64_t{64} << 20;
    return c;
  }

  RcuThread rcu_thread;  // the test's thread runs vCPUs: faults read memslots under RCU
  FaultInjection faults;
  Platform platform{platform_config(), faults};
  HostMm mm{platform.memory()};
  VmxOps vmx;
  VtOps vt{vmx, nullptr};
  KvmHost host{platform, vt};
  std::unique_ptr<KvmVm> vm;

  ~VmxFixture() override { vm.reset(); }

  void make_vm(VmType type = VmType::kDefault) {
    KvmVmConfig c;
    c.type = type;
    auto r = KvmVm::create(host, mm, c);
    ASSERT_TRUE(r.has_value());
    vm = std::move(*r);
  }
  // A RAM region at `gpa`; returns its userspace address.
  uint64_t add_ram(uint32_t slot, uint64_t gpa, uint64_t size) {
    UserspaceMemoryRegion2 r;
    r.slot = slot;
    r.guest_phys_addr = gpa;
    r.memory_size = size;
    r.userspace_addr = mm.mmap(size);
    EXPECT_TRUE(vm->kvm().set_user_memory_region2(r).has_value());
    return r.userspace_addr;
  }
  KvmVcpu* add_vcpu(int id) {
    auto r = vm->create_vcpu(id);
    EXPECT_TRUE(r.has_value());
    return r.value_or(nullptr);
  }
  // One KVM_RUN on logical CPU `cpu`, from this thread.
  KvmResult<> run_on(KvmVcpu& vcpu, unsigned cpu) {
    CpuBinding b = platform.bind(cpu);
    return vcpu.run(b.cpu());
  }
};

}  // namespace tdxsim
