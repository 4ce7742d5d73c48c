// The walker's A/D updates racing with KVM-style compare-and-swaps of the same leaf.
//
// The model: a KVM thread replaces the leaf generation by generation (the PFN encodes the
// generation; W toggles; every new value starts with A/D clear), passing through a
// not-present sentinel between generations, as KVM's FROZEN value does. Walker threads
// translate through the leaf in kHardware mode (one walker: the machine this runs on may
// have two cores). Each side records only what it saw itself:
//   - a walker, per generation, the A/D bits of the leaf its successful walks returned;
//   - KVM, per generation, the A/D bits of the value its successful CAS replaced.
// Afterwards every bit a walker reported for a generation must be in what KVM harvested
// from that generation (or in the final entry for the last one): no A/D bit is lost to a
// concurrent CAS. KVM's CAS from the sentinel must never fail: a walker never sets A/D in
// an entry that is not present.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

#include "base/atomic.h"
#include "platform/ept_entry.h"
#include "platform/eptp.h"
#include "platform/host_memory.h"
#include "platform/page_walk.h"

namespace tdxsim {
namespace {

constexpr Gpa kGpa{0x0080'8060'4567};
constexpr uint64_t kBasePfn = 0x10000;
constexpr uint64_t kAd = EptEntry::Accessed::kMask | EptEntry::Dirty::kMask;
// KVM's FROZEN_SPTE on EPT: not present, suppress-#VE, bits 5, 7, 8, 10.
constexpr uint64_t kSentinel = (uint64_t{1} << 63) | 0x5A0;

#ifdef TDXSIM_TSAN
constexpr uint64_t kGenerations = 20000;
#else
constexpr uint64_t kGenerations = 200000;
#endif
constexpr int kWalkers = 1;
// Under a loaded machine the generations stop early, but never before kMinGenerations and a
// walker's first success: every check holds for any count past those, however slowly the
// host schedules the threads.
constexpr auto kTimeBudget = std::chrono::seconds(3);
constexpr uint64_t kMinGenerations = 200;

uint64_t leaf_for(uint64_t gen) {
  return EptEntry{}
      .with_read(true)
      .with_write(gen % 2 == 0)
      .with_exec(true)
      .with_mem_type(EptMemType::kWB)
      .with_addr(Pfn{kBasePfn + gen}.hpa().raw())
      .raw();
}

uint64_t gen_of(uint64_t leaf) {
  return EptEntry{leaf}.addr() / kPageSize - kBasePfn;
}

TEST(PageWalkStress, AdBitsSurviveConcurrentLeafCompareExchange) {
  HostMemoryConfig cfg;
  cfg.bytes = 16 * kPageSize;
  HostMemory mem(cfg);
  std::vector<Hpa> tables;
  for (int i = 0; i < 4; ++i) tables.push_back(mem.alloc_frame()->hpa());
  const EptEntry table_entry = EptEntry{}.with_read(true).with_write(true).with_exec(true);
  for (unsigned l = 4; l >= 2; --l) {
    const Hpa slot = tables[4 - l] + uint64_t{kGpa.index(level_from(l))} * 8;
    mem.store(slot, kHostKey, table_entry.with_addr(tables[5 - l].raw()).raw(),
              std::memory_order_release);
  }
  const Hpa leaf_slot = tables[3] + uint64_t{kGpa.index(Level::k4K)} * 8;
  mem.store(leaf_slot, kHostKey, leaf_for(0), std::memory_order_release);
  const WalkContext ctx = Eptp::make(tables[0], 4, /*ad_enabled=*/true).walk_context(kHostKey);

  AtomicWord done;
  std::vector<std::vector<uint64_t>> reported(kWalkers, std::vector<uint64_t>(kGenerations + 1, 0));
  std::vector<uint64_t> successes(kWalkers, 0);
  std::atomic<bool> any_success{false};
  std::vector<std::thread> walkers;
  for (int w = 0; w < kWalkers; ++w) {
    walkers.emplace_back([&, w] {
      uint64_t last_gen = 0;
      for (uint64_t i = 0; done.load(std::memory_order_acquire) == 0; ++i) {
        AccessRequest access;
        access.type =
            (i + static_cast<uint64_t>(w)) % 2 == 0 ? AccessType::kWrite : AccessType::kRead;
        const WalkResult r = walk(mem, mem.layout(), ctx, kGpa, access, WalkMode::kHardware);
        if (!r) {
          // Only the sentinel (not present) or an odd, read-only generation can fault.
          const auto* v = std::get_if<EptViolation>(&r.error());
          ASSERT_NE(v, nullptr);
          EXPECT_EQ(v->level, Level::k4K);
          continue;
        }
        const EptEntry leaf{r->leaf};
        const uint64_t gen = gen_of(r->leaf);
        ASSERT_LE(gen, kGenerations);
        EXPECT_GE(gen, last_gen) << "a walk went back in time";
        last_gen = gen;
        EXPECT_EQ(r->hpa, Pfn{kBasePfn + gen}.hpa());
        EXPECT_TRUE(leaf.is_accessed());
        if (access.type == AccessType::kWrite) {
          EXPECT_TRUE(leaf.is_write());
          EXPECT_TRUE(leaf.is_dirty());
        }
        reported[static_cast<size_t>(w)][gen] |= r->leaf & kAd;
        ++successes[static_cast<size_t>(w)];
        any_success.store(true, std::memory_order_relaxed);
      }
    });
  }

  std::vector<uint64_t> harvested(kGenerations, 0);
  uint64_t lost_races = 0;
  uint64_t generations = 0;
  const auto deadline = std::chrono::steady_clock::now() + kTimeBudget;
  for (uint64_t gen = 0; gen < kGenerations; ++gen) {
    if (gen >= kMinGenerations && any_success.load(std::memory_order_relaxed) &&
        std::chrono::steady_clock::now() >= deadline) {
      break;
    }
    // Zap: the value replaced carries whatever the walkers set; a failed CAS may only be
    // due to a walker adding A/D. The yield between KVM's read and its CAS lets walks
    // land in that window even when both threads share one core.
    uint64_t cur = mem.load(leaf_slot, kHostKey, std::memory_order_acquire);
    const uint64_t before = cur;
    std::this_thread::yield();
    while (!mem.compare_exchange(leaf_slot, kHostKey, cur, kSentinel, std::memory_order_acq_rel)) {
      ++lost_races;
      ASSERT_EQ(cur & ~kAd, before & ~kAd) << "the leaf changed beyond A/D under KVM";
    }
    ASSERT_EQ(gen_of(cur), gen);
    harvested[gen] = cur & kAd;
    // A walker preempted between reading generation `gen` and updating its A/D resumes
    // here, with the sentinel in place: it must re-walk, not set bits in the sentinel.
    std::this_thread::yield();
    // Install the next generation: nobody may have touched the not-present sentinel.
    uint64_t expected = kSentinel;
    ASSERT_TRUE(mem.compare_exchange(leaf_slot, kHostKey, expected, leaf_for(gen + 1),
                                     std::memory_order_acq_rel))
        << std::hex << "sentinel became " << expected;
    generations = gen + 1;
  }
  done.store(1, std::memory_order_release);
  for (std::thread& t : walkers) t.join();

  const uint64_t final_value = mem.load(leaf_slot, kHostKey, std::memory_order_acquire);
  ASSERT_EQ(gen_of(final_value), generations);
  uint64_t total = 0;
  for (int w = 0; w < kWalkers; ++w) {
    const auto& rep = reported[static_cast<size_t>(w)];
    for (uint64_t gen = 0; gen < generations; ++gen) {
      EXPECT_EQ(rep[gen] & ~harvested[gen], 0u) << "A/D lost in generation " << gen;
    }
    EXPECT_EQ(rep[generations] & ~final_value, 0u) << "A/D lost in the final entry";
    total += successes[static_cast<size_t>(w)];
  }
  EXPECT_GT(total, 0u);
  EXPECT_GE(generations, kMinGenerations);
  EXPECT_EQ(mem.violation_count(), 0u);
  std::cout << "page_walk_stress: " << total << " successful walks over " << generations
            << " generations, " << lost_races << " KVM CAS retries after walker A/D\n";
}

}  // namespace
}  // namespace tdxsim
