// DrivenTd: the whole stack — the TDX module, KVM with its TDX vendor code, the VMM and two
// guest programs — held at quiescent points between operations (op.h) that the caller hands
// in one at a time: the system under test of the property tests and the whole-stack fuzzer.
//
// Each guest program parks at a GUEST_SYNC; a guest operation gives its vCPU the steps to run
// and runs it on the calling thread until it parks again, the VMM answering its exits (MapGPA,
// memory-fault conversions, MMIO) as it always does. Host operations call the VMM. After each
// operation every invariant of docs/invariants.md is judged (RunChecks::violations_now), and
// what guest and host read is held to TdModel: a run's failures name the check and the
// evidence. finish() ends the guests and destroys the TD, then holds the machine to the
// teardown invariants (every frame back, the PAMT clean, no plaintext seen).
//
// Runs are single-threaded and so repeat exactly; the concurrency of the same paths is the
// stress campaign's (`tdxsim stress`).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/fault_injection.h"
#include "workload/op.h"
#include "workload/td_model.h"

namespace tdxsim {
class Report;
class RunChecks;
namespace vmm {
class Machine;
class Vm;
}  // namespace vmm
namespace guest {
class Program;
}  // namespace guest
}  // namespace tdxsim

namespace tdxsim::workload {

struct GuestStep;
struct Mailbox;

// A machine sized for one DrivenTd at a time, with `bugs` switched on.
std::unique_ptr<vmm::Machine> make_machine(const std::vector<BugId>& bugs = {});

// Which invariants a DrivenTd judges after each operation (finish() judges them all).
enum class Judge : uint8_t {
  kAll,      // every one: a failure names the operation that broke any of them
  kRunWide,  // those events keep up to date (zaps, the reference model, stale uses, the
             // dirty log); the per-VM ones, which walk every table and the whole S-EPT,
             // at the end: what a fuzzer's executions per second can afford
};

class DrivenTd {
 public:
  // Builds and finalizes the TD on `machine` and parks its guests. Failures of the build are
  // in failures(). REQUIRES: no other VM on `machine`; it outlives this.
  explicit DrivenTd(vmm::Machine& machine, Judge judge = Judge::kAll);
  // Ends the TD if finish() did not.
  ~DrivenTd();
  DrivenTd(const DrivenTd&) = delete;
  DrivenTd& operator=(const DrivenTd&) = delete;

  // Runs `op` on a TD whose pages are as `model` says (the state before it), then judges.
  // Returns this operation's failures ("check: evidence"); after one, the TD is broken and
  // later operations do nothing. REQUIRES: well_formed(op); not finished.
  std::vector<std::string> run(const Op& op, const TdModel& model);
  // Ends the guests, destroys the TD and judges the teardown. Returns its failures.
  std::vector<std::string> finish();

  // Every failure so far (build, operations, teardown).
  const std::vector<std::string>& failures() const { return failures_; }
  bool broken() const { return !failures_.empty(); }

 private:
  // Gives vCPU `vcpu` these steps and runs it until it parks again.
  void run_guest(unsigned vcpu, std::vector<GuestStep> steps);
  void run_host(const Op& op, const TdModel& model);
  void fail(std::string what);

  vmm::Machine& machine_;
  const Judge judge_;
  uint64_t free_before_ = 0;
  std::unique_ptr<RunChecks> checks_;
  std::vector<std::unique_ptr<Mailbox>> boxes_;
  std::vector<std::unique_ptr<guest::Program>> programs_;
  std::unique_ptr<vmm::Vm> vm_;
  std::vector<std::string> failures_;
  bool finished_ = false;
};

// What a whole sequence did: run_sequence's answer.
struct SequenceOutcome {
  std::vector<std::string> failures;
  // The operation that failed (ops.size(): the teardown), when one did; none with failures
  // means the TD could not be built.
  std::optional<size_t> failed_at;
};

// Runs `ops` in order on a fresh DrivenTd on `machine`, stopping at the first failure, then
// ends the TD. REQUIRES: no VM on `machine`; called inside run_scheduled().
SequenceOutcome run_sequence(vmm::Machine& machine, std::span<const Op> ops,
                             Judge judge = Judge::kAll);

// Runs `body` under the deterministic scheduler (base/sched.h), as every use of a DrivenTd
// should: its RCU grace periods and barriers are then the scheduler's, so that tearing a TD
// down costs what its work costs rather than liburcu's 10 ms callback batching, and a run
// repeats exactly. An exception `body` throws (RapidCheck's failures are exceptions) is
// rethrown once the run has ended.
void run_scheduled(const std::function<void()>& body);

}  // namespace tdxsim::workload
