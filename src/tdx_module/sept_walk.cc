#include "tdx_module/sept_walk.h"

#include <atomic>

#include "base/check.h"

namespace tdxsim {

SeptWalkResult sept_walk(const HostMemory& mem, const PhysAddrLayout& layout, Hpa root,
                         unsigned ept_levels, KeyId hkid, Gpa gpa, Level target) {
  TDXSIM_CHECK(ept_levels == 4 || ept_levels == 5, "S-EPT of {} levels", ept_levels);
  TDXSIM_CHECK(level_num(target) >= 1 && level_num(target) <= ept_levels,
               "S-EPT walk to level {} of a {}-level table", level_num(target), ept_levels);
  const uint64_t table_mask = SeptEntry::hpa_mask(layout);
  Hpa table = root;
  Level level = level_from(ept_levels);
  for (;;) {
    const Hpa at = table + uint64_t{8} * gpa.index(level);
    bool poisoned = false;
    const SeptEntry e{mem.load(at, hkid, std::memory_order_acquire, poisoned)};
    if (poisoned) [[unlikely]] {
      return SeptWalkResult{.entry_hpa = at,
                            .entry = SeptEntry::free(),
                            .level = level,
                            .reached = false,
                            .machine_check = true};
    }
    // Only an NL_MAPPED entry leads further down; every other state ends the walk there.
    if (level == target || !e.is_nl_mapped()) {
      return SeptWalkResult{.entry_hpa = at,
                            .entry = e,
                            .level = level,
                            .reached = level == target,
                            .machine_check = false};
    }
    table = e.hpa(table_mask);
    level = level_down(level);
  }
}

}  // namespace tdxsim
