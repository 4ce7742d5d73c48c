#include "base/fault_injection.h"

#include <algorithm>
#include <cctype>

#include "base/check.h"

namespace tdxsim {
namespace {

constexpr std::array<BugId, kNumBugIds> kAllBugIds = {
    BugId::S0, BugId::S1, BugId::S2, BugId::S3,  BugId::M2, BugId::M3,
    BugId::M4, BugId::M6, BugId::M8, BugId::M9,  BugId::T1, BugId::T3,
    BugId::T4, BugId::T5, BugId::T7, BugId::T12, BugId::P1, BugId::P2,
};

bool iequals(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    return std::toupper(static_cast<unsigned char>(x)) == std::toupper(static_cast<unsigned char>(y));
  });
}

}  // namespace

const char* to_string(BugId id) {
  switch (id) {
    case BugId::S0: return "S0";
    case BugId::S1: return "S1";
    case BugId::S2: return "S2";
    case BugId::S3: return "S3";
    case BugId::M2: return "M2";
    case BugId::M3: return "M3";
    case BugId::M4: return "M4";
    case BugId::M6: return "M6";
    case BugId::M8: return "M8";
    case BugId::M9: return "M9";
    case BugId::T1: return "T1";
    case BugId::T3: return "T3";
    case BugId::T4: return "T4";
    case BugId::T5: return "T5";
    case BugId::T7: return "T7";
    case BugId::T12: return "T12";
    case BugId::P1:
      return "P1";
    case BugId::P2:
      return "P2";
  }
  return "?";
}

std::optional<BugId> parse_bug_id(std::string_view name) {
  for (BugId id : kAllBugIds) {
    if (iequals(name, to_string(id))) return id;
  }
  return std::nullopt;
}

std::span<const BugId> all_bug_ids() { return kAllBugIds; }

const char* to_string(EnvFaultKind kind) {
  switch (kind) {
    case EnvFaultKind::kForceOperandBusy: return "force_operand_busy";
    case EnvFaultKind::kFailSeamcallInsn: return "fail_seamcall_insn";
    case EnvFaultKind::kArmZeroStep: return "arm_zero_step";
    case EnvFaultKind::kForcePreviousEpochBusy: return "force_previous_epoch_busy";
    case EnvFaultKind::kDelayTdExit: return "delay_td_exit";
    case EnvFaultKind::kTscRollback: return "tsc_rollback";
    case EnvFaultKind::kCount: break;
  }
  return "?";
}

void FaultInjection::enable(BugId id) {
  bugs_.fetch_or(uint64_t{1} << static_cast<unsigned>(id), std::memory_order_relaxed);
}

void FaultInjection::disable(BugId id) {
  bugs_.fetch_and(~(uint64_t{1} << static_cast<unsigned>(id)), std::memory_order_relaxed);
}

void FaultInjection::arm(EnvFaultKind kind, uint64_t key, uint32_t count, uint64_t param) {
  TDXSIM_CHECK(kind < EnvFaultKind::kCount, "arm() of invalid fault kind {}",
               static_cast<unsigned>(kind));
  TDXSIM_CHECK(count > 0, "arm({}, key {:#x}) with count 0; use disarm()", to_string(kind), key);
  MutexLock l(mu_);
  if (Arm* a = find(kind, key)) {
    *a = Arm{kind, key, count, param};
  } else {
    arms_.push_back(Arm{kind, key, count, param});
  }
  publish_armed_kinds();
}

void FaultInjection::disarm(EnvFaultKind kind, uint64_t key) {
  MutexLock l(mu_);
  std::erase_if(arms_, [&](const Arm& a) { return a.kind == kind && a.key == key; });
  publish_armed_kinds();
}

void FaultInjection::disarm_all() {
  MutexLock l(mu_);
  arms_.clear();
  publish_armed_kinds();
}

std::optional<uint64_t> FaultInjection::take_slow(EnvFaultKind kind, uint64_t key) {
  MutexLock l(mu_);
  Arm* a = find(kind, key);
  if (a == nullptr && key != kAnyKey) a = find(kind, kAnyKey);
  if (a == nullptr) return std::nullopt;
  const uint64_t param = a->param;
  if (a->remaining != kForever && --a->remaining == 0) {
    arms_.erase(arms_.begin() + (a - arms_.data()));
    publish_armed_kinds();
  }
  fired_[static_cast<size_t>(kind)].add();
  return param;
}

uint64_t FaultInjection::fired(EnvFaultKind kind) const {
  return fired_[static_cast<size_t>(kind)].value();
}

FaultInjection::Arm* FaultInjection::find(EnvFaultKind kind, uint64_t key) {
  for (Arm& a : arms_) {
    if (a.kind == kind && a.key == key) return &a;
  }
  return nullptr;
}

void FaultInjection::publish_armed_kinds() {
  uint64_t mask = 0;
  for (const Arm& a : arms_) mask |= kind_bit(a.kind);
  // Relaxed: take() re-reads the table under mu_; the mask only lets it skip the lock.
  armed_kinds_.store(mask, std::memory_order_relaxed);
}

}  // namespace tdxsim
