// Concurrency of HostMemory: the allocator under contention, lock-free word atomics (the
// model of KVM's SPTE compare-and-swaps racing with the walker's A/D updates), and the
// installation race of word storage. Run under TSan and ASan as well.
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/atomic.h"
#include "platform/host_memory.h"

namespace tdxsim {
namespace {

constexpr int kThreads = 4;
constexpr KeyId kTd{1};

Hpa word_at(Pfn pfn, unsigned i) { return pfn.hpa() + uint64_t{i} * 8; }

// A reusable spinning barrier (threads must start each round together for the races to
// happen at all).
class SpinBarrier {
 public:
  explicit SpinBarrier(uint64_t n) : n_(n) {}
  void arrive_and_wait() {
    const uint64_t gen = gen_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      arrived_.store(0, std::memory_order_relaxed);
      gen_.store(gen + 1, std::memory_order_release);
      return;
    }
    while (gen_.load(std::memory_order_acquire) == gen) std::this_thread::yield();
  }

 private:
  const uint64_t n_;
  AtomicWord arrived_;
  AtomicWord gen_;
};

template <typename F>
void run_threads(F&& body) {
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back([&body, t] { body(t); });
  for (std::thread& th : threads) th.join();
}

class AllocatorStress : public ::testing::TestWithParam<ReusePolicy> {};

TEST_P(AllocatorStress, NoFrameIsHandedOutTwice) {
  HostMemoryConfig cfg;
  cfg.bytes = 256 * kPageSize;
  cfg.reuse = GetParam();
  HostMemory mem(cfg);
  const uint64_t frames = mem.total_frames();
  // owner[pfn]: 0, or the id + 1 of the thread that holds the frame.
  auto owner = std::make_unique<AtomicWord[]>(frames);
  AtomicWord double_handouts;
  constexpr int kRounds = 2000;
  run_threads([&](int t) {
    const uint64_t me = static_cast<uint64_t>(t) + 1;
    std::vector<Pfn> held;
    for (int r = 0; r < kRounds; ++r) {
      // Take a few, sometimes until memory runs out, then give most back.
      const int want = (r % 50 == 0) ? 1000 : 1 + (r * 7 + t) % 9;
      for (int i = 0; i < want; ++i) {
        const std::optional<Pfn> p = mem.alloc_frame();
        if (!p) break;
        uint64_t expected = 0;
        if (!owner[p->raw()].compare_exchange(expected, me, std::memory_order_acq_rel)) {
          double_handouts.fetch_add(1, std::memory_order_relaxed);
        }
        // Word storage is installed and torn down with the frame: contents must be ours.
        mem.write(word_at(*p, (r + i) % 512), kHostKey, me << 32 | static_cast<uint64_t>(r));
        held.push_back(*p);
      }
      while (held.size() > 2) {
        const Pfn p = held.back();
        held.pop_back();
        for (unsigned w = 0; w < 512; w += 64) {
          const uint64_t v = mem.read(word_at(p, w), kHostKey).value;
          if (v != 0) {
            EXPECT_EQ(v >> 32, me);
          }
        }
        uint64_t expected = me;
        EXPECT_TRUE(owner[p.raw()].compare_exchange(expected, 0, std::memory_order_acq_rel));
        mem.free_frame(p);
      }
    }
    for (const Pfn p : held) {
      owner[p.raw()].store(0, std::memory_order_release);
      mem.free_frame(p);
    }
  });
  EXPECT_EQ(double_handouts.load(std::memory_order_relaxed), 0u);
  EXPECT_EQ(mem.free_frame_count(), frames);
}

INSTANTIATE_TEST_SUITE_P(HostMemory, AllocatorStress,
                         ::testing::Values(ReusePolicy::kLastFreedFirst,
                                           ReusePolicy::kFirstFreedFirst,
                                           ReusePolicy::kLowestFirst, ReusePolicy::kRandom));

TEST(HostMemoryStress, CasIncrementsAreExact) {
  HostMemoryConfig cfg;
  cfg.bytes = 16 * kPageSize;
  HostMemory mem(cfg);
  const Pfn p = *mem.alloc_frame();
  mem.set_key(p, kTd);
  mem.fill(p, kTd, 0);
  constexpr int kIncrements = 20000;
  // Words in different chunks, so first-write installation races are in the mix too.
  constexpr unsigned kWords[] = {0, 65, 130, 511};
  run_threads([&](int) {
    for (int i = 0; i < kIncrements; ++i) {
      const Hpa at = word_at(p, kWords[i % 4]);
      uint64_t cur = mem.load(at, kTd, std::memory_order_relaxed);
      while (!mem.compare_exchange(at, kTd, cur, cur + 1, std::memory_order_acq_rel)) {
      }
    }
  });
  uint64_t sum = 0;
  for (unsigned w : kWords) sum += mem.read(word_at(p, w), kTd).value;
  EXPECT_EQ(sum, uint64_t{kThreads} * kIncrements);
  EXPECT_EQ(mem.violation_count(), 0u);
}

// Hardware A/D updates (locked OR by the walker) racing with KVM's compare-and-swap of the
// same SPTE: neither side may lose the other's bits.
TEST(HostMemoryStress, FetchOrRacingCompareExchangeLosesNoBits) {
  HostMemoryConfig cfg;
  cfg.bytes = 16 * kPageSize;
  HostMemory mem(cfg);
  const Pfn p = *mem.alloc_frame();
  const Hpa spte = word_at(p, 17);
  constexpr int kCasUpdates = 30000;
  constexpr uint64_t kCounterUnit = uint64_t{1} << 40;  // KVM's side: bits 63:40
  AtomicWord done;
  std::thread walker([&] {
    // 40 distinct bits, OR-ed over and over until KVM's side finishes.
    uint64_t rounds = 0;
    do {
      for (unsigned b = 0; b < 40; ++b) {
        const uint64_t old = mem.fetch_or(spte, kHostKey, uint64_t{1} << b,
                                          std::memory_order_relaxed);
        if (rounds > 0) {
          EXPECT_NE(old & (uint64_t{1} << b), 0u) << b;  // never cleared
        }
      }
      ++rounds;
    } while (done.load(std::memory_order_acquire) == 0);
  });
  std::vector<std::thread> kvm;
  for (int t = 0; t < kThreads - 1; ++t) {
    kvm.emplace_back([&] {
      for (int i = 0; i < kCasUpdates; ++i) {
        uint64_t cur = mem.load(spte, kHostKey, std::memory_order_acquire);
        while (!mem.compare_exchange(spte, kHostKey, cur, cur + kCounterUnit,
                                     std::memory_order_acq_rel)) {
        }
      }
    });
  }
  for (std::thread& t : kvm) t.join();
  done.store(1, std::memory_order_release);
  walker.join();
  const uint64_t v = mem.load(spte, kHostKey, std::memory_order_acquire);
  EXPECT_EQ(v & (kCounterUnit - 1), kCounterUnit - 1);
  EXPECT_EQ(v >> 40, uint64_t{kThreads - 1} * kCasUpdates);
}

TEST(HostMemoryStress, ConcurrentFirstWritesIntoOneChunk) {
  constexpr int kRounds = 1500;
  // A fresh frame each round: word storage stays with a frame for life, so a reused one
  // would have its chunks installed already.
  HostMemoryConfig cfg;
  cfg.bytes = kRounds * kPageSize;
  HostMemory mem(cfg);
  SpinBarrier barrier(kThreads + 1);
  std::optional<Pfn> frame;  // published to the writers by the barrier
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        barrier.arrive_and_wait();  // frame ready
        const Pfn p = *frame;
        // Every thread's first write lands in the same, not yet installed chunk (and
        // half the rounds in a frame without word storage at all).
        const unsigned chunk = static_cast<unsigned>(r % 8);
        for (unsigned k = 0; k < 4; ++k) {
          const unsigned w = chunk * 64 + static_cast<unsigned>(t) * 4 + k;
          mem.write(word_at(p, w), kTd, uint64_t{1000} * static_cast<uint64_t>(r) + w);
        }
        // Readers meanwhile see the fill or a written value, nothing else.
        for (unsigned w = chunk * 64; w < chunk * 64 + 64; ++w) {
          const uint64_t v = mem.read(word_at(p, w), kTd).value;
          if (v != 0xf111) {
            EXPECT_EQ(v, uint64_t{1000} * static_cast<uint64_t>(r) + w);
          }
        }
        barrier.arrive_and_wait();  // writes done
      }
    });
  }
  for (int r = 0; r < kRounds; ++r) {
    const Pfn p = *mem.alloc_frame();
    mem.set_key(p, kTd);
    mem.fill(p, kTd, 0xf111);
    if (r % 2 == 1) mem.write(word_at(p, (r % 8 + 1) % 8 * 64), kTd, 0xf111);  // a slot exists
    frame = p;
    barrier.arrive_and_wait();
    barrier.arrive_and_wait();
    const unsigned chunk = static_cast<unsigned>(r % 8);
    for (unsigned w = chunk * 64; w < chunk * 64 + 64; ++w) {
      const bool written = w - chunk * 64 < kThreads * 4;
      EXPECT_EQ(mem.read(word_at(p, w), kTd).value,
                written ? uint64_t{1000} * static_cast<uint64_t>(r) + w : 0xf111u)
          << "round " << r << " word " << w;
    }
    mem.wbinvd_frame(p, kTd);
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(mem.violation_count(), 0u);
}

// A hostile host frees a frame the module still walks, then reallocates and writes it
// over and over: the walker's words are never freed under it (ASan), and the host's writes
// into the TD's frame are reported.
TEST(HostMemoryStress, HostReusesAFrameTheModuleStillWalks) {
  HostMemoryConfig cfg;
  cfg.bytes = 64 * kPageSize;
  HostMemory mem(cfg);
  const Pfn p = *mem.alloc_frame();
  mem.set_key(p, kTd);
  mem.fill(p, kTd, 0);
  mem.write(word_at(p, 1), kTd, 0);  // word storage, which the walker's atomics use
  mem.free_frame(p);
  AtomicWord done;
  std::thread walker([&] {
    uint64_t n = 0;
    do {
      const Hpa at = word_at(p, static_cast<unsigned>(n++ % 512));
      uint64_t cur = mem.load(at, kTd, std::memory_order_acquire);
      mem.compare_exchange(at, kTd, cur, cur + 1, std::memory_order_acq_rel);
    } while (done.load(std::memory_order_acquire) == 0);
  });
  AtomicWord got_it;
  run_threads([&](int t) {
    for (int r = 0; r < 2000; ++r) {
      const std::optional<Pfn> q = mem.alloc_frame();
      if (!q) continue;
      if (*q == p) got_it.fetch_add(1, std::memory_order_relaxed);
      mem.write(word_at(*q, static_cast<unsigned>(r * 7 + t) % 512), kHostKey,
                static_cast<uint64_t>(r));
      mem.free_frame(*q);
    }
  });
  done.store(1, std::memory_order_release);
  walker.join();
  ASSERT_GT(got_it.load(std::memory_order_relaxed), 0u);  // last freed, first handed out
  EXPECT_EQ(mem.key(p), kTd);
  EXPECT_EQ(mem.violations().front().kind, MemViolationKind::kIntegrityPoison);
  EXPECT_EQ(mem.violations().front().owner, kTd);
  EXPECT_EQ(mem.free_frame_count(), mem.total_frames());
}

// Frames change hands while other threads write back a key's lines and re-key their own
// frames: the info word's CAS loops must not lose a flag.
TEST(HostMemoryStress, WbinvdKeyRacesWithOwnersWriting) {
  HostMemoryConfig cfg;
  cfg.bytes = 512 * kPageSize;
  HostMemory mem(cfg);
  AtomicWord done;
  std::thread flusher([&] {
    do {
      mem.wbinvd_key(kTd);
    } while (done.load(std::memory_order_acquire) == 0);
  });
  run_threads([&](int t) {
    for (int r = 0; r < 400; ++r) {
      const Pfn p = *mem.alloc_frame();
      mem.set_key(p, kTd);
      mem.fill(p, kTd, static_cast<uint64_t>(t));
      mem.write(word_at(p, 3), kTd, static_cast<uint64_t>(r));
      EXPECT_EQ(mem.key(p), kTd);
      EXPECT_EQ(mem.read(word_at(p, 3), kTd).value, static_cast<uint64_t>(r));
      mem.wbinvd_frame(p, kTd);
      mem.set_key(p, kHostKey);
      mem.free_frame(p);
    }
  });
  done.store(1, std::memory_order_release);
  flusher.join();
  EXPECT_EQ(mem.violation_count(), 0u);
  EXPECT_EQ(mem.free_frame_count(), mem.total_frames());
}

}  // namespace
}  // namespace tdxsim
