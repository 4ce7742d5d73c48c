// Invariant "sept_removal_protocol": the host removes a page (TDH.MEM.PAGE.REMOVE) or an
// S-EPT page (TDH.MEM.SEPT.REMOVE) from a runnable TD only after it blocked that entry
// successfully, tracked the block (a successful TDH.MEM.TRACK after it), and every vCPU that
// was in the guest at that TRACK has left the guest since (the kick). A failed BLOCK is never
// followed by a REMOVE of the same GFN: the host stops on a refusal instead of going on as if
// the block had happened. Before TDH.MR.FINALIZE no vCPU has run and the module lets the
// host remove directly (abi §3.2), so nothing is required there.
//
// Watched from outside: the TD's SEAMCALL stream (TdxOps::seamcall_trace) and the VM's guest
// entries and exits (KvmEvents::vcpu_run). Cost: a mutex and a map update per BLOCK, TRACK
// and REMOVE; per guest entry and exit, two relaxed stores on the vCPU's own slot.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/lock.h"
#include "base/thread_annotations.h"
#include "base/trace.h"
#include "kvm/kvm_events.h"
#include "kvm/vmx/tdx.h"

namespace tdxsim {

class KvmVm;

class SeptRemovalProtocol {
 public:
  // vCPU ids at or above this are not followed (their kicks are not required).
  static constexpr size_t kMaxVcpus = 256;

  // Starts watching `vm` (a TD whose vendor table is `ops`). REQUIRES: both outlive this.
  SeptRemovalProtocol(TdxOps& ops, KvmVm& vm);
  ~SeptRemovalProtocol();
  SeptRemovalProtocol(const SeptRemovalProtocol&) = delete;
  SeptRemovalProtocol& operator=(const SeptRemovalProtocol&) = delete;

  // The removals that broke the protocol (evidence: GPA, the status, what was missing), at
  // most kMaxEvidence; violations() counts them all.
  std::vector<std::string> evidence() const TDXSIM_EXCLUDES(mu_);
  uint64_t violations() const TDXSIM_EXCLUDES(mu_);
  uint64_t removals() const TDXSIM_EXCLUDES(mu_);

  static constexpr size_t kMaxEvidence = 16;

  // The listeners, public so that tests can feed crafted streams.
  void on_seamcall(const TdxSeamcallEvent& e) TDXSIM_EXCLUDES(mu_);
  void on_vcpu_run(const VcpuRunEvent& e);

 private:
  struct VcpuSlot {
    std::atomic<bool> in_guest{false};
    std::atomic<uint64_t> exits{0};
  };
  // A vCPU in the guest at a TRACK, and its exit count then.
  struct Pending {
    int vcpu;
    uint64_t exits;
  };
  void violation(std::string what) TDXSIM_REQUIRES(mu_);

  Hpa tdr_;
  std::array<VcpuSlot, kMaxVcpus> vcpus_;
  mutable Mutex mu_{"sept removal protocol"};
  bool runnable_ TDXSIM_GUARDED_BY(mu_) = false;
  uint64_t seq_ TDXSIM_GUARDED_BY(mu_) = 0;
  // GFN → sequence number of its last successful BLOCK (cleared by REMOVE or UNBLOCK).
  std::map<uint64_t, uint64_t> blocked_ TDXSIM_GUARDED_BY(mu_);
  // GFN → the status of a BLOCK that failed and was not followed by a successful one.
  std::map<uint64_t, uint64_t> failed_block_ TDXSIM_GUARDED_BY(mu_);
  uint64_t last_track_ TDXSIM_GUARDED_BY(mu_) = 0;
  std::vector<Pending> in_guest_at_track_ TDXSIM_GUARDED_BY(mu_);
  uint64_t removals_ TDXSIM_GUARDED_BY(mu_) = 0;
  uint64_t violations_ TDXSIM_GUARDED_BY(mu_) = 0;
  std::vector<std::string> evidence_ TDXSIM_GUARDED_BY(mu_);
  // Last: detached first, before the state the listeners use goes.
  Tracepoint<TdxSeamcallEvent>::Subscription seamcall_sub_;
  Tracepoint<VcpuRunEvent>::Subscription run_sub_;
};

}  // namespace tdxsim
