// The counters a scenario file's `count` expectations may name ("exits.memory_fault",
// "seamcall.TDH.MEM.PAGE.AUG", …): parsed when the file is read, read after the run.
#pragma once

#include <optional>
#include <string_view>

#include "tdx_module/seamcall_leaf.h"

namespace tdxsim {

enum class CounterKind : uint8_t {
  kMemoryFaultExits,
  kMapGpaExits,
  kMmioExits,
  kHltExits,
  kSeamcalls,    // KVM's SEAMCALLs of one leaf (TD)
  kBusy,         // TDX_OPERAND_BUSY answers to one leaf (TD)
  kBusyRetries,  // KVM's retries of one leaf with vCPU entry blocked (TD)
  kVeHandled,    // #VEs the guests' handlers returned from (TD)
  kRemoteFlushes,
  kHypercalls,  // Hyper-V GPA-flush hypercalls (space and list)
  kNotifierZappedShared,
  kNotifierZappedPrivate,
};

struct CounterRef {
  CounterKind kind;
  SeamcallLeaf leaf = SeamcallLeaf::kVpEnter;  // the *.LEAF kinds
  bool needs_td() const {
    return kind == CounterKind::kSeamcalls || kind == CounterKind::kBusy ||
           kind == CounterKind::kBusyRetries || kind == CounterKind::kVeHandled;
  }
};

// nullopt: no such counter (or an unknown SEAMCALL leaf).
std::optional<CounterRef> parse_counter(std::string_view name);

// For messages: the names, with LEAF standing for a SEAMCALL leaf name.
inline constexpr std::string_view kCounterNames =
    "exits.memory_fault, exits.map_gpa, exits.mmio, exits.hlt, seamcall.LEAF, busy.LEAF, "
    "busy_retries.LEAF, ve_handled, remote_flushes, hypercalls, notifier_zapped_shared, "
    "notifier_zapped_private";

}  // namespace tdxsim
