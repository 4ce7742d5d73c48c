// DirtyLogCoverage: the dirty log covers every write the reference model saw.
//
// A VMM that migrates a VM copies the pages each KVM_GET_DIRTY_LOG reports, so a page the
// guest wrote and no harvest reported is sent stale. The rule, per memslot while it logs:
// every guest store to one of its pages that retired after the previous harvest of that page
// (or after logging started) and before a harvest began must be in that harvest's bitmap. A
// store that retired while a harvest ran may be in that harvest or must be in the next one.
// Stopping logging (the flag cleared, the slot deleted or moved) forgets the slot's stores.
//
// Fed by the reference model's stores (GuestStoreListener: what the CPUs retired, however
// KVM and the hardware track it — write-protection faults or PML) and by generic KVM's
// dirty_log tracepoint (kvm/kvm_events.h: logging started and stopped, each harvest's
// begin and its bitmap). One mutex orders the stores and the harvests: a store counted
// before a harvest's begin retired before it.
//
// Cost: one relaxed load per guest store while no watched slot logs; a mutex and a map
// update per store to a logging slot; a pass over the slot's pending pages per harvest.
//
// Thread safety: stored() runs on vCPU threads, the tracepoint on the ioctl's thread; all
// state is under mu_. watch()/unwatch() REQUIRE that no guest of the VM runs.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/lock.h"
#include "base/thread_annotations.h"
#include "base/trace.h"
#include "check/reference_model.h"
#include "kvm/kvm_events.h"
#include "vmm/vm.h"

namespace tdxsim {

struct DirtyLogCoverageCounts {
  uint64_t stores_tracked = 0;    // guest stores to a page of a logging slot
  uint64_t harvests_checked = 0;  // KVM_GET_DIRTY_LOG calls judged
  uint64_t pages_checked = 0;     // pages a harvest had to report
  uint64_t violations = 0;
};

class DirtyLogCoverage final : public GuestStoreListener {
 public:
  DirtyLogCoverage() = default;
  ~DirtyLogCoverage() override = default;
  DirtyLogCoverage(const DirtyLogCoverage&) = delete;
  DirtyLogCoverage& operator=(const DirtyLogCoverage&) = delete;

  // REQUIRES: the VM outlives the watch, or unwatch() first.
  void watch(vmm::Vm& vm);
  void unwatch(vmm::Vm& vm);

  void stored(const GuestStoreSeen& s) override;

  DirtyLogCoverageCounts counts() const;
  // The first violations, each a sentence: the page, the store (vCPU, GPA, value), the
  // harvest that missed it and what its bitmap held.
  std::vector<std::string> violations() const;

 private:
  struct Store {
    int vcpu = -1;
    Gpa gpa;
    uint64_t value = 0;
    uint64_t seq = 0;  // when it was counted, on seq_
  };
  struct SlotLog {
    const vmm::Vm* vm = nullptr;
    uint32_t slot = 0;
    Gfn base{0};
    uint64_t npages = 0;
    uint64_t harvests = 0;
    uint64_t harvest_began = 0;  // seq_ at the running harvest's begin (0: none running)
    // Per page (relative to base), the first store no harvest has covered yet.
    std::map<uint64_t, Store> pending;
  };
  struct Watched {
    vmm::Vm* vm;
    Tracepoint<DirtyLogEvent>::Subscription sub;
  };

  void on_event(const vmm::Vm* vm, const DirtyLogEvent& e);
  SlotLog* find(const vmm::Vm* vm, uint32_t slot) TDXSIM_REQUIRES(mu_);
  void harvested(SlotLog& log, const std::vector<uint64_t>& bitmap) TDXSIM_REQUIRES(mu_);

  // Slots that log, over every watched VM: stores skip the mutex while there are none.
  std::atomic<uint64_t> logging_{0};
  mutable Mutex mu_{"dirty log coverage"};
  uint64_t seq_ TDXSIM_GUARDED_BY(mu_) = 0;
  std::vector<SlotLog> slots_ TDXSIM_GUARDED_BY(mu_);
  std::vector<std::string> violations_ TDXSIM_GUARDED_BY(mu_);
  DirtyLogCoverageCounts counts_ TDXSIM_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Watched>> watched_;
};

}  // namespace tdxsim
