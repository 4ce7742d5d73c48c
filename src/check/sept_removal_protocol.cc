#include "check/sept_removal_protocol.h"

#include <fmt/format.h>

#include "kvm/kvm_vm.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {

namespace {

bool succeeded(uint64_t status) {
  return status_of(status) == TdxStatus::kSuccess;
}

}  // namespace

SeptRemovalProtocol::SeptRemovalProtocol(TdxOps& ops, KvmVm& vm) {
  const TdxVm& td = TdxOps::to_tdx(vm);
  tdr_ = td.tdr();
  {
    MutexLock l(mu_);
    runnable_ = td.state() == TdState::kRunnable;
  }
  run_sub_ = vm.kvm().events().vcpu_run.attach([this](const VcpuRunEvent& e) { on_vcpu_run(e); });
  seamcall_sub_ = ops.seamcall_trace.attach([this](const TdxSeamcallEvent& e) {
    if (e.tdr == tdr_) on_seamcall(e);
  });
}

SeptRemovalProtocol::~SeptRemovalProtocol() {
  seamcall_sub_.reset();
  run_sub_.reset();
}

void SeptRemovalProtocol::on_vcpu_run(const VcpuRunEvent& e) {
  if (e.vcpu_id < 0 || static_cast<size_t>(e.vcpu_id) >= kMaxVcpus) return;
  VcpuSlot& v = vcpus_[static_cast<size_t>(e.vcpu_id)];
  // Only the vCPU's own thread writes its slot. The begin comes after the vCPU set
  // IN_GUEST_MODE and the end before OUTSIDE_GUEST_MODE, so a kick that waited for the vCPU
  // to leave has seen the end counted.
  if (e.phase == EventPhase::kBegin) {
    v.in_guest.store(true, std::memory_order_seq_cst);
  } else {
    v.exits.fetch_add(1, std::memory_order_seq_cst);
    v.in_guest.store(false, std::memory_order_seq_cst);
  }
}

void SeptRemovalProtocol::violation(std::string what) {
  ++violations_;
  if (evidence_.size() < kMaxEvidence) evidence_.push_back(std::move(what));
}

void SeptRemovalProtocol::on_seamcall(const TdxSeamcallEvent& e) {
  const bool ok = succeeded(e.status);
  MutexLock l(mu_);
  const uint64_t gfn = e.gfn.raw();
  switch (e.leaf) {
    case SeamcallLeaf::kMrFinalize:
      if (ok) runnable_ = true;
      break;
    case SeamcallLeaf::kMemRangeBlock:
      if (ok) {
        blocked_[gfn] = ++seq_;
        failed_block_.erase(gfn);
      } else if (runnable_) {
        blocked_.erase(gfn);
        failed_block_[gfn] = e.status;
      }
      break;
    case SeamcallLeaf::kMemRangeUnblock:
      if (ok) blocked_.erase(gfn);
      break;
    case SeamcallLeaf::kMemTrack:
      if (ok) {
        last_track_ = ++seq_;
        in_guest_at_track_.clear();
        for (size_t i = 0; i < kMaxVcpus; ++i) {
          const VcpuSlot& v = vcpus_[i];
          if (v.in_guest.load(std::memory_order_seq_cst)) {
            in_guest_at_track_.push_back(
                Pending{static_cast<int>(i), v.exits.load(std::memory_order_seq_cst)});
          }
        }
      }
      break;
    case SeamcallLeaf::kMemPageRemove:
    case SeamcallLeaf::kMemSeptRemove: {
      ++removals_;
      if (!runnable_) break;
      const char* leaf = e.leaf == SeamcallLeaf::kMemPageRemove ? "PAGE" : "SEPT";
      const std::string what = fmt::format("TDH.MEM.{}.REMOVE of {} on CPU {} ({})", leaf,
                                           e.gfn.gpa(), e.cpu, describe_status(e.status));
      auto b = blocked_.find(gfn);
      if (auto f = failed_block_.find(gfn); f != failed_block_.end()) {
        violation(
            fmt::format("{}: follows a BLOCK that failed ({})", what, describe_status(f->second)));
        failed_block_.erase(f);
      } else if (b == blocked_.end()) {
        violation(fmt::format("{}: no successful BLOCK of it before", what));
      } else if (last_track_ < b->second) {
        violation(fmt::format("{}: no TRACK after its BLOCK", what));
      } else {
        for (const Pending& p : in_guest_at_track_) {
          if (vcpus_[static_cast<size_t>(p.vcpu)].exits.load(std::memory_order_seq_cst) ==
              p.exits) {
            violation(fmt::format("{}: vCPU {} was in the guest at the TRACK and has not left it",
                                  what, p.vcpu));
            break;
          }
        }
      }
      if (ok && b != blocked_.end()) blocked_.erase(b);
      break;
    }
    default:
      break;
  }
}

std::vector<std::string> SeptRemovalProtocol::evidence() const {
  MutexLock l(mu_);
  std::vector<std::string> out = evidence_;
  if (violations_ > out.size())
    out.push_back(fmt::format("… and {} more", violations_ - out.size()));
  return out;
}

uint64_t SeptRemovalProtocol::violations() const {
  MutexLock l(mu_);
  return violations_;
}

uint64_t SeptRemovalProtocol::removals() const {
  MutexLock l(mu_);
  return removals_;
}

}  // namespace tdxsim
