// removal_under_contention: four vCPUs keep filling and verifying their private memory while
// the host converts another private region (which each vCPU filled first) to shared, 64 KiB
// at a time. Every removal must run BLOCK → TRACK → kick → REMOVE; environment faults make
// the module answer TDX_OPERAND_BUSY once each to BLOCK, TRACK and REMOVE, and each is
// retried once with vCPU entry blocked (KVM's tdh_do_no_vcpus). The host's view of the
// converted region never shows the guests' private data; the guests' own memory stays
// intact throughout.
#include <atomic>
#include <map>
#include <thread>

#include "base/lock.h"
#include "base/sched.h"
#include "base/thread.h"
#include "guest/program.h"
#include "kvm/vmx/tdx.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

constexpr unsigned kVcpus = 4;
constexpr uint64_t kWork = 4 << 20;     // per vCPU, from GPA 0
constexpr Gpa kVictim{kVcpus * kWork};  // converted by the host
constexpr uint64_t kVictimPerVcpu = 256 << 10;
constexpr uint64_t kVictimSize = kVcpus * kVictimPerVcpu;
constexpr Gpa kStop{kVictim.raw() + kVictimSize};  // a shared page: the host's "stop"
constexpr uint64_t kSlotSize = kStop.raw() + (2 << 20);
constexpr uint64_t kVictimRound = 9;
constexpr uint64_t kStep = 16 << 10;

guest::GuestTask contention_guest(guest::Guest& g, unsigned i) {
  const Gpa work{i * kWork};
  const Gpa victim = kVictim + i * kVictimPerVcpu;
  for (uint64_t off = 0; off < kWork; off += kPageSize) co_await g.accept(work + off, Level::k4K);
  for (uint64_t off = 0; off < kVictimPerVcpu; off += kPageSize) {
    co_await g.accept(victim + off, Level::k4K);
  }
  co_await g.fill(victim, kVictimPerVcpu, kVictimRound);
  co_await g.sync(0);  // ready: the host may start converting
  for (uint64_t round = 1;; ++round) {
    co_await g.fill(work, kWork, round);
    co_await g.verify(work, kWork, round);
    if (co_await g.read(g.flavour().to_shared(kStop)) != 0) break;
  }
  co_await g.done();
}

// Checks the order of KVM's SEAMCALLs: each successful PAGE.REMOVE of a gfn follows a
// successful BLOCK of it and a successful TRACK after that block.
class RemovalOrder {
 public:
  void note(const TdxSeamcallEvent& e) {
    if (status_of(e.status) == TdxStatus::kSuccess || e.status == 0) {
      MutexLock l(mu_);
      switch (e.leaf) {
        case SeamcallLeaf::kMemRangeBlock:
          blocked_[e.gfn.raw()] = ++seq_;
          break;
        case SeamcallLeaf::kMemTrack:
          last_track_ = ++seq_;
          break;
        case SeamcallLeaf::kMemPageRemove: {
          ++removes_;
          auto it = blocked_.find(e.gfn.raw());
          if (it == blocked_.end() || last_track_ < it->second) ++out_of_order_;
          if (it != blocked_.end()) blocked_.erase(it);
          break;
        }
        default:
          break;
      }
    }
  }
  uint64_t removes() const {
    MutexLock l(mu_);
    return removes_;
  }
  uint64_t out_of_order() const {
    MutexLock l(mu_);
    return out_of_order_;
  }

 private:
  mutable Mutex mu_{"removal order"};
  uint64_t seq_ TDXSIM_GUARDED_BY(mu_) = 0;
  uint64_t last_track_ TDXSIM_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, uint64_t> blocked_ TDXSIM_GUARDED_BY(mu_);
  uint64_t removes_ TDXSIM_GUARDED_BY(mu_) = 0;
  uint64_t out_of_order_ TDXSIM_GUARDED_BY(mu_) = 0;
};

}  // namespace

void run_removal_under_contention(const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.memory_bytes = uint64_t{256} << 20;
  Machine machine(mc);
  const std::unique_ptr<Vm> td = create_private_td(machine, kVcpus, kSlotSize, kStop.raw(), report);
  if (td == nullptr) return;
  Vm& vm = *td;
  report.check(vm.td_finalize().has_value(), "finalize");

  RunChecks checks(machine, options);
  checks.watch(vm);
  RemovalOrder order;
  auto probe =
      machine.tdx()->seamcall_trace.attach([&](const TdxSeamcallEvent& e) { order.note(e); });
  std::vector<std::unique_ptr<guest::Program>> programs;
  for (unsigned i = 0; i < kVcpus; ++i) {
    programs.push_back(std::make_unique<guest::Program>(
        vm.flavour(), [i](guest::Guest& g) { return contention_guest(g, i); }));
    vm.vcpu(i).set_guest(programs.back().get());
  }
  std::atomic<unsigned> ready{0};
  Thread vcpus([&] {
    run_vcpus_to_done(vm, programs, report, [&](unsigned, uint64_t) {
      ready.fetch_add(1);
      return true;
    });
  });
  while (ready.load() < kVcpus) sched_pause();

  // One forced BUSY each, while the vCPUs run.
  FaultInjection& faults = machine.faults();
  faults.arm(EnvFaultKind::kForceOperandBusy, static_cast<uint64_t>(SeamcallLeaf::kMemRangeBlock),
             1, static_cast<uint64_t>(TdxOperand::kSeptEntry));
  faults.arm(EnvFaultKind::kForceOperandBusy, static_cast<uint64_t>(SeamcallLeaf::kMemTrack), 1,
             static_cast<uint64_t>(TdxOperand::kTdEpoch));
  faults.arm(EnvFaultKind::kForceOperandBusy, static_cast<uint64_t>(SeamcallLeaf::kMemPageRemove),
             1, static_cast<uint64_t>(TdxOperand::kSeptEntry));
  for (uint64_t off = 0; off < kVictimSize; off += kStep) {
    const Gpa gpa = kVictim + off;
    if (!report.check(vm.set_shared(gpa, kStep).has_value(), "convert_to_shared", "at {}", gpa)) {
      break;
    }
    // The host's view is its own (never written) backing: zeros, not the guest's data.
    guest::for_each_sample(gpa, kStep, [&](Gpa p) {
      const KvmResult<uint64_t> v = vm.host_read(p);
      report.check(v.has_value() && *v == 0, "no_private_data_in_host_view", "{} reads {:#x}", p,
                   v.value_or(0));
    });
  }
  report.check(vm.host_write(kStop, 1).has_value(), "stop");
  vcpus.join();

  const TdxStats& st = TdxOps::to_tdx(vm.kvm_vm()).stats();
  for (SeamcallLeaf leaf :
       {SeamcallLeaf::kMemRangeBlock, SeamcallLeaf::kMemTrack, SeamcallLeaf::kMemPageRemove}) {
    report.check(st.busy_count(leaf) >= 1 && st.retries(leaf) >= 1, "busy_retried",
                 "{}: {} BUSY answers, {} retries", to_string(leaf), st.busy_count(leaf),
                 st.retries(leaf));
    report.schedule_figure(fmt::format("busy_{}", to_string(leaf)), st.busy_count(leaf));
  }
  report.check(order.removes() == kVictimSize / kPageSize, "every_page_removed",
               "{} PAGE.REMOVEs for {} pages", order.removes(), kVictimSize / kPageSize);
  report.check(order.out_of_order() == 0, "block_track_remove_order",
               "{} removals without BLOCK then TRACK first", order.out_of_order());
  uint64_t kicks = 0;
  for (unsigned i = 0; i < kVcpus; ++i) kicks += vm.vcpu(i).kvm_vcpu().stats().kicks.value();
  report.check(kicks > 0, "vcpus_kicked", "no vCPU was kicked out of guest mode");
  report.figure("page_removes", order.removes());
  report.schedule_figure("kicks", kicks);
  report.schedule_figure("sept_zap_waits", st.sept_zap_waits.value());
  checks.finish_vm(vm, report, "");
  checks.finish(report);
}

}  // namespace tdxsim
