// `tdxsim explore`: bounded exploration of a small scenario's schedules. Instead of sampling
// seeds, it enumerates every schedule with at most `preemptions` preemptions (CHESS's
// preemption bounding): a thread runs until it waits or ends, except at the chosen lock and
// unlock points, where the token goes to another thread of the run. Schedules with fewer
// preemptions come first, so the first failure found is one of the fewest preemptions.
#pragma once

#include <cstdint>
#include <cstdio>

#include "scenarios/scenario.h"

namespace tdxsim::cli {

struct ExploreConfig {
  const ScenarioInfo* scenario = nullptr;
  ScenarioOptions base;  // seed, inject, checks
  unsigned preemptions = 2;
  uint64_t max_runs = 20'000;
};

// Returns: 0 when every schedule within the bound passed, 1 on the first failure (its replay
// command printed), 3 when max_runs ended the enumeration first.
int run_explore(const ExploreConfig& config, std::FILE* out);

}  // namespace tdxsim::cli
