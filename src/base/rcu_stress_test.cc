// RCU deferred free under fire: a writer keeps replacing a published heap node and frees the
// old one after a grace period while readers dereference whatever is published. Under ASan
// a premature free is a use-after-free report; under TSan the rcu.cc annotations must make
// every free happen-after the last read, or TSan reports a race on the node.
#include <cstdint>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/atomic.h"
#include "base/rcu.h"
#include "base/wait.h"

namespace tdxsim {
namespace {

constexpr int kReaders = 3;
constexpr uint64_t kReadsPerReader = 10000;
constexpr uint64_t kSynchronizeEvery = 250;  // also exercise rcu_synchronize + direct delete

// A page-table-page stand-in: every field is derived from gen, so a reader can tell a
// consistent node from a torn or recycled one.
struct Node {
  explicit Node(uint64_t g) : gen(g) {
    for (uint64_t i = 0; i < kWords; ++i) words[i] = g * kWords + i;
  }
  static constexpr uint64_t kWords = 8;
  uint64_t gen;
  uint64_t words[kWords];
};

uint64_t to_word(Node* n) { return reinterpret_cast<uintptr_t>(n); }
Node* to_node(uint64_t w) { return reinterpret_cast<Node*>(static_cast<uintptr_t>(w)); }

// One read-side section: returns the generation seen, counting inconsistencies. A
// lingering reader yields between loading the pointer and reading through it, giving the
// writer time to replace (and, were RCU broken, free) the node under it.
uint64_t read_once(const AtomicWord& slot, Counter& bad, bool linger) {
  RcuReadGuard g;
  const Node* n = to_node(slot.load(std::memory_order_acquire));
  if (linger) std::this_thread::yield();
  for (uint64_t i = 0; i < Node::kWords; ++i) {
    if (n->words[i] != n->gen * Node::kWords + i) bad.add();
  }
  return n->gen;
}

// The writer keeps publishing for as long as any reader is still reading, so every read
// races some publish and free.
TEST(RcuStress, DeferredFreeNeverRacesAReader) {
  AtomicWord slot{to_word(new Node(0))};
  AtomicWord readers_left{kReaders};
  Counter bad;
  Counter regressions;
  Counter freed;
  Notification go;

  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&] {
      RcuThread rcu;
      go.wait();
      uint64_t last = 0;
      for (uint64_t i = 0; i < kReadsPerReader; ++i) {
        uint64_t gen;
        const bool linger = i % 40 == 0;
        if (i % 7 == 0) {
          RcuReadGuard outer;  // nested sections protect as one
          gen = read_once(slot, bad, linger);
        } else {
          gen = read_once(slot, bad, linger);
        }
        if (gen < last) regressions.add();
        last = gen;
      }
      readers_left.fetch_sub(1, std::memory_order_release);
    });
  }

  uint64_t published = 0;
  {
    RcuThread rcu;
    go.notify();
    while (readers_left.load(std::memory_order_acquire) != 0) {
      ++published;
      Node* old = to_node(slot.exchange(to_word(new Node(published)), std::memory_order_acq_rel));
      if (published % kSynchronizeEvery == 0) {
        rcu_synchronize();
        delete old;
        freed.add();
      } else {
        rcu_defer([old, &freed] {
          delete old;
          freed.add();
        });
      }
    }
  }
  for (auto& t : readers) t.join();
  rcu_barrier();

  EXPECT_EQ(freed.value(), published);
  EXPECT_GT(published, 0u);
  EXPECT_EQ(bad.value(), 0u);
  EXPECT_EQ(regressions.value(), 0u);
  delete to_node(slot.load(std::memory_order_acquire));
}

}  // namespace
}  // namespace tdxsim
