// Invariant "zapped_range_unmapped": once a zap of a GFN range returns — kvm_unmap_gfn_range
// for an MMU notifier or guest_memfd, kvm_zap_gfn_range, a memslot's zap, an attribute
// change's — no root of the aliases it targeted, valid OR invalid, holds a present leaf that
// maps any GFN of the range. An invalid root is still walked by the vCPUs that have not
// reloaded and by the zapper that is tearing it down: a leaf left there outlives the unmap
// that promised the frame back to the host (a use-after-free once the host reuses it).
//
// When it is checked. At each range_zapped tracepoint (kvm_events.h), on the zapping thread,
// with mmu_lock still held for write after the zap's last root and before it is released:
// nothing can have installed a leaf since the zap walked the range (faults hold the lock for
// read), so whatever is there the zap left behind — no false positive from a fault that
// legitimately maps the range again after the zap.
//
// Cost: one more walk of the zapped range over every root of the targeted aliases, only
// while a check is attached.
//
// Thread safety: listeners run on the zapping threads (of any watched VM) and take the
// check's own leaf mutex; every member may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/lock.h"
#include "base/thread_annotations.h"
#include "base/trace.h"
#include "kvm/kvm_events.h"
#include "kvm/tdp_mmu.h"

namespace tdxsim {

class Kvm;

struct ZappedRangeViolation {
  RangeZapEvent zap;
  TdpMmu::RootLeaf leaf;  // the first leaf found still mapping the range
  uint64_t leaves = 0;    // how many the zap left in all

  std::string describe() const;
};

class ZappedRangeCheck {
 public:
  // How many violations keep their detail (the count goes on).
  static constexpr size_t kKept = 8;

  ZappedRangeCheck() = default;
  ~ZappedRangeCheck();
  ZappedRangeCheck(const ZappedRangeCheck&) = delete;
  ZappedRangeCheck& operator=(const ZappedRangeCheck&) = delete;

  // Checks every range zap of `kvm`, whose tables `mmu` holds. REQUIRES: both outlive the
  // check, or unwatch() first.
  void watch(Kvm& kvm, const TdpMmu& mmu) TDXSIM_EXCLUDES(mu_);
  void unwatch(Kvm& kvm) TDXSIM_EXCLUDES(mu_);

  uint64_t zaps_checked() const TDXSIM_EXCLUDES(mu_);
  uint64_t violation_count() const TDXSIM_EXCLUDES(mu_);
  std::vector<ZappedRangeViolation> violations() const TDXSIM_EXCLUDES(mu_);

  // The check itself, for one zap of `mmu` that just returned (what the listener runs).
  // REQUIRES: mmu_lock held, as at the tracepoint.
  void on_zap(const TdpMmu& mmu, const RangeZapEvent& e) TDXSIM_EXCLUDES(mu_);

 private:
  struct Watched {
    Kvm* kvm;
    Tracepoint<RangeZapEvent>::Subscription sub;
  };

  mutable Mutex mu_{"zapped_range check"};
  std::vector<Watched> watched_ TDXSIM_GUARDED_BY(mu_);
  uint64_t zaps_ TDXSIM_GUARDED_BY(mu_) = 0;
  uint64_t count_ TDXSIM_GUARDED_BY(mu_) = 0;
  std::vector<ZappedRangeViolation> kept_ TDXSIM_GUARDED_BY(mu_);
};

}  // namespace tdxsim
