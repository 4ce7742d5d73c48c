// Invariant "no_vm_bug": no KVM_BUG_ON fired in a VM (Kvm::bug_on). A VM bug is KVM noticing
// that it broke its own rules or that hardware refused what must not fail; the fixed kernel
// stops the VM there, so a run that finishes cleanly must never have hit one.
#pragma once

#include <optional>
#include <string>

namespace tdxsim {

class Kvm;

// Returns the evidence (the first bug's message) when `kvm` was marked bugged, else nullopt.
std::optional<std::string> vm_bug_violation(const Kvm& kvm);

}  // namespace tdxsim
