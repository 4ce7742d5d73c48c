// TdxFixture: one platform (2 packages × 4 CPUs) with the TDX module brought up by a
// TdxHost, the vendor table of an Intel host (VtOps over TdxOps and a VMX stand-in that
// refuses every VM), and a TD created through KvmVm::create with a guest_memfd memslot whose
// gfns are private. Helpers build the TD the way a VMM does (INIT_VM, vCPUs, INIT_MEM_REGION,
// FINALIZE), run a vCPU on a thread bound to a chosen CPU, and check that a destroyed TD
// gave every frame back.
//
// The test's own thread is bound to CPU 0 for the fixture's lifetime (KVM's ioctls issue
// SEAMCALLs on the CPU they run on); vCPU threads bind elsewhere.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "base/rcu.h"
#include "kvm/host_mm.h"
#include "kvm/kvm_fixture_for_test.h"
#include "kvm/kvm_vm.h"
#include "kvm/vmx/tdx.h"
#include "kvm/vmx/tdx_host.h"
#include "kvm/vmx/vt_ops.h"
#include "platform/platform.h"
#include "platform/scripted_guest.h"
#include "tdx_module/pamt.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {

// The VMX half of VtOps while the real one is written elsewhere: it runs no VM.
class RefuseAllVmx final : public KvmX86Ops {
 public:
  KvmResult<> vm_init(KvmVm&) override { return std::unexpected(Errno::kEinval); }
  void vm_destroy(KvmVm&) override {}
  KvmResult<> vcpu_create(KvmVcpu&) override { return std::unexpected(Errno::kEinval); }
  void vcpu_free(KvmVcpu&) override {}
  void vcpu_load(KvmVcpu&, LogicalCpu&) override {}
  ExitFastpath vcpu_run(KvmVcpu&) override { return ExitFastpath::kNone; }
  int handle_exit(KvmVcpu&, ExitFastpath) override { return -static_cast<int>(Errno::kEio); }
  void flush_tlb_all(KvmVcpu&) override {}
  void flush_tlb_current(KvmVcpu&) override {}
  using KvmX86Ops::flush_tlb_current;
  void set_guest(KvmVcpu&, GuestProgram*, uint32_t) override {}
};

inline constexpr Gpa kTdMemGpa{0x10'0000};     // the TD's private memory: 1 MiB up
inline constexpr uint64_t kTdMemPages = 1024;  // 4 MiB
inline constexpr uint64_t kTdSharedBit = uint64_t{1} << 47;

inline PlatformConfig tdx_platform_config(uint64_t bytes = uint64_t{256} << 20) {
  PlatformConfig c;
  c.packages = 2;
  c.cpus_per_package = 4;
  c.memory.bytes = bytes;
  return c;
}

class TdxFixture : public ::testing::Test {
 protected:
  TdxFixture() {
    platform_.install_seam_module(&module_);
    auto host = TdxHost::bring_up(platform_, module_);
    if (!host) ADD_FAILURE() << host.error();
    host_ = std::move(*host);
    tdx_ = std::make_unique<TdxOps>(*host_);
    vt_ = std::make_unique<VtOps>(vmx_, tdx_.get());
    kvm_host_ = std::make_unique<KvmHost>(platform_, *vt_);
    main_cpu_.emplace(platform_.bind(0));
    if (std::getenv("TDX_TRACE") != nullptr) {
      trace_.emplace(tdx_->seamcall_trace.attach([](const TdxSeamcallEvent& e) {
        fmt::print(stderr, "cpu{} {} gfn {:#x}: {}\n", e.cpu, to_string(e.leaf), e.gfn.raw(),
                   describe_status(e.status));
      }));
    }
    free_frames_at_start_ = platform_.memory().free_frame_count();
  }
  ~TdxFixture() override {
    vm_.reset();
    gmem_.reset();
  }

  LogicalCpu& main_cpu() { return main_cpu_->cpu(); }

  // KVM_CREATE_VM (a TD), its private memory slot and attributes.
  void create_td(uint32_t max_vcpus = 4) {
    KvmVmConfig cfg;
    cfg.type = VmType::kTdx;
    cfg.max_vcpus = max_vcpus;
    auto vm = KvmVm::create(*kvm_host_, mm_, cfg);
    ASSERT_TRUE(vm) << static_cast<int>(vm.error());
    vm_ = std::move(*vm);
    auto gmem = kvm().create_guest_memfd(kTdMemPages * kPageSize, 0);
    ASSERT_TRUE(gmem);
    gmem_ = *gmem;
    UserspaceMemoryRegion2 r;
    r.slot = 0;
    r.flags = kMemGuestMemfd;
    r.guest_phys_addr = kTdMemGpa.raw();
    r.memory_size = kTdMemPages * kPageSize;
    r.userspace_addr = mm_.mmap(r.memory_size);
    r.guest_memfd = gmem_;
    r.guest_memfd_offset = 0;
    hva_ = r.userspace_addr;
    ASSERT_TRUE(kvm().set_user_memory_region2(r));
    ASSERT_TRUE(kvm().set_memory_attributes(kTdMemGpa.gfn(), kTdMemGpa.gfn() + kTdMemPages,
                                            kMemAttrPrivate));
  }

  // INIT_VM, `n` vCPUs with INIT_VCPU, INIT_MEM_REGION of `initial_pages` measured pages at
  // the start of private memory, FINALIZE.
  void build_td(int n, uint64_t initial_pages = 4) {
    create_td();
    ASSERT_TRUE(tdx_->init_vm(*vm_, TdParams{.max_vcpus = static_cast<uint16_t>(n)}));
    for (int i = 0; i < n; ++i) {
      auto v = vm_->create_vcpu(i);
      ASSERT_TRUE(v);
      ASSERT_TRUE(tdx_->init_vcpu(**v));
      vcpus_.push_back(*v);
    }
    std::vector<Hpa> sources;
    for (uint64_t i = 0; i < initial_pages; ++i) {
      const Pfn p = *platform_.memory().alloc_frame();
      platform_.memory().fill(p, kHostKey, 0x1111'0000 + i);
      sources.push_back(p.hpa());
    }
    if (initial_pages != 0) {
      uint64_t done = 0;
      ASSERT_TRUE(tdx_->init_mem_region(*vcpus_[0], kTdMemGpa, sources, true, &done));
      ASSERT_EQ(done, initial_pages);
    }
    for (Hpa s : sources) platform_.memory().free_frame(s.pfn());
    ASSERT_TRUE(tdx_->finalize_vm(*vm_));
  }

  // KVM_RUN of `vcpu` on a thread bound to `cpu`, waited for with CPU 0 idle.
  KvmResult<> run_on(KvmVcpu& vcpu, unsigned cpu) {
    std::future<KvmResult<>> f = start_run(vcpu, cpu);
    return wait(f);
  }
  std::future<KvmResult<>> start_run(KvmVcpu& vcpu, unsigned cpu) {
    return std::async(std::launch::async, [this, &vcpu, cpu] {
      RcuThread rcu;
      CpuBinding b = platform_.bind(cpu);
      return vcpu.run(b.cpu());
    });
  }
  template <class T>
  T wait(std::future<T>& f) {
    // CPU 0's thread blocks: IPIs sent to it meanwhile run on their senders.
    LogicalCpu::BlockedScope blocked(main_cpu());
    return f.get();
  }

  // Destroys the TD and its memory; then nothing of it may remain anywhere.
  void destroy_and_expect_everything_back() {
    vm_.reset();
    gmem_.reset();
    vcpus_.clear();
    ASSERT_TRUE(mm_.munmap(hva_, kTdMemPages * kPageSize));
    rcu_barrier();
    EXPECT_EQ(platform_.memory().free_frame_count(), free_frames_at_start_);
    const Pamt& pamt = module_.pamt();
    for (PamtPageType t : {PamtPageType::kReg, PamtPageType::kTdr, PamtPageType::kTdcx,
                           PamtPageType::kTdvpr, PamtPageType::kEpt}) {
      EXPECT_EQ(pamt.count(t), 0u) << to_string(t) << " pages still assigned";
    }
    EXPECT_EQ(module_.td_count(), 0u);
    EXPECT_EQ(module_.vcpu_count(), 0u);
    EXPECT_EQ(host_->keyids_in_use(), 0u);
    EXPECT_EQ(platform_.memory().violation_count(), 0u);
  }

  Kvm& kvm() { return vm_->kvm(); }
  TdxVm& td() { return TdxOps::to_tdx(*vm_); }
  TdxVcpu& tdx_vcpu(int i) { return TdxOps::to_tdx(*vcpus_[static_cast<size_t>(i)]); }

  RcuThread rcu_;
  FaultInjection faults_;
  Platform platform_{tdx_platform_config(), faults_};
  TdxModule module_{platform_};
  std::unique_ptr<TdxHost> host_;
  RefuseAllVmx vmx_;
  std::unique_ptr<TdxOps> tdx_;
  std::unique_ptr<VtOps> vt_;
  std::unique_ptr<KvmHost> kvm_host_;
  HostMm mm_{platform_.memory()};
  std::optional<CpuBinding> main_cpu_;
  std::optional<Tracepoint<TdxSeamcallEvent>::Subscription> trace_;
  uint64_t free_frames_at_start_ = 0;
  std::unique_ptr<KvmVm> vm_;
  std::shared_ptr<GuestMemfd> gmem_;
  uint64_t hva_ = 0;
  std::vector<KvmVcpu*> vcpus_;
};

// Guest code builders.
// TDG.MEM.PAGE.ACCEPT of the 4K page at `gpa`.
inline std::vector<GuestInsn> accept(Gpa gpa) {
  return {ScriptedGuest::mov(Gpr::kRcx, gpa.raw()),
          ScriptedGuest::mov(Gpr::kRax, LeafAndVersion::of(TdcallLeaf::kMemPageAccept).raw()),
          ScriptedGuest::op(GuestInsnKind::kTdcall)};
}
// TDG.VP.VMCALL<sub-function> exposing R10..R15.
inline std::vector<GuestInsn> vmcall(TdVmCall fn, uint64_t r12 = 0, uint64_t r13 = 0,
                                     uint64_t r14 = 0, uint64_t r15 = 0) {
  return {ScriptedGuest::mov(Gpr::kRcx, 0xFC00),  // R10-R15
          ScriptedGuest::mov(Gpr::kR10, 0),
          ScriptedGuest::mov(Gpr::kR11, static_cast<uint64_t>(fn)),
          ScriptedGuest::mov(Gpr::kR12, r12),
          ScriptedGuest::mov(Gpr::kR13, r13),
          ScriptedGuest::mov(Gpr::kR14, r14),
          ScriptedGuest::mov(Gpr::kR15, r15),
          ScriptedGuest::mov(Gpr::kRax, LeafAndVersion::of(TdcallLeaf::kVpVmcall).raw()),
          ScriptedGuest::op(GuestInsnKind::kTdcall)};
}
inline void append(std::vector<GuestInsn>& code, const std::vector<GuestInsn>& more) {
  code.insert(code.end(), more.begin(), more.end());
}

// Runs `code`, then spins on PAUSE forever: with an instruction budget of 0 the vCPU stays in
// guest mode until something kicks it. spinning() says the code is done.
class ThenSpin : public GuestProgram {
 public:
  explicit ThenSpin(std::vector<GuestInsn> code) : code_(std::move(code)) {
    for (GuestInsn& i : code_) i.length = 4;
  }
  GuestInsn fetch(GuestState& s) override {
    if (s.rip / 4 < code_.size()) return code_[s.rip / 4];
    spinning_.store(true, std::memory_order_release);
    return ScriptedGuest::op(GuestInsnKind::kPause);
  }
  uint64_t ve_handler_rip() const override { return ScriptedGuest::kVeHandlerRip; }
  bool spinning() const { return spinning_.load(std::memory_order_acquire); }

 private:
  std::vector<GuestInsn> code_;
  std::atomic<bool> spinning_{false};
};

}  // namespace tdxsim
