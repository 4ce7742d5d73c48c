// Invariants "page_tables_balance" and "freed_tables_untouched", over one VM's TDP MMU.
//
// page_tables_balance: every page-table page the MMU allocated (roots included) is either
// released — freed, or unlinked and queued to be freed after an RCU grace period — or
// reachable: a root on the list, valid or invalid, or a table an entry of a reachable table
// links. A page that is neither is leaked: nothing will ever zap or free it (a table built
// under a root after the root's zap walked past it, then orphaned by the root's last put,
// is the classic way). Read from TdpMmu::table_census, which holds mmu_lock for write while
// it counts and walks, so it is exact whenever it runs; the checks run it at quiescent
// points.
//
// freed_tables_untouched: no walk of the TDP MMU read a page-table page after it was freed.
// A freed table's frame is poisoned (kvm/mmu_page.h: kFreedTablePoison) until it is reused,
// and every walk compares each entry it reads with the poison (kvm/tdp_iter.h); any match
// is a walk that outlived the table's grace period.
//
// Cost: the census walks every root down to the 2M entries (one visit per 2M of address
// space mapped, not per page), once per quiescent point; the poison is one compare per
// entry a walk reads and one page-granular fill per table freed.
#pragma once

#include <optional>
#include <string>

namespace tdxsim {

class TdpMmu;

// The evidence when `mmu`'s page-table pages do not balance, else nullopt.
// REQUIRES: mmu_lock not held (the census takes it for write); a quiescent point.
std::optional<std::string> page_table_balance_violation(const TdpMmu& mmu);
// The evidence when a walk of `mmu` read a freed table, else nullopt.
std::optional<std::string> freed_table_read_violation(const TdpMmu& mmu);

}  // namespace tdxsim
