// One run of a scenario with nothing printed: what stress and explore repeat many times.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/sched.h"
#include "scenarios/scenario.h"

namespace tdxsim::cli {

struct RunOutcome {
  // The names of the failed checks, sorted, each once: what "the same failure" compares.
  std::vector<std::string> failed_checks;
  std::string first_failure;                // "check: evidence", empty when the run passed
  std::optional<ScheduleSummary> schedule;  // deterministic runs only

  bool failed() const { return !failed_checks.empty(); }
};

// Deterministic when `options` names a schedule seed (or script), free-running otherwise.
RunOutcome run_quietly(const ScenarioInfo& scenario, const ScenarioOptions& options);

// "a, b, c"
std::string join_checks(const std::vector<std::string>& checks);

}  // namespace tdxsim::cli
