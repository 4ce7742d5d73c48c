// Scenarios: whole-stack runs with their checks, each named for what it ports (a KVM
// selftest, a TDX flow), listed by `tdxsim scenarios` and run by `tdxsim run NAME`.
//
// A scenario builds a Machine and VMs through the VMM, runs guest programs on vCPU threads,
// and checks data and state as it goes: every check has a name, and a failed one carries its
// evidence (GPA, vCPU, values). The verdict is whether every check held.
//
// Thread safety: a Report may be written from several threads (vCPU threads check as they
// go); everything else belongs to the thread running the scenario.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/fault_injection.h"
#include "base/lock.h"
#include "base/sched.h"

namespace tdxsim {

class Progress;
class Tracer;

struct ScenarioOptions {
  uint64_t seed = 1;
  bool verbose = false;
  // Bug switches (bug-catalogue rows) turned on for the run's machines.
  std::vector<BugId> inject;
  // Overrides of the scenario's own shape, for scenarios that take them (ScenarioInfo).
  std::optional<unsigned> vcpus;
  std::optional<uint64_t> memory_bytes;
  // When set, the run's VMs are traced into it (tracer.h; `tdxsim run --trace`). Not owned.
  Tracer* tracer = nullptr;
  // When set, long scenarios name their phases to it (progress.h). Not owned.
  Progress* progress = nullptr;
  // The invariants of docs/invariants.md that RunChecks attaches (`tdxsim run --no-checks`
  // turns them off, to measure what they cost). A scenario's own checks of what the guest
  // and the host read back, and the teardown counters, stay.
  bool checks = true;
  // When set, the run is deterministic: its threads are interleaved by base/sched.h's
  // scheduler from this seed (`tdxsim run --deterministic`), so it replays exactly.
  std::optional<uint64_t> schedule_seed;
  // When set (with schedule_seed), the schedule is this exploration's instead of a seeded
  // one: these preemptions, and otherwise each thread runs until it waits or ends.
  std::optional<std::vector<Preemption>> schedule_script;

  // Names a phase to `progress`, if any.
  void phase(std::string_view what, std::function<uint64_t()> done = {}, uint64_t total = 0) const;
};

class Report {
 public:
  // Records a check; returns `ok`. `evidence` is only formatted for a failure.
  template <class... Args>
  bool check(bool ok, std::string_view name, fmt::format_string<Args...> evidence, Args&&... args) {
    note(ok, name, ok ? std::string() : fmt::format(evidence, std::forward<Args>(args)...));
    return ok;
  }
  bool check(bool ok, std::string_view name) { return check(ok, name, "{}", "failed"); }
  // A figure for the summary (counts, not verdicts). figure(): a function of the scenario
  // and its seed alone; schedule_figure(): a count that depends on how the threads were
  // scheduled (retries, BUSY answers, kicks, flushes of concurrent zaps, reclaim passes).
  // `tdxsim run --json` keeps the two apart, so that runs can be compared.
  void figure(std::string_view name, uint64_t value) TDXSIM_EXCLUDES(mu_);
  void schedule_figure(std::string_view name, uint64_t value) TDXSIM_EXCLUDES(mu_);

  // Simulated operations the run performed — guest instructions retired, VM exits, KVM page
  // faults, SEAMCALLs — summed by whoever counts them; the CLI divides by wall time.
  void add_operations(uint64_t n) TDXSIM_EXCLUDES(mu_);
  uint64_t operations() const TDXSIM_EXCLUDES(mu_);

  bool passed() const TDXSIM_EXCLUDES(mu_);
  uint64_t checks() const TDXSIM_EXCLUDES(mu_);
  // The failed checks, each "name: evidence", in the order they failed.
  std::vector<std::string> failures() const TDXSIM_EXCLUDES(mu_);
  std::vector<std::pair<std::string, uint64_t>> figures() const TDXSIM_EXCLUDES(mu_);
  std::vector<std::pair<std::string, uint64_t>> schedule_figures() const TDXSIM_EXCLUDES(mu_);

 private:
  void note(bool ok, std::string_view name, std::string evidence) TDXSIM_EXCLUDES(mu_);

  mutable Mutex mu_{"scenario report"};
  uint64_t checks_ TDXSIM_GUARDED_BY(mu_) = 0;
  uint64_t operations_ TDXSIM_GUARDED_BY(mu_) = 0;
  std::vector<std::string> failures_ TDXSIM_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, uint64_t>> figures_ TDXSIM_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, uint64_t>> schedule_figures_ TDXSIM_GUARDED_BY(mu_);
};

// What a scenario lets `--vcpus`, `--memory` and `--vm-type` change; anything else is a
// usage error. `vm_type` is the one VM type the scenario runs ("tdx", "default"), so that
// asking for it is accepted and asking for another is not; "" for a scenario that runs
// several types and takes no --vm-type.
struct ScenarioOverrides {
  bool vcpus = false;
  bool memory = false;
  std::string_view vm_type;
};

struct ScenarioInfo {
  std::string_view name;
  std::string_view description;
  void (*run)(const ScenarioOptions& options, Report& report);
  ScenarioOverrides overrides;
};

// Every built-in scenario, in a fixed order.
std::span<const ScenarioInfo> builtin_scenarios();
const ScenarioInfo* find_scenario(std::string_view name);

// A bug-catalogue row that exists as a bug switch, with the built-in scenario that shows it:
// `tdxsim run SCENARIO` passes, `tdxsim run SCENARIO --inject ID` fails a check.
struct BugRow {
  BugId id;
  std::string_view scenario;
  std::string_view description;
};
std::span<const BugRow> bug_rows();
// Bugs planted for tdxsim's own tests (`--inject P1`, `P2`); not catalogue rows.
std::span<const BugRow> planted_bugs();
// A row or a planted bug by ID; nullptr if neither.
const BugRow* find_switch(BugId id);

}  // namespace tdxsim
