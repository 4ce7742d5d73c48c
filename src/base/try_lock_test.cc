#include "base/try_lock.h"

#include <string>
#include <type_traits>

#include <gtest/gtest.h>

namespace tdxsim {
namespace {

using enum Requester;
using enum TryLockResult;

// Both storages run every behavioural test: the owning TryLock and a TryLockRef over a
// plain word (as the PAMT keeps its lock words).
struct OwnedStorage {
  TryLock lock;
};
struct RefStorage {
  uint64_t word = 0;
  TryLockRef lock{word};
};

// The enum API is invisible to clang's analysis (see try_lock.h), so tests that pair it
// with unlock_*() opt out of it.
template <typename Storage>
class TryLockTest : public testing::Test {
 protected:
  void unlock_exclusive() TDXSIM_NO_THREAD_SAFETY_ANALYSIS { s_.lock.unlock_exclusive(); }
  void unlock_shared() TDXSIM_NO_THREAD_SAFETY_ANALYSIS { s_.lock.unlock_shared(); }
  Storage s_;
  decltype(Storage::lock)& lock_ = s_.lock;
};

class StorageName {
 public:
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, OwnedStorage> ? "TryLock" : "TryLockRef";
  }
};
using Storages = testing::Types<OwnedStorage, RefStorage>;
TYPED_TEST_SUITE(TryLockTest, Storages, StorageName);

TYPED_TEST(TryLockTest, ExclusiveExcludesEveryone) {
  EXPECT_EQ(this->lock_.try_lock_exclusive(kHost), kAcquired);
  EXPECT_TRUE(this->lock_.is_locked_exclusive());
  EXPECT_EQ(this->lock_.try_lock_exclusive(kGuest), kBusy);
  EXPECT_EQ(this->lock_.try_lock_shared(kGuest), kBusy);
  EXPECT_FALSE(this->lock_.host_priority());  // guest failures never set it
  this->unlock_exclusive();
  EXPECT_FALSE(this->lock_.is_locked_exclusive());
  EXPECT_EQ(this->lock_.shared_count(), 0u);
}

TYPED_TEST(TryLockTest, SharedHoldersCountAndBlockExclusive) {
  EXPECT_EQ(this->lock_.try_lock_shared(kGuest), kAcquired);
  EXPECT_EQ(this->lock_.try_lock_shared(kHost), kAcquired);
  EXPECT_EQ(this->lock_.shared_count(), 2u);
  EXPECT_EQ(this->lock_.try_lock_exclusive(kGuest), kBusy);
  this->unlock_shared();
  this->unlock_shared();
  EXPECT_EQ(this->lock_.shared_count(), 0u);
  EXPECT_EQ(this->lock_.try_lock_exclusive(kGuest), kAcquired);
  this->unlock_exclusive();
}

TYPED_TEST(TryLockTest, FailedHostRequestGivesTheHostPriority) {
  ASSERT_EQ(this->lock_.try_lock_exclusive(kGuest), kAcquired);
  EXPECT_EQ(this->lock_.try_lock_exclusive(kHost), kBusy);
  EXPECT_TRUE(this->lock_.host_priority());
  // Locked with host priority: the module answers a guest exclusive request plain BUSY, a
  // guest shared request BUSY_HOST_PRIORITY.
  EXPECT_EQ(this->lock_.try_lock_exclusive(kGuest), kBusy);
  EXPECT_EQ(this->lock_.try_lock_shared(kGuest), kBusyHostPriority);
  this->unlock_exclusive();
  EXPECT_TRUE(this->lock_.host_priority());  // releasing keeps it

  // Free, but the guest must yield to the host.
  EXPECT_EQ(this->lock_.try_lock_exclusive(kGuest), kBusyHostPriority);
  EXPECT_EQ(this->lock_.try_lock_shared(kGuest), kBusyHostPriority);
  EXPECT_EQ(this->lock_.shared_count(), 0u);  // the failed shared attempt left no count behind

  EXPECT_EQ(this->lock_.try_lock_exclusive(kHost), kAcquired);
  EXPECT_FALSE(this->lock_.host_priority());  // a successful host request clears it
  this->unlock_exclusive();
  EXPECT_EQ(this->lock_.try_lock_exclusive(kGuest), kAcquired);
  this->unlock_exclusive();
}

TYPED_TEST(TryLockTest, HostSharedSuccessClearsPriority) {
  ASSERT_EQ(this->lock_.try_lock_shared(kGuest), kAcquired);
  EXPECT_EQ(this->lock_.try_lock_exclusive(kHost), kBusy);
  EXPECT_TRUE(this->lock_.host_priority());
  EXPECT_EQ(this->lock_.try_lock_shared(kGuest), kBusyHostPriority);
  EXPECT_EQ(this->lock_.shared_count(), 1u);
  EXPECT_EQ(this->lock_.try_lock_shared(kHost), kAcquired);
  EXPECT_FALSE(this->lock_.host_priority());
  EXPECT_EQ(this->lock_.shared_count(), 2u);
  EXPECT_EQ(this->lock_.try_lock_shared(kGuest), kAcquired);
  this->unlock_shared();
  this->unlock_shared();
  this->unlock_shared();
}

TYPED_TEST(TryLockTest, HostSharedFailureOnExclusiveSetsPriority) {
  ASSERT_EQ(this->lock_.try_lock_exclusive(kGuest), kAcquired);
  EXPECT_EQ(this->lock_.try_lock_shared(kHost), kBusy);
  EXPECT_TRUE(this->lock_.host_priority());
  this->unlock_exclusive();
  EXPECT_EQ(this->lock_.try_lock_shared(kGuest), kBusyHostPriority);
  EXPECT_EQ(this->lock_.try_lock_shared(kHost), kAcquired);
  this->unlock_shared();
}

TYPED_TEST(TryLockTest, FailedSharedAttemptsOnExclusiveLeaveNoCount) {
  ASSERT_EQ(this->lock_.try_lock_exclusive(kHost), kAcquired);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(this->lock_.try_lock_shared(kGuest), kBusy);
  EXPECT_EQ(this->lock_.shared_count(), 0u);
  this->unlock_exclusive();
  EXPECT_EQ(this->lock_.shared_count(), 0u);
  EXPECT_EQ(this->lock_.try_lock_exclusive(kGuest), kAcquired);
  this->unlock_exclusive();
}

TYPED_TEST(TryLockTest, SoleReaderPromotes) {
  ASSERT_EQ(this->lock_.try_lock_shared(kHost), kAcquired);
  EXPECT_EQ(this->lock_.try_promote_to_exclusive(), kAcquired);
  EXPECT_TRUE(this->lock_.is_locked_exclusive());
  EXPECT_EQ(this->lock_.try_lock_shared(kGuest), kBusy);
  this->unlock_exclusive();
  EXPECT_EQ(this->lock_.try_lock_shared(kGuest), kAcquired);
  this->unlock_shared();
}

TYPED_TEST(TryLockTest, PromotionWithOtherReadersFailsAndClaimsPriority) {
  ASSERT_EQ(this->lock_.try_lock_shared(kHost), kAcquired);
  ASSERT_EQ(this->lock_.try_lock_shared(kGuest), kAcquired);
  EXPECT_EQ(this->lock_.try_promote_to_exclusive(), kBusy);
  EXPECT_TRUE(this->lock_.host_priority());
  EXPECT_EQ(this->lock_.shared_count(), 2u);  // the failed promotion keeps the shared hold
  this->unlock_shared();                      // the guest leaves
  EXPECT_EQ(this->lock_.try_lock_shared(kGuest), kBusyHostPriority);
  // Sole reader again, with host priority pending: the promotion takes it and clears it.
  EXPECT_EQ(this->lock_.try_promote_to_exclusive(), kAcquired);
  EXPECT_FALSE(this->lock_.host_priority());
  this->unlock_exclusive();
  EXPECT_EQ(this->lock_.try_lock_exclusive(kGuest), kAcquired);
  this->unlock_exclusive();
}

// The enum API's acquisitions are invisible to clang, so releasing them opts out.
void release_exclusive(TryLockRef& l) TDXSIM_NO_THREAD_SAFETY_ANALYSIS { l.unlock_exclusive(); }
void release_shared(TryLockRef& l) TDXSIM_NO_THREAD_SAFETY_ANALYSIS { l.unlock_shared(); }

// TryLockRef: the lock is the word; every TryLockRef over it is the same lock.
TEST(TryLockRef, RefsOverOneWordAreOneLock) {
  uint64_t word = 0;
  {
    TryLockRef a{word};
    ASSERT_EQ(a.try_lock_exclusive(kGuest), kAcquired);
  }
  EXPECT_EQ(word, 0x1u);  // bit 0: exclusive
  TryLockRef b{word};
  EXPECT_TRUE(b.is_locked_exclusive());
  EXPECT_EQ(b.try_lock_shared(kHost), kBusy);
  EXPECT_EQ(word & 0x3u, 0x3u);  // bit 1: host priority
  TryLockRef c{word};
  if (c.try_acquire_exclusive(kGuest)) {
    c.unlock_exclusive();
    FAIL() << "a held lock was acquired through a second reference";
  }
  release_exclusive(b);
  EXPECT_EQ(word, 0x2u);  // released; host priority kept
  {
    TryLockRef d{word};
    ASSERT_EQ(d.try_lock_shared(kHost), kAcquired);
    ASSERT_EQ(d.try_lock_shared(kHost), kAcquired);
  }
  EXPECT_EQ(word, 0x8u);  // two readers in bits 63:2, host priority cleared
  TryLockRef e{word};
  release_shared(e);
  release_shared(e);
  EXPECT_EQ(word, 0u);
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

struct GuardedByTryLockRef {
  uint64_t word = 0;
  TryLockRef lock{word};
  int value TDXSIM_GUARDED_BY(lock) = 0;
};

TEST(TryLockAnnotated, RefGuardsDataToo) {
  GuardedByTryLockRef g;
  if (g.lock.try_acquire_exclusive(kHost)) {
    g.value = 1;
    g.lock.unlock_exclusive();
  }
  if (g.lock.try_acquire_shared(kGuest)) {
    EXPECT_EQ(g.value, 1);
    g.lock.unlock_shared();
  }
  EXPECT_EQ(g.word, 0u);
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
