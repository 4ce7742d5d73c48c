#include "check/vm_bug.h"

#include <fmt/format.h>

#include "kvm/kvm.h"

namespace tdxsim {

std::optional<std::string> vm_bug_violation(const Kvm& kvm) {
  if (!kvm.vm_bugged()) return std::nullopt;
  return fmt::format("KVM_BUG_ON: {}", kvm.bug_message());
}

}  // namespace tdxsim
