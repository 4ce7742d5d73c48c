// Invariants "memslots_unaliased" and "sptes_backed_by_memslots": the MMU's tables and the
// memslots agree.
//
// - memslots_unaliased: no memslot of a VM with direct bits (a TD's shared bit, as a gfn bit)
//   holds a gfn that carries one. The MMU addresses both halves of a TD's GPA space through
//   one gfn and adds the shared bit only inside its iterator, so a slot up there would alias
//   the halves: faults never reach it (they strip the bit), and its zaps land on the other
//   slot's shared mappings (kvm-tdx-mmu.md §1.3).
// - sptes_backed_by_memslots: every present leaf of a valid root maps, for each gfn it
//   covers, a gfn of a memslot, on the side its attribute says (a mirror leaf a private gfn,
//   a TD's direct leaf a shared one), and the very frame that memslot gives the gfn now: the
//   guest_memfd page for a private gfn, the resident page at the slot's host address for a
//   shared one. Invalid roots are left out: they are on their way out, and
//   zapped_range_unmapped watches what they still map.
//
// Both are read at a quiescent point (no vCPU in the guest, no memory operation, no reclaim
// in flight): the leaves are collected under mmu_lock held for read, their backing resolved
// after it is dropped (HostMm's lock is taken before mmu_lock, never under it).
// Cost: one walk of every valid root and a lookup per leaf, at the end of a run.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tdxsim {

class Kvm;
class TdpMmu;

// The evidence when a memslot of `kvm` holds a gfn with a direct bit of `mmu`, else nullopt.
std::optional<std::string> aliased_memslot(Kvm& kvm, const TdpMmu& mmu);

struct UnbackedSptes {
  uint64_t leaves_checked = 0;
  uint64_t unbacked = 0;
  std::vector<std::string> evidence;  // the first few
};
// The present leaves of `mmu`'s valid roots that no memslot backs as they should.
// REQUIRES: a quiescent point; mmu_lock not held.
UnbackedSptes unbacked_sptes(Kvm& kvm, const TdpMmu& mmu);

}  // namespace tdxsim
