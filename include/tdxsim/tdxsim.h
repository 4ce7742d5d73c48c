// tdxsim's public API: everything a host program outside the tree uses (docs/abi.md).
// Link tdxsim::tdxsim; its include path holds include/ and src/, as these headers forward
// to the definitions the simulator itself uses.
#pragma once

#include "tdxsim/platform.h"
#include "tdxsim/seamcall.h"
#include "tdxsim/tdx_module.h"
