// Invariant "exit_handled_only_after_valid_status": KVM acts on a TD exit's information —
// runs the host's NMI handler for it, handles it as a TDVMCALL or an EPT violation — only
// when TDH.VP.ENTER returned a status that means the guest ran and exited: SUCCESS or one of
// the NON_RECOVERABLE codes (abi §1.4, §2.2). Any other status is a failed
// entry: its low 32 bits are not an exit reason and the output registers still hold an
// older exit's values (seed 002).
//
// Watched at the dispatch (TdxOps::exit_dispatch_trace), which carries the raw status; the
// check decodes it itself. Cost: a shift and a switch per dispatched exit; a mutex only on a
// violation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/lock.h"
#include "base/thread_annotations.h"
#include "base/trace.h"
#include "kvm/vmx/tdx.h"

namespace tdxsim {

class KvmVm;

// Whether a TDH.VP.ENTER status says the guest ran and left through a TD exit (abi §1.4,
// §2.2): what must hold before its low 32 bits are read as an exit reason. Bits 63:32 are
// the status proper: TDX_SUCCESS, or one of the NON_RECOVERABLE codes of class 0 (bit 62
// alone does not tell: most errors, TDX_TSC_ROLLBACK's 0xC0000706 among them, set it too).
constexpr bool vp_enter_status_has_exit(uint64_t status) {
  switch (status >> 32) {
    case 0x0000'0000:  // TDX_SUCCESS
    case 0x4000'0001:  // TDX_NON_RECOVERABLE_VCPU
    case 0x6000'0002:  // TDX_NON_RECOVERABLE_TD (Linux: 0x40000002)
    case 0x4000'0002:
    case 0x6000'0005:  // TDX_NON_RECOVERABLE_TD_NON_ACCESSIBLE
    case 0xE000'0007:  // TDX_NON_RECOVERABLE_TD_WRONG_APIC_MODE (Linux: 0x60000007)
    case 0x6000'0007:
    case 0x6000'000A:  // TDX_NON_RECOVERABLE_TD_CORRUPTED_MD
      return true;
    default:
      return false;
  }
}

class ExitStatusCheck {
 public:
  // Starts watching `vm` (a TD on `ops`). REQUIRES: both outlive this.
  ExitStatusCheck(TdxOps& ops, KvmVm& vm);
  ~ExitStatusCheck();
  ExitStatusCheck(const ExitStatusCheck&) = delete;
  ExitStatusCheck& operator=(const ExitStatusCheck&) = delete;

  // The dispatches that broke the invariant (vCPU, handler, status), at most kMaxEvidence.
  std::vector<std::string> evidence() const TDXSIM_EXCLUDES(mu_);
  uint64_t violations() const TDXSIM_EXCLUDES(mu_);

  static constexpr size_t kMaxEvidence = 16;

  // The listener, public so that tests can feed crafted events.
  void on_dispatch(const TdxExitDispatchEvent& e) TDXSIM_EXCLUDES(mu_);

 private:
  Hpa tdr_;
  mutable Mutex mu_{"exit status check"};
  uint64_t violations_ TDXSIM_GUARDED_BY(mu_) = 0;
  std::vector<std::string> evidence_ TDXSIM_GUARDED_BY(mu_);
  Tracepoint<TdxExitDispatchEvent>::Subscription sub_;
};

}  // namespace tdxsim
