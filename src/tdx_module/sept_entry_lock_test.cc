#include "tdx_module/sept_entry_lock.h"

#include <gtest/gtest.h>

namespace tdxsim {
namespace {

constexpr PhysAddrLayout kLayout{};
constexpr KeyId kHkid{5};

// One S-EPT entry in a TD-keyed frame, and what the module's walk would have read of it
// before something else changed it: the lock's first guess.
class SeptEntryLockTest : public testing::Test {
 protected:
  SeptEntryLockTest() : mem_(HostMemoryConfig{.bytes = uint64_t{16} << 20}) {
    const Pfn table = *mem_.alloc_frame();
    mem_.set_key(table, kHkid);
    mem_.fill(table, kHkid, SeptEntry::free().raw());
    at_ = table.hpa() + 8 * 17;
    page_ = mem_.alloc_frame()->hpa();
    store(pending());
  }

  SeptEntry pending() const { return SeptEntry::pending(page_, kHkid, Level::k4K, kLayout); }
  SeptEntry mapped() const { return SeptEntry::mapped(page_, kHkid, Level::k4K, kLayout); }
  SeptEntry now() const { return SeptEntry{mem_.load(at_, kHkid, std::memory_order_acquire)}; }
  void store(SeptEntry e) { mem_.store(at_, kHkid, e.raw(), std::memory_order_release); }

  HostMemory mem_;
  Hpa at_;
  Hpa page_;
};

TEST_F(SeptEntryLockTest, CurrentGuessLocksAndCommitPublishes) {
  SeptEntryLock l(mem_, kHkid, at_);
  ASSERT_TRUE(l.try_lock(pending()));
  EXPECT_EQ(l.value(), pending());
  EXPECT_TRUE(now().is_locked());
  l.commit(mapped());
  EXPECT_EQ(now(), mapped());
}

// The walk read PENDING; a holder committed MAPPED since. The lock holds what is there.
TEST_F(SeptEntryLockTest, StaleGuessLocksWhatIsThereNow) {
  store(mapped());
  SeptEntryLock l(mem_, kHkid, at_);
  ASSERT_TRUE(l.try_lock(pending()));
  EXPECT_EQ(l.value(), mapped());
}

// The walk read an unlocked entry; another host holds it now: BUSY, and TDHP is set for it.
TEST_F(SeptEntryLockTest, UnlockedGuessOfAHeldEntryIsBusyAndAsksPriority) {
  SeptEntryLock holder(mem_, kHkid, at_);
  ASSERT_TRUE(holder.try_lock());
  SeptEntryLock l(mem_, kHkid, at_);
  EXPECT_FALSE(l.try_lock(pending()));
  EXPECT_TRUE(now().host_priority());
  EXPECT_EQ(SeptEntryLock(mem_, kHkid, at_).try_lock_guest(pending()),
            SeptEntryLock::Result::kBusy);
  // The holder's commit keeps the TDHP set while it held the lock, although its acquire
  // stored the word without it.
  holder.commit(mapped());
  EXPECT_EQ(now(), mapped().with_host_priority(true));
}

// The walk saw the lock held; the holder left before the acquire: it is read again, not
// answered BUSY.
TEST_F(SeptEntryLockTest, LockedGuessOfAReleasedEntryIsReadAgain) {
  SeptEntryLock host(mem_, kHkid, at_);
  ASSERT_TRUE(host.try_lock(pending().with_lock(true)));
  host.commit(pending());
  EXPECT_EQ(SeptEntryLock(mem_, kHkid, at_).try_lock_guest(pending().with_lock(true)),
            SeptEntryLock::Result::kAcquired);
}

TEST_F(SeptEntryLockTest, GuestYieldsToAHostThatAskedPriority) {
  store(pending().with_host_priority(true));
  SeptEntryLock guest(mem_, kHkid, at_);
  EXPECT_EQ(guest.try_lock_guest(pending()), SeptEntryLock::Result::kBusyHostPriority);
  EXPECT_EQ(now(), pending().with_host_priority(true));
  // The host's acquire serves the priority: TDHP clear in what it stores and what it reads.
  SeptEntryLock host(mem_, kHkid, at_);
  ASSERT_TRUE(host.try_lock(pending()));
  EXPECT_FALSE(now().host_priority());
  EXPECT_EQ(host.value(), pending());
}

TEST_F(SeptEntryLockTest, DestructorReleasesUnchanged) {
  {
    SeptEntryLock l(mem_, kHkid, at_);
    ASSERT_TRUE(l.try_lock(pending()));
  }
  EXPECT_EQ(now(), pending());
}

}  // namespace
}  // namespace tdxsim
