// TtyProgress: the run's phase and how far it has got, redrawn in place on a terminal
// (stderr) a few times a second, once the run has lasted long enough to make waiting
// uncertain; the line is erased when the run ends, so that the summary stands alone.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "scenarios/progress.h"

namespace tdxsim::cli {

class TtyProgress final : public Progress {
 public:
  // `out` must be a terminal (the caller checks: a pipe or a file gets no progress).
  // `after`: how long the run stays quiet first.
  explicit TtyProgress(std::FILE* out,
                       std::chrono::milliseconds after = std::chrono::milliseconds(1000));
  ~TtyProgress() override;
  TtyProgress(const TtyProgress&) = delete;
  TtyProgress& operator=(const TtyProgress&) = delete;

  void phase(std::string_view what, std::function<uint64_t()> done, uint64_t total) override;

  // The line as it would be drawn now (without the carriage return and erase).
  std::string line();

 private:
  void tick_loop();

  std::FILE* out_;
  const std::chrono::steady_clock::time_point start_;
  const std::chrono::milliseconds after_;
  // A plain std::mutex: the ticker needs a timed wait, which base's CondVar does not offer.
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;               // guarded by mu_
  bool drawn_ = false;              // guarded by mu_
  std::string what_;                // guarded by mu_
  std::function<uint64_t()> done_;  // guarded by mu_; called with mu_ held
  uint64_t total_ = 0;              // guarded by mu_
  std::thread ticker_;
};

}  // namespace tdxsim::cli
