// SvmFixture: a bare-metal AMD host with the SVM vendor as KVM's table, one VM of a chosen
// type, memory regions over the VMM's address space, and vCPUs run by bound threads — the
// SVM counterpart of vmx_fixture_for_test.h. Host memory has MAXPHYADDR 48 and no key-ID
// bits (no MKTME on AMD), so bits 51:48 are reserved and NPT MMIO SPTEs are cached.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>

#include "base/fault_injection.h"
#include "base/rcu.h"
#include "guest/ucall.h"
#include "kvm/kvm_vm.h"
#include "kvm/svm/svm.h"
#include "platform/platform.h"

namespace tdxsim {

class SvmFixture : public ::testing::Test {
 protected:
  static PlatformConfig platform_config() {
    PlatformConfig c;
    c.vendor = CpuVendor::kAmd;
    c.packages = 2;
    c.cpus_per_package = 2;
    c.memory.bytes = uint64_t{64} << 20;
    c.memory.layout.maxphyaddr = 48;
    c.memory.layout.keyid_bits = 0;
    // Every TLB hit is checked against a fresh walk: stale translations are counted.
    c.probe_tlb_hits = true;
    return c;
  }
  // Tests that provoke ASID rollovers shrink nr_asids by overriding this.
  virtual SvmConfig svm_config() const { return SvmConfig{}; }

  RcuThread rcu_thread;  // the test's thread runs vCPUs: faults read memslots under RCU
  FaultInjection faults;
  Platform platform{platform_config(), faults};
  HostMm mm{platform.memory()};
  std::unique_ptr<SvmOps> svm_ops;
  std::unique_ptr<KvmHost> host;
  std::unique_ptr<KvmVm> vm;

  ~SvmFixture() override {
    vm.reset();
    host.reset();
    svm_ops.reset();
  }

  SvmOps& svm() {
    if (!svm_ops) {
      svm_ops = std::make_unique<SvmOps>(platform, svm_config());
      host = std::make_unique<KvmHost>(platform, *svm_ops);
    }
    return *svm_ops;
  }

  void make_vm(VmType type = VmType::kDefault) {
    svm();
    KvmVmConfig c;
    c.type = type;
    auto r = KvmVm::create(*host, mm, c);
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
  SvmVcpu& svm_vcpu(KvmVcpu& vcpu) { return vcpu.vendor_as<SvmVcpu>(); }
  // One KVM_RUN on logical CPU `cpu`, from this thread.
  KvmResult<> run_on(KvmVcpu& vcpu, unsigned cpu) {
    CpuBinding b = platform.bind(cpu);
    return vcpu.run(b.cpu());
  }
  // KVM_RUN until the guest's next ucall (its MMIO write, completed as KVM does) or a halt
  // (nullopt); MapGPA hypercalls are answered with `map_gpa_ret`.
  std::optional<guest::Ucall> run_to_ucall(KvmVcpu& vcpu, unsigned cpu, uint64_t map_gpa_ret = 0) {
    for (int i = 0; i < 1000; ++i) {
      if (!run_on(vcpu, cpu).has_value()) {
        ADD_FAILURE() << "KVM_RUN failed";
        return std::nullopt;
      }
      KvmRun& run = vcpu.run_state();
      switch (run.exit_reason) {
        case KvmExitReason::kHlt:
          return std::nullopt;
        case KvmExitReason::kHypercall:
          run.hypercall.ret = map_gpa_ret;
          continue;
        case KvmExitReason::kMmio:
          if (run.mmio.is_write) return guest::decode_ucall(run.mmio.phys_addr, run.mmio.data);
          run.mmio.data = 0;
          continue;
        default:
          ADD_FAILURE() << "unexpected exit " << static_cast<int>(run.exit_reason);
          return std::nullopt;
      }
    }
    ADD_FAILURE() << "the guest neither made a ucall nor halted";
    return std::nullopt;
  }
  uint64_t stale_uses() {
    uint64_t n = 0;
    for (unsigned i = 0; i < platform.cpu_count(); ++i) n += platform.cpu(i).stats().stale_uses.value();
    return n;
  }
};

}  // namespace tdxsim
