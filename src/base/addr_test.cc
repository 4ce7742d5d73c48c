#include "base/addr.h"

#include <unordered_set>

#include <gtest/gtest.h>

namespace tdxsim {
namespace {

TEST(Addr, LevelArithmetic) {
  EXPECT_EQ(level_bytes(Level::k4K), 4096u);
  EXPECT_EQ(level_bytes(Level::k2M), 2u << 20);
  EXPECT_EQ(level_bytes(Level::k1G), 1u << 30);
  EXPECT_EQ(level_bytes(Level::k512G), uint64_t{512} << 30);
  EXPECT_EQ(level_pages(Level::k2M), 512u);
  EXPECT_EQ(level_down(Level::k1G), Level::k2M);
  EXPECT_EQ(level_up(Level::k512G), Level::k256T);
}

TEST(Addr, IndexAtEveryLevel) {
  // 5-level address with a distinct index at each level.
  const uint64_t raw = (uint64_t{5} << 48) | (uint64_t{4} << 39) | (uint64_t{3} << 30) |
                       (uint64_t{2} << 21) | (uint64_t{1} << 12) | 0x123;
  const Gpa gpa{raw};
  EXPECT_EQ(gpa.index(Level::k256T), 5u);
  EXPECT_EQ(gpa.index(Level::k512G), 4u);
  EXPECT_EQ(gpa.index(Level::k1G), 3u);
  EXPECT_EQ(gpa.index(Level::k2M), 2u);
  EXPECT_EQ(gpa.index(Level::k4K), 1u);
  EXPECT_EQ(gpa.gfn().index(Level::k2M), 2u);
  EXPECT_EQ(gpa.page_offset(), 0x123u);
}

TEST(Addr, ConversionsAndAlignment) {
  const Gpa gpa{0x1'4020'3abc};
  EXPECT_EQ(gpa.gfn(), Gfn{0x140203});
  EXPECT_EQ(gpa.gfn().gpa(), Gpa{0x1'4020'3000});
  EXPECT_EQ(Gfn{0x140203}.align_down(Level::k2M), Gfn{0x140200});
  EXPECT_TRUE(Gfn{0x140200}.is_aligned(Level::k2M));
  EXPECT_FALSE(Gfn{0x140200}.is_aligned(Level::k1G));
  EXPECT_EQ(Hpa{0x5000}.pfn(), Pfn{5});
  EXPECT_EQ(Pfn{5}.hpa(), Hpa{0x5000});
  EXPECT_EQ(Gpa{0x3000} + 0x1000, Gpa{0x4000});
  EXPECT_EQ(Gpa{0x3000} - Gpa{0x1000}, 0x2000u);
}

TEST(Addr, FormatTagsTheSpace) {
  EXPECT_EQ(fmt::format("{}", Gpa{0x1000}), "gpa:0x1000");
  EXPECT_EQ(fmt::format("{}", Pfn{0x2a}), "pfn:0x2a");
  std::unordered_set<Gfn> s{Gfn{1}, Gfn{2}, Gfn{1}};
  EXPECT_EQ(s.size(), 2u);
}

}  // namespace
}  // namespace tdxsim
