// Invariant "progress": a vCPU is not sent back into the guest again and again on the same
// private fault while the host makes no progress on it. Every TDH.VP.ENTER that faults again
// at one RIP counts toward the TDX module's zero-step mitigation (abi §6: from 6 such exits it
// treats the host as an attacker single-stepping the guest and serializes S-EPT work behind
// the tree lock), and a host that keeps failing the same mapping is livelocked. Bound:
// kMaxSameFaultExits EPT-violation exits of one vCPU at one private GPA in a row with no host
// progress between them — a successful S-EPT change of the TD (AUG, PAGE.ADD, SEPT.ADD,
// BLOCK, UNBLOCK, TRACK, REMOVE, SEPT.REMOVE, of any page) or a remote TLB flush of the VM
// (a zap, a conversion or a reclaim done): a host busy with other memory is making progress,
// and the vCPUs it kicks meanwhile re-enter legitimately. One fewer than the module's
// threshold, so a stuck host within the bound never trips the mitigation.
//
// Watched from outside: TdxOps::exit_dispatch_trace (which exit reached the EPT-violation
// handler, and its GPA), the TD's S-EPT SEAMCALLs (TdxOps::sept_seamcall_trace) and the VM's remote
// flushes (KvmEvents::remote_flush). Cost: a load, a compare and a store on the vCPU's own
// slot per EPT-violation exit, an atomic add per S-EPT change or flush; a mutex only on a
// violation.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "base/lock.h"
#include "base/thread_annotations.h"
#include "base/trace.h"
#include "kvm/kvm_events.h"
#include "kvm/vmx/tdx.h"

namespace tdxsim {

class KvmVm;

class ProgressWatchdog {
 public:
  static constexpr unsigned kMaxSameFaultExits = 5;
  // vCPU ids at or above this are not followed.
  static constexpr size_t kMaxVcpus = 256;
  static constexpr size_t kMaxEvidence = 16;

  // Starts watching `vm` (a TD on `ops`). REQUIRES: both outlive this.
  ProgressWatchdog(TdxOps& ops, KvmVm& vm);
  ~ProgressWatchdog();
  ProgressWatchdog(const ProgressWatchdog&) = delete;
  ProgressWatchdog& operator=(const ProgressWatchdog&) = delete;

  std::vector<std::string> evidence() const TDXSIM_EXCLUDES(mu_);
  uint64_t violations() const TDXSIM_EXCLUDES(mu_);

  // The listeners, public so that tests can feed crafted events.
  void on_dispatch(const TdxExitDispatchEvent& e) TDXSIM_EXCLUDES(mu_);
  void on_seamcall(const TdxSeamcallEvent& e);
  void on_host_progress();

 private:
  // Touched only by the vCPU's own thread (its exits run there).
  struct VcpuSlot {
    Gfn gfn{~uint64_t{0}};
    unsigned count = 0;
    uint64_t progress_seen = 0;
  };

  Hpa tdr_;
  Gfn shared_bits_;
  std::array<VcpuSlot, kMaxVcpus> vcpus_;
  // Host progress so far: any since a vCPU's last exit ends its streak.
  std::atomic<uint64_t> progress_{0};
  mutable Mutex mu_{"progress watchdog"};
  uint64_t violations_ TDXSIM_GUARDED_BY(mu_) = 0;
  std::vector<std::string> evidence_ TDXSIM_GUARDED_BY(mu_);
  Tracepoint<TdxExitDispatchEvent>::Subscription dispatch_sub_;
  Tracepoint<TdxSeamcallEvent>::Subscription seamcall_sub_;
  Tracepoint<RemoteFlushEvent>::Subscription flush_sub_;
};

}  // namespace tdxsim
