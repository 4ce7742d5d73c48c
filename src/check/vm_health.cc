#include "check/vm_health.h"

#include <fmt/format.h>

#include "kvm/kvm.h"

namespace tdxsim {

std::optional<std::string> vm_bug_violation(const Kvm& kvm) {
  if (!kvm.vm_bugged()) return std::nullopt;
  return fmt::format("KVM_BUG_ON: {}", kvm.bug_message());
}

std::optional<std::string> lock_assertion_violation(const Kvm& kvm) {
  const uint64_t n = kvm.lockdep().count();
  if (n == 0) return std::nullopt;
  const std::vector<LockWarning> w = kvm.lockdep().warnings();
  return fmt::format("{} lockdep warning(s); first: {}", n,
                     w.empty() ? std::string("(none kept)") : w.front().describe());
}

}  // namespace tdxsim
