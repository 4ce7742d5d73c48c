// The platform tour: what `tdxsim run` shows until the default TD scenario exists. It
// exercises the simulated silicon the way the later layers will — EPT tables in host
// memory, a guest on a logical CPU, the TLB, INVEPT, exits, #VE and SEAMCALL — and checks
// every claim it prints.
#pragma once

#include <cstdio>

namespace tdxsim::cli {

// Returns the number of checks that failed (0: every check held).
int run_platform_tour(std::FILE* out);

}  // namespace tdxsim::cli
