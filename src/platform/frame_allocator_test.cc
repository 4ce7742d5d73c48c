#include "platform/frame_allocator.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

namespace tdxsim {
namespace {

struct Fixture {
  Fixture(ReusePolicy policy, uint64_t frames, uint64_t seed = 1) : alloc(policy, frames, seed) {}
  std::vector<uint64_t> take_n(uint64_t n) {
    std::vector<uint64_t> out;
    for (uint64_t i = 0; i < n; ++i) {
      const std::optional<uint64_t> pfn = alloc.take();
      EXPECT_TRUE(pfn.has_value()) << "take #" << i;
      if (pfn) out.push_back(*pfn);
    }
    return out;
  }
  FrameAllocator alloc;
};

std::vector<uint64_t> iota_vec(uint64_t n) {
  std::vector<uint64_t> v(n);
  std::iota(v.begin(), v.end(), uint64_t{0});
  return v;
}

class EveryPolicy : public ::testing::TestWithParam<ReusePolicy> {};

TEST_P(EveryPolicy, HandsOutEveryFrameOnceThenExhausts) {
  Fixture f(GetParam(), 300);
  std::vector<uint64_t> got = f.take_n(300);
  EXPECT_EQ(f.alloc.free_count(), 0u);
  EXPECT_FALSE(f.alloc.take().has_value());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, iota_vec(300));
  f.alloc.give(17);
  EXPECT_EQ(f.alloc.free_count(), 1u);
  EXPECT_EQ(f.alloc.take(), std::optional<uint64_t>{17});
  EXPECT_FALSE(f.alloc.take().has_value());
}

INSTANTIATE_TEST_SUITE_P(FrameAllocator, EveryPolicy,
                         ::testing::Values(ReusePolicy::kLastFreedFirst,
                                           ReusePolicy::kFirstFreedFirst,
                                           ReusePolicy::kLowestFirst, ReusePolicy::kRandom));

TEST(FrameAllocator, InitiallyAscendingExceptRandom) {
  for (ReusePolicy p : {ReusePolicy::kLastFreedFirst, ReusePolicy::kFirstFreedFirst,
                        ReusePolicy::kLowestFirst}) {
    Fixture f(p, 1000);
    EXPECT_EQ(f.take_n(1000), iota_vec(1000)) << static_cast<int>(p);
  }
  Fixture r(ReusePolicy::kRandom, 1000);
  EXPECT_NE(r.take_n(1000), iota_vec(1000));
}

TEST(FrameAllocator, LastFreedFirstIsLifoBeforeUnusedFrames) {
  Fixture f(ReusePolicy::kLastFreedFirst, 10);
  f.take_n(5);  // 0..4
  f.alloc.give(1);
  f.alloc.give(3);
  f.alloc.give(2);
  EXPECT_EQ(f.take_n(5), (std::vector<uint64_t>{2, 3, 1, 5, 6}));
}

TEST(FrameAllocator, FirstFreedFirstIsFifoBehindUnusedFrames) {
  Fixture f(ReusePolicy::kFirstFreedFirst, 8);
  f.take_n(4);  // 0..3
  f.alloc.give(2);
  f.alloc.give(0);
  // Never-used frames count as freed at start-up, so they come first.
  EXPECT_EQ(f.take_n(5), (std::vector<uint64_t>{4, 5, 6, 7, 2}));
  f.alloc.give(5);
  f.alloc.give(2);
  EXPECT_EQ(f.take_n(3), (std::vector<uint64_t>{0, 5, 2}));
  EXPECT_FALSE(f.alloc.take().has_value());
}

TEST(FrameAllocator, FirstFreedFirstRingWraps) {
  Fixture f(ReusePolicy::kFirstFreedFirst, 3);
  f.take_n(3);
  f.alloc.give(1);
  f.alloc.give(0);
  f.alloc.give(2);  // the ring is full
  EXPECT_EQ(f.alloc.take(), std::optional<uint64_t>{1});
  f.alloc.give(1);  // lands in the slot the first take emptied
  EXPECT_EQ(f.take_n(3), (std::vector<uint64_t>{0, 2, 1}));
  EXPECT_FALSE(f.alloc.take().has_value());
}

TEST(FrameAllocator, LowestFirstAcrossSummaryLevels) {
  // 300,000 frames: three bitmap levels plus the top word.
  constexpr uint64_t kFrames = 300'000;
  Fixture f(ReusePolicy::kLowestFirst, kFrames);
  f.take_n(280'000);
  std::vector<uint64_t> freed;
  for (uint64_t pfn = 7; pfn < 280'000; pfn += 4099) freed.push_back(pfn);
  freed.push_back(262'143);
  freed.push_back(262'144);
  freed.push_back(4095);
  freed.push_back(4096);
  std::vector<uint64_t> shuffled = freed;
  std::reverse(shuffled.begin(), shuffled.end());
  for (uint64_t pfn : shuffled) f.alloc.give(pfn);
  std::sort(freed.begin(), freed.end());
  EXPECT_EQ(f.take_n(freed.size()), freed);
  EXPECT_EQ(f.alloc.take(), std::optional<uint64_t>{280'000});
  // Freed frames below the bump index win over it.
  f.alloc.give(5);
  EXPECT_EQ(f.alloc.take(), std::optional<uint64_t>{5});
  EXPECT_EQ(f.alloc.take(), std::optional<uint64_t>{280'001});
}

TEST(FrameAllocator, RandomIsSeededAndUniformish) {
  Fixture a(ReusePolicy::kRandom, 5000, 42);
  Fixture b(ReusePolicy::kRandom, 5000, 42);
  Fixture c(ReusePolicy::kRandom, 5000, 43);
  const std::vector<uint64_t> sa = a.take_n(2500);
  EXPECT_EQ(sa, b.take_n(2500));
  EXPECT_NE(sa, c.take_n(2500));
  // Frees feed back into the same reproducible stream.
  for (uint64_t i = 0; i < 2500; i += 2) {
    a.alloc.give(sa[i]);
    b.alloc.give(sa[i]);
  }
  EXPECT_EQ(a.take_n(3750), b.take_n(3750));
  EXPECT_FALSE(a.alloc.take().has_value());

  // Uniform choice: the first pick lands in each tenth of memory about equally often.
  std::vector<int> buckets(10, 0);
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    Fixture r(ReusePolicy::kRandom, 1000, seed);
    ++buckets[*r.alloc.take() / 100];
  }
  for (int n : buckets) {
    EXPECT_GT(n, 120);
    EXPECT_LT(n, 280);
  }
}

TEST(FrameAllocator, ResidentBytesStayLazy) {
  Fixture f(ReusePolicy::kRandom, uint64_t{1} << 24);
  EXPECT_EQ(f.alloc.resident_bytes(), 0u);
  f.take_n(10);
  EXPECT_LE(f.alloc.resident_bytes(), 10u * 4096);
  Fixture l(ReusePolicy::kLowestFirst, uint64_t{1} << 24);
  l.take_n(100);
  EXPECT_EQ(l.alloc.resident_bytes(), 0u);
  l.alloc.give(3);
  EXPECT_GT(l.alloc.resident_bytes(), 0u);
  EXPECT_LE(l.alloc.resident_bytes(), 5u * 4096);
  // The stack and the ring: a page for the frames freed, none for those never used.
  for (ReusePolicy p : {ReusePolicy::kLastFreedFirst, ReusePolicy::kFirstFreedFirst}) {
    Fixture q(p, uint64_t{1} << 24);
    q.take_n(1000);
    EXPECT_EQ(q.alloc.resident_bytes(), 0u);
    for (uint64_t pfn = 0; pfn < 100; ++pfn) q.alloc.give(pfn);
    EXPECT_EQ(q.alloc.resident_bytes(), 4096u);
  }
}

}  // namespace
}  // namespace tdxsim
