#include "check/memslot_backing.h"

#include <fmt/format.h>

#include "base/lock.h"
#include "base/rcu.h"
#include "kvm/guest_memfd.h"
#include "kvm/kvm.h"
#include "kvm/memslot.h"
#include "kvm/tdp_mmu.h"

namespace tdxsim {

namespace {

constexpr size_t kKept = 8;

std::string describe(const TdpMmu::RootLeaf& leaf, Gfn gfn, std::string_view what) {
  return fmt::format("{} leaf at {} ({}, spte {:#x}, root {}): gfn {}: {}",
                     leaf.mirror ? "mirror" : "direct", leaf.gfn, level_name(leaf.level),
                     leaf.spte.raw(), leaf.root, gfn, what);
}

}  // namespace

std::optional<std::string> aliased_memslot(Kvm& kvm, const TdpMmu& mmu) {
  const uint64_t direct = mmu.config().gfn_direct_bits.raw();
  if (direct == 0) return std::nullopt;
  MutexLock l(kvm.slots_lock());
  for (const Memslot& slot : kvm.memslots()) {
    const Gfn last = slot.base_gfn + (slot.npages - 1);
    // Direct bits are high bits: a slot that holds one holds it at its last gfn.
    if ((last.raw() & direct) != 0) {
      return fmt::format("memslot {} [{}, {}] holds gfns with the direct bits {:#x}", slot.id,
                         slot.base_gfn, last, direct);
    }
  }
  return std::nullopt;
}

UnbackedSptes unbacked_sptes(Kvm& kvm, const TdpMmu& mmu) {
  std::vector<TdpMmu::RootLeaf> leaves;
  {
    const RcuThread reader;  // the walk reads the tables under RCU
    ReadLock l(kvm.mmu_lock());
    mmu.visit_leaves(true, true, Gfn{0}, mmu.max_gfn_exclusive(),
                     [&](const TdpMmu::RootLeaf& leaf) {
                       if (!leaf.invalid) leaves.push_back(leaf);
                     });
  }
  UnbackedSptes out;
  const bool private_mem = has_private_mem(kvm.type());
  const bool mirrored = has_mirrored_tdp(kvm.type());
  const auto flag = [&](const TdpMmu::RootLeaf& leaf, Gfn gfn, std::string what) {
    ++out.unbacked;
    if (out.evidence.size() < kKept) out.evidence.push_back(describe(leaf, gfn, what));
  };
  // slots_lock rather than an RCU read-side section: the checking thread need not be an RCU
  // reader, and at a quiescent point nobody waits for the lock.
  MutexLock sl(kvm.slots_lock());
  for (const TdpMmu::RootLeaf& leaf : leaves) {
    ++out.leaves_checked;
    const uint64_t pages = level_pages(leaf.level);
    for (uint64_t i = 0; i < pages; ++i) {
      const Gfn gfn = leaf.gfn + i;
      const Pfn mapped = leaf.spte.pfn() + i;
      const Memslot* slot = kvm.gfn_to_memslot(gfn);
      if (slot == nullptr || slot->invalid) {
        flag(leaf, gfn, slot == nullptr ? "no memslot" : "an invalid memslot");
        break;
      }
      const bool is_private = private_mem && kvm.mem_is_private(gfn);
      if (mirrored && leaf.mirror != is_private) {
        flag(leaf, gfn, fmt::format("the gfn is {}", is_private ? "private" : "shared"));
        break;
      }
      std::optional<Pfn> backing;
      if (is_private) {
        if (slot->gmem) backing = slot->gmem->page_at(slot->gfn_to_gmem_index(gfn));
      } else {
        backing = kvm.mm().resident_pfn(slot->gfn_to_hva(gfn));
      }
      if (backing != mapped) {
        flag(leaf, gfn,
             backing ? fmt::format("maps {} where memslot {} has {}", mapped, slot->id, *backing)
                     : fmt::format("maps {} where memslot {} has no {} page", mapped, slot->id,
                                   is_private ? "guest_memfd" : "resident host"));
        break;
      }
    }
  }
  return out;
}

}  // namespace tdxsim
