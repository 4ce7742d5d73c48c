// Operations over the whole stack — a guest's, the VMM's, KVM's — on the small TD that
// DrivenTd (driven_td.h) runs: the alphabet of the property tests and of the whole-stack
// fuzzer. A sequence of them is a test case; TdModel (td_model.h) says what each must leave
// behind, and the invariants of docs/invariants.md judge the rest.
//
// Every field is bounded and every operation is legal in every state of the TD (a guest that
// touches a page the other way round converts it, as a guest kernel would; a host may punch
// or convert any range), so that any subsequence of a sequence is a sequence too: what lets
// RapidCheck shrink a failure by dropping operations, and lets the fuzzer take any bytes.
#pragma once

#include <cstdint>
#include <string>

#include "base/addr.h"

namespace tdxsim::workload {

// The TD's shape: kVcpus vCPUs; memslot 0 at GPA 0 over a guest_memfd, private at the start;
// operations name the kPages pages from kWorkBase (pages of one 2 MiB region, so that zaps
// and conversions meet neighbours in the same page tables).
inline constexpr unsigned kVcpus = 2;
inline constexpr unsigned kPages = 32;
inline constexpr Gpa kWorkBase{uint64_t{2} << 20};
// Pages one operation covers at most.
inline constexpr unsigned kMaxCount = 8;
// Pattern rounds 1..kRounds-1 (round 0 is the zeros of a fresh page).
inline constexpr unsigned kRounds = 8;

enum class OpKind : uint8_t {
  // A guest's, on vCPU `vcpu`: through the alias its page tables say for each page.
  kAccept,  // TDG.MEM.PAGE.ACCEPT of each page (a shared one converts: a memory-fault exit)
  kWrite,   // fill each page with `round` (a PENDING page is accepted by the #VE handler)
  kRead,    // verify each page holds what the model says
  kMapGpa,  // TDG.VP.VMCALL<MapGPA>: convert the range to shared / private
  kTouch,   // read each page through the alias `to_shared` names (implicit conversion)
  // The host's.
  kSetAttributes,    // KVM_SET_MEMORY_ATTRIBUTES behind the guest's back (discarding private)
  kPunchHole,        // fallocate(PUNCH_HOLE) on the guest_memfd
  kZapShared,        // kvm_zap_gfn_range (the non-coherent-DMA cause: the shared alias only)
  kReclaim,          // memory pressure: MMU-notifier invalidation of slot 0's shared memory
  kHostRead,         // the VMM reads the range's shared memory
  kHostWrite,        // the VMM writes `round` into it
  kFlushTlbs,        // kvm_flush_remote_tlbs
  kRecreateMemslot,  // delete memslot 0 and add it again over new memory and a new guest_memfd
  kCount
};
const char* to_string(OpKind kind);

struct Op {
  OpKind kind = OpKind::kRead;
  uint8_t vcpu = 0;        // guest operations
  uint8_t first = 0;       // the first page, an index into the work area
  uint8_t count = 1;       // pages, 1..kMaxCount
  uint8_t round = 1;       // kWrite, kHostWrite: 1..kRounds-1
  bool to_shared = false;  // kMapGpa, kSetAttributes; kTouch: through the shared alias

  bool is_guest() const { return kind <= OpKind::kTouch; }
  Gpa gpa() const { return kWorkBase + uint64_t{first} * kPageSize; }
  uint64_t bytes() const { return uint64_t{count} * kPageSize; }
  friend bool operator==(const Op&, const Op&) = default;
};

// Whether every field is in bounds (a shrunk or decoded operation may not be).
bool well_formed(const Op& op);
// "vcpu 1: write pages 3..4 round 2", "host: punch_hole pages 0..7".
std::string to_string(const Op& op);

}  // namespace tdxsim::workload
