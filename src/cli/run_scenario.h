// Runs one built-in scenario and prints what a person reads at a glance: the figures, the
// checks made, each failed check with its evidence, and the verdict.
#pragma once

#include <cstdio>

#include "scenarios/scenario.h"

namespace tdxsim::cli {

// Returns: the exit status, 0 when every check held, 1 otherwise.
int run_scenario(const ScenarioInfo& scenario, const ScenarioOptions& options, std::FILE* out);

}  // namespace tdxsim::cli
