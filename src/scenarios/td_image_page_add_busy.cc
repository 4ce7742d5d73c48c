// td_image_page_add_busy: a TD's initial image (KVM_TDX_INIT_MEM_REGION) where the module
// answers the first TDH.MEM.PAGE.ADD with TDX_OPERAND_BUSY. KVM reports EBUSY and the VMM
// tries the region again, as it would any busy ioctl. Between the two — a quiescent point,
// nothing runs — KVM's mirror must not map the page the module never added; the retried
// region, the finalized TD and a guest that verifies its image must all be whole.
#include "guest/program.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "tdx_module/seamcall_leaf.h"
#include "tdx_module/tdx_status.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

constexpr uint64_t kImageRound = 0x7E57;
constexpr uint64_t kImageBytes = 16 << 10;
constexpr uint64_t kPrivateBytes = 2 << 20;

uint64_t image_word(uint64_t offset) {
  return guest::pattern(Gpa{offset}, kImageRound);
}

guest::GuestTask image_guest(guest::Guest& g) {
  co_await g.verify(Gpa{0}, kImageBytes, kImageRound);
  co_await g.done();
}

}  // namespace

void run_td_image_page_add_busy(const ScenarioOptions& options, Report& report) {
  MachineConfig mc = machine_config(options);
  mc.memory_bytes = uint64_t{64} << 20;
  Machine machine(mc);
  const std::unique_ptr<Vm> td =
      create_private_td(machine, 1, kPrivateBytes, kPrivateBytes, report);
  if (td == nullptr) return;
  Vm& vm = *td;
  RunChecks checks(machine, options);
  checks.watch(vm);

  machine.faults().arm(EnvFaultKind::kForceOperandBusy,
                       static_cast<uint64_t>(SeamcallLeaf::kMemPageAdd), 1,
                       static_cast<uint64_t>(TdxOperand::kSeptEntry));
  const KvmResult<> busy = vm.td_init_mem_region(Gpa{0}, kImageBytes, image_word);
  report.check(!busy && busy.error() == Errno::kEbusy, "init_mem_region_busy", "returned {}",
               errno_name(busy));
  checks.quiescent(vm, report, "after the refused PAGE.ADD");

  const KvmResult<> again = vm.td_init_mem_region(Gpa{0}, kImageBytes, image_word);
  report.check(again.has_value(), "init_mem_region_retried", "returned {}", errno_name(again));
  report.check(vm.td_finalize().has_value(), "finalize");

  guest::Program program(vm.flavour(), image_guest);
  vm.vcpu(0).set_guest(&program);
  run_vcpu_to_done(vm, 0, program, report);
  checks.finish_vm(vm, report, "");
  checks.unwatch(vm);
  checks.finish(report);
}

}  // namespace tdxsim
