// Runs one built-in scenario and prints what a person reads at a glance — the figures, the
// checks made, each failed check with its evidence, and the verdict — or, with `json`, one
// JSON document and nothing else on `out`:
//
//   { "scenario", "description", "seed", "options": {...}, "verdict": "pass" | "fail",
//     "failures": [ {"check", "evidence"} ],
//     "figures":  { counts that are a function of the scenario and the seed },
//     "schedule": { counts that depend on how threads were scheduled, the checks made;
//                   deterministic runs: "digest", "threads", "steps", "switches",
//                   "preemptions" },
//     "replay":   the command that replays a failed deterministic run,
//     "host":     { "wall_seconds", "max_rss_bytes" } }
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

#include "scenarios/scenario.h"
#include "scenarios/scenario_spec.h"

namespace tdxsim::cli {

// The one command line that runs `name` with `options` again — under a deterministic
// schedule, the same interleaving.
std::string replay_command(std::string_view name, const ScenarioOptions& options);
// "STEP:THREAD,…" as --preempt takes it ("none" for an empty script).
std::string format_preemptions(const std::vector<Preemption>& script);
// Runs `body` under the schedule `options` name (its schedule seed, or its script).
ScheduleSummary run_deterministic(const ScenarioOptions& options,
                                  const std::function<void()>& body);

// Returns: the exit status, 0 when every check held, 1 otherwise. Under a schedule seed the
// run is deterministic: "schedule" gains the digest and its counts, and a failed run prints
// its replay command ("replay" in JSON).
int run_scenario(const ScenarioInfo& scenario, const ScenarioOptions& options, std::FILE* out,
                 bool json = false);
// The same for a scenario file's spec, named by its path.
int run_scenario_file(const std::string& path, const ScenarioSpec& spec,
                      const ScenarioOptions& options, std::FILE* out, bool json = false);

}  // namespace tdxsim::cli
