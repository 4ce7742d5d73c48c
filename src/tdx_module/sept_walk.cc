#include "tdx_module/sept_walk.h"

#include <atomic>

#include "base/check.h"

namespace tdxsim {

SeptWalkResult sept_walk(const HostMemory& mem, const PhysAddrLayout& layout, Hpa root,
                         unsigned ept_levels, KeyId hkid, Gpa gpa, Level target) {
  TDXSIM_CHECK(ept_levels == 4 || ept_levels == 5, "S-EPT of {} levels", ept_levels);
  TDXSIM_CHECK(level_num(target) >= 1 && level_num(target) <= ept_levels,
               "S-EPT walk to level {} of a {}-level table", level_num(target), ept_levels);
  Hpa table = root;
  Level level = level_from(ept_levels);
  for (;;) {
    SeptWalkResult r;
    r.level = level;
    r.entry_hpa = table + uint64_t{8} * gpa.index(level);
    bool poisoned = false;
    r.entry = SeptEntry{mem.load(r.entry_hpa, hkid, std::memory_order_acquire, poisoned)};
    if (poisoned) [[unlikely]] {
      r.entry = SeptEntry::free();
      r.machine_check = true;
      return r;
    }
    r.reached = level == target;
    // Only an NL_MAPPED entry leads further down; every other state ends the walk there.
    if (r.reached || r.entry.state() != SeptState::kNlMapped) return r;
    table = r.entry.hpa(layout);
    level = level_down(level);
  }
}

}  // namespace tdxsim
