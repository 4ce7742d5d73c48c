#include "base/rcu.h"

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "base/atomic.h"
#include "base/wait.h"

namespace tdxsim {
namespace {

using namespace std::chrono_literals;

TEST(Rcu, RegistrationNests) {
  EXPECT_FALSE(rcu_thread_registered());
  {
    RcuThread outer;
    EXPECT_TRUE(rcu_thread_registered());
    {
      RcuThread inner;
      EXPECT_TRUE(rcu_thread_registered());
    }
    EXPECT_TRUE(rcu_thread_registered());
  }
  EXPECT_FALSE(rcu_thread_registered());
}

TEST(Rcu, ReadSectionsNest) {
  RcuThread rcu;
  EXPECT_FALSE(rcu_read_held());
  {
    RcuReadGuard g;
    EXPECT_TRUE(rcu_read_held());
    {
      RcuReadGuard g2;
      EXPECT_TRUE(rcu_read_held());
    }
    EXPECT_TRUE(rcu_read_held());
  }
  EXPECT_FALSE(rcu_read_held());
}

TEST(Rcu, DeferRunsAfterBarrier) {
  RcuThread rcu;
  Counter ran;
  for (int i = 0; i < 10; ++i) rcu_defer([&] { ran.add(); });
  rcu_barrier();
  EXPECT_EQ(ran.value(), 10u);
}

TEST(Rcu, CallbacksMayReadAndDeferAgain) {
  RcuThread rcu;
  Counter ran;
  bool was_registered = false;
  rcu_defer([&] {
    was_registered = rcu_thread_registered();
    { RcuReadGuard g; }
    rcu_defer([&] { ran.add(); });
  });
  rcu_barrier();  // runs the first callback, which queues the second
  rcu_barrier();
  EXPECT_TRUE(was_registered);
  EXPECT_EQ(ran.value(), 1u);
}

TEST(Rcu, SynchronizeWaitsForAPreexistingReader) {
  Notification reader_in;
  Notification let_reader_go;
  AtomicWord sync_done{0};
  std::thread reader([&] {
    RcuThread rcu;
    RcuReadGuard g;
    reader_in.notify();
    let_reader_go.wait();
  });
  reader_in.wait();
  std::thread writer([&] {
    rcu_synchronize();
    sync_done.store(1, std::memory_order_release);
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(sync_done.load(std::memory_order_acquire), 0u);
  let_reader_go.notify();
  writer.join();
  EXPECT_EQ(sync_done.load(std::memory_order_acquire), 1u);
  reader.join();
}

TEST(Rcu, SynchronizeFromAnUnregisteredThread) { rcu_synchronize(); }

class RcuDeathTest : public testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(RcuDeathTest, ReadSideNeedsRegistration) {
  EXPECT_DEATH({ RcuReadGuard g; }, "without an RcuThread registration");
}

TEST_F(RcuDeathTest, DeferNeedsRegistration) {
  EXPECT_DEATH(rcu_defer([] {}), "rcu_defer.*without an RcuThread registration");
}

TEST_F(RcuDeathTest, SynchronizeInsideReadSide) {
  EXPECT_DEATH(
      {
        RcuThread rcu;
        RcuReadGuard g;
        rcu_synchronize();
      },
      "rcu_synchronize.*inside an RCU read-side section");
}

TEST_F(RcuDeathTest, BarrierInsideReadSide) {
  EXPECT_DEATH(
      {
        RcuThread rcu;
        RcuReadGuard g;
        rcu_barrier();
      },
      "rcu_barrier.*inside an RCU read-side section");
}

TEST_F(RcuDeathTest, UnregisterInsideReadSide) {
  EXPECT_DEATH(
      {
        auto* rcu = new RcuThread;
        RcuReadGuard g;
        delete rcu;
      },
      "RcuThread destroyed inside 1 RCU read-side section");
}

}  // namespace
}  // namespace tdxsim
