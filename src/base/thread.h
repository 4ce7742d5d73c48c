// Thread: std::thread for the threads of a run (vCPU threads, the VMM's host threads, a
// scenario's own). Started from a thread under a deterministic scheduler (sched.h), the new
// thread joins that run: it is registered at the spawn point, in the spawning thread's order,
// and runs only while it holds the token; join() waits by pausing, not by blocking.
// Free-running, it is a std::thread.
//
// Thread safety: as std::thread — one owner starts and joins it.
#pragma once

#include <functional>
#include <memory>
#include <thread>

#include "base/sched.h"

namespace tdxsim {

class Thread {
 public:
  Thread() = default;
  explicit Thread(std::function<void()> fn);
  ~Thread();
  Thread(Thread&&) noexcept = default;
  Thread& operator=(Thread&&) noexcept;
  Thread(const Thread&) = delete;
  Thread& operator=(const Thread&) = delete;

  bool joinable() const { return os_.joinable(); }
  // REQUIRES: joinable().
  void join();

 private:
  std::shared_ptr<sched_detail::ThreadRec> rec_;  // null free-running
  std::thread os_;
};

}  // namespace tdxsim
