// The ucall word and its decoder; the pattern's agreement between host and guest.
#include "guest/ucall.h"

#include <gtest/gtest.h>

#include <vector>

#include "guest/pattern.h"

namespace tdxsim::guest {
namespace {

TEST(UcallTest, EncodesCommandLowAndArgumentAbove) {
  EXPECT_EQ(encode_ucall(UcallCmd::kSync, 0x1234), 0x12'3401u);
  EXPECT_EQ(encode_ucall(UcallCmd::kDone, 0), 2u);
  EXPECT_EQ(decode_ucall(kDefaultUcallGpa, encode_ucall(UcallCmd::kAssert, 7)),
            (Ucall{UcallCmd::kAssert, 7}));
  const uint64_t max_arg = (uint64_t{1} << kUcallArgBits) - 1;
  EXPECT_EQ(decode_ucall(kDefaultUcallGpa, encode_ucall(UcallCmd::kSync, max_arg))->arg, max_arg);
}

TEST(UcallTest, DecodesOnlyTheUcallGpaWithOrWithoutTheSharedBit) {
  const uint64_t data = encode_ucall(UcallCmd::kSync, 1);
  EXPECT_TRUE(decode_ucall(kDefaultUcallGpa, data));
  EXPECT_TRUE(decode_ucall(VmFlavour::tdx(47).to_shared(kDefaultUcallGpa), data));
  EXPECT_TRUE(decode_ucall(VmFlavour::tdx(51).to_shared(kDefaultUcallGpa), data));
  EXPECT_FALSE(decode_ucall(kDefaultUcallGpa + 8, data));
  EXPECT_FALSE(decode_ucall(Gpa{0x1000}, data));
  EXPECT_TRUE(decode_ucall(Gpa{0x1000}, data, Gpa{0x1000}));
}

TEST(UcallTest, RejectsWordsThatAreNoUcall) {
  EXPECT_FALSE(decode_ucall(kDefaultUcallGpa, 0));
  EXPECT_FALSE(decode_ucall(kDefaultUcallGpa, 0x44));
}

TEST(PatternTest, DependsOnGpaAndRoundAndIsNeverZero) {
  EXPECT_NE(pattern(Gpa{0x1000}, 0), pattern(Gpa{0x1000}, 1));
  EXPECT_NE(pattern(Gpa{0x1000}, 0), pattern(Gpa{0x2000}, 0));
  EXPECT_EQ(pattern(Gpa{0x1000}, 3), pattern(Gpa{0x1000}, 3));
  for (uint64_t i = 0; i < 1000; ++i) EXPECT_NE(pattern(Gpa{i * 8}, i), 0u);
}

TEST(PatternTest, SamplesTheFirstAndLastWordOfEachPage) {
  std::vector<uint64_t> got;
  for_each_sample(Gpa{0x3000}, 2 * kPageSize, [&](Gpa g) { got.push_back(g.raw()); });
  EXPECT_EQ(got, (std::vector<uint64_t>{0x3000, 0x3FF8, 0x4000, 0x4FF8}));
}

}  // namespace
}  // namespace tdxsim::guest
