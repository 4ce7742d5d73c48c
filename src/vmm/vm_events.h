// VmEvents: what the VMM does to guest memory that changes what the guest or the host may
// observe there — conversions, hole punches, memslots going, and the host's own reads and
// writes of shared memory. The checker's reference model (check/reference_model.h) follows
// them; the guest's side comes from the CPUs (platform/guest_access.h) and the TDX module
// (TdxModule::page_accepted).
//
// Emitted on the thread that made the change, after it took effect (a read: with the value
// read), except where noted.
#pragma once

#include <cstdint>

#include "base/addr.h"
#include "base/trace.h"

namespace tdxsim::vmm {

enum class VmMemoryOp : uint8_t {
  kToPrivate,     // KVM_SET_MEMORY_ATTRIBUTES returned: [gpa, gpa + size) is private
  kToShared,      // … shared
  kPunch,         // fallocate(PUNCH_HOLE) on the guest_memfd behind the range returned
  kSlotChanging,  // emitted before a memslot is added, deleted or moved, for each range
                  // whose memory changes: until the matching kSlotChanged a guest access there
                  // may see the old memory or the new
  kSlotChanged,   // … once the ioctl returned; `value`: kFreshShared | kFreshPrivate for what
                  // the range now holds as zeros (a new mapping, a new guest_memfd)
  kHostRead,      // the VMM read `value` at `gpa` through its shared mapping
  kHostWrite,     // the VMM is about to write `value` at `gpa` …
  kHostWritten,   // … and has written it (a racing read may see either between the two)
};

inline constexpr uint64_t kFreshShared = 1, kFreshPrivate = 2;

struct VmMemoryEvent {
  VmMemoryOp op = VmMemoryOp::kHostRead;
  Gpa gpa;  // without a TD's shared bit
  uint64_t size = 0;
  uint64_t value = 0;
  // Host reads: the CheckClock's reading before the read (as GuestAccess::started).
  uint64_t started = 0;
};

struct VmEvents {
  Tracepoint<VmMemoryEvent> memory;
};

}  // namespace tdxsim::vmm
