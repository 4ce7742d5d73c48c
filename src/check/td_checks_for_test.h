// A small TD for the check/ tests: a machine, a TD of one vCPU with 2 MiB of private memory,
// and its first `image_pages` pages added by KVM_TDX_INIT_MEM_REGION.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "base/rcu.h"
#include "kvm/vmx/tdx.h"
#include "vmm/vm.h"

namespace tdxsim {

class SmallTd {
 public:
  explicit SmallTd(uint64_t image_pages = 4) : machine_(config()) {
    auto vm = vmm::Vm::create(machine_, vmm::VmShape::of(VmType::kTdx, 1));
    EXPECT_TRUE(vm.has_value());
    vm_ = std::move(*vm);
    EXPECT_TRUE(vm_->add_memory_region(0, Gpa{0}, 2 << 20, vmm::MemoryRegion::with_gmem()));
    EXPECT_TRUE(vm_->set_private(Gpa{0}, 2 << 20));
    if (image_pages != 0) {
      EXPECT_TRUE(vm_->td_init_mem_region(Gpa{0}, image_pages * kPageSize,
                                          [](uint64_t o) { return o + 1; }));
    }
  }

  vmm::Machine& machine() { return machine_; }
  vmm::Vm& vm() { return *vm_; }
  TdxOps& ops() { return *machine_.tdx(); }
  Hpa tdr() { return TdxOps::to_tdx(vm_->kvm_vm()).tdr(); }

 private:
  static vmm::MachineConfig config() {
    vmm::MachineConfig mc;
    mc.memory_bytes = uint64_t{64} << 20;
    return mc;
  }

  RcuThread rcu_;
  vmm::Machine machine_;
  std::unique_ptr<vmm::Vm> vm_;
};

}  // namespace tdxsim
