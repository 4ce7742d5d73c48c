// LockdepWarnings: KVM's lockdep assertions as a Linux build has them — a WARN that is logged
// and lets the kernel go on, not a panic.
//
// base/lock.h's assert_held*() abort: they guard the simulator's own invariants, where going
// on would only produce garbage. KVM's MMU asserts its lock discipline with
// lockdep_assert_held_write(&kvm->mmu_lock) and friends, and a broken one there is a KVM bug
// the model must survive and report (M2: a helper that needs the write lock reached with the
// read lock, CVE-2022-45869). These assertions record the warning — the lock, the helper, the
// mode the thread held it in, the thread and vCPU — for the checker to read, and return.
//
// Thread safety: every member may be called from any thread. A passing assertion reads only
// the calling thread's held-locks table; a failing one takes the warnings' own leaf mutex.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/atomic.h"
#include "base/lock.h"
#include "base/thread_annotations.h"

namespace tdxsim {

struct LockWarning {
  std::string lock;   // the lock's class name ("kvm->mmu_lock")
  std::string where;  // the helper that asserted
  LockMode wanted = LockMode::kExclusive;
  LockMode held = LockMode::kNotHeld;
  int vcpu = -1;  // the vCPU whose thread it was, -1 for none
  uint64_t thread = 0;

  std::string describe() const;
};

class LockdepWarnings {
 public:
  // How many warnings keep their detail (the count goes on).
  static constexpr size_t kKept = 8;

  LockdepWarnings() = default;
  LockdepWarnings(const LockdepWarnings&) = delete;
  LockdepWarnings& operator=(const LockdepWarnings&) = delete;

  // lockdep_assert_held_write / lockdep_assert_held. Returns whether the assertion held;
  // when it did not, the warning is recorded and the caller goes on as Linux would.
  bool assert_held_write(const SharedMutex& mu, const char* where, int vcpu = -1);
  bool assert_held(const SharedMutex& mu, const char* where, int vcpu = -1);

  uint64_t count() const { return count_.load(std::memory_order_acquire); }
  // The first kKept warnings, in the order they fired.
  std::vector<LockWarning> warnings() const TDXSIM_EXCLUDES(mu_);

 private:
  void warn(const SharedMutex& mu, const char* where, LockMode wanted, LockMode held, int vcpu)
      TDXSIM_EXCLUDES(mu_);

  AtomicWord count_;
  mutable Mutex mu_{"lockdep warnings"};
  std::vector<LockWarning> kept_ TDXSIM_GUARDED_BY(mu_);
};

}  // namespace tdxsim
