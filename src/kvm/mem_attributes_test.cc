#include "kvm/mem_attributes.h"

#include <gtest/gtest.h>

#include "kvm/gfn_range.h"

namespace tdxsim {
namespace {

using Range = MemAttributes::Range;
constexpr uint64_t kP = kMemAttrPrivate;

TEST(MemAttributes, EmptyReadsZero) {
  MemAttributes a;
  EXPECT_EQ(a.get(Gfn{0}), 0u);
  EXPECT_TRUE(a.range_has(Gfn{0}, Gfn{100}, kP, 0));
  EXPECT_FALSE(a.range_has(Gfn{0}, Gfn{100}, kP, kP));
  EXPECT_TRUE(a.ranges().empty());
}

TEST(MemAttributes, SetGetAndRangeHas) {
  MemAttributes a;
  a.set(Gfn{10}, Gfn{20}, kP);
  EXPECT_EQ(a.get(Gfn{9}), 0u);
  EXPECT_EQ(a.get(Gfn{10}), kP);
  EXPECT_EQ(a.get(Gfn{19}), kP);
  EXPECT_EQ(a.get(Gfn{20}), 0u);
  EXPECT_TRUE(a.range_has(Gfn{10}, Gfn{20}, kP, kP));
  EXPECT_TRUE(a.range_has(Gfn{12}, Gfn{13}, kP, kP));
  EXPECT_FALSE(a.range_has(Gfn{9}, Gfn{20}, kP, kP));
  EXPECT_FALSE(a.range_has(Gfn{10}, Gfn{21}, kP, kP));
  EXPECT_FALSE(a.range_has(Gfn{0}, Gfn{30}, kP, 0));
  EXPECT_TRUE(a.range_has(Gfn{20}, Gfn{30}, kP, 0));
  EXPECT_TRUE(a.range_has(Gfn{0}, Gfn{10}, kP, 0));
  // A mask without the attribute ignores it; attrs outside the mask never match.
  EXPECT_TRUE(a.range_has(Gfn{0}, Gfn{30}, 0, 0));
  EXPECT_FALSE(a.range_has(Gfn{10}, Gfn{20}, 0, kP));
}

TEST(MemAttributes, AdjacentAndOverlappingSetsMerge) {
  MemAttributes a;
  a.set(Gfn{10}, Gfn{20}, kP);
  a.set(Gfn{20}, Gfn{30}, kP);
  EXPECT_EQ(a.ranges(), (std::vector<Range>{{Gfn{10}, Gfn{30}, kP}}));
  a.set(Gfn{5}, Gfn{12}, kP);
  EXPECT_EQ(a.ranges(), (std::vector<Range>{{Gfn{5}, Gfn{30}, kP}}));
  a.set(Gfn{40}, Gfn{50}, kP);
  a.set(Gfn{30}, Gfn{40}, kP);
  EXPECT_EQ(a.ranges(), (std::vector<Range>{{Gfn{5}, Gfn{50}, kP}}));
}

TEST(MemAttributes, ClearingSplitsAndErases) {
  MemAttributes a;
  a.set(Gfn{0}, Gfn{100}, kP);
  a.set(Gfn{40}, Gfn{60}, 0);
  EXPECT_EQ(a.ranges(), (std::vector<Range>{{Gfn{0}, Gfn{40}, kP}, {Gfn{60}, Gfn{100}, kP}}));
  EXPECT_FALSE(a.range_has(Gfn{0}, Gfn{100}, kP, kP));
  EXPECT_TRUE(a.range_has(Gfn{40}, Gfn{60}, kP, 0));
  a.set(Gfn{30}, Gfn{70}, kP);
  EXPECT_EQ(a.ranges(), (std::vector<Range>{{Gfn{0}, Gfn{100}, kP}}));
  a.set(Gfn{0}, Gfn{100}, 0);
  EXPECT_TRUE(a.ranges().empty());
}

TEST(MemAttributes, DifferentValuesDoNotMerge) {
  MemAttributes a;
  constexpr uint64_t kOther = 1;
  a.set(Gfn{0}, Gfn{10}, kP);
  a.set(Gfn{10}, Gfn{20}, kOther);
  EXPECT_EQ(a.ranges(), (std::vector<Range>{{Gfn{0}, Gfn{10}, kP}, {Gfn{10}, Gfn{20}, kOther}}));
  EXPECT_TRUE(a.range_has(Gfn{0}, Gfn{20}, kOther | kP, 0) == false);
  EXPECT_TRUE(a.range_has(Gfn{5}, Gfn{15}, 0, 0));
  EXPECT_FALSE(a.range_has(Gfn{5}, Gfn{15}, kP, kP));
}

}  // namespace
}  // namespace tdxsim
