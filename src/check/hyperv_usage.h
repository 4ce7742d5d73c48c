// Invariant "hyperv_only_on_hyperv": Hyper-V's root tracking and GPA-flush hypercalls happen
// only on a host that runs on Hyper-V. KVM's per-VM tracking state exists in every VM; on
// bare metal nothing may write it (seed 000: a plain VMX VM on a TDX host did, because the
// shared vendor table's flush op was TDX's and VMX took any op for Hyper-V's).
#pragma once

#include <optional>
#include <string>

namespace tdxsim {

class KvmVm;
class Platform;

// Returns the evidence when `vm` (on `platform`) broke the invariant, else nullopt.
std::optional<std::string> hyperv_usage_violation(Platform& platform, KvmVm& vm);

}  // namespace tdxsim
