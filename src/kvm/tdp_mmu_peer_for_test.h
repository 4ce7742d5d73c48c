// TdpMmuTestPeer: what tests of the MMU reach behind TdpMmu's private mirror half, and the
// comparison of a mirror root with the external tables a FakeVendorOps was told about.
#pragma once

#include <map>
#include <vector>

#include "kvm/fake_vendor_ops_for_test.h"
#include "kvm/tdp_mmu.h"

namespace tdxsim {

class TdpMmuTestPeer {
 public:
  static MmuPage* sp_of_table(const TdpMmu& m, Hpa spt) { return m.sp_of_table(spt); }
  static KvmResult<> set_spte_atomic(TdpMmu& m, const MmuPage* root, TdpIter& it, Spte s) {
    return m.set_spte_atomic(root, it, s);
  }
  static RetPf map_in(TdpMmu& m, MmuPage* root, KvmPageFault& f) { return m.map_in(root, f); }
  static MmuPage* get_mirror_root(TdpMmu& m) { return m.get_mirror_root(); }
  static void invalidate_roots(TdpMmu& m, uint8_t types) { m.invalidate_roots(types); }
  // Every root on the list, valid or not (no references taken: callers are quiescent).
  static std::vector<MmuPage*> roots(TdpMmu& m) {
    MutexLock l(m.roots_lock_);
    return m.roots_;
  }
};

// The external tables a mirror root implies: its leaves, and for each non-leaf entry the
// child table's external page, keyed as FakeVendorOps keys them.
struct MirrorImage {
  std::map<FakeVendorOps::Key, uint64_t> leaves;
  std::map<FakeVendorOps::Key, uint64_t> tables;
};

inline MirrorImage mirror_image(const TdpMmu& mmu, const MmuPage& root) {
  MirrorImage img;
  RcuReadGuard rcu;
  for (TdpIter it(mmu.mem(), root, Level::k4K, Gfn{0}, TdpIter::root_end(root), Gfn{0}); it.valid();
       it.next()) {
    const Spte s = it.old_spte();
    if (!s.is_shadow_present()) continue;
    if (s.is_last(it.level())) {
      img.leaves[{it.gfn().raw(), it.level()}] = s.pfn().raw();
    } else {
      const MmuPage* child = TdpMmuTestPeer::sp_of_table(mmu, s.child_table());
      img.tables[{it.gfn().raw(), child->level()}] = child->external_spt().value().raw();
    }
  }
  return img;
}

}  // namespace tdxsim
