#include "cli/quiet_run.h"

#include <algorithm>

#include "cli/run_scenario.h"

namespace tdxsim::cli {

RunOutcome run_quietly(const ScenarioInfo& scenario, const ScenarioOptions& options) {
  Report report;
  RunOutcome out;
  if (options.schedule_seed || options.schedule_script) {
    out.schedule = run_deterministic(options, [&] { scenario.run(options, report); });
  } else {
    scenario.run(options, report);
  }
  const std::vector<std::string> failures = report.failures();
  if (!failures.empty()) out.first_failure = failures.front();
  for (const std::string& f : failures) out.failed_checks.push_back(f.substr(0, f.find(": ")));
  std::ranges::sort(out.failed_checks);
  out.failed_checks.erase(std::unique(out.failed_checks.begin(), out.failed_checks.end()),
                          out.failed_checks.end());
  return out;
}

std::string join_checks(const std::vector<std::string>& checks) {
  std::string s;
  for (const std::string& c : checks) s += (s.empty() ? "" : ", ") + c;
  return s;
}

}  // namespace tdxsim::cli
