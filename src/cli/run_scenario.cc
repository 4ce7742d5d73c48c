#include "cli/run_scenario.h"

#include <fmt/format.h>

#include <chrono>

namespace tdxsim::cli {

int run_scenario(const ScenarioInfo& scenario, const ScenarioOptions& options, std::FILE* out) {
  Report report;
  const auto t0 = std::chrono::steady_clock::now();
  scenario.run(options, report);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print(out, "scenario {}: {}\n", scenario.name, scenario.description);
  for (const auto& [name, value] : report.figures()) fmt::print(out, "  {:<28} {}\n", name, value);
  fmt::print(out, "  {:<28} {}\n", "checks", report.checks());
  fmt::print(out, "  {:<28} {:.2f} s\n", "wall time", secs);
  const std::vector<std::string> failures = report.failures();
  for (const std::string& f : failures) fmt::print(out, "FAILED {}\n", f);
  fmt::print(out, "{}\n", failures.empty() ? "PASS" : "FAIL");
  return failures.empty() ? 0 : 1;
}

}  // namespace tdxsim::cli
