#include "workload/op_bytes.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <sstream>

namespace tdxsim::workload {
namespace {

// Any bytes are a sequence of well-formed operations, and a sequence survives the round trip.
TEST(OpBytes, AnyBytesDecodeToWellFormedOperationsAndSequencesRoundTrip) {
  rc::detail::TestParams params;
  params.seed = 0x0b7e5;
  params.maxSuccess = 500;
  rc::detail::TestMetadata meta;
  meta.id = "OpBytes/RoundTrip";
  const auto result = rc::detail::checkTestable(
      [] {
        const auto bytes = *rc::gen::arbitrary<std::vector<uint8_t>>();
        const std::vector<Op> ops = decode_ops(bytes);
        RC_ASSERT(ops.size() == std::min(bytes.size() / kOpBytes, kMaxOps));
        for (const Op& op : ops) RC_ASSERT(well_formed(op));
        RC_ASSERT(decode_ops(encode_ops(ops)) == ops);
      },
      meta, params);
  if (!result.template is<rc::detail::SuccessResult>()) {
    std::ostringstream os;
    rc::detail::printResultMessage(result, os);
    FAIL() << os.str();
  }
}

TEST(OpBytes, FieldsWrapIntoRange) {
  const std::vector<uint8_t> bytes = {0xff, 0xff, 0xff, 0xff, 0x00, 0x1f, 0x07, 0x00};
  const std::vector<Op> ops = decode_ops(bytes);
  ASSERT_EQ(ops.size(), 2u);
  EXPECT_TRUE(well_formed(ops[0]));
  EXPECT_EQ(ops[0].vcpu, 1);
  EXPECT_TRUE(ops[0].to_shared);
  // Page 31 has room for one page only.
  EXPECT_EQ(ops[1].first, 31);
  EXPECT_EQ(ops[1].count, 1);
  EXPECT_EQ(ops[1].kind, OpKind::kAccept);
}

}  // namespace
}  // namespace tdxsim::workload
