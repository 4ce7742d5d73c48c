// PrivateMemPath: the MMU's one door to private memory.
//
// The rest of the MMU (the fault handler, the zap rules, the arch hooks generic KVM calls)
// decides *whether* a private gfn is mapped or zapped; how private mappings are kept is
// behind this interface. Upstream keeps them as mirror roots of the TDP MMU reflected into
// the S-EPT through vendor hooks (MirrorPrivateMem, mirror_private_mem.h). Seed 004's
// alternative — the S-EPT managed off to the side under one lock — plugs in here beside it,
// so both can run the same scenarios and be compared.
//
// Thread safety: each member states the mmu_lock mode its caller holds; implementations add
// whatever they need beneath it.
#pragma once

#include <functional>
#include <optional>

#include "base/addr.h"
#include "kvm/kvm_errno.h"
#include "kvm/mmu_stats.h"
#include "kvm/page_fault.h"
#include "kvm/spte.h"

namespace tdxsim {

class PrivateMemPath {
 public:
  virtual ~PrivateMemPath() = default;

  // Makes private faults possible (the mirror design allocates its root, as
  // mmu_alloc_direct_roots does before the direct root). ENOMEM when host memory is out.
  // REQUIRES: mmu_lock not held.
  virtual KvmResult<> load() = 0;
  // Maps fault.gfn privately with fault.pfn at fault.goal_level. kRetry when another thread
  // or the vendor (EBUSY) was in the way. REQUIRES: load() succeeded; mmu_lock held for read.
  virtual RetPf fault_in(KvmPageFault& fault) = 0;
  // Unmaps every private page in [start, end) (gfns without direct bits), the vendor making
  // sure no translation survives. REQUIRES: mmu_lock held for write.
  // Returns: whether a remote TLB flush is (still) needed; `flush` is one already pending.
  virtual bool zap_range(Gfn start, Gfn end, ZapReason reason, bool flush) = 0;
  // VM destruction: retires private mappings; the MMU then zaps every invalid root under
  // the write lock. REQUIRES: mmu_lock held for write.
  virtual void teardown() = 0;
  // The private leaf mapping `gfn`, if one is present (gpa_is_mapped for private GPAs).
  // REQUIRES: mmu_lock held (either mode).
  virtual std::optional<Spte> walk(Gfn gfn) const = 0;
  // Every present private leaf, in gfn order: a read-only view for checks that compare
  // KVM's private mappings with the S-EPT (check/sept_census.h). It hands out values, never
  // an entry's address, so nothing can map or zap through it.
  // REQUIRES: mmu_lock held (either mode).
  using LeafVisitor = std::function<void(Gfn gfn, Level level, Spte leaf)>;
  virtual void for_each_leaf(const LeafVisitor& visit) const = 0;
};

}  // namespace tdxsim
