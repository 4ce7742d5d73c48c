// td_private_fault_busy: a TD vCPU's first touch of private memory finds the module busy:
// TDH.MEM.PAGE.AUG answers TDX_OPERAND_BUSY eight times in a row (an environment fault, as
// when other vCPUs' zero-step checks or removals hold the S-EPT). KVM must make progress
// without sending the vCPU back into the guest to fault again and again (each such entry
// counts toward the module's zero-step mitigation): the page gets mapped, the guest fills and
// verifies it.
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
constexpr uint64_t kBytes = 16 << 10;
constexpr uint64_t kRound = 7;
constexpr uint32_t kBusyAnswers = 8;

guest::GuestTask busy_guest(guest::Guest& g) {
  for (uint64_t off = 0; off < kBytes; off += kPageSize) co_await g.accept(Gpa{off}, Level::k4K);
  co_await g.fill(Gpa{0}, kBytes, kRound);
  co_await g.verify(Gpa{0}, kBytes, kRound);
  co_await g.done();
}

}  // namespace

void run_td_private_fault_busy(const ScenarioOptions& options, Report& report) {
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

  machine.faults().arm(EnvFaultKind::kForceOperandBusy,
                       static_cast<uint64_t>(SeamcallLeaf::kMemPageAug), kBusyAnswers,
                       static_cast<uint64_t>(TdxOperand::kSeptEntry));
  guest::Program program(vm.flavour(), busy_guest);
  vm.vcpu(0).set_guest(&program);
  run_vcpu_to_done(vm, 0, program, report);

  const TdxStats& st = TdxOps::to_tdx(vm.kvm_vm()).stats();
  report.check(st.busy_count(SeamcallLeaf::kMemPageAug) == kBusyAnswers, "aug_busy_answered",
               "{} BUSY answers to AUG", st.busy_count(SeamcallLeaf::kMemPageAug));
  report.schedule_figure("local_fault_retries", st.local_fault_retries.value());
  checks.finish_vm(vm, report, "");
  checks.unwatch(vm);
  checks.finish(report);
}

}  // namespace tdxsim
