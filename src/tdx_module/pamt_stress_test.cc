// Many threads lock and unlock PAMT entries of two sizes, shared and exclusive, as host and
// guest. Every attempt must answer at once (the test holds some entries for its whole run:
// an attempt that waited would hang it), exclusive holders must never overlap anyone on the
// same entry nor on the 2M entry above it, and data the locks guard must be published holder
// to holder (TSan checks the memory orders through the plain words below).
#include <array>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/atomic.h"
#include "base/wait.h"
#include "tdx_module/pamt.h"

namespace tdxsim {
namespace {

constexpr int kThreads = 6;
constexpr int kAttempts = 20000;
// The locks have no writer preference (nor have the module's): a 4K walker preempted while
// it holds its region shared makes every 2M exclusive attempt there busy for a time slice.
// So a thread goes on past kAttempts until each kind of acquisition has kMinEach successes,
// up to kMaxAttempts (a loaded 2-core machine under TSan starved the try-lock test's
// exclusive attempts completely once).
constexpr uint64_t kMinEach = 100;
constexpr int kMaxAttempts = 10 * kAttempts;
constexpr int kRegions = 4;          // 2M regions under test
constexpr int kFramesPerRegion = 4;  // 4K entries under test in each region
constexpr int kEntries = kRegions * kFramesPerRegion;
constexpr int kHeldRegion = 3;       // held exclusively at 2M for the whole run
constexpr int kHeldEntry = 5;        // held exclusively at 4K for the whole run (region 1)

Pfn entry_pfn(int e) {
  return Pfn{static_cast<uint64_t>(e / kFramesPerRegion) * 512 +
             static_cast<uint64_t>(e % kFramesPerRegion)};
}
Pfn region_pfn(int r) { return Pfn{static_cast<uint64_t>(r) * 512}; }

struct Holders {
  AtomicWord exclusive;
  AtomicWord shared;
};

struct Shared {
  Pamt pamt{kRegions * 512};
  std::array<Holders, kEntries> entry;
  std::array<Holders, kRegions> region;
  std::array<AtomicWord, kRegions> walkers_below;  // 4K holders inside each region
  std::array<uint64_t, kEntries> entry_value{};    // guarded by the entry's 4K lock
  std::array<uint64_t, kRegions> region_value{};   // guarded by the region's 2M lock
  Counter overlaps, acquired_4k_ex, acquired_4k_sh, acquired_2m_ex, acquired_2m_sh;
  Counter busy, busy_host_priority, sum_seen;
  Counter held_entry_attempts, held_region_attempts;
  Counter attempts;

  bool enough() const {
    return acquired_4k_ex.value() >= kMinEach && acquired_4k_sh.value() >= kMinEach &&
           acquired_2m_ex.value() >= kMinEach && acquired_2m_sh.value() >= kMinEach;
  }
};

void enter(Holders& h, bool exclusive, Counter& overlaps) {
  if (exclusive) {
    if (h.exclusive.fetch_add(1, std::memory_order_acq_rel) != 0) overlaps.add();
    if (h.shared.load(std::memory_order_acquire) != 0) overlaps.add();
  } else {
    h.shared.fetch_add(1, std::memory_order_acq_rel);
    if (h.exclusive.load(std::memory_order_acquire) != 0) overlaps.add();
  }
}
void leave(Holders& h, bool exclusive) {
  (exclusive ? h.exclusive : h.shared).fetch_sub(1, std::memory_order_acq_rel);
}

void count_busy(Shared& s, TryLockResult r) {
  (r == TryLockResult::kBusyHostPriority ? s.busy_host_priority : s.busy).add();
}

void attempt_4k(Shared& s, int e, Requester who, bool exclusive) {
  const int r = e / kFramesPerRegion;
  if (e == kHeldEntry) s.held_entry_attempts.add();
  if (r == kHeldRegion) s.held_region_attempts.add();
  auto l = s.pamt.lock(entry_pfn(e), Level::k4K, who, exclusive);
  if (!l) return count_busy(s, l.error());
  ASSERT_EQ(l->level(), Level::k4K);
  if (e == kHeldEntry || r == kHeldRegion) s.overlaps.add();  // must have been busy
  // The walk holds the 2M entry shared: no 2M holder may be exclusive meanwhile.
  s.walkers_below[r].fetch_add(1, std::memory_order_acq_rel);
  if (s.region[r].exclusive.load(std::memory_order_acquire) != 0) s.overlaps.add();
  enter(s.entry[e], exclusive, s.overlaps);
  s.sum_seen.add(s.region_value[r]);  // readable: the path holds the 2M entry shared
  if (exclusive) {
    ++s.entry_value[e];
    l->set_bepoch(l->bepoch() + 1);
    s.acquired_4k_ex.add();
  } else {
    s.sum_seen.add(s.entry_value[e] + l->bepoch());
    s.acquired_4k_sh.add();
  }
  leave(s.entry[e], exclusive);
  s.walkers_below[r].fetch_sub(1, std::memory_order_acq_rel);
}

void attempt_2m(Shared& s, int r, Requester who, bool exclusive) {
  if (r == kHeldRegion) s.held_region_attempts.add();
  auto l = s.pamt.lock(region_pfn(r), Level::k2M, who, exclusive);
  if (!l) return count_busy(s, l.error());
  ASSERT_EQ(l->level(), Level::k2M);
  if (r == kHeldRegion) s.overlaps.add();
  enter(s.region[r], exclusive, s.overlaps);
  if (exclusive) {
    // Exclusive at 2M keeps every 4K walk of the region out (they need it shared).
    if (s.walkers_below[r].load(std::memory_order_acquire) != 0) s.overlaps.add();
    ++s.region_value[r];
    for (int i = 0; i < kFramesPerRegion; ++i) {
      s.sum_seen.add(s.entry_value[r * kFramesPerRegion + i]);
    }
    s.acquired_2m_ex.add();
  } else {
    s.sum_seen.add(s.region_value[r]);
    s.acquired_2m_sh.add();
  }
  leave(s.region[r], exclusive);
}

TEST(PamtStress, LocksNeverBlockNeverOverlap) {
  Shared s;
  // Held for the whole run: every attempt on them must come back busy, at once.
  auto held_region = s.pamt.lock(region_pfn(kHeldRegion), Level::k2M, Requester::kHost, true);
  auto held_entry = s.pamt.lock(entry_pfn(kHeldEntry), Level::k4K, Requester::kHost, true);
  ASSERT_TRUE(held_region && held_entry);

  Notification go;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&s, &go, t] {
      go.wait();
      const Requester who = (t % 2 == 0) ? Requester::kHost : Requester::kGuest;
      uint64_t x = 0x9E37'79B9'7F4A'7C15ull * static_cast<uint64_t>(t + 1);
      int i = 0;
      for (; i < kMaxAttempts; ++i) {
        if (i >= kAttempts && s.enough()) break;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // A guest never asks exclusive (the module never does).
        const bool exclusive = who == Requester::kHost && (x & 3) == 0;
        if ((x >> 8) % 5 == 0) {
          attempt_2m(s, static_cast<int>((x >> 16) % kRegions), who, exclusive);
        } else {
          attempt_4k(s, static_cast<int>((x >> 16) % kEntries), who, exclusive);
        }
      }
      s.attempts.add(i);
    });
  }
  go.notify();
  for (auto& t : threads) t.join();
  held_entry->unlock();
  held_region->unlock();

  EXPECT_EQ(s.overlaps.value(), 0u);
  const uint64_t acquired = s.acquired_4k_ex.value() + s.acquired_4k_sh.value() +
                            s.acquired_2m_ex.value() + s.acquired_2m_sh.value();
  EXPECT_EQ(acquired + s.busy.value() + s.busy_host_priority.value(), s.attempts.value());
  EXPECT_TRUE(s.enough()) << "4K ex " << s.acquired_4k_ex.value() << ", 4K sh "
                          << s.acquired_4k_sh.value() << ", 2M ex " << s.acquired_2m_ex.value()
                          << ", 2M sh " << s.acquired_2m_sh.value();
  EXPECT_GT(s.held_entry_attempts.value(), 0u);
  EXPECT_GT(s.held_region_attempts.value(), 0u);

  // Every lock is free again, and the exclusive 4K holders' BEPOCH increments all landed.
  uint64_t bepochs = 0;
  uint64_t entry_writes = 0;
  for (int e = 0; e < kEntries; ++e) {
    auto l = s.pamt.lock(entry_pfn(e), Level::k4K, Requester::kHost, true);
    ASSERT_TRUE(l.has_value()) << e;
    bepochs += l->bepoch();
    entry_writes += s.entry_value[e];
  }
  for (int r = 0; r < kRegions; ++r) {
    EXPECT_TRUE(s.pamt.lock(region_pfn(r), Level::k2M, Requester::kHost, true).has_value()) << r;
  }
  EXPECT_EQ(bepochs, s.acquired_4k_ex.value());
  EXPECT_EQ(entry_writes, s.acquired_4k_ex.value());
  fmt::print("[ info ] 4K ex/sh {}/{}, 2M ex/sh {}/{}, busy {}, busy host priority {}\n",
             s.acquired_4k_ex.value(), s.acquired_4k_sh.value(), s.acquired_2m_ex.value(),
             s.acquired_2m_sh.value(), s.busy.value(), s.busy_host_priority.value());
}

}  // namespace
}  // namespace tdxsim
