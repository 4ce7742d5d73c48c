// Tracepoint<Event>: a typed event bus in the spirit of the kernel's tracepoints
// (trace_kvm_mmu_spte_requested …): the model emits events at interesting spots, and tests,
// checkers and the CLI's tracer attach listeners. With nobody attached an emit costs one
// relaxed load and a predictable branch, and emit_lazy() does not even build the event.
//
//   struct SpteChanged { Gfn gfn; uint64_t old_spte, new_spte; Level level; };
//   Tracepoint<SpteChanged> spte_changed;       // a member of the object that emits
//   auto sub = spte_changed.attach([&](const SpteChanged& e) { ... });
//   spte_changed.emit_lazy([&] { return SpteChanged{gfn, old, new, level}; });
//
// Thread safety: every member may be called from any thread, and attach/detach may race
// with emit. The listener list is copy-on-write: attach and detach publish a new immutable
// snapshot under a std::mutex; emit copies the current snapshot's shared_ptr under that
// mutex and calls the listeners with no Tracepoint lock held. Each listener carries its own
// small mutex and a count of the emits running it; detach marks it detached and waits for
// that count to reach zero. Hence:
//   - a listener runs on the emitting thread, possibly concurrently with itself when
//     several threads emit; it must do its own locking;
//   - once a Subscription is destroyed or reset, its listener is not running and never
//     runs again, and its closure has been destroyed on the detaching thread: it may
//     capture objects that die right after the Subscription;
//   - a busy emitter never starves a detach (new emits already use the new snapshot);
//   - a listener may emit on, or attach to, its own Tracepoint, but must not detach any
//     listener of it (the detach could wait for the very emit that is running it).
// enabled() is a relaxed load of the listener count: an emit racing with the first attach
// may miss the event, which is the kernel's tracepoint semantics too.
//
// Lifetime: every Subscription must be destroyed before its Tracepoint (checked).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "base/atomic.h"
#include "base/check.h"
#include "base/sched.h"

namespace tdxsim {

template <typename Event>
class Tracepoint {
 public:
  using Listener = std::function<void(const Event&)>;

  // Detaches its listener when destroyed or reset. Move-only.
  class [[nodiscard]] Subscription {
   public:
    Subscription() = default;
    Subscription(Subscription&& o) noexcept
        : tp_(std::exchange(o.tp_, nullptr)), id_(std::exchange(o.id_, 0)) {}
    Subscription& operator=(Subscription&& o) noexcept {
      if (this != &o) {
        reset();
        tp_ = std::exchange(o.tp_, nullptr);
        id_ = std::exchange(o.id_, 0);
      }
      return *this;
    }
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;
    ~Subscription() { reset(); }

    void reset() {
      if (tp_ != nullptr) std::exchange(tp_, nullptr)->detach(id_);
    }
    bool attached() const { return tp_ != nullptr; }

   private:
    friend class Tracepoint;
    Subscription(Tracepoint* tp, uint64_t id) : tp_(tp), id_(id) {}
    Tracepoint* tp_ = nullptr;
    uint64_t id_ = 0;
  };

  Tracepoint() = default;
  ~Tracepoint() {
    TDXSIM_CHECK(count_.load(std::memory_order_relaxed) == 0,
                 "Tracepoint destroyed with {} listener(s) still attached",
                 count_.load(std::memory_order_relaxed));
  }
  Tracepoint(const Tracepoint&) = delete;
  Tracepoint& operator=(const Tracepoint&) = delete;

  bool enabled() const { return count_.load(std::memory_order_relaxed) != 0; }

  // REQUIRES: listener is not empty.
  Subscription attach(Listener listener) {
    TDXSIM_CHECK(listener != nullptr, "Tracepoint::attach() of an empty listener");
    auto entry = std::make_shared<Entry>(std::move(listener));
    std::lock_guard<std::mutex> l(mu_);
    auto next = std::make_shared<Snapshot>();
    if (current_ != nullptr) *next = *current_;
    entry->id = next_id_++;
    next->push_back(entry);
    current_ = std::move(next);
    count_.fetch_add(1, std::memory_order_relaxed);
    return Subscription(this, entry->id);
  }

  // Calls every attached listener, in attach order, on the calling thread.
  void emit(const Event& e) const {
    if (!enabled()) return;
    std::shared_ptr<const Snapshot> snap;
    {
      std::lock_guard<std::mutex> l(mu_);
      snap = current_;
    }
    if (snap == nullptr) return;
    for (const auto& entry : *snap) {
      if (!entry->enter()) continue;
      entry->fn(e);
      entry->leave();
    }
  }

  // Builds the event with make() only if someone listens.
  template <typename F>
  void emit_lazy(F&& make) const {
    if (!enabled()) return;
    emit(std::forward<F>(make)());
  }

 private:
  // One attached listener. Snapshots share it; `running` and `detached` make detach wait
  // for the calls in flight and refuse new ones.
  struct Entry {
    explicit Entry(Listener f) : fn(std::move(f)) {}

    bool enter() {
      std::lock_guard<std::mutex> l(mu);
      if (detached) return false;
      ++running;
      return true;
    }
    void leave() {
      std::lock_guard<std::mutex> l(mu);
      if (--running == 0 && detached) idle.notify_all();
    }
    // Returns the closure for the caller to destroy: no call can be running or start.
    Listener retire() {
      std::unique_lock<std::mutex> l(mu);
      detached = true;
      block_until(l, idle, [this] { return running == 0; });
      return std::move(fn);
    }

    uint64_t id = 0;  // set before the entry is published
    Listener fn;      // called only between enter() and leave()
    std::mutex mu;
    std::condition_variable idle;
    int running = 0;        // guarded by mu
    bool detached = false;  // guarded by mu
  };
  using Snapshot = std::vector<std::shared_ptr<Entry>>;

  void detach(uint64_t id) {
    std::shared_ptr<Entry> victim;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto next = std::make_shared<Snapshot>();
      for (const auto& entry : *current_) {
        if (entry->id == id) {
          victim = entry;
        } else {
          next->push_back(entry);
        }
      }
      current_ = next->empty() ? nullptr : std::move(next);
      count_.fetch_sub(1, std::memory_order_relaxed);
    }
    TDXSIM_CHECK(victim != nullptr, "Tracepoint::detach() of unknown listener {}", id);
    victim->retire();  // the returned closure dies here, on the detaching thread
  }

  mutable std::mutex mu_;
  std::shared_ptr<const Snapshot> current_;  // guarded by mu_; null when nobody listens
  uint64_t next_id_ = 1;                      // guarded by mu_
  AtomicWord count_;  // listeners in current_, readable without mu_
};

}  // namespace tdxsim
