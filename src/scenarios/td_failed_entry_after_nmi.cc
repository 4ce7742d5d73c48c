// td_failed_entry_after_nmi: an NMI arrives for the host while a TD vCPU runs (a TD exit with
// exit reason 0, "exception or NMI", and the NMI's interruption information in R9); the next
// TDH.VP.ENTER fails with TDX_TSC_ROLLBACK (the LP's TSC went back), whose low 32 bits are
// also 0 and which leaves R9 as the NMI exit wrote it. KVM must hand the NMI to the host's
// handler once, report the failed entry to userspace (KVM_EXIT_INTERNAL_ERROR with the
// status) and run on when userspace enters again (seed 002).
//
// Both events are pinned: the NMI is sent when the vCPU is about to enter (it is then taken
// at the guest's first instruction boundary), and the rollback is armed when the NMI exit
// comes back, so the very next entry fails.
#include <atomic>

#include "guest/program.h"
#include "kvm/vmx/tdx.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "tdx_module/seamcall_leaf.h"
#include "tdx_module/tdx_status.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

constexpr uint64_t kPrivateBytes = 2 << 20;
constexpr uint64_t kRound = 3;
constexpr uint64_t kBytes = 64 << 10;

guest::GuestTask nmi_guest(guest::Guest& g) {
  for (uint64_t off = 0; off < kBytes; off += kPageSize) co_await g.accept(Gpa{off}, Level::k4K);
  co_await g.fill(Gpa{0}, kBytes, kRound);
  co_await g.sync(1);
  co_await g.verify(Gpa{0}, kBytes, kRound);
  co_await g.done();
}

// What the host has provoked so far.
enum class Step : int { kIdle, kSendNmi, kAwaitNmiExit, kRollbackArmed };

}  // namespace

void run_td_failed_entry_after_nmi(const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.memory_bytes = uint64_t{64} << 20;
  Machine machine(mc);
  const std::unique_ptr<Vm> td =
      create_private_td(machine, 1, kPrivateBytes, kPrivateBytes, report);
  if (td == nullptr) return;
  Vm& vm = *td;
  report.check(vm.td_finalize().has_value(), "finalize");
  RunChecks checks(machine, options);
  checks.watch(vm);

  guest::Program program(vm.flavour(), nmi_guest);
  vm.vcpu(0).set_guest(&program);
  const vmm::VcpuStop first = vm.vcpu(0).run_to_ucall();
  if (!report.check(first.ucall.has_value() && first.ucall->cmd == guest::UcallCmd::kSync,
                    "guest_sync", "stopped at exit {}", static_cast<int>(first.exit))) {
    return;
  }

  std::atomic<Step> step{Step::kSendNmi};
  const Hpa tdr = TdxOps::to_tdx(vm.kvm_vm()).tdr();
  auto on_entry = vm.kvm().events().vcpu_run.attach([&](const VcpuRunEvent& e) {
    Step s = Step::kSendNmi;
    if (e.phase == EventPhase::kBegin && step.compare_exchange_strong(s, Step::kAwaitNmiExit)) {
      machine.platform().cpu(e.cpu).send_nmi();
    }
  });
  auto on_exit = machine.tdx()->seamcall_trace.attach([&](const TdxSeamcallEvent& e) {
    if (e.tdr != tdr || e.leaf != SeamcallLeaf::kVpEnter ||
        e.status != static_cast<uint64_t>(VmxExitReason::kExceptionNmi)) {
      return;
    }
    Step s = Step::kAwaitNmiExit;
    if (step.compare_exchange_strong(s, Step::kRollbackArmed)) {
      machine.faults().arm(EnvFaultKind::kTscRollback, 0, 1);
    }
  });

  const vmm::VcpuStop failed = vm.vcpu(0).run_to_ucall();
  on_entry.reset();
  on_exit.reset();
  const KvmRun& run = vm.vcpu(0).run_state();
  report.check(step.load() == Step::kRollbackArmed, "nmi_exit_seen");
  report.check(failed.exit == KvmExitReason::kInternalError && run.internal.ndata >= 1 &&
                   run.internal.data[0] == raw(TdxStatus::kTscRollback),
               "failed_entry_reported", "stopped at exit {} with {:#x}",
               static_cast<int>(failed.exit), run.internal.data[0]);
  run_vcpu_to_done(vm, 0, program, report);

  const CpuStats& cpu = machine.platform().cpu(vm.vcpu(0).cpu()).stats();
  report.figure("nmis_handled", cpu.nmis_handled.value());
  report.check(cpu.spurious_nmis.value() == 0, "no_spurious_nmi", "{} spurious NMI(s)",
               cpu.spurious_nmis.value());
  checks.finish_vm(vm, report, "");
  checks.unwatch(vm);
  checks.finish(report);
}

}  // namespace tdxsim
