// `tdxsim stress`: a scenario over many workload seeds and vCPU counts, free-running and under
// seeded deterministic schedules. A free-running failure names its workload seed; stress then
// reruns that workload under deterministic schedules until one fails the same checks, and
// prints the command that replays it. A deterministic failure prints its replay at once.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "cli/quiet_run.h"
#include "scenarios/scenario.h"

namespace tdxsim::cli {

struct StressConfig {
  const ScenarioInfo* scenario = nullptr;
  ScenarioOptions base;  // inject, memory, checks; seed and vCPUs are stress's
  uint64_t first_seed = 1;
  uint64_t seeds = 100;
  std::vector<unsigned> vcpus{1, 2, 4, 8};  // ignored by a scenario with a fixed count
  bool free_running = true;
  bool deterministic = true;
  // Deterministic schedules tried to reproduce a free-running failure (docs/replay.md).
  uint64_t reproduce_tries = 1000;
};

// Returns: 0 when no run failed, 1 when one did (whether or not it was reproduced).
int run_stress(const StressConfig& config, std::FILE* out);

struct Reproduction {
  ScenarioOptions options;  // the workload's with the schedule seed that reproduced it
  RunOutcome outcome;
};

// Schedule seeds 1..tries of `options`' workload under `scenario`, until a run fails exactly
// the checks `target` names. Returns: that run (its options are its replay), or nullopt.
std::optional<Reproduction> reproduce_deterministically(const ScenarioInfo& scenario,
                                                        const ScenarioOptions& options,
                                                        const std::vector<std::string>& target,
                                                        uint64_t tries);

}  // namespace tdxsim::cli
