// Attach and detach race with emitters. A detached listener must never run again: each one
// captures a heap object that is freed right after its Subscription is reset, so a late
// call is a use-after-free under ASan and a race under TSan.
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/atomic.h"
#include "base/trace.h"

namespace tdxsim {
namespace {

struct Tick {
  uint64_t n;
};

TEST(TracepointStress, DetachRacesEmit) {
  constexpr int kEmitters = 2;
  constexpr int kSubscriptions = 500;
  Tracepoint<Tick> tp;
  AtomicWord stop{0};
  Counter emitted;
  Counter lazily_built;
  std::vector<std::thread> emitters;
  for (int e = 0; e < kEmitters; ++e) {
    emitters.emplace_back([&] {
      uint64_t n = 0;
      while (stop.load(std::memory_order_acquire) == 0) {
        tp.emit(Tick{n++});
        tp.emit_lazy([&] {
          lazily_built.add();
          return Tick{n};
        });
        emitted.add();
      }
    });
  }

  uint64_t delivered = 0;
  for (int i = 0; i < kSubscriptions; ++i) {
    auto seen = std::make_unique<Counter>();
    auto sub = tp.attach([c = seen.get()](const Tick&) { c->add(); });
    // Now and then, make sure emits really are in flight when the detach comes.
    if (i % 10 == 0) {
      while (seen->value() == 0) std::this_thread::yield();
    }
    sub.reset();
    delivered += seen->value();
    seen.reset();  // a listener still running now would touch freed memory
  }
  stop.store(1, std::memory_order_release);
  for (auto& t : emitters) t.join();

  EXPECT_FALSE(tp.enabled());
  EXPECT_GT(emitted.value(), 0u);
  EXPECT_GE(delivered, uint64_t{kSubscriptions} / 10);
  EXPECT_GT(lazily_built.value(), 0u);
}

}  // namespace
}  // namespace tdxsim
