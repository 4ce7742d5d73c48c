#include "base/lock.h"

#include <array>
#include <thread>

#include "base/check.h"
#include "base/sched.h"

namespace tdxsim {
namespace {

// One acquisition the calling thread has made and not yet released. `name` points into the
// lock's own name string: a lock cannot be destroyed while held (checked), so it stays valid.
struct HeldLock {
  const void* lock;
  const char* name;
  LockMode mode;
};

// The calling thread's held locks, oldest first (lockdep's task_struct::held_locks).
struct HeldLocks {
  std::array<HeldLock, kMaxHeldLocks> entries;
  size_t count;
};

// Per-thread by design: each thread's table is touched only by that thread. constinit keeps
// it trivially initialised, so no TLS init guard runs on the lock fast path.
constinit thread_local HeldLocks t_held{};

// "[mmu_lock (shared), slots_lock (exclusive)]", for diagnostics.
std::string describe_held() {
  std::string s = "[";
  for (size_t i = 0; i < t_held.count; ++i) {
    const HeldLock& h = t_held.entries[i];
    s += fmt::format("{}{} ({})", i ? ", " : "", h.name, to_string(h.mode));
  }
  return s + "]";
}

// Index of `lock` in the table, or t_held.count when this thread does not hold it. Newest
// first: locks are mostly released in reverse order, so a release finds its lock at once.
size_t find(const void* lock) {
  for (size_t i = t_held.count; i-- > 0;) {
    if (t_held.entries[i].lock == lock) return i;
  }
  return t_held.count;
}

LockMode mode_of(const void* lock) {
  const size_t i = find(lock);
  return i == t_held.count ? LockMode::kNotHeld : t_held.entries[i].mode;
}

// Called before blocking, so that a self-deadlock aborts with a message instead of hanging.
void check_not_held(const void* lock, const std::string& name, const char* op) {
  const LockMode held = mode_of(lock);
  TDXSIM_CHECK(held == LockMode::kNotHeld,
               "recursive locking: {}() on lock '{}' already held {} by this thread; held: {}",
               op, name, to_string(held), describe_held());
}

void on_acquired(const void* lock, const std::string& name, LockMode mode) {
  TDXSIM_CHECK(t_held.count < kMaxHeldLocks,
               "thread holds {} locks, the most the held-locks table tracks, acquiring '{}'; "
               "held: {}",
               kMaxHeldLocks, name, describe_held());
  t_held.entries[t_held.count++] = HeldLock{lock, name.c_str(), mode};
}

// on_release when the lock is not the newest held, or is held in another mode.
[[gnu::noinline]] void on_release_slow(const void* lock, const std::string& name, LockMode mode,
                                       const char* op) {
  const size_t i = find(lock);
  TDXSIM_CHECK(i != t_held.count, "{}() of lock '{}' which this thread does not hold; held: {}",
               op, name, describe_held());
  TDXSIM_CHECK(t_held.entries[i].mode == mode,
               "{}() of lock '{}' which this thread holds {}, not {}", op, name,
               to_string(t_held.entries[i].mode), to_string(mode));
  // Keep acquisition order (locks need not be released LIFO) so diagnostics read naturally.
  for (size_t j = i + 1; j < t_held.count; ++j) t_held.entries[j - 1] = t_held.entries[j];
  --t_held.count;
}

// Nearly every release is of the lock taken last (guards nest), so that case is a compare
// and a decrement; anything else takes the full search.
void on_release(const void* lock, const std::string& name, LockMode mode, const char* op) {
  const size_t n = t_held.count;
  if (n != 0 && t_held.entries[n - 1].lock == lock && t_held.entries[n - 1].mode == mode)
      [[likely]] {
    t_held.count = n - 1;
    return;
  }
  on_release_slow(lock, name, mode, op);
}

void check_held(const void* lock, const std::string& name, const char* assertion,
                bool (*ok)(LockMode)) {
  const LockMode held = mode_of(lock);
  TDXSIM_CHECK(ok(held), "{}() failed for lock '{}': this thread holds it {}; held: {}",
               assertion, name, held == LockMode::kNotHeld ? "not at all" : to_string(held),
               describe_held());
}

void check_not_held_at_destruction(const void* lock, const std::string& name) {
  const LockMode held = mode_of(lock);
  TDXSIM_CHECK(held == LockMode::kNotHeld, "lock '{}' destroyed while this thread holds it {}",
               name, to_string(held));
}

}  // namespace

const char* to_string(LockMode m) {
  switch (m) {
    case LockMode::kNotHeld: return "not held";
    case LockMode::kShared: return "shared (read)";
    case LockMode::kExclusive: return "exclusive (write)";
  }
  return "?";
}

// ---- Mutex ----

Mutex::Mutex(std::string_view name) : name_(name) {}

Mutex::~Mutex() { check_not_held_at_destruction(this, name_); }

void Mutex::lock() {
  check_not_held(this, name_, "lock");
  sched_point(SchedPoint::kLock);
  if (sched_active()) {
    while (!mu_.try_lock()) sched_pause(SchedPoint::kWait);
  } else {
    mu_.lock();
  }
  on_acquired(this, name_, LockMode::kExclusive);
}

void Mutex::unlock() {
  on_release(this, name_, LockMode::kExclusive, "unlock");
  mu_.unlock();
  sched_point(SchedPoint::kUnlock);
}

bool Mutex::try_lock() {
  // std::mutex::try_lock by the owner is undefined, not merely false.
  check_not_held(this, name_, "try_lock");
  sched_point(SchedPoint::kLock);
  if (!mu_.try_lock()) return false;
  on_acquired(this, name_, LockMode::kExclusive);
  return true;
}

void Mutex::assert_held() const {
  check_held(this, name_, "assert_held", [](LockMode m) { return m == LockMode::kExclusive; });
}

bool Mutex::held_by_this_thread() const { return mode_of(this) == LockMode::kExclusive; }

// ---- SharedMutex ----
//
// The read side is a per-shard count and the write side a flag, ordered Dekker-style: a
// reader increments its shard, then looks at writer_; a writer sets writer_, then looks at
// every shard. Both sequences are seq_cst, so at least one of them sees the other: either
// the reader backs off or the writer waits for it. The writer's release store that clears
// writer_ is what a later reader's load synchronises with, and a reader's release decrement
// is what the writer's drain loop acquires. Everything else (waiting, and the turn that
// lets waiting readers in before the next writer) happens under slow_mu_.

SharedMutex::SharedMutex(std::string_view name) : name_(name) {}

SharedMutex::~SharedMutex() { check_not_held_at_destruction(this, name_); }

bool SharedMutex::try_enter_read() {
  std::atomic<uint64_t>& count = readers_[this_thread_shard()].count;
  count.fetch_add(1, std::memory_order_seq_cst);
  if (writer_.load(std::memory_order_seq_cst) == 0) return true;
  count.fetch_sub(1, std::memory_order_release);
  return false;
}

void SharedMutex::wait_for_readers() {
  for (ReaderShard& shard : readers_) {
    while (shard.count.load(std::memory_order_seq_cst) != 0) sched_pause(SchedPoint::kWait);
  }
}

void SharedMutex::lock() {
  check_not_held(this, name_, "lock");
  sched_point(SchedPoint::kLock);
  {
    std::unique_lock<std::mutex> l(slow_mu_);
    ++writers_waiting_;
    // Behind the writer inside and behind the readers the last writer let in.
    block_until(l, slow_cv_, [this] { return !writer_active_ && read_turn_ == 0; });
    --writers_waiting_;
    writer_active_ = true;
    writer_.store(1, std::memory_order_seq_cst);
  }
  wait_for_readers();
  on_acquired(this, name_, LockMode::kExclusive);
}

void SharedMutex::unlock() {
  on_release(this, name_, LockMode::kExclusive, "unlock");
  {
    std::lock_guard<std::mutex> l(slow_mu_);
    writer_active_ = false;
    writer_.store(0, std::memory_order_release);
    // Readers that waited for this writer go before any writer that waited too.
    read_turn_ = readers_waiting_;
    slow_cv_.notify_all();
  }
  sched_point(SchedPoint::kUnlock);
}

bool SharedMutex::try_lock() {
  check_not_held(this, name_, "try_lock");
  sched_point(SchedPoint::kLock);
  std::unique_lock<std::mutex> l(slow_mu_, std::try_to_lock);
  if (!l.owns_lock() || writer_active_ || read_turn_ != 0) return false;
  writer_.store(1, std::memory_order_seq_cst);
  for (ReaderShard& shard : readers_) {
    if (shard.count.load(std::memory_order_seq_cst) != 0) {
      writer_.store(0, std::memory_order_release);
      // Readers that backed off meanwhile wait for a writer that is not coming.
      slow_cv_.notify_all();
      return false;
    }
  }
  writer_active_ = true;
  on_acquired(this, name_, LockMode::kExclusive);
  return true;
}

void SharedMutex::lock_shared() {
  check_not_held(this, name_, "lock_shared");
  sched_point(SchedPoint::kLock);
  if (!try_enter_read()) {
    std::unique_lock<std::mutex> l(slow_mu_);
    ++readers_waiting_;
    // With writer_active_ false under slow_mu_, writer_ is 0 and stays 0 while it is held,
    // so the retry cannot fail.
    block_until(l, slow_cv_, [this] { return !writer_active_; });
    const bool entered = try_enter_read();
    TDXSIM_CHECK(entered, "SharedMutex '{}': a reader failed with no writer", name_);
    --readers_waiting_;
    if (read_turn_ > 0 && --read_turn_ == 0) slow_cv_.notify_all();
  }
  on_acquired(this, name_, LockMode::kShared);
}

void SharedMutex::unlock_shared() {
  on_release(this, name_, LockMode::kShared, "unlock_shared");
  readers_[this_thread_shard()].count.fetch_sub(1, std::memory_order_release);
  sched_point(SchedPoint::kUnlock);
}

bool SharedMutex::try_lock_shared() {
  check_not_held(this, name_, "try_lock_shared");
  sched_point(SchedPoint::kLock);
  if (!try_enter_read()) return false;
  on_acquired(this, name_, LockMode::kShared);
  return true;
}

unsigned SharedMutex::readers_waiting() const {
  std::lock_guard<std::mutex> l(slow_mu_);
  return readers_waiting_;
}

bool SharedMutex::writer_pending() const {
  std::lock_guard<std::mutex> l(slow_mu_);
  return writer_active_ || writers_waiting_ != 0;
}

unsigned SharedMutex::writers_waiting() const {
  std::lock_guard<std::mutex> l(slow_mu_);
  return writers_waiting_;
}

void SharedMutex::assert_held_write() const {
  check_held(this, name_, "assert_held_write",
             [](LockMode m) { return m == LockMode::kExclusive; });
}

void SharedMutex::assert_held_read() const {
  check_held(this, name_, "assert_held_read", [](LockMode m) { return m == LockMode::kShared; });
}

void SharedMutex::assert_held() const {
  check_held(this, name_, "assert_held", [](LockMode m) { return m != LockMode::kNotHeld; });
}

LockMode SharedMutex::held_mode() const { return mode_of(this); }

}  // namespace tdxsim
