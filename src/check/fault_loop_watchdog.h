// Invariant "progress", its half for every VM: no vCPU faults on one GPA again and again,
// each fault answered RET_PF_RETRY (KVM re-enters the guest, which faults again), for longer
// than kBound while the host makes no progress on the VM's memory: no MMU invalidation begun
// or ended, no memslot set published, no invalidation in flight (Kvm::mmu_invalidate_seq,
// memslots_generation, mmu_invalidate_in_progress — what KVM's own retry decisions read).
// A retry is right while something the fault must wait for is under way — an invalidation
// over its gfn, an obsolete root the vCPU reloads on its next entry, another thread's
// FROZEN entry — and each of those ends by itself; a vCPU retrying for kBound with none of
// them moving is livelocked. The bound is wall-clock, not a count: how often a vCPU re-faults
// while another thread holds an entry depends on how the host schedules threads. The TD half,
// bounded by the module's zero-step threshold, is ProgressWatchdog.
//
// Watched from outside: KvmEvents::page_fault, on the faulting vCPU's thread. Cost: per fault,
// a compare on the vCPU's own slot, three loads, and a clock read when a streak starts or
// reaches a multiple of kCheckEvery; a mutex only on a violation.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "base/lock.h"
#include "base/thread_annotations.h"
#include "base/trace.h"
#include "kvm/kvm_events.h"

namespace tdxsim {

class Kvm;

class FaultLoopWatchdog {
 public:
  static constexpr std::chrono::seconds kBound{10};
  static constexpr uint64_t kCheckEvery = 256;
  // vCPU ids at or above this are not followed.
  static constexpr size_t kMaxVcpus = 256;
  static constexpr size_t kMaxEvidence = 16;

  // Starts watching `kvm`. REQUIRES: it outlives this.
  explicit FaultLoopWatchdog(Kvm& kvm);
  ~FaultLoopWatchdog();
  FaultLoopWatchdog(const FaultLoopWatchdog&) = delete;
  FaultLoopWatchdog& operator=(const FaultLoopWatchdog&) = delete;

  std::vector<std::string> evidence() const TDXSIM_EXCLUDES(mu_);
  uint64_t violations() const TDXSIM_EXCLUDES(mu_);

  // The listener, public so that tests can feed crafted events at a chosen time.
  void on_fault(const PageFaultEvent& e, std::chrono::steady_clock::time_point now)
      TDXSIM_EXCLUDES(mu_);

 private:
  // Touched only by the vCPU's own thread (its faults run there).
  struct VcpuSlot {
    Gpa gpa{~uint64_t{0}};
    uint64_t error_code = 0;
    uint64_t host_progress = 0;
    uint64_t retries = 0;
    std::chrono::steady_clock::time_point since;
    bool reported = false;
  };
  // What changes whenever the host makes progress on the VM's memory.
  uint64_t host_progress() const;

  Kvm& kvm_;
  std::array<VcpuSlot, kMaxVcpus> vcpus_;
  mutable Mutex mu_{"fault loop watchdog"};
  uint64_t violations_ TDXSIM_GUARDED_BY(mu_) = 0;
  std::vector<std::string> evidence_ TDXSIM_GUARDED_BY(mu_);
  Tracepoint<PageFaultEvent>::Subscription sub_;
};

}  // namespace tdxsim
