// SeptEntryLock: the S-EPT entry lock (TDEL, bit 11) and its host-priority flag (TDHP,
// bit 52), taken by the host's memory leaves and by the guest's TDG.MEM.PAGE.ACCEPT
// (module src/common/helpers/tdx_locks.h, sept_lock_acquire_host / _guest; sept_entry.h
// describes the bits).
//
// Host and guest contend for one entry without ever waiting:
//   host   finds TDEL set   → sets TDHP, answers BUSY (the guest yields to it next time)
//          takes TDEL       → clears TDHP: the priority it asked for is served
//   guest  finds TDEL set   → answers BUSY
//          takes TDEL, sees TDHP → releases it, answers BUSY_HOST_PRIORITY
// The entry's value is read under the lock and the new value published together with the
// release, in one exchange, so the CPUs' walkers never see a torn or half-updated entry.
//
// Thread safety: a lock object belongs to the SEAMCALL or TDCALL that took it.
#pragma once

#include <atomic>

#include "base/addr.h"
#include "base/check.h"
#include "platform/host_memory.h"
#include "platform/key_id.h"
#include "tdx_module/sept_entry.h"

namespace tdxsim {

class SeptEntryLock {
 public:
  enum class Result : uint8_t { kAcquired, kBusy, kBusyHostPriority };

  SeptEntryLock(HostMemory& mem, KeyId hkid, Hpa entry) : mem_(mem), hkid_(hkid), entry_(entry) {}
  SeptEntryLock(const SeptEntryLock&) = delete;
  SeptEntryLock& operator=(const SeptEntryLock&) = delete;
  ~SeptEntryLock() {
    if (held_) commit(value_);
  }

  // The host's acquire. `seen` is the entry as the caller's walk read it: the exchange's
  // first guess, so that an uncontended acquire is one locked exchange and no load. A guess
  // gone stale costs a failed exchange, which reads the current value; a guess that shows
  // the lock held is read again first, so a holder that left since the walk is not taken
  // for one that is still there. Returns: true holding the lock (value() is the entry as
  // locked), or false when another holder has it — having set TDHP so that a guest yields
  // to the host.
  [[nodiscard]] bool try_lock(SeptEntry seen) { return acquire_host(first_guess(seen)); }
  // The same, for a caller with no copy of the entry: it is read first.
  [[nodiscard]] bool try_lock() { return acquire_host(load()); }

  // The guest's acquire (TDG.MEM.PAGE.ACCEPT), `seen` as for try_lock. A guest never
  // touches TDHP.
  [[nodiscard]] Result try_lock_guest(SeptEntry seen) {
    uint64_t cur = first_guess(seen);
    for (;;) {
      const SeptEntry e{cur};
      if (e.is_locked()) return Result::kBusy;
      const uint64_t locked = e.with_lock(true).raw();
      if (mem_.compare_exchange(entry_, hkid_, cur, locked, std::memory_order_acq_rel)) {
        hold(e, locked);
        if (e.host_priority()) {
          commit(value_);
          return Result::kBusyHostPriority;
        }
        return Result::kAcquired;
      }
    }
  }

  // The entry as read under the lock, lock bits clear.
  SeptEntry value() const { return value_; }

  // Publishes `e` and releases the lock in one exchange, keeping a TDHP another host set
  // while this one held the lock.
  void commit(SeptEntry e) {
    TDXSIM_CHECK(held_, "S-EPT entry {} committed without its lock", entry_);
    // First guess: the word as the acquire left it. Only TDHP can have changed since (a
    // host that found the lock held), and then the exchange fails and reads it.
    uint64_t cur = locked_;
    for (;;) {
      const uint64_t desired =
          e.with_lock(false).with_host_priority(SeptEntry{cur}.host_priority()).raw();
      if (mem_.compare_exchange(entry_, hkid_, cur, desired, std::memory_order_acq_rel)) break;
    }
    held_ = false;
  }

 private:
  uint64_t load() const { return mem_.load(entry_, hkid_, std::memory_order_acquire); }
  // `seen` unless it shows the lock held: then what the entry holds now.
  uint64_t first_guess(SeptEntry seen) const { return seen.is_locked() ? load() : seen.raw(); }
  bool acquire_host(uint64_t cur) {
    for (;;) {
      const SeptEntry e{cur};
      if (e.is_locked()) {
        mem_.fetch_or(entry_, hkid_, SeptEntry::HostPriority::kMask, std::memory_order_acq_rel);
        return false;
      }
      // A failed exchange means the word changed meanwhile (a flag set): look again.
      const uint64_t locked = e.with_lock(true).with_host_priority(false).raw();
      if (mem_.compare_exchange(entry_, hkid_, cur, locked, std::memory_order_acq_rel)) {
        hold(e, locked);
        return true;
      }
    }
  }
  void hold(SeptEntry e, uint64_t locked) {
    value_ = e.with_host_priority(false);
    locked_ = locked;
    held_ = true;
  }

  HostMemory& mem_;
  const KeyId hkid_;
  const Hpa entry_;
  SeptEntry value_;
  uint64_t locked_ = 0;  // the word as the acquire stored it
  bool held_ = false;
};

}  // namespace tdxsim
