#include "check/fault_loop_watchdog.h"

#include <fmt/format.h>

#include "base/sched.h"
#include "kvm/kvm.h"

namespace tdxsim {

FaultLoopWatchdog::FaultLoopWatchdog(Kvm& kvm) : kvm_(kvm) {
  sub_ =
      kvm.events().page_fault.attach([this](const PageFaultEvent& e) { on_fault(e, sched_now()); });
}

FaultLoopWatchdog::~FaultLoopWatchdog() {
  sub_.reset();
}

uint64_t FaultLoopWatchdog::host_progress() const {
  // An invalidation in flight is progress under way: a streak never spans one.
  const uint64_t in_flight = kvm_.mmu_invalidate_in_progress();
  if (in_flight != 0) return ~uint64_t{0};
  return kvm_.mmu_invalidate_seq() * 31 + kvm_.memslots_generation();
}

void FaultLoopWatchdog::on_fault(const PageFaultEvent& e,
                                 std::chrono::steady_clock::time_point now) {
  if (e.vcpu_id < 0 || static_cast<size_t>(e.vcpu_id) >= kMaxVcpus) return;
  VcpuSlot& v = vcpus_[static_cast<size_t>(e.vcpu_id)];
  const uint64_t progress = host_progress();
  const bool same = e.ret == RetPf::kRetry && e.gpa == v.gpa && e.error_code == v.error_code &&
                    progress == v.host_progress && progress != ~uint64_t{0};
  if (!same) {
    v = VcpuSlot{};
    if (e.ret == RetPf::kRetry && progress != ~uint64_t{0}) {
      v.gpa = e.gpa;
      v.error_code = e.error_code;
      v.host_progress = progress;
      v.retries = 1;
      v.since = now;
    }
    return;
  }
  ++v.retries;
  if (v.reported || v.retries % kCheckEvery != 0 || now - v.since < kBound) return;
  v.reported = true;
  MutexLock l(mu_);
  ++violations_;
  if (evidence_.size() < kMaxEvidence) {
    evidence_.push_back(fmt::format(
        "vCPU {} faulted at {} (error code {:#x}) {} times in a row over {} ms, every fault "
        "retried, with no invalidation or memslot change in the VM meanwhile",
        e.vcpu_id, e.gpa, e.error_code, v.retries,
        std::chrono::duration_cast<std::chrono::milliseconds>(now - v.since).count()));
  }
}

std::vector<std::string> FaultLoopWatchdog::evidence() const {
  MutexLock l(mu_);
  return evidence_;
}

uint64_t FaultLoopWatchdog::violations() const {
  MutexLock l(mu_);
  return violations_;
}

}  // namespace tdxsim
