#include "base/wait.h"

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

namespace tdxsim {
namespace {

using namespace std::chrono_literals;

TEST(Notification, NotifyThenWaitReturnsAtOnce) {
  Notification n;
  EXPECT_FALSE(n.has_been_notified());
  EXPECT_FALSE(n.wait_for(1ms));
  n.notify();
  EXPECT_TRUE(n.has_been_notified());
  n.wait();
  EXPECT_TRUE(n.wait_for(0ms));
}

TEST(Notification, WakesAWaiterOnAnotherThread) {
  Notification n;
  int payload = 0;
  std::thread t([&] {
    payload = 42;
    n.notify();
  });
  n.wait();
  EXPECT_EQ(payload, 42);  // the notify orders the write before the wait's return
  t.join();
}

TEST(NotificationDeathTest, NotifyTwiceAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Notification n;
  n.notify();
  EXPECT_DEATH(n.notify(), "notify\\(\\) called twice");
}

TEST(AckCounter, AdvanceReturnsTheNewValue) {
  AckCounter c;
  EXPECT_EQ(c.current(), 0u);
  EXPECT_EQ(c.advance(), 1u);
  EXPECT_EQ(c.advance(), 2u);
  EXPECT_EQ(c.current(), 2u);
  c.wait_until(0);
  c.wait_until(2);
  EXPECT_TRUE(c.wait_until_for(1, 0ms));
  EXPECT_FALSE(c.wait_until_for(3, 1ms));
}

TEST(AckCounter, WaiterWakesWhenTheTargetIsReached) {
  AckCounter c;
  std::thread t([&] {
    for (int i = 0; i < 3; ++i) c.advance();
  });
  c.wait_until(3);
  EXPECT_GE(c.current(), 3u);
  t.join();
}

}  // namespace
}  // namespace tdxsim
