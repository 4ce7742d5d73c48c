// GuestAccessObserver: the one listener that sees every guest data access a CPU retires —
// the reference model of the checker, which must compare each load with what the guest and
// the host wrote before.
//
// Not a Tracepoint: a Tracepoint's emit takes its listener-list mutex, and guest loads and
// stores are the simulator's hottest path on every vCPU thread at once. One atomic pointer
// on the Platform, read relaxed (nullptr: nobody observes, one predictable branch), costs
// nothing shared. The observer is installed before the vCPUs run and removed after they stop
// (RunChecks does both), so no access runs against a destroyed observer.
#pragma once

#include <cstdint>

#include "base/addr.h"

namespace tdxsim {

struct GuestAccess {
  unsigned cpu = 0;
  Gpa gpa;              // as the guest issued it (a TD's shared bit included)
  bool shared = false;  // a TD's access through the shared EPT
  bool write = false;
  uint64_t value = 0;  // stored, or loaded
  // Loads: the CheckClock's reading taken before the memory read; a store the model recorded
  // after that stamp may or may not be what the load saw.
  uint64_t started = 0;
};

class GuestAccessObserver {
 public:
  virtual ~GuestAccessObserver() = default;
  // Called on the CPU's thread around a store reaching memory (a racing load on another CPU
  // may see the old value or the new while the store is between the two), and after a load.
  virtual void before_store(const GuestAccess& a) = 0;
  virtual void after_store(const GuestAccess& a) = 0;
  virtual void after_load(const GuestAccess& a) = 0;
};

}  // namespace tdxsim
