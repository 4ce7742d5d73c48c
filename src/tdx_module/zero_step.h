// The zero-step (EPT-fault stepping) detector of one vCPU (TDX module src/td_transitions/
// td_exit_stepping.c; shared/spec/tdx-module-abi.md §6.1).
//
// A host that keeps a private page away from a TD and re-enters it would see it fault again
// and again at one RIP — a page-granular single-step of the guest. The module counts those
// exits; past a threshold it remembers the faulting GPAs, and the next TDH.VP.ENTER takes
// the S-EPT tree lock exclusively to check that the host really mapped them (vp_enter.cc).
//
// Which exits count: EPT-violation TD exits on private GPAs that the module did not turn
// into a #VE, and not the ACCEPT TD exits (rules A14). What resets it: the guest's RIP at a
// TD exit differing from the RIP of the faults being counted (forward progress).
// Chosen where the sheets are silent (docs/abi.md): the exit that brings the count to the
// threshold is the first whose GPA is recorded.
//
// Thread safety: belongs to the vCPU, touched only by the SEAMCALL that entered it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/addr.h"

namespace tdxsim {

class ZeroStepDetector {
 public:
  static constexpr unsigned kThreshold = 6;  // STEPPING_EPF_THRESHOLD
  static constexpr size_t kMaxGpas = 32;     // LAST_EPF_GPA_LIST entries

  // The filter is active at the next entry.
  bool armed() const { return !gpas_.empty(); }
  const std::vector<Gpa>& gpas() const { return gpas_; }
  unsigned count() const { return count_; }

  // Any TD exit: forward progress forgets what was counted.
  void on_exit(uint64_t rip) {
    if (rip != rip_) reset(rip);
  }
  // A counted EPT-violation exit at `rip` on `gpa`.
  void on_private_ept_exit(uint64_t rip, Gpa gpa) {
    on_exit(rip);
    if (count_ < kThreshold) ++count_;
    if (count_ < kThreshold) return;
    const Gpa page = gpa.align_down(Level::k4K);
    if (gpas_.size() < kMaxGpas && std::find(gpas_.begin(), gpas_.end(), page) == gpas_.end())
      gpas_.push_back(page);
  }
  // An environment fault (EnvFaultKind::kArmZeroStep) arms the filter on `gpa` directly.
  void force(Gpa gpa) {
    count_ = kThreshold;
    const Gpa page = gpa.align_down(Level::k4K);
    if (std::find(gpas_.begin(), gpas_.end(), page) == gpas_.end()) gpas_.push_back(page);
  }

 private:
  void reset(uint64_t rip) {
    rip_ = rip;
    count_ = 0;
    gpas_.clear();
  }

  uint64_t rip_ = ~uint64_t{0};
  unsigned count_ = 0;
  std::vector<Gpa> gpas_;
};

}  // namespace tdxsim
