// A hostile host against the TDX module: every input is a fresh machine (HostWorld) and a run
// of SEAMCALLs, TD entries and host writes decoded from the bytes (HostileHost), after which
// the module's invariants must hold (module_invariants.h). Any crash, sanitizer report or
// TDXSIM_CHECK is a finding too: nothing a host does may bring the module down.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_input.h"
#include "fuzz/host_world.h"
#include "fuzz/hostile_host.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tdxsim::fuzz::FuzzInput in(data, size);
  tdxsim::fuzz::HostWorld world;
  tdxsim::fuzz::HostileHost(world, in).run();
  return 0;
}
