#include "cli/tty_progress.h"

#include <fmt/format.h>

namespace tdxsim::cli {

namespace {
constexpr std::chrono::milliseconds kRedraw{250};
}

TtyProgress::TtyProgress(std::FILE* out, std::chrono::milliseconds after)
    : out_(out), start_(std::chrono::steady_clock::now()), after_(after) {
  ticker_ = std::thread([this] { tick_loop(); });
}

TtyProgress::~TtyProgress() {
  {
    std::lock_guard l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  ticker_.join();
  if (drawn_) {
    fmt::print(out_, "\r\x1b[K");
    std::fflush(out_);
  }
}

void TtyProgress::phase(std::string_view what, std::function<uint64_t()> done, uint64_t total) {
  // Under mu_, so that once this returns the ticker no longer calls the previous `done`.
  std::lock_guard l(mu_);
  what_ = what;
  done_ = std::move(done);
  total_ = total;
}

std::string TtyProgress::line() {
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::lock_guard l(mu_);
  std::string s = fmt::format("[{:6.1f} s] {}", secs, what_.empty() ? "running" : what_);
  if (done_) {
    const uint64_t n = done_();
    s += total_ != 0
             ? fmt::format(": {} / {} ({} %)", n, total_, std::min<uint64_t>(n * 100 / total_, 100))
             : fmt::format(": {}", n);
  }
  return s;
}

void TtyProgress::tick_loop() {
  std::unique_lock l(mu_);
  if (cv_.wait_for(l, after_, [this] { return stop_; })) return;
  while (!stop_) {
    l.unlock();
    const std::string s = line();
    l.lock();
    if (stop_) break;
    fmt::print(out_, "\r{}\x1b[K", s);
    std::fflush(out_);
    drawn_ = true;
    cv_.wait_for(l, kRedraw, [this] { return stop_; });
  }
}

}  // namespace tdxsim::cli
