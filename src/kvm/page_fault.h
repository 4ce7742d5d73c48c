// KvmPageFault: one TDP page fault as the MMU handles it (struct kvm_page_fault), the error
// code bits it starts from, what it ends in (RET_PF_*), and the memory-fault exit a private
// /shared mismatch gives userspace.
#pragma once

#include <cstdint>
#include <optional>

#include "base/addr.h"

namespace tdxsim {

struct Memslot;

// Page-fault error code bits (PFERR_*_MASK): the EPT-violation qualification KVM synthesises.
inline constexpr uint64_t kPferrPresent = uint64_t{1} << 0;
inline constexpr uint64_t kPferrWrite = uint64_t{1} << 1;
inline constexpr uint64_t kPferrUser = uint64_t{1} << 2;
// PFERR_RSVD_MASK: a reserved bit was set in a present entry. An NPT walk reports it for
// KVM's MMIO SPTEs (spte.h), so KVM takes it as MMIO (handle_mmio_page_fault).
inline constexpr uint64_t kPferrRsvd = uint64_t{1} << 3;
inline constexpr uint64_t kPferrFetch = uint64_t{1} << 4;
// PFERR_PRIVATE_ACCESS: KVM-defined, set by the vendor (TDX: the GPA lacks the shared bit;
// software-protected VMs: the gfn's attribute is private).
inline constexpr uint64_t kPferrPrivateAccess = uint64_t{1} << 49;

// RET_PF_*, in upstream's order.
enum class RetPf : uint8_t {
  kContinue,        // keep going (internal)
  kRetry,           // let the vCPU fault again: something changed under the fault
  kEmulate,         // MMIO: emulate the access (or, for a TD, the guest asks by TDVMCALL)
  kWriteProtected,  // not modelled: the TDP MMU shadows no guest page tables
  kInvalid,         // the fault cannot be handled (a VM bug or an error with an exit)
  kFixed,           // a new mapping is in place
  kSpurious,        // the mapping was already there (another vCPU fixed it)
};
const char* to_string(RetPf r);

// KVM_EXIT_MEMORY_FAULT: the guest accessed a gfn as private when it is shared, or the other
// way round, or privately where no guest_memfd backs it. KVM_RUN returns -EFAULT with this.
inline constexpr uint64_t kMemoryExitFlagPrivate = uint64_t{1}
                                                   << 3;  // KVM_MEMORY_EXIT_FLAG_PRIVATE
struct MemoryFaultExit {
  Gpa gpa;        // gfn << PAGE_SHIFT: the direct (shared) bits are not included
  uint64_t size;  // PAGE_SIZE
  uint64_t flags;
  constexpr bool operator==(const MemoryFaultExit&) const = default;
};

struct KvmPageFault {
  // Inputs.
  Gpa addr;             // the faulting GPA, direct bits included (tells which alias)
  uint64_t error_code;  // PFERR_* bits
  bool exec = false;
  bool write = false;
  bool present = false;
  bool is_private = false;
  // The gfn without direct bits (the MMU's gfn everywhere).
  Gfn gfn;
  // Derived by faultin.
  const Memslot* slot = nullptr;
  Level max_level = Level::k1G;   // what slot, attributes and backing allow
  Level goal_level = Level::k4K;  // what the map aims for
  Pfn pfn;
  bool map_writable = true;
  uint64_t mmu_seq = 0;  // mmu_invalidate_seq when the pfn was looked up
  // The memslots generation the fault saw: an MMIO SPTE carries it, so a memslot update
  // makes every older MMIO SPTE stale without a zap.
  uint64_t memslot_generation = 0;
};

}  // namespace tdxsim
