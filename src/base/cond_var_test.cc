#include "base/cond_var.h"

#include <thread>

#include <gtest/gtest.h>

namespace tdxsim {
namespace {

TEST(CondVar, WaitReleasesAndRetakesTheMutex) {
  Mutex mu("test.mu");
  CondVar cv;
  bool ready = false;
  std::thread t([&] {
    MutexLock l(mu);
    ready = true;
    cv.notify_all();
  });
  {
    MutexLock l(mu);
    cv.wait(mu, [&] { return ready; });
    mu.assert_held();  // held again, and the held-locks table says so
  }
  t.join();
  EXPECT_TRUE(ready);
}

}  // namespace
}  // namespace tdxsim
