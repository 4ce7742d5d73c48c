// A host program on tdxsim's public API: a platform of 2 packages x 2 logical CPUs with the
// TDX module, the SYS bring-up, a TD with two vCPUs built from host pages handed over by
// HPA, a raw SEAMCALL, and a vCPU kept in guest mode that accepts a page on demand while the
// host issues SEAMCALLs from another CPU, then is kicked out. Exits non-zero on any
// unexpected status.
#include <tdxsim/tdxsim.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <thread>
#include <vector>

using namespace tdxsim;

namespace {

constexpr Gpa kGpa{0x20'0000};  // the private GPA the guest accepts
constexpr KeyId kGlobalHkid{32}, kTdHkid{33};

void expect(uint64_t status, uint64_t want, const char* what) {
  if (status == want) return;
  std::printf("%s: %s\n", what, describe_status(status).c_str());
  std::exit(1);
}

// A guest that spins (PAUSE) until the host posts a GPA, then runs TDG.MEM.PAGE.ACCEPT on it.
class AcceptOnDemand : public GuestProgram {
 public:
  void post(Gpa gpa) { posted_.store(gpa.raw()); }
  GuestInsn fetch(GuestState& s) override {
    // After the ACCEPT's TD exit the TDCALL runs again: its RIP must give the same code.
    if (at_ && s.rip - *at_ < 4 * call_.size()) return call_[(s.rip - *at_) / 4];
    if (const uint64_t gpa = posted_.exchange(0); gpa != 0) {
      at_ = s.rip;
      call_ = {ScriptedGuest::mov(Gpr::kRcx, gpa),  // page info: GPA | level 0 (4K)
               ScriptedGuest::mov(Gpr::kRax, LeafAndVersion::of(TdcallLeaf::kMemPageAccept).raw()),
               ScriptedGuest::op(GuestInsnKind::kTdcall)};
      return call_[0];
    }
    return ScriptedGuest::op(GuestInsnKind::kPause);
  }
  uint64_t ve_handler_rip() const override { return ScriptedGuest::kVeHandlerRip; }

 private:
  std::atomic<uint64_t> posted_{0};
  std::optional<uint64_t> at_;  // the RIP of the ACCEPT sequence
  std::vector<GuestInsn> call_;
};

}  // namespace

int main() {
  FaultInjection faults;
  PlatformConfig config;
  config.packages = 2;
  config.cpus_per_package = 2;
  config.memory.bytes = uint64_t{64} << 20;
  Platform platform(config, faults);
  TdxModule module(platform);
  platform.install_seam_module(&module);
  // HostMemory allocates; the host hands the module whichever frames it picks, by HPA.
  auto page = [&] { return platform.memory().alloc_frame()->hpa(); };
  const std::vector<unsigned> one_cpu_per_package = {0, 2};

  // SEAMCALL is CPU-local: `platform.bind(c).cpu()` binds this thread to CPU c until the end
  // of the statement. First the platform bring-up, in Linux's order.
  expect(tdh_sys_init(platform.bind(0).cpu()), 0, "SYS.INIT");
  for (unsigned c = 0; c < platform.cpu_count(); ++c) {
    expect(tdh_sys_lp_init(platform.bind(c).cpu()), 0, "SYS.LP.INIT");
  }
  expect(tdh_sys_config(platform.bind(0).cpu(), Hpa{0}, 1, kGlobalHkid), 0, "SYS.CONFIG");
  for (unsigned c : one_cpu_per_package) {
    expect(tdh_sys_key_config(platform.bind(c).cpu()), 0, "SYS.KEY.CONFIG");
  }
  for (uint64_t done = 0; done < config.memory.bytes;) {
    expect(tdh_sys_tdmr_init(platform.bind(0).cpu(), Hpa{0}, &done), 0, "SYS.TDMR.INIT");
  }

  // A TD with two vCPUs, its key configured on every package.
  const Hpa tdr = page();
  expect(tdh_mng_create(platform.bind(0).cpu(), tdr, kTdHkid), 0, "MNG.CREATE");
  for (unsigned c : one_cpu_per_package) {
    expect(tdh_mng_key_config(platform.bind(c).cpu(), tdr), 0, "MNG.KEY.CONFIG");
  }
  CpuBinding host = platform.bind(0);
  for (unsigned i = 0; i < module.config().tdcs_pages; ++i) {
    expect(tdh_mng_addcx(host.cpu(), tdr, page()), 0, "MNG.ADDCX");
  }
  const Hpa params = page();
  write_td_params(platform.memory(), params, TdParams{.max_vcpus = 2});
  expect(tdh_mng_init(host.cpu(), tdr, params), 0, "MNG.INIT");
  std::vector<Hpa> tdvpr;
  for (uint32_t v = 0; v < 2; ++v) {
    tdvpr.push_back(page());
    expect(tdh_vp_create(host.cpu(), tdr, tdvpr[v]), 0, "VP.CREATE");
    for (unsigned i = 1; i < module.config().tdvps_pages; ++i) {
      expect(tdh_vp_addcx(host.cpu(), tdvpr[v], page()), 0, "VP.ADDCX");
    }
    expect(tdh_vp_init(host.cpu(), tdvpr[v], 0, /*x2apic_id=*/v), 0, "VP.INIT");
  }
  // S-EPT tables down to kGpa's 4K entries: SEPT.ADD names the entry that will point at each.
  for (Level l : {Level::k512G, Level::k1G, Level::k2M}) {
    expect(tdh_mem_sept_add(host.cpu(), tdr, PageInfo::of(kGpa.align_down(l), l), page()), 0,
           "SEPT.ADD");
  }
  expect(tdh_mr_finalize(host.cpu(), tdr), 0, "MR.FINALIZE");
  std::printf("TD ready: TDR at HPA %#" PRIx64 ", vCPUs at %#" PRIx64 " and %#" PRIx64 "\n",
              tdr.raw(), tdvpr[0].raw(), tdvpr[1].raw());

  // vCPU 1 on CPU 3 runs a scripted TDG.VP.INFO; past its code the guest halts.
  ScriptedGuest info({ScriptedGuest::mov(Gpr::kRax, LeafAndVersion::of(TdcallLeaf::kVpInfo).raw()),
                      ScriptedGuest::op(GuestInsnKind::kTdcall)});
  module.attach_guest(tdvpr[1], &info);
  std::thread([&] {
    CpuBinding b = platform.bind(3);
    SeamcallRegs r;
    expect(tdh_vp_enter(b.cpu(), tdvpr[1], r), static_cast<uint64_t>(VmxExitReason::kTdcall),
           "VP.ENTER");
    expect(r.r11, static_cast<uint64_t>(TdVmCall::kHlt), "TDG.VP.VMCALL sub-function");
  }).join();
  std::printf("vCPU 1 on CPU 3: TDG.VP.INFO gave vCPU index %" PRIu64 ", then HLT exited\n",
              module.vcpu_guest_state(tdvpr[1])->regs[Gpr::kR9]);

  // vCPU 0 on CPU 1 stays in guest mode (no instruction budget) until kicked; its thread is
  // KVM's run loop: an ACCEPT exit is answered with TDH.MEM.PAGE.AUG and a re-entry.
  AcceptOnDemand guest;
  module.attach_guest(tdvpr[0], &guest, /*instruction_budget=*/0);
  const Hpa aug_page = page();
  std::atomic<bool> stop{false};
  std::thread vcpu0([&] {
    CpuBinding b = platform.bind(1);
    for (;;) {
      SeamcallRegs r;
      const uint64_t s = tdh_vp_enter(b.cpu(), tdvpr[0], r);
      b.cpu().handle_interrupts();  // KVM's local_irq_enable() after a TD exit: the kick runs
      if (s == static_cast<uint64_t>(VmxExitReason::kExternalInterrupt) && stop) return;
      expect(s, static_cast<uint64_t>(VmxExitReason::kEptViolation), "VP.ENTER");
      expect(r.rdx & 0xF, static_cast<uint64_t>(ExtExitQualType::kAccept), "exit type");
      std::printf("vCPU 0 on CPU 1: ACCEPT exit at GPA %#" PRIx64 ", AUG and re-enter\n", r.r8);
      expect(tdh_mem_page_aug(b.cpu(), tdr, PageInfo::of(Gpa{r.r8}, Level::k4K), aug_page), 0,
             "MEM.PAGE.AUG");
    }
  });
  while (!platform.cpu(1).in_guest_mode()) std::this_thread::yield();

  // The host on CPU 0, while vCPU 0 runs: a typed SEAMCALL; then the guest is asked to
  // accept kGpa, and a raw TDH.MEM.SEPT.RD (leaf 25) polls the entry until it is MAPPED.
  uint64_t shared_eptp = 0;
  expect(tdh_vp_rd(host.cpu(), tdvpr[0], vp_field::kSharedEptp, &shared_eptp), 0, "VP.RD");
  guest.post(kGpa);
  SeamcallRegs r;
  do {
    r = {.rax = 25, .rcx = PageInfo::of(kGpa, Level::k4K).raw(), .rdx = tdr.raw()};
    const uint64_t s = seamcall(host.cpu(), r);
    if (status_of(s) != TdxStatus::kOperandBusy) expect(s, 0, "SEPT.RD");
  } while (((r.rdx >> 8) & 0xFF) != static_cast<uint64_t>(SeptState::kMapped));
  std::printf("host on CPU 0: SEPT.RD says GPA %#" PRIx64 " is MAPPED\n", kGpa.raw());

  // The kick: an IPI to CPU 1 makes vCPU 0 exit; run_on waits for its handler to run.
  stop = true;
  platform.cpu(1).run_on([](LogicalCpu&) {}, &host.cpu());
  vcpu0.join();
  const uint64_t accepted = module.vcpu_guest_state(tdvpr[0])->regs[Gpr::kRax];
  expect(accepted, 0, "TDG.MEM.PAGE.ACCEPT");
  std::printf("vCPU 0 kicked out; its ACCEPT returned %s\n", describe_status(accepted).c_str());
  return 0;
}
