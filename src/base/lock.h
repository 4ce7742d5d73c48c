// Mutex and SharedMutex: the host-side (KVM) blocking locks, with lockdep's run-time checks.
//
// KVM writes its lock discipline down twice: as lockdep assertions that fire at run time
// (lockdep_assert_held_write(&kvm->mmu_lock)) and in comments. tdxsim keeps both halves
// machine-checked. Clang's analysis (base/thread_annotations.h) proves the discipline where
// it can follow it; the assert_held*() calls here catch what it cannot, e.g. a helper that
// needs mmu_lock for write reached with it held for read through a path clang does not see
// (bug M2, CVE-2022-45869). The assertions are TDXSIM_CHECKs: on in every build type.
//
// SharedMutex is KVM's mmu_lock (an rwlock): page faults take it for read, zaps and memslot
// updates for write.
//
// Thread safety: both classes are the synchronisation itself; every member may be called
// from any thread. lock() synchronises-with the previous unlock() as std::mutex does. The
// held-locks bookkeeping is per thread (a thread_local table, like lockdep's per-task
// held_locks), so an assertion answers "does THIS thread hold it, and how", the question
// lockdep asks; it reads no other thread's state and so needs no synchronisation itself.
//
// Invariants, each a check failure (abort) when broken:
//   - a thread never acquires a lock it already holds, in any mode: self-deadlock for a
//     writer, and undefined for std::shared_mutex readers (the kernel's rwlock would let a
//     recursive read through; tdxsim does not, so recursive mmu_lock reads are caught);
//   - a thread releases only a lock it holds, and in the mode it holds it;
//   - a thread holds at most kMaxHeldLocks locks at once;
//   - a thread does not destroy a lock it holds.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <condition_variable>
#include <mutex>
#include <string>
#include <string_view>

#include "base/thread_annotations.h"
#include "base/thread_shard.h"

namespace tdxsim {

// How the calling thread holds a lock.
enum class LockMode : unsigned char { kNotHeld, kShared, kExclusive };

const char* to_string(LockMode m);

// Depth of the per-thread held-locks table (lockdep's MAX_LOCK_DEPTH is 48; nothing in
// tdxsim nests more than a handful).
inline constexpr size_t kMaxHeldLocks = 32;

// An exclusive lock. `name` plays the part of a lockdep class name: it appears in every
// diagnostic about the lock ("kvm->slots_lock").
class TDXSIM_CAPABILITY("mutex") Mutex {
 public:
  explicit Mutex(std::string_view name);
  ~Mutex();
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  // REQUIRES: the calling thread does not hold this lock.
  void lock() TDXSIM_ACQUIRE();
  // REQUIRES: the calling thread holds this lock.
  void unlock() TDXSIM_RELEASE();
  // REQUIRES: the calling thread does not hold this lock.
  // Returns: true if acquired; false if another thread holds it.
  [[nodiscard]] bool try_lock() TDXSIM_TRY_ACQUIRE(true);

  // Aborts unless the calling thread holds this lock (lockdep_assert_held).
  void assert_held() const TDXSIM_ASSERT_CAPABILITY(this);
  bool held_by_this_thread() const;

  const std::string& name() const { return name_; }

 private:
  std::mutex mu_;
  const std::string name_;
};

// A reader-writer lock: KVM's mmu_lock. Writers exclude everyone; readers exclude writers.
class TDXSIM_CAPABILITY("shared_mutex") SharedMutex {
 public:
  explicit SharedMutex(std::string_view name);
  ~SharedMutex();
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  // Write side. REQUIRES (lock, try_lock): the calling thread does not hold this lock in
  // any mode. REQUIRES (unlock): the calling thread holds it for write.
  void lock() TDXSIM_ACQUIRE();
  void unlock() TDXSIM_RELEASE();
  // Returns: true if acquired for write; false if any other thread holds it.
  [[nodiscard]] bool try_lock() TDXSIM_TRY_ACQUIRE(true);

  // Read side. REQUIRES (lock_shared, try_lock_shared): the calling thread does not hold
  // this lock in any mode. REQUIRES (unlock_shared): the calling thread holds it for read.
  void lock_shared() TDXSIM_ACQUIRE_SHARED();
  void unlock_shared() TDXSIM_RELEASE_SHARED();
  // Returns: true if acquired for read; false if a writer holds it.
  [[nodiscard]] bool try_lock_shared() TDXSIM_TRY_ACQUIRE_SHARED(true);

  // Abort unless the calling thread holds this lock for write (lockdep_assert_held_write),
  // for read (lockdep_assert_held_read), or in either mode (lockdep_assert_held).
  void assert_held_write() const TDXSIM_ASSERT_CAPABILITY(this);
  void assert_held_read() const TDXSIM_ASSERT_SHARED_CAPABILITY(this);
  void assert_held() const TDXSIM_ASSERT_SHARED_CAPABILITY(this);
  // The mode in which the calling thread holds this lock.
  LockMode held_mode() const;

  const std::string& name() const { return name_; }

 private:
  // A reader's count lives on its thread's shard, so readers on different cores never write
  // the same cache line (a single rwlock word would bounce on every fault and cap the
  // scaling of KVM's read-side fault path). Writers pay instead: they announce themselves in
  // writer_ and wait for every shard to drain.
  //
  // Fairness (phase-fair, like the kernel's queued rwlock in effect): readers that had to
  // wait for a writer all get in before the next writer does, and a writer waits only for
  // the readers already inside. Neither side can starve the other.
  struct alignas(kShardStride) ReaderShard {
    std::atomic<uint64_t> count{0};
  };
  bool try_enter_read();
  void wait_for_readers();

 public:
  // For tests of the fairness rule: how many threads wait in each mode right now.
  unsigned readers_waiting() const;
  unsigned writers_waiting() const;
  // Whether a writer holds the lock, drains its readers, or waits its turn: for a test or
  // scenario that holds the lock for read and stages a race with a writer.
  bool writer_pending() const;

 private:
  // The slow paths: whoever waits, waits here.
  mutable std::mutex slow_mu_;
  std::condition_variable slow_cv_;
  bool writer_active_ = false;    // a writer holds the lock or is draining readers
  unsigned readers_waiting_ = 0;  // readers that found a writer and wait for it to leave
  unsigned writers_waiting_ = 0;
  unsigned read_turn_ = 0;        // readers admitted by the last unlock, not yet inside
  // The fast path's view of writer_active_: set and cleared under slow_mu_.
  std::atomic<uint32_t> writer_{0};
  std::array<ReaderShard, kThreadShards> readers_;
  const std::string name_;
};

// RAII: holds a Mutex for the guard's lifetime.
class TDXSIM_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) TDXSIM_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() TDXSIM_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

// RAII: holds a SharedMutex for write (KVM's write_lock(&kvm->mmu_lock) … write_unlock).
class TDXSIM_SCOPED_CAPABILITY WriteLock {
 public:
  explicit WriteLock(SharedMutex& mu) TDXSIM_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~WriteLock() TDXSIM_RELEASE() { mu_.unlock(); }
  WriteLock(const WriteLock&) = delete;
  WriteLock& operator=(const WriteLock&) = delete;

 private:
  SharedMutex& mu_;
};

// RAII: holds a SharedMutex for read (KVM's read_lock(&kvm->mmu_lock) … read_unlock).
class TDXSIM_SCOPED_CAPABILITY ReadLock {
 public:
  explicit ReadLock(SharedMutex& mu) TDXSIM_ACQUIRE_SHARED(mu) : mu_(mu) { mu_.lock_shared(); }
  ~ReadLock() TDXSIM_RELEASE() { mu_.unlock_shared(); }
  ReadLock(const ReadLock&) = delete;
  ReadLock& operator=(const ReadLock&) = delete;

 private:
  SharedMutex& mu_;
};

}  // namespace tdxsim
