// MemAttributes: KVM's per-gfn memory attributes (kvm->mem_attr_array), kept as a map of
// maximal ranges [start, end) -> attributes rather than one entry per gfn, so that a 64 GiB
// conversion costs one entry. Gfns with no attributes have no entry; neighbouring ranges
// with equal attributes are merged, so the map is canonical (tests compare it).
//
// Thread safety: every member may be called from any thread. Faults read attributes without
// mmu_lock and with it held for read while KVM_SET_MEMORY_ATTRIBUTES writes under slots_lock,
// so the map is guarded by its own reader-writer lock ("kvm->mem_attr_array"). That lock is a
// leaf: nothing is called with it held, so it may be taken under any other lock (mmu_lock in
// either mode included).
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "base/addr.h"
#include "base/lock.h"
#include "base/thread_annotations.h"

namespace tdxsim {

class MemAttributes {
 public:
  struct Range {
    Gfn start;
    Gfn end;
    uint64_t attributes;
    bool operator==(const Range&) const = default;
  };

  MemAttributes();
  MemAttributes(const MemAttributes&) = delete;
  MemAttributes& operator=(const MemAttributes&) = delete;

  // kvm_get_memory_attributes.
  uint64_t get(Gfn gfn) const TDXSIM_EXCLUDES(mu_);
  // kvm_range_has_memory_attributes: whether every gfn in [start, end) has
  // (attributes & mask) == attrs. False if attrs has bits outside mask; true for an empty
  // range.
  bool range_has(Gfn start, Gfn end, uint64_t mask, uint64_t attrs) const TDXSIM_EXCLUDES(mu_);
  // Sets [start, end) to exactly `attrs` (0 erases). REQUIRES: start < end.
  void set(Gfn start, Gfn end, uint64_t attrs) TDXSIM_EXCLUDES(mu_);
  // The stored ranges in gfn order (for tests and dumps).
  std::vector<Range> ranges() const TDXSIM_EXCLUDES(mu_);

 private:
  struct Entry {
    Gfn end;
    uint64_t attributes;
  };
  mutable SharedMutex mu_;
  // start -> {end, attributes}; ranges are disjoint, non-empty and attributes non-zero.
  std::map<Gfn, Entry> map_ TDXSIM_GUARDED_BY(mu_);
};

}  // namespace tdxsim
