#include "base/rcu.h"

#include <urcu/urcu-memb.h>

#include "base/check.h"
#include "base/sched.h"
#include "base/wait.h"

#if defined(TDXSIM_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace tdxsim {
namespace {

// Per-thread RCU state, touched only by its own thread.
constinit thread_local unsigned t_registrations = 0;  // live RcuThreads
constinit thread_local unsigned t_read_depth = 0;     // nested RcuReadGuards
// Set while a deferred callback runs: liburcu registers its call_rcu thread itself.
constinit thread_local bool t_in_callback = false;

#if defined(TDXSIM_TSAN)
// A tool-annotation token, never read or written: its address names a TSan sync object.
char grace_period_token;
void tsan_release(void* p) { __tsan_release(p); }
void tsan_acquire(void* p) { __tsan_acquire(p); }
void* grace_period() { return &grace_period_token; }
#else
void tsan_release(void*) {}
void tsan_acquire(void*) {}
void* grace_period() { return nullptr; }
#endif

// A deferred closure. Deriving from rcu_head (rather than embedding it) lets the callback
// get back to the node with a static_cast, with no offsetof/container_of on a
// non-standard-layout type.
struct DeferNode : rcu_head {
  explicit DeferNode(std::function<void()> f) : rcu_head{}, fn(std::move(f)) {}
  std::function<void()> fn;
};

void run_deferred(rcu_head* head) {
  auto* node = static_cast<DeferNode*>(head);
  // A grace period has elapsed since call_rcu: every reader that could see the object has
  // unlocked, and the deferring thread's writes (the closure itself) happened before.
  tsan_acquire(grace_period());
  tsan_acquire(node);
  t_in_callback = true;
  node->fn();
  delete node;
  t_in_callback = false;
}

}  // namespace

RcuThread::RcuThread() : registered_here_(t_registrations == 0 && !t_in_callback) {
  if (registered_here_) {
    urcu_memb_init();  // idempotent; the library's constructor normally did it
    urcu_memb_register_thread();
  }
  ++t_registrations;
}

RcuThread::~RcuThread() {
  --t_registrations;
  if (registered_here_) {
    TDXSIM_CHECK(t_read_depth == 0,
                 "RcuThread destroyed inside {} RCU read-side section(s) of its thread",
                 t_read_depth);
    urcu_memb_unregister_thread();
  }
}

RcuReadGuard::RcuReadGuard() {
  TDXSIM_CHECK(rcu_thread_registered(),
               "RCU read-side section on a thread without an RcuThread registration");
  ++t_read_depth;
  if (sched_active()) {
    sched_rcu_read_lock();
    return;
  }
  urcu_memb_read_lock();
}

RcuReadGuard::~RcuReadGuard() {
  --t_read_depth;
  if (sched_active()) {
    sched_rcu_read_unlock();
    return;
  }
  // Before the unlock: everything this section read is ordered before any grace period
  // that waits for it.
  tsan_release(grace_period());
  urcu_memb_read_unlock();
}

void rcu_synchronize() {
  TDXSIM_CHECK(t_read_depth == 0, "rcu_synchronize() inside an RCU read-side section "
               "would wait for itself");
  TDXSIM_CHECK(!t_in_callback, "rcu_synchronize() from an RCU callback");
  if (sched_active()) {
    sched_rcu_synchronize();
    return;
  }
  urcu_memb_synchronize_rcu();
  tsan_acquire(grace_period());
}

void rcu_defer(std::function<void()> fn) {
  TDXSIM_CHECK(rcu_thread_registered(), "rcu_defer() on a thread without an RcuThread "
               "registration (call_rcu needs a registered thread)");
  TDXSIM_CHECK(fn != nullptr, "rcu_defer() of an empty function");
  if (sched_active()) {
    sched_rcu_defer([fn = std::move(fn)] {
      t_in_callback = true;
      fn();
      t_in_callback = false;
    });
    return;
  }
  auto* node = new DeferNode(std::move(fn));
  tsan_release(node);
  urcu_memb_call_rcu(node, &run_deferred);
}

void rcu_barrier() {
  TDXSIM_CHECK(t_read_depth == 0, "rcu_barrier() inside an RCU read-side section");
  TDXSIM_CHECK(!t_in_callback, "rcu_barrier() from an RCU callback would wait for itself");
  if (sched_active()) {
    sched_rcu_barrier();
    return;
  }
  // Not urcu_memb_barrier(): it hands blocks it calloc()s to the call_rcu thread, which
  // free()s them, through liburcu's uninstrumented queue, and TSan reports that as a race
  // we cannot annotate. tdxsim uses only liburcu's default call_rcu thread (it never
  // creates per-CPU or per-thread ones), which runs callbacks one at a time in call_rcu
  // order, so a sentinel queued now runs after every callback queued before it; the
  // Notification then orders all of them before our return, for TSan too.
  RcuThread rcu;  // call_rcu needs a registered thread; nests if already registered
  Notification sentinel_ran;
  rcu_defer([&sentinel_ran] { sentinel_ran.notify(); });
  sentinel_ran.wait();
}

bool rcu_read_held() { return t_read_depth > 0; }

bool rcu_thread_registered() { return t_registrations > 0 || t_in_callback; }

}  // namespace tdxsim
