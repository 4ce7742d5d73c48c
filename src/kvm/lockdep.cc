#include "kvm/lockdep.h"

#include <fmt/format.h>

#include <functional>
#include <thread>

namespace tdxsim {

std::string LockWarning::describe() const {
  return fmt::format(
      "{}: lockdep_assert_held{}({}) failed, the thread holds it {} (thread {:#x}{})", where,
      wanted == LockMode::kExclusive ? "_write" : "", lock, to_string(held), thread,
      vcpu >= 0 ? fmt::format(", vCPU {}", vcpu) : std::string());
}

bool LockdepWarnings::assert_held_write(const SharedMutex& mu, const char* where, int vcpu) {
  const LockMode held = mu.held_mode();
  if (held == LockMode::kExclusive) return true;
  warn(mu, where, LockMode::kExclusive, held, vcpu);
  return false;
}

bool LockdepWarnings::assert_held(const SharedMutex& mu, const char* where, int vcpu) {
  const LockMode held = mu.held_mode();
  if (held != LockMode::kNotHeld) return true;
  warn(mu, where, LockMode::kShared, held, vcpu);
  return false;
}

void LockdepWarnings::warn(const SharedMutex& mu, const char* where, LockMode wanted, LockMode held,
                           int vcpu) {
  count_.fetch_add(1, std::memory_order_acq_rel);
  MutexLock l(mu_);
  if (kept_.size() >= kKept) return;
  kept_.push_back(LockWarning{mu.name(), where, wanted, held, vcpu,
                              std::hash<std::thread::id>{}(std::this_thread::get_id())});
}

std::vector<LockWarning> LockdepWarnings::warnings() const {
  MutexLock l(mu_);
  return kept_;
}

}  // namespace tdxsim
