// What the built-in scenarios share: running vCPU threads to their guests' DONE with the
// checks every run makes (no ASSERT, no unexpected exit), and error names for evidence.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "check/dirty_log_coverage.h"
#include "check/fault_loop_watchdog.h"
#include "check/reference_model.h"
#include "check/sept_census.h"
#include "check/stale_use_check.h"
#include "check/zapped_range.h"
#include "guest/program.h"
#include "kvm/kvm_errno.h"
#include "scenarios/scenario.h"
#include "scenarios/tracer.h"
#include "vmm/memory_pressure.h"
#include "vmm/vm.h"

namespace tdxsim {

// Scenarios are written against the VMM.
using vmm::Machine;
using vmm::MachineConfig;
using vmm::MemoryRegion;
using vmm::VcpuExitStats;
using vmm::VcpuStop;
using vmm::Vm;
using vmm::VmShape;

// What the host does at a guest's GUEST_SYNC, packed into the ucall's 56-bit argument:
// check that the host's view of a range (offsets from the vCPU's base) holds pattern round
// `check` (round 0: zeros), then optionally write round `write`; or punch the range out of
// guest_memfd. Guest and host code build and read it with the same functions.
enum class HostOp : uint64_t { kCheck = 1, kCheckWrite = 2, kPunch = 3 };
struct HostStep {
  HostOp op;
  uint64_t check, write;  // rounds, < 16
  uint64_t offset, size;  // page aligned, < 4 GiB

  uint64_t encode() const;
  static HostStep decode(uint64_t arg);
};
inline uint64_t check(uint64_t offset, uint64_t size, uint64_t round) {
  return HostStep{HostOp::kCheck, round, 0, offset, size}.encode();
}
inline uint64_t check_write(uint64_t offset, uint64_t size, uint64_t round, uint64_t next) {
  return HostStep{HostOp::kCheckWrite, round, next, offset, size}.encode();
}
inline uint64_t punch(uint64_t offset, uint64_t size) {
  return HostStep{HostOp::kPunch, 0, 0, offset, size}.encode();
}
// The value of round `round` at `gpa` (round 0 is all zeros).
inline uint64_t round_value(Gpa gpa, uint64_t round) {
  return round == 0 ? 0 : guest::pattern(gpa, round);
}
inline uint64_t zero_pattern(Gpa, uint64_t) {
  return 0;
}

template <class T>
const char* errno_name(const KvmResult<T>& r) {
  return r ? "ok" : to_string(r.error());
}

// The machine every scenario starts from: the defaults, with the run's bug switches on.
MachineConfig machine_config(const ScenarioOptions& options);

// The TD most scenarios start from: `vcpus` vCPUs, memslot 0 at GPA 0 of `slot_bytes` over a
// new guest_memfd, [0, private_bytes) private; not finalized. nullptr when a step failed
// (checks "td_create", "memslot", "set_private" say which).
std::unique_ptr<Vm> create_private_td(Machine& machine, unsigned vcpus, uint64_t slot_bytes,
                                      uint64_t private_bytes, Report& report);

// Checks a scenario keeps running while it works: the stale-use check over every CPU and the
// VMs it watches, every guest and host read against the reference model, every range zap
// of a watched VM leaving the range unmapped in every root, no VM bug and no lockdep warning,
// Hyper-V's use only on a Hyper-V host, and for a TD the S-EPT removal protocol, exit handling
// only after a valid TD-entry status, progress on private faults, and the mirror's agreement
// with the S-EPT at quiescent points (docs/invariants.md). finish_vm(), finish() and
// verdict() report them. With a tracer (ScenarioOptions::tracer), the VMs it watches are
// traced too, from watch() to unwatch() (or the checks' end).
class RunChecks {
 public:
  // Traces the watched VMs into options.tracer, if set; attaches the invariants only when
  // options.checks (the summary's figures come either way).
  RunChecks(Machine& machine, const ScenarioOptions& options);
  ~RunChecks();
  RunChecks(const RunChecks&) = delete;
  RunChecks& operator=(const RunChecks&) = delete;
  // REQUIRES: the VM outlives the checks, or unwatch() first.
  void watch(Vm& vm);
  void unwatch(Vm& vm);
  // Reports the checks for `vm` (tagged) and the stale-use verdict; also the run's TLB
  // figures for `vm`: flushes by kind, root loads, hypercalls.
  void finish_vm(Vm& vm, Report& report, std::string_view tag);
  void finish(Report& report);
  // The stale-use verdict and the per-VM invariants of every watched VM, tagged (for
  // scenarios that run many variants). REQUIRES: a quiescent point (see quiescent()).
  void verdict(Report& report, std::string_view tag);
  // "mirror_matches_sept" for `vm` now (nothing for a VM that is not a TD). REQUIRES: a
  // quiescent point — no vCPU in the guest (between KVM_RUNs, or its thread parked at a
  // ucall) and no memory operation in flight.
  void quiescent(Vm& vm, Report& report, std::string_view tag);
  // Every invariant violated so far, each "name: evidence": the per-VM checks of every
  // watched VM as they stand now and the run-wide ones (zaps, stale uses, the reference model,
  // the dirty log). Reports nothing and may be asked again: for drivers that judge after each
  // operation (src/workload/). REQUIRES: a quiescent point.
  std::vector<std::string> violations_now();
  // Only the run-wide ones, which events keep up to date: cheap to ask after every step (the
  // per-VM checks walk every table and read the whole S-EPT).
  std::vector<std::string> run_wide_violations_now();

 private:
  struct WatchedVm {
    Vm* vm;
    std::string tag;
    std::unique_ptr<FaultLoopWatchdog> fault_loop;
    bool reported = false;
  };
  // One per-VM invariant: its name and, when it failed, the evidence.
  struct CheckOutcome {
    std::string name;
    std::optional<std::string> failure;
  };
  struct TdChecks;
  // The verdicts both finish() and verdict() give.
  void judge(Report& report, std::string_view tag);
  // The per-VM invariants of `vm` now, tagged; a TD's S-EPT census into `census` when given.
  // REQUIRES: a quiescent point.
  std::vector<CheckOutcome> vm_outcomes(Vm& vm, std::string_view tag, SeptCensus* census = nullptr);
  // Reports them (and marks `vm` reported).
  void report_vm(Vm& vm, Report& report, std::string_view tag, SeptCensus* census = nullptr);
  // The per-VM checks of every VM not reported yet, and the zapped-range verdict.
  void report_pending(Report& report, std::string_view tag);
  CheckOutcome zapped_outcome(std::string_view tag) const;
  // The run-wide invariants besides the zaps: stale uses, the reference model, the dirty log.
  std::vector<CheckOutcome> run_outcomes(std::string_view tag) const;

  Machine& machine_;
  const bool enabled_;
  std::vector<std::unique_ptr<TdChecks>> tds_;
  std::unique_ptr<StaleUseCheck> stale_;
  std::unique_ptr<ZappedRangeCheck> zapped_;
  // Before model_, which tells it of every store: it outlives the model.
  std::unique_ptr<DirtyLogCoverage> dirty_;
  std::unique_ptr<ReferenceModel> model_;
  std::vector<WatchedVm> vms_;
  // The outcomes of VMs unwatched before they were reported.
  std::vector<CheckOutcome> unwatched_;
  Tracer* tracer_;
  std::vector<std::pair<Vm*, std::unique_ptr<Tracer::Attachment>>> traced_;
};

// The S-EPT census of `vm` (check/sept_census.h), its SEAMCALLs issued on the calling
// thread's CPU or, when it has none, on the VMM's main host CPU. REQUIRES: a quiescent point.
SeptCensus sept_census(Vm& vm);

// After a TD machine's VMs are gone: every frame back (`free_before`: the free count before
// the first VM), the PAMT clean, no plaintext seen by the host.
void check_td_teardown(Machine& machine, uint64_t free_before, Report& report);

// The run at a glance for `vm`, as schedule figures (prefixed `tag.` when tag is set):
// faults by outcome, pages converted by direction, leaves zapped by reason and alias, pages
// mapped per level in the mirror, the S-EPT (from `census`, when given) and the direct
// tables now, page-table memory (per GiB mapped), KVM_RUN exits by reason, and a TD's
// SEAMCALLs by leaf with their BUSY and error answers. Adds the faults and SEAMCALLs to the
// report's operations. REQUIRES: the vCPUs are stopped.
void report_vm_summary(Vm& vm, Report& report, std::string_view tag,
                       const SeptCensus* census = nullptr);

// Called on the vCPU's thread for each GUEST_SYNC(stage): the host's side of that step.
// Returns false to stop that vCPU (the check that failed is in the report).
using SyncHandler = std::function<bool(unsigned vcpu, uint64_t stage)>;

// The host's side of HostSteps for `vm`, with each vCPU's base GPA from `base_of`.
class HostSync {
 public:
  HostSync(Vm& vm, Report& report, std::string tag, std::function<Gpa(unsigned)> base_of)
      : vm_(vm), report_(report), tag_(std::move(tag)), base_of_(std::move(base_of)) {}
  bool operator()(unsigned vcpu, uint64_t arg) const;
  SyncHandler handler() const {
    return [this](unsigned vcpu, uint64_t arg) { return (*this)(vcpu, arg); };
  }

 private:
  Vm& vm_;
  Report& report_;
  std::string tag_;
  std::function<Gpa(unsigned)> base_of_;
};

// After a run under MemoryPressure: the host did reclaim, its invalidations zapped shared
// mappings only (seed 001: private memory has no userspace mapping to invalidate).
void check_pressure(Vm& vm, const vmm::MemoryPressure& pressure, Report& report,
                    std::string_view tag);

// Runs every vCPU of `vm` on its own thread until its guest's DONE. An ASSERT is reported with
// the guest's record, any other stop with the exit it stopped at.
// REQUIRES: programs[i] is attached to vCPU i.
void run_vcpus_to_done(Vm& vm, const std::vector<std::unique_ptr<guest::Program>>& programs,
                       Report& report, const SyncHandler& on_sync = {});

// The same for one vCPU on the calling thread.
bool run_vcpu_to_done(Vm& vm, unsigned vcpu, const guest::Program& program, Report& report,
                      const SyncHandler& on_sync = {});

}  // namespace tdxsim
