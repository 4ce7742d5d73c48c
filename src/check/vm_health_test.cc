// no_vm_bug and no_lock_assertion read what KVM recorded: a KVM_BUG_ON's message, a lockdep
// warning's helper, lock and mode. Quiet while neither happened.
#include "check/vm_health.h"

#include <gtest/gtest.h>

#include "base/rcu.h"
#include "kvm/host_mm.h"
#include "kvm/kvm.h"

namespace tdxsim {
namespace {

class VmHealthTest : public ::testing::Test {
 protected:
  RcuThread rcu_;
  HostMemory mem_{HostMemoryConfig{.bytes = 256 * kPageSize}};
  HostMm mm_{mem_};
  Kvm kvm_{mem_, mm_, KvmConfig{}};
};

TEST_F(VmHealthTest, QuietWhileNothingHappened) {
  EXPECT_EQ(vm_bug_violation(kvm_), std::nullopt);
  EXPECT_EQ(lock_assertion_violation(kvm_), std::nullopt);
}

TEST_F(VmHealthTest, AVmBugIsReportedWithItsMessage) {
  kvm_.bug_on(true, "a present private mapping changed in place");
  const std::optional<std::string> v = vm_bug_violation(kvm_);
  ASSERT_TRUE(v.has_value());
  EXPECT_NE(v->find("a present private mapping changed in place"), std::string::npos) << *v;
}

TEST_F(VmHealthTest, AWriteAssertionUnderTheReadLockWarnsAndGoesOn) {
  {
    WriteLock l(kvm_.mmu_lock());
    EXPECT_TRUE(kvm_.lockdep().assert_held_write(kvm_.mmu_lock(), "zap_helper"));
  }
  EXPECT_EQ(lock_assertion_violation(kvm_), std::nullopt);
  {
    ReadLock l(kvm_.mmu_lock());
    EXPECT_FALSE(kvm_.lockdep().assert_held_write(kvm_.mmu_lock(), "zap_helper", 3));
  }
  const std::optional<std::string> v = lock_assertion_violation(kvm_);
  ASSERT_TRUE(v.has_value());
  EXPECT_NE(v->find("zap_helper"), std::string::npos) << *v;
  EXPECT_NE(v->find("kvm->mmu_lock"), std::string::npos) << *v;
  EXPECT_NE(v->find("shared"), std::string::npos) << *v;
  EXPECT_NE(v->find("vCPU 3"), std::string::npos) << *v;
}

TEST_F(VmHealthTest, AnAssertionWithoutTheLockWarns) {
  EXPECT_FALSE(kvm_.lockdep().assert_held(kvm_.mmu_lock(), "walker"));
  EXPECT_EQ(kvm_.lockdep().count(), 1u);
  ASSERT_TRUE(lock_assertion_violation(kvm_).has_value());
  EXPECT_NE(lock_assertion_violation(kvm_)->find("not held"), std::string::npos);
}

}  // namespace
}  // namespace tdxsim
