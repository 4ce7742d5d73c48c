#include "cli/stress.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>

#include "cli/quiet_run.h"
#include "cli/run_scenario.h"

namespace tdxsim::cli {

namespace {

void report_reproduction(const StressConfig& c, const ScenarioOptions& options,
                         const std::vector<std::string>& target, std::FILE* out) {
  const std::optional<Reproduction> det =
      reproduce_deterministically(*c.scenario, options, target, c.reproduce_tries);
  if (!det) {
    fmt::print(out, "  not reproduced under {} deterministic schedules\n", c.reproduce_tries);
    return;
  }
  fmt::print(out, "  reproduced under deterministic schedule {} of {} (digest {:016x}): {}\n",
             *det->options.schedule_seed, c.reproduce_tries, det->outcome.schedule->digest,
             det->outcome.first_failure);
  fmt::print(out, "replay: {}\n", replay_command(c.scenario->name, det->options));
}

}  // namespace

std::optional<Reproduction> reproduce_deterministically(const ScenarioInfo& scenario,
                                                        const ScenarioOptions& options,
                                                        const std::vector<std::string>& target,
                                                        uint64_t tries) {
  for (uint64_t s = 1; s <= tries; ++s) {
    ScenarioOptions det = options;
    det.schedule_seed = s;
    RunOutcome r = run_quietly(scenario, det);
    if (r.failed_checks == target) return Reproduction{std::move(det), std::move(r)};
  }
  return std::nullopt;
}

int run_stress(const StressConfig& c, std::FILE* out) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<unsigned> counts = c.vcpus;
  if (!c.scenario->overrides.vcpus) counts = {0};  // the scenario's own count
  uint64_t free_runs = 0, det_runs = 0;
  fmt::print(
      out, "stress {}: seeds {}..{}, vCPUs {}, {}{}\n", c.scenario->name, c.first_seed,
      c.first_seed + c.seeds - 1,
      counts == std::vector<unsigned>{0} ? "fixed" : fmt::format("{}", fmt::join(counts, "/")),
      c.free_running ? "free-running" : "",
      c.deterministic ? (c.free_running ? " and deterministic" : "deterministic") : "");
  for (uint64_t seed = c.first_seed; seed < c.first_seed + c.seeds; ++seed) {
    for (unsigned v : counts) {
      ScenarioOptions o = c.base;
      o.seed = seed;
      if (v != 0) o.vcpus = v;
      const std::string shape =
          v != 0 ? fmt::format("seed {}, {} vCPUs", seed, v) : fmt::format("seed {}", seed);
      if (c.free_running) {
        const RunOutcome r = run_quietly(*c.scenario, o);
        ++free_runs;
        if (r.failed()) {
          fmt::print(out, "FAILED free-running, workload {}: {} ({})\n", shape, r.first_failure,
                     join_checks(r.failed_checks));
          fmt::print(out, "  workload: {}\n", replay_command(c.scenario->name, o));
          report_reproduction(c, o, r.failed_checks, out);
          return 1;
        }
      }
      if (c.deterministic) {
        ScenarioOptions det = o;
        det.schedule_seed = seed;
        const RunOutcome r = run_quietly(*c.scenario, det);
        ++det_runs;
        if (r.failed()) {
          fmt::print(
              out, "FAILED deterministic, workload {}, schedule {} (digest {:016x}): {} ({})\n",
              shape, seed, r.schedule->digest, r.first_failure, join_checks(r.failed_checks));
          fmt::print(out, "replay: {}\n", replay_command(c.scenario->name, det));
          return 1;
        }
      }
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print(out, "PASS: {} free-running and {} deterministic runs, no failure ({:.1f} s)\n",
             free_runs, det_runs, secs);
  return 0;
}

}  // namespace tdxsim::cli
