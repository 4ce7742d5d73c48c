// Running a ScenarioSpec (a scenario file, scenario_file.h) the way the built-in scenarios
// run: the machine and VM through the VMM, the guests' phases as guest programs on vCPU
// threads, the host's actions when every vCPU that syncs at a stage has arrived there, and
// the checks every run makes (guest asserts, unexpected exits, the stale-use check) plus the
// file's own expectations. Failed checks carry their evidence (GPA, vCPU) in the Report.
#pragma once

#include "scenarios/scenario.h"
#include "scenarios/scenario_spec.h"

namespace tdxsim {

// `options.inject` adds to the file's `inject`; `options.seed` is unused (the run is the
// file's).
void run_scenario_spec(const ScenarioSpec& spec, const ScenarioOptions& options, Report& report);

}  // namespace tdxsim
