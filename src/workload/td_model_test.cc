#include "workload/td_model.h"

#include <gtest/gtest.h>

namespace tdxsim::workload {
namespace {

Op op(OpKind kind, uint8_t first, uint8_t count = 1, uint8_t round = 1, bool to_shared = false) {
  Op o;
  o.kind = kind;
  o.first = first;
  o.count = count;
  o.round = round;
  o.to_shared = to_shared;
  return o;
}

TEST(TdModel, PrivateDataIsDiscardedByConversionAndPunchButSharedMemoryStays) {
  TdModel m;
  m.apply(op(OpKind::kWrite, 0, 2, 3));  // PENDING pages: the #VE handler accepts, then fill
  EXPECT_EQ(m.guest_view(0), 3);
  m.apply(op(OpKind::kHostWrite, 0, 1, 5));  // the shared memory behind a private page
  EXPECT_EQ(m.guest_view(0), 3);
  m.apply(op(OpKind::kMapGpa, 0, 1, 1, /*to_shared=*/true));
  EXPECT_EQ(m.guest_view(0), 5);
  m.apply(op(OpKind::kSetAttributes, 0, 1, 1, /*to_shared=*/false));
  EXPECT_FALSE(m.page(0).accepted);
  EXPECT_EQ(m.guest_view(0), 0);
  EXPECT_EQ(m.view_through(0, /*shared=*/true), 5);  // converting back finds the old shared data
  m.apply(op(OpKind::kPunchHole, 1));
  EXPECT_EQ(m.guest_view(1), 0);
  EXPECT_FALSE(m.page(1).accepted);
}

TEST(TdModel, AcceptConvertsASharedPageAndKeepsAnAcceptedOne) {
  TdModel m;
  m.apply(op(OpKind::kWrite, 2, 1, 4));
  m.apply(op(OpKind::kAccept, 2));  // ALREADY_ACCEPTED: the data stays
  EXPECT_EQ(m.guest_view(2), 4);
  m.apply(op(OpKind::kTouch, 2, 1, 1, /*to_shared=*/true));
  EXPECT_FALSE(m.page(2).is_private);
  m.apply(op(OpKind::kAccept, 2));
  EXPECT_TRUE(m.page(2).is_private);
  EXPECT_TRUE(m.page(2).accepted);
  EXPECT_EQ(m.guest_view(2), 0);
}

TEST(TdModel, ARecreatedMemslotStartsOverButKeepsTheAttributes) {
  TdModel m;
  m.apply(op(OpKind::kWrite, 0, 1, 2));
  m.apply(op(OpKind::kSetAttributes, 1, 1, 1, /*to_shared=*/true));
  m.apply(op(OpKind::kHostWrite, 1, 1, 6));
  m.apply(op(OpKind::kRecreateMemslot, 0));
  EXPECT_EQ(m.guest_view(0), 0);
  EXPECT_FALSE(m.page(0).accepted);
  EXPECT_FALSE(m.page(1).is_private);
  EXPECT_EQ(m.guest_view(1), 0);
}

}  // namespace
}  // namespace tdxsim::workload
