#include "check/sept_removal_protocol.h"

#include <fmt/format.h>

#include <algorithm>

#include "kvm/kvm_vm.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {

namespace {

bool succeeded(uint64_t status) {
  return status_of(status) == TdxStatus::kSuccess;
}

}  // namespace

SeptRemovalProtocol::SeptRemovalProtocol(TdxOps& ops, KvmVm& vm, VcpuProbe probe)
    : probe_(std::move(probe)) {
  const TdxVm& td = TdxOps::to_tdx(vm);
  tdr_ = td.tdr();
  {
    MutexLock l(mu_);
    runnable_ = td.state() == TdState::kRunnable;
  }
  if (!probe_) {
    // The mode word counts exits from guest mode, whoever caused them; a vCPU that cancels
    // an entry moves it too (it was never in the guest).
    probe_ = [kvm_vm = &vm] {
      std::vector<VcpuView> out;
      for (KvmVcpu* v : kvm_vm->vcpus()) {
        const auto [mode, exits] = v->mode_and_exits();
        out.push_back(VcpuView{v->id(), mode != VcpuMode::kOutsideGuestMode, exits});
      }
      return out;
    };
  }
  seamcall_sub_ = ops.sept_seamcall_trace.attach([this](const TdxSeamcallEvent& e) {
    if (e.tdr == tdr_) on_seamcall(e);
  });
}

SeptRemovalProtocol::~SeptRemovalProtocol() {
  seamcall_sub_.reset();
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
        // Read after the TRACK returned: a vCPU in the guest now may hold the old epoch's
        // translations, and the kick must get it out.
        in_guest_at_track_.clear();
        for (const VcpuView& v : probe_()) {
          if (v.in_guest) in_guest_at_track_.push_back(v);
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
      } else if (!in_guest_at_track_.empty()) {
        for (const VcpuView& now : probe_()) {
          const auto then = std::ranges::find(in_guest_at_track_, now.id, &VcpuView::id);
          if (then != in_guest_at_track_.end() && now.exits == then->exits) {
            violation(fmt::format("{}: vCPU {} was in the guest at the TRACK and has not left it",
                                  what, now.id));
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
