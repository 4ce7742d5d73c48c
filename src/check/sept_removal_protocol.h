// Invariant "sept_removal_protocol": the host removes a page (TDH.MEM.PAGE.REMOVE) or an
// S-EPT page (TDH.MEM.SEPT.REMOVE) from a runnable TD only after it blocked that entry
// successfully, tracked the block (a successful TDH.MEM.TRACK after it), and every vCPU that
// was in the guest at that TRACK has left the guest since (the kick). A failed BLOCK is never
// followed by a REMOVE of the same GFN: the host stops on a refusal instead of going on as if
// the block had happened. Before TDH.MR.FINALIZE no vCPU has run and the module lets the
// host remove directly (abi §3.2), so nothing is required there.
//
// Watched from outside: the TD's S-EPT SEAMCALLs (TdxOps::sept_seamcall_trace), and at each TRACK
// and REMOVE the vCPUs' mode words (in guest mode or not, and how many times each has left
// it) — read then rather than followed per entry: a listener on every guest entry made
// vCPU-heavy runs several times slower. Cost: a mutex, a map update and a look at every vCPU
// per BLOCK, TRACK and REMOVE; nothing per guest entry.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/lock.h"
#include "base/thread_annotations.h"
#include "base/trace.h"
#include "kvm/vmx/tdx.h"

namespace tdxsim {

class KvmVm;

class SeptRemovalProtocol {
 public:
  // A vCPU as seen now: whether it is in guest mode, and how many times it has left it.
  struct VcpuView {
    int id;
    bool in_guest;
    uint64_t exits;
  };
  using VcpuProbe = std::function<std::vector<VcpuView>()>;

  // Starts watching `vm` (a TD whose vendor table is `ops`), its vCPUs seen through their
  // mode words, or through `probe` when given (tests). REQUIRES: both outlive this.
  SeptRemovalProtocol(TdxOps& ops, KvmVm& vm, VcpuProbe probe = {});
  ~SeptRemovalProtocol();
  SeptRemovalProtocol(const SeptRemovalProtocol&) = delete;
  SeptRemovalProtocol& operator=(const SeptRemovalProtocol&) = delete;

  // The removals that broke the protocol (evidence: GPA, the status, what was missing), at
  // most kMaxEvidence; violations() counts them all.
  std::vector<std::string> evidence() const TDXSIM_EXCLUDES(mu_);
  uint64_t violations() const TDXSIM_EXCLUDES(mu_);
  uint64_t removals() const TDXSIM_EXCLUDES(mu_);

  static constexpr size_t kMaxEvidence = 16;

  // The listener, public so that tests can feed crafted streams.
  void on_seamcall(const TdxSeamcallEvent& e) TDXSIM_EXCLUDES(mu_);

 private:
  void violation(std::string what) TDXSIM_REQUIRES(mu_);

  Hpa tdr_;
  VcpuProbe probe_;
  mutable Mutex mu_{"sept removal protocol"};
  bool runnable_ TDXSIM_GUARDED_BY(mu_) = false;
  uint64_t seq_ TDXSIM_GUARDED_BY(mu_) = 0;
  // GFN → sequence number of its last successful BLOCK (cleared by REMOVE or UNBLOCK).
  std::map<uint64_t, uint64_t> blocked_ TDXSIM_GUARDED_BY(mu_);
  // GFN → the status of a BLOCK that failed and was not followed by a successful one.
  std::map<uint64_t, uint64_t> failed_block_ TDXSIM_GUARDED_BY(mu_);
  uint64_t last_track_ TDXSIM_GUARDED_BY(mu_) = 0;
  // The vCPUs in the guest at the last TRACK, with their exit counts then.
  std::vector<VcpuView> in_guest_at_track_ TDXSIM_GUARDED_BY(mu_);
  uint64_t removals_ TDXSIM_GUARDED_BY(mu_) = 0;
  uint64_t violations_ TDXSIM_GUARDED_BY(mu_) = 0;
  std::vector<std::string> evidence_ TDXSIM_GUARDED_BY(mu_);
  // Last: detached first, before the state the listeners use goes.
  Tracepoint<TdxSeamcallEvent>::Subscription seamcall_sub_;
};

}  // namespace tdxsim
