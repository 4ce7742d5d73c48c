#include "scenarios/scenario_counters.h"

#include <array>
#include <utility>

namespace tdxsim {

std::optional<CounterRef> parse_counter(std::string_view name) {
  static constexpr std::array<std::pair<std::string_view, CounterKind>, 9> kPlain = {{
      {"exits.memory_fault", CounterKind::kMemoryFaultExits},
      {"exits.map_gpa", CounterKind::kMapGpaExits},
      {"exits.mmio", CounterKind::kMmioExits},
      {"exits.hlt", CounterKind::kHltExits},
      {"ve_handled", CounterKind::kVeHandled},
      {"remote_flushes", CounterKind::kRemoteFlushes},
      {"hypercalls", CounterKind::kHypercalls},
      {"notifier_zapped_shared", CounterKind::kNotifierZappedShared},
      {"notifier_zapped_private", CounterKind::kNotifierZappedPrivate},
  }};
  for (const auto& [n, kind] : kPlain) {
    if (n == name) return CounterRef{kind};
  }
  static constexpr std::array<std::pair<std::string_view, CounterKind>, 3> kPerLeaf = {{
      {"seamcall.", CounterKind::kSeamcalls},
      {"busy.", CounterKind::kBusy},
      {"busy_retries.", CounterKind::kBusyRetries},
  }};
  for (const auto& [prefix, kind] : kPerLeaf) {
    if (!name.starts_with(prefix)) continue;
    const std::optional<SeamcallLeaf> leaf = seamcall_leaf_from_name(name.substr(prefix.size()));
    if (!leaf) return std::nullopt;
    return CounterRef{kind, *leaf};
  }
  return std::nullopt;
}

}  // namespace tdxsim
