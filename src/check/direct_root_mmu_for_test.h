// A TDP MMU of its own over one direct root, for the check/ tests that read tables a real MMU
// built: the memory, host mm and KVM it needs, a fault that maps one 4K gfn, and a teardown
// that invalidates, zaps and puts the root. Test fixtures derive from it next to
// ::testing::Test; its members keep the names the tests use.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>

#include "base/rcu.h"
#include "kvm/fake_vendor_ops_for_test.h"
#include "kvm/host_mm.h"
#include "kvm/kvm.h"
#include "kvm/tdp_mmu.h"

namespace tdxsim {

class DirectRootMmu {
 protected:
  explicit DirectRootMmu(TdpMmuConfig config = TdpMmuConfig{})
      : mmu_(std::make_unique<TdpMmu>(mem_, kvm_.mmu_lock(), ops_, &kvm_, config)) {
    root_ = mmu_->get_direct_root();
  }
  ~DirectRootMmu() {
    if (root_ != nullptr) drop_root();
    TdpMmu::barrier();
  }

  // Maps `gfn` at 4K by a fault on the root, to `pfn` or a fresh frame.
  void map(Gfn gfn, std::optional<Pfn> pfn = std::nullopt) {
    KvmPageFault f{};
    f.gfn = gfn;
    f.addr = gfn.gpa();
    f.write = true;
    f.pfn = pfn ? *pfn : *mem_.alloc_frame();
    f.goal_level = Level::k4K;
    f.slot = reinterpret_cast<const Memslot*>(this);  // RAM, not MMIO
    ReadLock l(kvm_.mmu_lock());
    ASSERT_EQ(mmu_->map(root_, f), RetPf::kFixed);
  }
  // Invalidates every direct root, zaps it whole and puts this one.
  void drop_root() {
    {
      WriteLock l(kvm_.mmu_lock());
      mmu_->invalidate_direct_roots();
      mmu_->zap_invalidated_roots(/*shared=*/false);
    }
    mmu_->put_root(root_);
    root_ = nullptr;
  }

  RcuThread rcu_;
  HostMemory mem_{HostMemoryConfig{.bytes = 4096 * kPageSize}};
  HostMm mm_{mem_};
  Kvm kvm_{mem_, mm_, KvmConfig{}};
  FakeVendorOps ops_;
  std::unique_ptr<TdpMmu> mmu_;
  MmuPage* root_ = nullptr;
};

}  // namespace tdxsim
