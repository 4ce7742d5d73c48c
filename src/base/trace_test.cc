#include "base/trace.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace tdxsim {
namespace {

struct SpteChanged {
  uint64_t gfn;
  uint64_t new_spte;
};

TEST(Tracepoint, DisabledUntilSomeoneListens) {
  Tracepoint<SpteChanged> tp;
  EXPECT_FALSE(tp.enabled());
  tp.emit({1, 2});  // nobody listens: nothing happens
  std::vector<uint64_t> seen;
  {
    auto sub = tp.attach([&](const SpteChanged& e) { seen.push_back(e.gfn); });
    EXPECT_TRUE(tp.enabled());
    EXPECT_TRUE(sub.attached());
    tp.emit({7, 0});
    tp.emit({8, 0});
  }
  EXPECT_FALSE(tp.enabled());
  tp.emit({9, 0});
  EXPECT_EQ(seen, (std::vector<uint64_t>{7, 8}));
}

TEST(Tracepoint, LazyEventIsBuiltOnlyWhenEnabled) {
  Tracepoint<SpteChanged> tp;
  int built = 0;
  auto make = [&] {
    ++built;
    return SpteChanged{3, 4};
  };
  tp.emit_lazy(make);
  EXPECT_EQ(built, 0);
  uint64_t got = 0;
  auto sub = tp.attach([&](const SpteChanged& e) { got = e.new_spte; });
  tp.emit_lazy(make);
  EXPECT_EQ(built, 1);
  EXPECT_EQ(got, 4u);
}

TEST(Tracepoint, ListenersRunInAttachOrderAndDetachIndividually) {
  Tracepoint<std::string> tp;
  std::string log;
  auto a = tp.attach([&](const std::string& s) { log += "a" + s; });
  auto b = tp.attach([&](const std::string& s) { log += "b" + s; });
  tp.emit("1");
  a.reset();
  EXPECT_FALSE(a.attached());
  tp.emit("2");
  EXPECT_EQ(log, "a1b1b2");
  EXPECT_TRUE(tp.enabled());
  b.reset();
  EXPECT_FALSE(tp.enabled());
}

TEST(Tracepoint, SubscriptionsMove) {
  Tracepoint<int> tp;
  int sum = 0;
  Tracepoint<int>::Subscription outer;
  EXPECT_FALSE(outer.attached());
  {
    auto inner = tp.attach([&](const int& v) { sum += v; });
    outer = std::move(inner);
    EXPECT_FALSE(inner.attached());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  }
  tp.emit(5);
  EXPECT_EQ(sum, 5);
  Tracepoint<int>::Subscription third(std::move(outer));
  tp.emit(1);
  EXPECT_EQ(sum, 6);
  third.reset();
  EXPECT_FALSE(tp.enabled());
}

TEST(TracepointDeathTest, OutlivingSubscriptionIsCaught) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto* tp = new Tracepoint<int>;
        auto sub = tp->attach([](const int&) {});
        delete tp;
      },
      "Tracepoint destroyed with 1 listener");
}

}  // namespace
}  // namespace tdxsim
