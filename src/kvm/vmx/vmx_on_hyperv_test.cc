// VMX nested on Hyper-V: root tracking per vCPU and per VM, remote flushes as GPA-flush
// hypercalls (one per distinct root, ranges split into list entries), and seed 000's rule
// that only Hyper-V's flush op means "on Hyper-V".
#include <gtest/gtest.h>

#include <set>

#include "base/fault_injection.h"
#include "base/rcu.h"
#include "kvm/hyperv/kvm_onhyperv.h"
#include "kvm/kvm_vm.h"
#include "kvm/vmx/vmx.h"
#include "kvm/vmx/vt_ops.h"
#include "platform/platform.h"
#include "platform/scripted_guest.h"

namespace tdxsim {
namespace {

using G = ScriptedGuest;

class VmxOnHyperVTest : public ::testing::Test {
 protected:
  static PlatformConfig config(bool hyperv) {
    PlatformConfig c;
    c.packages = 1;
    c.cpus_per_package = 4;
    c.memory.bytes = uint64_t{64} << 20;
    if (hyperv) c.hyperv = HyperVConfig{};
    return c;
  }

  explicit VmxOnHyperVTest(bool hyperv = true, bool tdx_table = false)
      : platform(config(hyperv), faults), vt(vmx, tdx_table ? &stand_in_tdx : nullptr) {
    if (platform.hyperv() != nullptr) {
      hv = std::make_unique<KvmOnHyperV>(*platform.hyperv());
      vmx.enable_hyperv_flush(hv.get());
    }
    host = std::make_unique<KvmHost>(platform, vt);
    auto r = KvmVm::create(*host, mm, KvmVmConfig{});
    EXPECT_TRUE(r.has_value());
    vm = std::move(*r);
    UserspaceMemoryRegion2 region;
    region.slot = 0;
    region.memory_size = 1 << 20;
    region.userspace_addr = mm.mmap(region.memory_size);
    EXPECT_TRUE(vm->kvm().set_user_memory_region2(region).has_value());
    sub = platform.hyperv() == nullptr
              ? Tracepoint<HvFlushHypercall>::Subscription()
              : platform.hyperv()->hypercalls.attach([this](const HvFlushHypercall& h) {
                  MutexLock l(mu);
                  calls.push_back(h);
                });
  }
  ~VmxOnHyperVTest() override {
    sub.reset();
    vm.reset();
  }

  KvmVcpu* run_vcpu(int id, unsigned cpu) {
    KvmVcpu* vcpu = vm->vcpu(id);
    if (vcpu == nullptr) vcpu = *vm->create_vcpu(id);
    vt.set_guest(*vcpu, &guest, 4096);
    vcpu->vendor_as<VmxVcpu>().regs.rip = 0;
    CpuBinding b = platform.bind(cpu);
    EXPECT_TRUE(vcpu->run(b.cpu()).has_value());
    return vcpu;
  }
  std::vector<HvFlushHypercall> take() {
    MutexLock l(mu);
    return std::exchange(calls, {});
  }
  Hpa tracked() {
    MutexLock l(vm->hv_root_tdp().lock);
    return vm->hv_root_tdp().root;
  }

  RcuThread rcu_thread;
  FaultInjection faults;
  Platform platform;
  HostMm mm{platform.memory()};
  VmxOps vmx;
  VmxOps stand_in_tdx;  // any op table: what matters is that the host table has a TDX half
  VtOps vt;
  std::unique_ptr<KvmOnHyperV> hv;
  std::unique_ptr<KvmHost> host;
  std::unique_ptr<KvmVm> vm;
  G guest{{G::store(Gpa{0x1000}, 1), G::op(GuestInsnKind::kHlt)}};
  Mutex mu{"calls"};
  std::vector<HvFlushHypercall> calls;
  Tracepoint<HvFlushHypercall>::Subscription sub;
};

TEST_F(VmxOnHyperVTest, OneSharedRootTakesOneHypercallDivergedRootsOneEach) {
  EXPECT_EQ(vt.remote_flush_hook(), RemoteFlushHook::kHyperV);
  KvmVcpu* v0 = run_vcpu(0, 0);
  run_vcpu(1, 1);
  const Hpa root = v0->mmu().root->spt();
  EXPECT_EQ(vm->hv_root_tdp().updates.value(), 2u);
  // Nothing has established the VM's root yet: the flush walks the vCPUs and adopts it.
  EXPECT_EQ(tracked(), kInvalidPage);
  vm->kvm().flush_remote_tlbs();
  auto c = take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].root, root);
  EXPECT_EQ(c[0].code, HvCallCode::kFlushGuestPhysicalAddressSpace);
  EXPECT_EQ(tracked(), root);
  vm->kvm().flush_remote_tlbs();
  EXPECT_EQ(take().size(), 1u);
  EXPECT_EQ(hv->stats().shared_root_hits.value(), 1u);

  // vCPU 1 loads another root (as after a fast zap): the VM's root is forgotten, and a flush
  // reaches both roots, after which they still diverge.
  const Hpa other{root.raw() + 0x10'0000};
  KvmOnHyperV::track_root_tdp(*vm->vcpu(1), other);
  EXPECT_EQ(tracked(), kInvalidPage);
  vm->kvm().flush_remote_tlbs();
  c = take();
  std::set<uint64_t> roots;
  for (const auto& h : c) roots.insert(h.root.raw());
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(roots, (std::set<uint64_t>{root.raw(), other.raw()}));
  EXPECT_EQ(tracked(), kInvalidPage);
}

TEST_F(VmxOnHyperVTest, RangedFlushListsExactlyTheRangeOrFallsBack) {
  run_vcpu(0, 0);
  const Gfn start{0x100};
  const uint64_t pages = 3 * HvGpaPageRange::kMaxPagesPerEntry + 5;
  EXPECT_TRUE(hv->flush_remote_tlbs_range(vm->kvm(), start, pages));
  auto c = take();
  ASSERT_EQ(c.size(), 1u);
  ASSERT_EQ(c[0].list.size(), 4u);
  uint64_t next = start.gpa().raw();
  for (const HvGpaPageRange& r : c[0].list) {
    EXPECT_EQ(r.start().raw(), next);
    next += r.bytes();
  }
  EXPECT_EQ(next, (start + pages).gpa().raw());
  // 510 entries of 2048 pages is the most one hypercall takes: one page more does not fit,
  // and KVM falls back to a full flush.
  EXPECT_FALSE(hv->flush_remote_tlbs_range(
      vm->kvm(), start, kHvMaxFlushRepCount * HvGpaPageRange::kMaxPagesPerEntry + 1));
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(hv->stats().list_overflows.value(), 1u);
  EXPECT_TRUE(hv->flush_remote_tlbs_range(vm->kvm(), start,
                                          kHvMaxFlushRepCount * HvGpaPageRange::kMaxPagesPerEntry));
  c = take();
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].list.size(), kHvMaxFlushRepCount);
}

TEST_F(VmxOnHyperVTest, AZapGfnRangeFlushesItsRangeByHypercall) {
  run_vcpu(0, 0);
  ASSERT_TRUE(vm->mmu().zap_gfn_range(Gfn{0}, Gfn{0x10}, GfnZapCause::kMtrr).has_value());
  auto c = take();
  ASSERT_EQ(c.size(), 1u);
  ASSERT_EQ(c[0].list.size(), 1u);
  EXPECT_EQ(c[0].list[0].start(), Gpa{0});
  EXPECT_EQ(c[0].list[0].bytes(), 0x10 * kPageSize);
  EXPECT_EQ(vm->mmu().stats().remote_tlb_flushes_range.value(), 1u);
  EXPECT_EQ(vm->mmu().stats().remote_tlb_flushes.value(), 0u) << "no fallback needed";
}

class VmxOnBareMetalTdxHostTest : public VmxOnHyperVTest {
 protected:
  VmxOnBareMetalTdxHostTest() : VmxOnHyperVTest(/*hyperv=*/false, /*tdx_table=*/true) {}
};

TEST_F(VmxOnBareMetalTdxHostTest, TheTdxFlushOpIsNotHyperVs) {
  EXPECT_EQ(vt.remote_flush_hook(), RemoteFlushHook::kVt);
  run_vcpu(0, 0);
  EXPECT_EQ(vm->hv_root_tdp().updates.value(), 0u);
  EXPECT_EQ(vm->vcpu(0)->hv_root_tdp(), kInvalidPage);
}

TEST_F(VmxOnBareMetalTdxHostTest, S0TakesAnyFlushOpForHyperVs) {
  faults.enable(BugId::S0);
  run_vcpu(0, 0);
  EXPECT_EQ(vm->hv_root_tdp().updates.value(), 1u);
}

class VmxOnBareMetalTest : public VmxOnHyperVTest {
 protected:
  VmxOnBareMetalTest() : VmxOnHyperVTest(/*hyperv=*/false, /*tdx_table=*/false) {}
};

TEST_F(VmxOnBareMetalTest, NoFlushOpMeansRequestsAndNoTracking) {
  EXPECT_EQ(vt.remote_flush_hook(), RemoteFlushHook::kNone);
  faults.enable(BugId::S0);  // even the old check needs a non-null op
  run_vcpu(0, 0);
  EXPECT_EQ(vm->hv_root_tdp().updates.value(), 0u);
  const uint64_t flushes = vm->vcpu(0)->stats().tlb_flushes.value();
  vm->kvm().flush_remote_tlbs();
  EXPECT_EQ(vm->vcpu(0)->stats().tlb_flushes.value(), flushes) << "the request waits for the run";
  EXPECT_TRUE(vm->vcpu(0)->test_request(KvmRequest::kTlbFlush));
}

}  // namespace
}  // namespace tdxsim
