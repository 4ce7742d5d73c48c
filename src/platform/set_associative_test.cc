#include "platform/set_associative.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace tdxsim {
namespace {

struct E {
  uint64_t page = 0;
  uint64_t tag = 0;
};

struct Fixture {
  explicit Fixture(uint32_t capacity, uint64_t seed = 1) : a(capacity), rng(seed) {}
  // Returns: whether it evicted.
  bool put(uint64_t page, uint64_t tag = 0) {
    bool evicted = false;
    a.insert(
        page, tag, E{page, tag}, [&](const E& x) { return x.page == page && x.tag == tag; }, rng(),
        [&](const E&) { evicted = true; });
    return evicted;
  }
  bool has(uint64_t page, uint64_t tag = 0) {
    return a.find(page, tag, [&](const E& x) { return x.page == page && x.tag == tag; }) != nullptr;
  }
  SetAssociative<E> a;
  std::mt19937_64 rng;
};

TEST(SetAssociative, ShapeFollowsTheCapacity) {
  EXPECT_EQ(SetAssociative<E>(1536).sets(), 128u);
  EXPECT_EQ(SetAssociative<E>(1536).ways(), 12u);
  EXPECT_EQ(SetAssociative<E>(2048).ways(), 16u);
  EXPECT_EQ(SetAssociative<E>(64).sets(), 4u);
  EXPECT_EQ(SetAssociative<E>(8).sets(), 1u) << "too small to split: fully associative";
  EXPECT_EQ(SetAssociative<E>(8).ways(), 8u);
  EXPECT_EQ(SetAssociative<E>(1000).sets(), 8u);
  EXPECT_EQ(SetAssociative<E>(1000).ways(), 125u);
}

TEST(SetAssociative, PagesSharingIndexBitsCompeteForOneSet) {
  Fixture f(1536);
  // 13 pages 128 apart share a set of 12 ways: the 13th fill evicts though 1523 slots are free.
  for (uint64_t i = 0; i < 12; ++i) EXPECT_FALSE(f.put(i * 128));
  EXPECT_TRUE(f.put(12 * 128));
  EXPECT_EQ(f.a.size(), 12u);
  // Consecutive pages spread over the sets: the whole capacity fills without an eviction.
  Fixture g(1536);
  for (uint64_t i = 0; i < 1536; ++i) EXPECT_FALSE(g.put(i));
  EXPECT_EQ(g.a.size(), 1536u);
  EXPECT_TRUE(g.put(1536));
}

TEST(SetAssociative, RefillReplacesInPlace) {
  Fixture f(64);
  EXPECT_FALSE(f.put(5, 1));
  EXPECT_FALSE(f.a.insert(
      5, 1, E{5, 1}, [](const E& x) { return x.tag == 1; }, 0, [](const E&) {}))
      << "the same key: no new entry";
  EXPECT_FALSE(f.put(5, 2)) << "another tag is another entry";
  EXPECT_EQ(f.a.size(), 2u);
  EXPECT_TRUE(f.a.erase(5, 1, [](const E& x) { return x.tag == 1; }));
  EXPECT_FALSE(f.has(5, 1));
  EXPECT_TRUE(f.has(5, 2));
  EXPECT_EQ(f.a.size(), 1u);
}

TEST(SetAssociative, UnboundedGrowsAndKeepsEverything) {
  Fixture f(0);
  // One page number under many tags, and many page numbers that share their low bits: a
  // hash-indexed array spreads both.
  for (uint64_t t = 0; t < 3000; ++t) EXPECT_FALSE(f.put(7, t));
  for (uint64_t i = 0; i < 5000; ++i) EXPECT_FALSE(f.put(i << 20, 1));
  EXPECT_EQ(f.a.size(), 8000u);
  for (uint64_t t = 0; t < 3000; ++t) ASSERT_TRUE(f.has(7, t));
  for (uint64_t i = 0; i < 5000; ++i) ASSERT_TRUE(f.has(i << 20, 1));
  EXPECT_EQ(f.a.erase_if([](const E& x) { return x.tag == 1; }), 5001u);
  EXPECT_EQ(f.a.size(), 2999u);
}

TEST(SetAssociative, TheSeedChoosesTheVictim) {
  const auto survivors = [](uint64_t seed) {
    Fixture f(8, seed);
    for (uint64_t i = 0; i < 40; ++i) f.put(i);
    std::set<uint64_t> pages;
    f.a.for_each([&](const E& e) { pages.insert(e.page); });
    EXPECT_EQ(pages.size(), 8u);
    return pages;
  };
  EXPECT_EQ(survivors(3), survivors(3));
  EXPECT_NE(survivors(3), survivors(4));
}

}  // namespace
}  // namespace tdxsim
