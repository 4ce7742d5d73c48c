// CheckClock: one sequence that orders, across threads, the events a checker compares — a
// remote flush returning, a root being loaded, a frame going back to the allocator, a CPU
// looking a translation up.
//
// Events a checker records take a tick(); a CPU about to use a translation reads now(). A
// tick that a later now() has reached happened before that read (the tick is a release
// read-modify-write, the read an acquire), so "stamped at or before the access's reading"
// is a happens-before fact, not a guess from wall time. Nothing ticks unless a checker is
// attached, so an unchecked run pays nothing beyond the CPUs' reads while they probe.
#pragma once

#include <atomic>
#include <cstdint>

namespace tdxsim {

class CheckClock {
 public:
  // A fresh stamp, larger than every stamp and reading before it.
  uint64_t tick() { return value_.fetch_add(1, std::memory_order_acq_rel) + 1; }
  uint64_t now() const { return value_.load(std::memory_order_acquire); }

 private:
  // 0 is never a stamp: it marks "not stamped".
  std::atomic<uint64_t> value_{1};
};

}  // namespace tdxsim
