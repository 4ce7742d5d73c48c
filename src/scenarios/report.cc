#include "scenarios/progress.h"
#include "scenarios/scenario.h"

namespace tdxsim {

void ScenarioOptions::phase(std::string_view what, std::function<uint64_t()> done,
                            uint64_t total) const {
  if (progress != nullptr) progress->phase(what, std::move(done), total);
}

void Report::note(bool ok, std::string_view name, std::string evidence) {
  MutexLock l(mu_);
  ++checks_;
  if (!ok) failures_.push_back(fmt::format("{}: {}", name, evidence));
}

void Report::figure(std::string_view name, uint64_t value) {
  MutexLock l(mu_);
  figures_.emplace_back(std::string(name), value);
}

void Report::add_operations(uint64_t n) {
  MutexLock l(mu_);
  operations_ += n;
}

uint64_t Report::operations() const {
  MutexLock l(mu_);
  return operations_;
}

bool Report::passed() const {
  MutexLock l(mu_);
  return failures_.empty();
}

uint64_t Report::checks() const {
  MutexLock l(mu_);
  return checks_;
}

std::vector<std::string> Report::failures() const {
  MutexLock l(mu_);
  return failures_;
}

std::vector<std::pair<std::string, uint64_t>> Report::figures() const {
  MutexLock l(mu_);
  return figures_;
}

void Report::schedule_figure(std::string_view name, uint64_t value) {
  MutexLock l(mu_);
  schedule_figures_.emplace_back(std::string(name), value);
}

std::vector<std::pair<std::string, uint64_t>> Report::schedule_figures() const {
  MutexLock l(mu_);
  return schedule_figures_;
}

}  // namespace tdxsim
