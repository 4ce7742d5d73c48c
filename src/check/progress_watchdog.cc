#include "check/progress_watchdog.h"

#include <fmt/format.h>

#include "kvm/kvm_vm.h"
#include "kvm/mmu.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {

ProgressWatchdog::ProgressWatchdog(TdxOps& ops, KvmVm& vm)
    : tdr_(TdxOps::to_tdx(vm).tdr()), shared_bits_(vm.mmu().gfn_direct_bits()) {
  dispatch_sub_ = ops.exit_dispatch_trace.attach([this](const TdxExitDispatchEvent& e) {
    if (e.tdr == tdr_) on_dispatch(e);
  });
  seamcall_sub_ = ops.sept_seamcall_trace.attach([this](const TdxSeamcallEvent& e) {
    if (e.tdr == tdr_) on_seamcall(e);
  });
  flush_sub_ = vm.kvm().events().remote_flush.attach([this](const RemoteFlushEvent& e) {
    if (e.phase == EventPhase::kEnd) on_host_progress();
  });
}

void ProgressWatchdog::on_host_progress() {
  progress_.fetch_add(1, std::memory_order_acq_rel);
}

ProgressWatchdog::~ProgressWatchdog() {
  dispatch_sub_.reset();
  seamcall_sub_.reset();
  flush_sub_.reset();
}

void ProgressWatchdog::on_seamcall(const TdxSeamcallEvent& e) {
  if (status_of(e.status) != TdxStatus::kSuccess) return;
  switch (e.leaf) {
    // What changes the S-EPT or its tracking: the host working on the TD's memory.
    case SeamcallLeaf::kMemPageAug:
    case SeamcallLeaf::kMemPageAdd:
    case SeamcallLeaf::kMemSeptAdd:
    case SeamcallLeaf::kMemRangeBlock:
    case SeamcallLeaf::kMemRangeUnblock:
    case SeamcallLeaf::kMemTrack:
    case SeamcallLeaf::kMemPageRemove:
    case SeamcallLeaf::kMemSeptRemove:
      on_host_progress();
      break;
    default:
      break;
  }
}

void ProgressWatchdog::on_dispatch(const TdxExitDispatchEvent& e) {
  if (e.vcpu_id < 0 || static_cast<size_t>(e.vcpu_id) >= kMaxVcpus) return;
  VcpuSlot& v = vcpus_[static_cast<size_t>(e.vcpu_id)];
  const Gfn gfn = e.gpa.gfn();
  // Any other exit the host handles, or a shared GPA (whose mapping the host may take away
  // again at will: reclaim), is no stuck private fault.
  if (e.handler != TdxExitHandler::kEptViolation || (gfn.raw() & shared_bits_.raw()) != 0) {
    v.count = 0;
    return;
  }
  const uint64_t progress = progress_.load(std::memory_order_acquire);
  v.count = v.gfn == gfn && v.progress_seen == progress ? v.count + 1 : 1;
  v.gfn = gfn;
  v.progress_seen = progress;
  if (v.count != kMaxSameFaultExits + 1) return;
  MutexLock l(mu_);
  ++violations_;
  if (evidence_.size() < kMaxEvidence) {
    evidence_.push_back(fmt::format(
        "vCPU {}: {} EPT-violation exits in a row at {} with no S-EPT change or remote flush "
        "in between (the module's zero-step mitigation arms at 6)",
        e.vcpu_id, v.count, e.gpa));
  }
}

std::vector<std::string> ProgressWatchdog::evidence() const {
  MutexLock l(mu_);
  std::vector<std::string> out = evidence_;
  if (violations_ > out.size())
    out.push_back(fmt::format("… and {} more", violations_ - out.size()));
  return out;
}

uint64_t ProgressWatchdog::violations() const {
  MutexLock l(mu_);
  return violations_;
}

}  // namespace tdxsim
