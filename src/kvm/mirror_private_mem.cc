#include "kvm/mirror_private_mem.h"

#include "base/check.h"
#include "base/rcu.h"
#include "kvm/tdp_iter.h"

namespace tdxsim {

MirrorPrivateMem::~MirrorPrivateMem() {
  TDXSIM_CHECK(root_.load(std::memory_order_acquire) == nullptr,
               "the mirror root outlived its VM (teardown() not called)");
}

KvmResult<> MirrorPrivateMem::load() {
  if (root_.load(std::memory_order_acquire) != nullptr) return {};
  MutexLock l(load_mu_);
  if (root_.load(std::memory_order_relaxed) != nullptr) return {};
  MmuPage* root = mmu_.get_mirror_root();
  if (root == nullptr) return std::unexpected(Errno::kEnomem);
  root_.store(root, std::memory_order_release);
  return {};
}

RetPf MirrorPrivateMem::fault_in(KvmPageFault& fault) {
  MmuPage* root = root_.load(std::memory_order_acquire);
  TDXSIM_CHECK(root != nullptr, "a private fault before the mirror root was loaded");
  // The mirror root is never invalidated while the VM lives, so a private fault never
  // needs the obsolete-root retry a direct root does.
  return mmu_.map_in(root, fault);
}

bool MirrorPrivateMem::zap_range(Gfn start, Gfn end, ZapReason reason, bool flush) {
  mmu_.mmu_lock().assert_held_write();
  mmu_.stats().zap_requests[static_cast<size_t>(reason)][1].add();
  // Invalid mirror roots exist only during teardown; upstream's unmap includes them anyway.
  return mmu_.zap_leafs_in(kMirrorRoots | kInvalidRoots, start, end, reason,
                           /*can_yield=*/true, flush);
}

void MirrorPrivateMem::teardown() {
  mmu_.mmu_lock().assert_held_write();
  mmu_.invalidate_roots(kMirrorRoots);
  MmuPage* root = root_.exchange(nullptr, std::memory_order_acq_rel);
  if (root != nullptr) mmu_.put_root(root);
}

std::optional<Spte> MirrorPrivateMem::walk(Gfn gfn) const {
  mmu_.mmu_lock().assert_held();
  const MmuPage* root = root_.load(std::memory_order_acquire);
  if (root == nullptr) return std::nullopt;
  return mmu_.leaf_for(root, gfn);
}

void MirrorPrivateMem::for_each_leaf(const LeafVisitor& visit) const {
  mmu_.mmu_lock().assert_held();
  const MmuPage* root = root_.load(std::memory_order_acquire);
  if (root == nullptr) return;
  RcuReadGuard rcu;
  for (TdpIter it =
           mmu_.walk(*root, Level::k4K, Gfn{0}, TdpIter::root_end(*root), mmu_.root_bits(root));
       it.valid(); it.next()) {
    const Spte s = it.old_spte();
    if (s.is_shadow_present() && s.is_last(it.level())) visit(it.gfn(), it.level(), s);
  }
}

}  // namespace tdxsim
