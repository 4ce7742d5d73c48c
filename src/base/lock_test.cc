#include "base/lock.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace tdxsim {
namespace {

// Exercises the annotations the way model code will: guarded data and REQUIRES functions.
class Counted {
 public:
  void bump() TDXSIM_EXCLUDES(mu_) {
    WriteLock l(mu_);
    bump_locked();
  }
  int read() TDXSIM_EXCLUDES(mu_) {
    ReadLock l(mu_);
    return read_locked();
  }
  SharedMutex& mu() TDXSIM_RETURN_CAPABILITY(mu_) { return mu_; }

 private:
  void bump_locked() TDXSIM_REQUIRES(mu_) {
    mu_.assert_held_write();
    ++n_;
  }
  int read_locked() TDXSIM_REQUIRES_SHARED(mu_) {
    mu_.assert_held();
    return n_;
  }

  SharedMutex mu_{"counted"};
  int n_ TDXSIM_GUARDED_BY(mu_) = 0;
};

bool try_lock_and_release(Mutex& mu) {
  if (!mu.try_lock()) return false;
  mu.unlock();
  return true;
}

bool try_write_and_release(SharedMutex& mu) {
  if (!mu.try_lock()) return false;
  mu.unlock();
  return true;
}

bool try_read_and_release(SharedMutex& mu) {
  if (!mu.try_lock_shared()) return false;
  mu.unlock_shared();
  return true;
}

TEST(Mutex, LockUnlockTracksHolder) {
  Mutex mu("slots_lock");
  EXPECT_EQ(mu.name(), "slots_lock");
  EXPECT_FALSE(mu.held_by_this_thread());
  mu.lock();
  EXPECT_TRUE(mu.held_by_this_thread());
  mu.assert_held();
  std::thread([&] { EXPECT_FALSE(mu.held_by_this_thread()); }).join();
  mu.unlock();
  EXPECT_FALSE(mu.held_by_this_thread());
}

TEST(Mutex, TryLockFailsWhileAnotherThreadHolds) {
  Mutex mu("m");
  {
    MutexLock l(mu);
    mu.assert_held();
    bool got = true;
    std::thread([&] { got = try_lock_and_release(mu); }).join();
    EXPECT_FALSE(got);
  }
  EXPECT_TRUE(try_lock_and_release(mu));
}

TEST(SharedMutex, ModesAndAssertions) {
  SharedMutex mu("mmu_lock");
  EXPECT_EQ(mu.held_mode(), LockMode::kNotHeld);
  {
    WriteLock l(mu);
    EXPECT_EQ(mu.held_mode(), LockMode::kExclusive);
    mu.assert_held_write();
    mu.assert_held();
  }
  EXPECT_EQ(mu.held_mode(), LockMode::kNotHeld);
  {
    ReadLock l(mu);
    EXPECT_EQ(mu.held_mode(), LockMode::kShared);
    mu.assert_held_read();
    mu.assert_held();
  }
  EXPECT_EQ(mu.held_mode(), LockMode::kNotHeld);
}

TEST(SharedMutex, ReadersShareWritersExclude) {
  SharedMutex mu("mmu_lock");
  mu.lock_shared();
  bool read_ok = false;
  bool write_ok = true;
  std::thread([&] {
    read_ok = try_read_and_release(mu);
    write_ok = try_write_and_release(mu);
  }).join();
  EXPECT_TRUE(read_ok);
  EXPECT_FALSE(write_ok);
  mu.unlock_shared();

  mu.lock();
  std::thread([&] { read_ok = try_read_and_release(mu); }).join();
  EXPECT_FALSE(read_ok);
  mu.unlock();
  EXPECT_TRUE(try_write_and_release(mu));
}

TEST(SharedMutex, UnlockOrderNeedNotBeLifo) {
  SharedMutex a("a");
  Mutex b("b");
  a.lock_shared();
  b.lock();
  a.unlock_shared();
  EXPECT_EQ(a.held_mode(), LockMode::kNotHeld);
  EXPECT_TRUE(b.held_by_this_thread());
  b.unlock();
}

TEST(SharedMutex, AnnotatedClass) {
  Counted c;
  c.bump();
  c.bump();
  EXPECT_EQ(c.read(), 2);
  EXPECT_EQ(c.mu().held_mode(), LockMode::kNotHeld);
}

TEST(LockMode, Names) {
  EXPECT_STREQ(to_string(LockMode::kNotHeld), "not held");
  EXPECT_STREQ(to_string(LockMode::kShared), "shared (read)");
  EXPECT_STREQ(to_string(LockMode::kExclusive), "exclusive (write)");
}

// ---- death tests: each breaks the discipline on purpose, so clang's analysis is off ----

class LockDeathTest : public testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

void read_then_assert_write(SharedMutex& mu) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  mu.lock_shared();
  mu.assert_held_write();
}

void write_then_assert_read(SharedMutex& mu) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  mu.lock();
  mu.assert_held_read();
}

void read_and_keep(SharedMutex& mu) TDXSIM_NO_THREAD_SAFETY_ANALYSIS { mu.lock_shared(); }
void other_thread_reads_then_assert_read(SharedMutex& mu) {
  std::thread([&] { read_and_keep(mu); }).join();  // the lock stays read-held, not by us
  mu.assert_held_read();
}

void unlock_unheld(Mutex& mu) TDXSIM_NO_THREAD_SAFETY_ANALYSIS { mu.unlock(); }
void unlock_unheld_shared(SharedMutex& mu) TDXSIM_NO_THREAD_SAFETY_ANALYSIS { mu.unlock_shared(); }
void write_then_unlock_shared(SharedMutex& mu) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  mu.lock();
  mu.unlock_shared();
}
void lock_twice(Mutex& mu) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  mu.lock();
  mu.lock();
}
void try_lock_twice(Mutex& mu) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  mu.lock();
  (void)mu.try_lock();
}
void read_twice(SharedMutex& mu) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  mu.lock_shared();
  mu.lock_shared();
}
void read_then_write(SharedMutex& mu) TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  mu.lock_shared();
  mu.lock();
}
void destroy_held() TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  auto mu = std::make_unique<Mutex>("doomed");
  mu->lock();
  mu.reset();
}
void overflow_held_table() TDXSIM_NO_THREAD_SAFETY_ANALYSIS {
  std::vector<std::unique_ptr<Mutex>> locks;
  for (size_t i = 0; i <= kMaxHeldLocks; ++i) locks.push_back(std::make_unique<Mutex>("nested"));
  for (auto& m : locks) m->lock();
}

TEST_F(LockDeathTest, AssertHeldWriteWithReadHeld) {
  SharedMutex mu("mmu_lock");
  EXPECT_DEATH(read_then_assert_write(mu),
               "assert_held_write.*'mmu_lock'.*this thread holds it shared");
}

TEST_F(LockDeathTest, AssertHeldReadWithNoLock) {
  SharedMutex mu("mmu_lock");
  EXPECT_DEATH(mu.assert_held_read(), "assert_held_read.*'mmu_lock'.*holds it not at all");
}

TEST_F(LockDeathTest, AssertHeldReadWithWriteHeld) {
  SharedMutex mu("mmu_lock");
  EXPECT_DEATH(write_then_assert_read(mu), "assert_held_read.*'mmu_lock'.*holds it exclusive");
}

TEST_F(LockDeathTest, AssertHeldEitherModeWithNoLock) {
  SharedMutex mu("mmu_lock");
  EXPECT_DEATH(mu.assert_held(), "assert_held.*'mmu_lock'.*not at all");
}

TEST_F(LockDeathTest, AssertionsArePerThread) {
  SharedMutex mu("mmu_lock");
  EXPECT_DEATH(other_thread_reads_then_assert_read(mu), "assert_held_read.*not at all");
}

TEST_F(LockDeathTest, MutexAssertHeldWithNoLock) {
  Mutex mu("slots_lock");
  EXPECT_DEATH(mu.assert_held(), "assert_held.*'slots_lock'.*not at all");
}

TEST_F(LockDeathTest, UnlockOfUnheldLock) {
  Mutex mu("slots_lock");
  EXPECT_DEATH(unlock_unheld(mu), "unlock.*'slots_lock' which this thread does not hold");
  SharedMutex smu("mmu_lock");
  EXPECT_DEATH(unlock_unheld_shared(smu),
               "unlock_shared.*'mmu_lock' which this thread does not hold");
}

TEST_F(LockDeathTest, UnlockInTheWrongMode) {
  SharedMutex mu("mmu_lock");
  EXPECT_DEATH(write_then_unlock_shared(mu), "unlock_shared.*'mmu_lock'.*holds exclusive");
}

TEST_F(LockDeathTest, RecursiveLocking) {
  Mutex mu("slots_lock");
  EXPECT_DEATH(lock_twice(mu), "recursive locking: lock.*'slots_lock'");
  EXPECT_DEATH(try_lock_twice(mu), "recursive locking: try_lock.*'slots_lock'");
  SharedMutex smu("mmu_lock");
  EXPECT_DEATH(read_twice(smu), "recursive locking: lock_shared.*'mmu_lock'.*shared");
  EXPECT_DEATH(read_then_write(smu), "recursive locking: lock.*'mmu_lock'.*shared");
}

TEST_F(LockDeathTest, DestroyingAHeldLock) {
  EXPECT_DEATH(destroy_held(), "'doomed' destroyed while this thread holds it");
}

TEST_F(LockDeathTest, HeldLocksTableOverflow) {
  EXPECT_DEATH(overflow_held_table(), "thread holds 32 locks");
}

}  // namespace
}  // namespace tdxsim

namespace tdxsim {
namespace {

// Phase fairness: a reader that waited for a writer gets in before a writer that waited
// for the same one, so a stream of writers cannot starve readers (nor readers writers).
TEST(SharedMutexFairness, ReadersThatWaitedGoBeforeTheNextWriter) {
  for (int round = 0; round < 20; ++round) {
    SharedMutex mu("fair");
    std::atomic<int> order{0};
    int reader_turn = -1;
    int writer_turn = -1;
    mu.lock();
    std::thread reader([&] {
      mu.lock_shared();
      reader_turn = order.fetch_add(1);
      mu.unlock_shared();
    });
    while (mu.readers_waiting() == 0) std::this_thread::yield();
    std::thread writer([&] {
      mu.lock();
      writer_turn = order.fetch_add(1);
      mu.unlock();
    });
    while (mu.writers_waiting() == 0) std::this_thread::yield();
    mu.unlock();
    reader.join();
    writer.join();
    EXPECT_EQ(reader_turn, 0) << "round " << round;
    EXPECT_EQ(writer_turn, 1) << "round " << round;
  }
}

// And the other way: a writer waits only for the readers already inside; readers arriving
// after it are turned away until it is done.
TEST(SharedMutexFairness, ADrainingWriterTurnsNewReadersAway) {
  SharedMutex mu("fair");
  mu.lock_shared();
  std::atomic<bool> written{false};
  std::thread writer([&] {
    mu.lock();
    written.store(true);
    mu.unlock();
  });
  // Another thread's try_lock_shared fails once the writer has announced itself.
  bool turned_away = false;
  std::thread late([&] {
    while (!turned_away) {
      if (mu.try_lock_shared()) {
        mu.unlock_shared();
        std::this_thread::yield();
      } else {
        turned_away = true;
      }
    }
  });
  late.join();
  EXPECT_FALSE(written.load());  // still waiting for this thread's read hold
  mu.unlock_shared();
  writer.join();
  EXPECT_TRUE(written.load());
}

}  // namespace
}  // namespace tdxsim
