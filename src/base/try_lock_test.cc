#include "base/try_lock.h"

#include <gtest/gtest.h>

namespace tdxsim {
namespace {

using enum Requester;
using enum TryLockResult;

// The enum API is invisible to clang's analysis (see try_lock.h), so tests that pair it
// with unlock_*() opt out of it.
class TryLockTest : public testing::Test {
 protected:
  void unlock_exclusive() TDXSIM_NO_THREAD_SAFETY_ANALYSIS { lock_.unlock_exclusive(); }
  void unlock_shared() TDXSIM_NO_THREAD_SAFETY_ANALYSIS { lock_.unlock_shared(); }
  TryLock lock_;
};

TEST_F(TryLockTest, ExclusiveExcludesEveryone) {
  EXPECT_EQ(lock_.try_lock_exclusive(kHost), kAcquired);
  EXPECT_TRUE(lock_.is_locked_exclusive());
  EXPECT_EQ(lock_.try_lock_exclusive(kGuest), kBusy);
  EXPECT_EQ(lock_.try_lock_shared(kGuest), kBusy);
  EXPECT_FALSE(lock_.host_priority());  // guest failures never set it
  unlock_exclusive();
  EXPECT_FALSE(lock_.is_locked_exclusive());
  EXPECT_EQ(lock_.shared_count(), 0u);
}

TEST_F(TryLockTest, SharedHoldersCountAndBlockExclusive) {
  EXPECT_EQ(lock_.try_lock_shared(kGuest), kAcquired);
  EXPECT_EQ(lock_.try_lock_shared(kHost), kAcquired);
  EXPECT_EQ(lock_.shared_count(), 2u);
  EXPECT_EQ(lock_.try_lock_exclusive(kGuest), kBusy);
  unlock_shared();
  unlock_shared();
  EXPECT_EQ(lock_.shared_count(), 0u);
  EXPECT_EQ(lock_.try_lock_exclusive(kGuest), kAcquired);
  unlock_exclusive();
}

TEST_F(TryLockTest, FailedHostRequestGivesTheHostPriority) {
  ASSERT_EQ(lock_.try_lock_exclusive(kGuest), kAcquired);
  EXPECT_EQ(lock_.try_lock_exclusive(kHost), kBusy);
  EXPECT_TRUE(lock_.host_priority());
  // Locked with host priority: the module answers a guest exclusive request plain BUSY, a
  // guest shared request BUSY_HOST_PRIORITY.
  EXPECT_EQ(lock_.try_lock_exclusive(kGuest), kBusy);
  EXPECT_EQ(lock_.try_lock_shared(kGuest), kBusyHostPriority);
  unlock_exclusive();
  EXPECT_TRUE(lock_.host_priority());  // releasing keeps it

  // Free, but the guest must yield to the host.
  EXPECT_EQ(lock_.try_lock_exclusive(kGuest), kBusyHostPriority);
  EXPECT_EQ(lock_.try_lock_shared(kGuest), kBusyHostPriority);
  EXPECT_EQ(lock_.shared_count(), 0u);  // the failed shared attempt left no count behind

  EXPECT_EQ(lock_.try_lock_exclusive(kHost), kAcquired);
  EXPECT_FALSE(lock_.host_priority());  // a successful host request clears it
  unlock_exclusive();
  EXPECT_EQ(lock_.try_lock_exclusive(kGuest), kAcquired);
  unlock_exclusive();
}

TEST_F(TryLockTest, HostSharedSuccessClearsPriority) {
  ASSERT_EQ(lock_.try_lock_shared(kGuest), kAcquired);
  EXPECT_EQ(lock_.try_lock_exclusive(kHost), kBusy);
  EXPECT_TRUE(lock_.host_priority());
  EXPECT_EQ(lock_.try_lock_shared(kGuest), kBusyHostPriority);
  EXPECT_EQ(lock_.shared_count(), 1u);
  EXPECT_EQ(lock_.try_lock_shared(kHost), kAcquired);
  EXPECT_FALSE(lock_.host_priority());
  EXPECT_EQ(lock_.shared_count(), 2u);
  EXPECT_EQ(lock_.try_lock_shared(kGuest), kAcquired);
  unlock_shared();
  unlock_shared();
  unlock_shared();
}

TEST_F(TryLockTest, HostSharedFailureOnExclusiveSetsPriority) {
  ASSERT_EQ(lock_.try_lock_exclusive(kGuest), kAcquired);
  EXPECT_EQ(lock_.try_lock_shared(kHost), kBusy);
  EXPECT_TRUE(lock_.host_priority());
  unlock_exclusive();
  EXPECT_EQ(lock_.try_lock_shared(kGuest), kBusyHostPriority);
  EXPECT_EQ(lock_.try_lock_shared(kHost), kAcquired);
  unlock_shared();
}

TEST_F(TryLockTest, FailedSharedAttemptsOnExclusiveLeaveNoCount) {
  ASSERT_EQ(lock_.try_lock_exclusive(kHost), kAcquired);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(lock_.try_lock_shared(kGuest), kBusy);
  EXPECT_EQ(lock_.shared_count(), 0u);
  unlock_exclusive();
  EXPECT_EQ(lock_.shared_count(), 0u);
  EXPECT_EQ(lock_.try_lock_exclusive(kGuest), kAcquired);
  unlock_exclusive();
}

// The annotated form: clang proves the lock held inside the branch.
struct GuardedByTryLock {
  TryLock lock;
  int value TDXSIM_GUARDED_BY(lock) = 0;
};

TEST(TryLockAnnotated, BoolFormsReportTheReason) {
  GuardedByTryLock g;
  TryLockResult why = kBusy;
  if (g.lock.try_acquire_exclusive(kHost, &why)) {
    g.value = 1;
    EXPECT_EQ(why, kAcquired);
    TryLockResult again = kAcquired;
    EXPECT_FALSE(g.lock.try_acquire_shared(kHost, &again));
    EXPECT_EQ(again, kBusy);
    g.lock.unlock_exclusive();
  }
  EXPECT_TRUE(g.lock.host_priority());  // the failed host shared attempt set it
  EXPECT_FALSE(g.lock.try_acquire_shared(kGuest, &why));
  EXPECT_EQ(why, kBusyHostPriority);
  if (g.lock.try_acquire_shared(kHost, &why)) {
    EXPECT_EQ(g.value, 1);
    g.lock.unlock_shared();
  } else {
    ADD_FAILURE() << "a free lock answered " << to_string(why);
  }
  EXPECT_FALSE(g.lock.host_priority());
  if (g.lock.try_acquire_exclusive(kGuest)) {
    g.value = 2;
    g.lock.unlock_exclusive();
  }
  EXPECT_FALSE(g.lock.is_locked_exclusive());
}

TEST(TryLockNames, ToString) {
  EXPECT_STREQ(to_string(kHost), "host");
  EXPECT_STREQ(to_string(kGuest), "guest");
  EXPECT_STREQ(to_string(kAcquired), "acquired");
  EXPECT_STREQ(to_string(kBusy), "busy");
  EXPECT_STREQ(to_string(kBusyHostPriority), "busy (host priority)");
}

void unlock_free_exclusive(TryLock& l) TDXSIM_NO_THREAD_SAFETY_ANALYSIS { l.unlock_exclusive(); }
void unlock_free_shared(TryLock& l) TDXSIM_NO_THREAD_SAFETY_ANALYSIS { l.unlock_shared(); }
void unlock_exclusive_as_shared(TryLock& l) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  (void)l.try_lock_exclusive(kHost);
  l.unlock_shared();
}

TEST(TryLockDeathTest, ReleasingWhatIsNotHeld) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TryLock lock;
  EXPECT_DEATH(unlock_free_exclusive(lock), "unlock_exclusive.*not held exclusively");
  EXPECT_DEATH(unlock_free_shared(lock), "unlock_shared.*not held shared");
  EXPECT_DEATH(unlock_exclusive_as_shared(lock), "unlock_shared.*not held shared");
}

}  // namespace
}  // namespace tdxsim
