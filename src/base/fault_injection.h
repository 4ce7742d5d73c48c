// FaultInjection: the switches a scenario or seeded run uses to break the system on purpose.
//
// Two kinds of switch live in one registry, owned by a simulation and passed by reference
// (never a global, so two simulations in one process do not see each other's faults):
//
//   Bug switches re-introduce a real, historical bug from the bug catalogue
//   (shared/spec/bug-catalog.md) at the spot where it lived: code under test asks
//   `if (faults.bug(BugId::M2))` and takes the buggy path. All are off by default; with a
//   switch off the model behaves correctly.
//
//   Environment faults make the outside world hostile without any bug in tdxsim: a forced
//   TDX_OPERAND_BUSY on one SEAMCALL leaf, a failing SEAMCALL instruction, an armed
//   zero-step detection, a delayed TD exit. A scenario arms them; the emulator consumes them
//   with take() at the point where the fault would occur.
//
// Nothing that checks correctness (the check/ layer, oracles, invariant checkers) may ever
// read this registry. A bug is caught only by what it breaks; a checker that knew which
// switch is on would prove nothing.
//
// Thread safety: every member may be called from any thread. bug() is a single relaxed load
// of the bitmask: switches are set before the run starts (thread creation orders them), and
// a switch flipped mid-run is picked up "soon", which is all a fault needs. Armed faults live
// in a Mutex-guarded table; take() consumes a firing under the mutex, so concurrent takers
// never fire a count more often than armed. Its fast path when nothing of that kind is
// armed is one relaxed load of the armed-kinds mask (republished under the mutex after
// every change; take() re-checks under the mutex, so a stale mask only delays a fault).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "base/atomic.h"
#include "base/lock.h"
#include "base/thread_annotations.h"

namespace tdxsim {

// The bug-catalogue IDs. Names are the catalogue's; append new rows at the end.
// P1 and P2 are no catalogue rows but bugs planted for tdxsim's own tests: the race P1 for the
// scheduler and `tdxsim stress` (the replay issue), the zap-range off-by-one P2 for the
// property tests (src/workload/).
// clang-format off
enum class BugId : uint8_t {
  S0, S1, S2, S3, M2, M3, M4, M6, M8, M9, T1, T3, T4, T5, T7, T12, P1, P2
};
// clang-format on
inline constexpr size_t kNumBugIds = static_cast<size_t>(BugId::P2) + 1;
static_assert(kNumBugIds <= 64, "bug switches live in one 64-bit mask");

const char* to_string(BugId id);
// Accepts the catalogue name in any case ("M2", "t12"). Returns: nullopt if unknown.
std::optional<BugId> parse_bug_id(std::string_view name);
// Every BugId, in declaration order.
std::span<const BugId> all_bug_ids();

// Environment faults. Append new kinds before kCount.
enum class EnvFaultKind : uint8_t {
  kForceOperandBusy,        // key: SEAMCALL leaf; param: operand ID of the busy resource
  kFailSeamcallInsn,        // key: SEAMCALL leaf; param: instruction failure type
  kArmZeroStep,             // key: vCPU index; param: kind-specific
  kForcePreviousEpochBusy,  // key: SEAMCALL leaf; param: kind-specific
  kDelayTdExit,             // key: vCPU index; param: delay, in scheduler steps
  kTscRollback,             // key: vCPU index (TDH.VP.ENTER answers TDX_TSC_ROLLBACK)
  kCount,
};
inline constexpr size_t kNumEnvFaultKinds = static_cast<size_t>(EnvFaultKind::kCount);
static_assert(kNumEnvFaultKinds <= 64, "armed kinds live in one 64-bit mask");

const char* to_string(EnvFaultKind kind);

class FaultInjection {
 public:
  // A key that matches any key of its kind.
  static constexpr uint64_t kAnyKey = ~uint64_t{0};
  // A count that never runs out.
  static constexpr uint32_t kForever = ~uint32_t{0};

  FaultInjection() = default;
  FaultInjection(const FaultInjection&) = delete;
  FaultInjection& operator=(const FaultInjection&) = delete;

  // ---- bug switches ----
  void enable(BugId id);
  void disable(BugId id);
  // Hot path: consulted at the buggy spot by the code under test.
  bool bug(BugId id) const {
    return (bugs_.load(std::memory_order_relaxed) >> static_cast<unsigned>(id)) & 1;
  }

  // ---- environment faults ----
  // Arms `kind` aimed at `key` (or kAnyKey) to fire `count` times (or kForever), each firing
  // yielding `param`. Re-arming the same (kind, key) replaces the earlier arm.
  // REQUIRES: count > 0; kind < kCount.
  void arm(EnvFaultKind kind, uint64_t key, uint32_t count, uint64_t param = 0)
      TDXSIM_EXCLUDES(mu_);
  void disarm(EnvFaultKind kind, uint64_t key) TDXSIM_EXCLUDES(mu_);
  void disarm_all() TDXSIM_EXCLUDES(mu_);

  // Consumes one firing of `kind` aimed at `key`, preferring an arm for exactly `key` over
  // one for kAnyKey. Returns: the arm's param, or nullopt if none is armed.
  std::optional<uint64_t> take(EnvFaultKind kind, uint64_t key) TDXSIM_EXCLUDES(mu_) {
    if (!(armed_kinds_.load(std::memory_order_relaxed) & kind_bit(kind))) return std::nullopt;
    return take_slow(kind, key);
  }

  // How many times `kind` has fired since construction (disarm_all() does not reset it).
  uint64_t fired(EnvFaultKind kind) const;

 private:
  struct Arm {
    EnvFaultKind kind;
    uint64_t key;
    uint32_t remaining;  // kForever: never decremented
    uint64_t param;
  };

  static uint64_t kind_bit(EnvFaultKind kind) {
    return uint64_t{1} << static_cast<unsigned>(kind);
  }
  std::optional<uint64_t> take_slow(EnvFaultKind kind, uint64_t key) TDXSIM_EXCLUDES(mu_);
  Arm* find(EnvFaultKind kind, uint64_t key) TDXSIM_REQUIRES(mu_);
  void publish_armed_kinds() TDXSIM_REQUIRES(mu_);

  AtomicWord bugs_;         // bit i: BugId i enabled
  AtomicWord armed_kinds_;  // bit k: at least one arm of EnvFaultKind k
  Mutex mu_{"fault_injection"};
  std::vector<Arm> arms_ TDXSIM_GUARDED_BY(mu_);
  std::array<Counter, kNumEnvFaultKinds> fired_;
};

}  // namespace tdxsim
