// Invariants "no_vm_bug" and "no_lock_assertion": KVM never hit a KVM_BUG_ON (Kvm::bug_on: a
// state its own rules exclude, after which the VM is dead) and none of its lockdep
// assertions warned (kvm/lockdep.h: a helper reached without the lock mode it needs, e.g.
// with mmu_lock held for read where it must be held for write). Both are states KVM itself
// records as it runs; the checks read them at a quiescent point (the scenario's end, or when
// the VM stops being watched). Cost: two loads, and the evidence only on failure.
#pragma once

#include <optional>
#include <string>

namespace tdxsim {

class Kvm;

// The evidence when `kvm` marked itself bugged, else nullopt.
std::optional<std::string> vm_bug_violation(const Kvm& kvm);
// The evidence when a lock assertion of `kvm` warned, else nullopt.
std::optional<std::string> lock_assertion_violation(const Kvm& kvm);

}  // namespace tdxsim
