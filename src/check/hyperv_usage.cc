#include "check/hyperv_usage.h"

#include <fmt/format.h>

#include "kvm/kvm_vm.h"
#include "platform/platform.h"

namespace tdxsim {

std::optional<std::string> hyperv_usage_violation(Platform& platform, KvmVm& vm) {
  if (platform.hyperv() != nullptr) return std::nullopt;
  const uint64_t updates = vm.hv_root_tdp().updates.value();
  if (updates == 0) return std::nullopt;
  return fmt::format(
      "a {} VM on a bare-metal host updated Hyper-V root tracking {} times (vendor flush op: {})",
      to_string(vm.kvm().type()), updates, to_string(vm.ops().remote_flush_hook()));
}

}  // namespace tdxsim
