// GuestAccessObserver: the one listener that sees every guest data access a CPU retires —
// the reference model of the checker, which must compare each load with what the guest and
// the host wrote before.
//
// Not a Tracepoint: a Tracepoint's emit takes its listener-list mutex, and guest loads and
// stores are the simulator's hottest path on every vCPU thread at once. One atomic pointer
// on the Platform (nullptr: nobody observes, one predictable branch) costs nothing shared. The
// observer is installed before the vCPUs run and removed after they stop (RunChecks does both), so
// no access runs against a destroyed observer.
#pragma once

#include <cstdint>

#include "base/addr.h"
#include "platform/host_memory.h"

namespace tdxsim {

struct GuestAccess {
  unsigned cpu = 0;
  Gpa gpa;              // as the guest issued it (a TD's shared bit included)
  bool shared = false;  // a TD's access through the shared EPT
  Hpa hpa;              // where the translation put it
  KeyId key;            // with the key it named
};

// Makes each guest access and its record one step: the observer performs the memory access
// itself, inside whatever lock keeps its record of that word, so that what a load returns
// and what the record holds can be compared exactly however the vCPU threads interleave
// (a thread preempted between the access and its report could otherwise have seen any of
// the values stored meanwhile).
class GuestAccessObserver {
 public:
  virtual ~GuestAccessObserver() = default;
  // Reads the word at a.hpa with a.key from `mem` and returns it.
  virtual uint64_t load(const GuestAccess& a, HostMemory& mem) = 0;
  // Writes `value` at a.hpa with a.key into `mem`.
  virtual void store(const GuestAccess& a, HostMemory& mem, uint64_t value) = 0;
};

}  // namespace tdxsim
