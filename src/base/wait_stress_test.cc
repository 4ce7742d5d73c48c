// Ping-pong over AckCounter and chains of Notifications, passing plain (non-atomic) data:
// TSan must see every hand-off ordered by the wait primitives alone.
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/wait.h"

namespace tdxsim {
namespace {

TEST(WaitStress, AckCounterPingPong) {
  constexpr uint64_t kRounds = 5000;
  AckCounter ping;
  AckCounter pong;
  uint64_t mailbox = 0;  // written by whoever's turn it is
  uint64_t errors = 0;   // written only by the ponger, read after join
  std::thread ponger([&] {
    for (uint64_t i = 1; i <= kRounds; ++i) {
      ping.wait_until(i);
      if (mailbox != 2 * i - 1) ++errors;
      mailbox = 2 * i;
      pong.advance();
    }
  });
  for (uint64_t i = 1; i <= kRounds; ++i) {
    mailbox = 2 * i - 1;
    EXPECT_EQ(ping.advance(), i);
    pong.wait_until(i);
    ASSERT_EQ(mailbox, 2 * i);
  }
  ponger.join();
  EXPECT_EQ(errors, 0u);
  EXPECT_EQ(ping.current(), kRounds);
  EXPECT_EQ(pong.current(), kRounds);
}

TEST(WaitStress, AckCounterManyWaiters) {
  constexpr int kWaiters = 4;
  constexpr uint64_t kTarget = 2000;
  AckCounter c;
  std::vector<std::thread> waiters;
  for (int w = 0; w < kWaiters; ++w) {
    waiters.emplace_back([&, w] {
      for (uint64_t t = static_cast<uint64_t>(w) + 1; t <= kTarget; t += kWaiters) c.wait_until(t);
    });
  }
  for (uint64_t i = 0; i < kTarget; ++i) c.advance();
  for (auto& t : waiters) t.join();
  EXPECT_EQ(c.current(), kTarget);
}

TEST(WaitStress, NotificationChain) {
  constexpr int kLinks = 2000;
  std::vector<Notification> request(kLinks);
  std::vector<Notification> reply(kLinks);
  std::vector<int> data(kLinks, 0);
  std::thread responder([&] {
    for (int i = 0; i < kLinks; ++i) {
      request[i].wait();
      data[i] *= 2;
      reply[i].notify();
    }
  });
  for (int i = 0; i < kLinks; ++i) {
    data[i] = i;
    request[i].notify();
    reply[i].wait();
    ASSERT_EQ(data[i], 2 * i);
  }
  responder.join();
}

}  // namespace
}  // namespace tdxsim
