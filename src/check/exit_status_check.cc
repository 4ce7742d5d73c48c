#include "check/exit_status_check.h"

#include <fmt/format.h>

#include "kvm/kvm_vm.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {

ExitStatusCheck::ExitStatusCheck(TdxOps& ops, KvmVm& vm) : tdr_(TdxOps::to_tdx(vm).tdr()) {
  sub_ = ops.exit_dispatch_trace.attach([this](const TdxExitDispatchEvent& e) {
    if (e.tdr == tdr_) on_dispatch(e);
  });
}

ExitStatusCheck::~ExitStatusCheck() {
  sub_.reset();
}

void ExitStatusCheck::on_dispatch(const TdxExitDispatchEvent& e) {
  if (vp_enter_status_has_exit(e.vp_enter_ret)) return;
  MutexLock l(mu_);
  ++violations_;
  if (evidence_.size() < kMaxEvidence) {
    evidence_.push_back(
        fmt::format("vCPU {}: {} handling after TDH.VP.ENTER returned {:#018x} ({})", e.vcpu_id,
                    to_string(e.handler), e.vp_enter_ret, describe_status(e.vp_enter_ret)));
  }
}

std::vector<std::string> ExitStatusCheck::evidence() const {
  MutexLock l(mu_);
  std::vector<std::string> out = evidence_;
  if (violations_ > out.size())
    out.push_back(fmt::format("… and {} more", violations_ - out.size()));
  return out;
}

uint64_t ExitStatusCheck::violations() const {
  MutexLock l(mu_);
  return violations_;
}

}  // namespace tdxsim
