// The platform tour (`tdxsim run platform_tour`): the simulated silicon alone — EPT tables
// in host memory, a guest on a logical CPU, the TLB, INVEPT, exits, #VE and SEAMCALL — with
// every claim it prints checked.
#pragma once

#include <cstdio>

namespace tdxsim::cli {

// Returns the number of checks that failed (0: every check held).
int run_platform_tour(std::FILE* out);

}  // namespace tdxsim::cli
