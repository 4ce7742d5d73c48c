// The module's own S-EPT walk (TDX module src/common/memory_handlers/sept_manager.c,
// secure_ept_walk): from the TD's S-EPT root down to one GPA's entry at a requested level.
//
// Unlike the CPU's walker (platform/page_walk.h), which follows present entries, the
// module descends only through NL_MAPPED entries and stops early at FREE, NL_BLOCKED or
// any leaf: an entry above the requested level that is not NL_MAPPED is where a memory
// leaf reports TDX_EPT_WALK_FAILED, with that entry's architectural view and its level/
// state (shared/spec/tdx-module-rules.md §1, A3). Entries are read with the TD's HKID, as
// the module maps S-EPT pages through keyholes with it.
//
// Thread safety: a snapshot. Entries are loaded with acquire (they are published by
// compare-and-swap with release); what the walk returns is current only while the caller
// holds the S-EPT tree lock, under which no table above the entry can be removed.
#pragma once

#include "base/addr.h"
#include "platform/host_memory.h"
#include "platform/key_id.h"
#include "tdx_module/sept_entry.h"

namespace tdxsim {

struct SeptWalkResult {
  Hpa entry_hpa;     // where the entry lives (key bits stripped)
  SeptEntry entry;   // as read
  Level level = Level::k4K;  // the entry's own level (addr.h numbering: 4K = 1)
  bool reached = false;      // level is the requested one
  // A table on the way was poisoned for the TD's key (a host wrote it with its own): the
  // walk read garbage, which on hardware is a machine check. The walk stops there, with
  // `entry` FREE and `reached` false; the caller makes the TD fatal.
  bool machine_check = false;

  // RCX/RDX of the module's S-EPT error paths (set_arch_septe_details_in_vmm_regs).
  uint64_t arch_view(const PhysAddrLayout& l) const { return entry.arch_view(l); }
  uint64_t arch_detail() const { return entry.arch_detail(level); }
};

// Walks the S-EPT rooted at `root` (a table of `ept_levels` levels: 4 or 5) for `gpa` down
// to `target`. The root's entries are at level `ept_levels` (PML4E: Level::k512G).
// REQUIRES (checked): ept_levels is 4 or 5; target at or below the root entries' level.
SeptWalkResult sept_walk(const HostMemory& mem, const PhysAddrLayout& layout, Hpa root,
                         unsigned ept_levels, KeyId hkid, Gpa gpa, Level target);

}  // namespace tdxsim
