// vCPU requests (KVM_REQ_*): work another thread asks a vCPU to do before its next entry.
//
// A request is a bit in the vCPU's request word. The sender sets it and, if the vCPU may be
// in guest mode, kicks it out; the vCPU consumes its requests between exits and entries,
// with its mode already IN_GUEST_MODE, so a request set after that check always finds the
// vCPU's mode in guest and kicks it (kvm_vcpu_exiting_guest_mode's pairing).
// A request with kWait makes kvm_make_all_cpus_request wait until every vCPU it kicked has
// left guest mode (KVM_REQUEST_WAIT): a remote TLB flush returns only when no vCPU still
// runs on the old translations.
#pragma once

#include <cstdint>

namespace tdxsim {

enum class KvmRequest : uint8_t {
  kTlbFlush = 0,              // KVM_REQ_TLB_FLUSH: flush everything the vCPU cached (flush_tlb_all)
  kVmDead = 1,                // KVM_REQ_VM_DEAD: KVM_RUN fails with EIO from now on
  kOutsideGuestMode = 3,      // KVM_REQ_OUTSIDE_GUEST_MODE: nothing to do but leave guest mode
  kMmuFreeObsoleteRoots = 8,  // KVM_REQ_MMU_FREE_OBSOLETE_ROOTS: drop an invalidated root
  kTlbFlushCurrent = 9,       // KVM_REQ_TLB_FLUSH_CURRENT: flush the loaded root's translations
};
const char* to_string(KvmRequest r);

constexpr uint64_t request_bit(KvmRequest r) {
  return uint64_t{1} << static_cast<unsigned>(r);
}

// KVM_REQUEST_WAIT: the requests whose senders wait for the vCPUs to acknowledge.
constexpr bool request_waits(KvmRequest r) {
  return r == KvmRequest::kTlbFlush || r == KvmRequest::kVmDead ||
         r == KvmRequest::kOutsideGuestMode || r == KvmRequest::kMmuFreeObsoleteRoots;
}

}  // namespace tdxsim
