// MirrorPrivateMem: private memory as upstream KVM keeps it — a mirror root in the TDP MMU,
// each change reflected into the external (S-EPT) tables through the vendor hooks
// (kvm-tdx-mmu.md §1.4–1.8).
//
// The VM has one mirror root. Every vCPU's mirror_root_hpa names the same root, and a
// mirror root lives until VM destruction (its contents cannot be rebuilt without the
// guest accepting again), so one reference held here for the VM stands for all of theirs.
//
// Thread safety: as PrivateMemPath; the root pointer is set once under load_mu_ and read
// with acquire.
#pragma once

#include <atomic>

#include "base/lock.h"
#include "kvm/private_mem.h"
#include "kvm/tdp_mmu.h"

namespace tdxsim {

class MirrorPrivateMem final : public PrivateMemPath {
 public:
  explicit MirrorPrivateMem(TdpMmu& mmu) : mmu_(mmu) {}
  ~MirrorPrivateMem() override;

  KvmResult<> load() override;
  RetPf fault_in(KvmPageFault& fault) override;
  bool zap_range(Gfn start, Gfn end, ZapReason reason, bool flush) override;
  void teardown() override;
  std::optional<Spte> walk(Gfn gfn) const override;
  void for_each_leaf(const LeafVisitor& visit) const override;

  // The mirror root (null before load() and after teardown()), for checks that compare it
  // with the external tables.
  const MmuPage* root() const { return root_.load(std::memory_order_acquire); }

 private:
  TdpMmu& mmu_;
  Mutex load_mu_{"mirror root load"};
  std::atomic<MmuPage*> root_{nullptr};
};

}  // namespace tdxsim
