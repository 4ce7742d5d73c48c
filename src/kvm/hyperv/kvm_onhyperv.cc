#include "kvm/hyperv/kvm_onhyperv.h"

#include <vector>

#include "kvm/kvm.h"
#include "kvm/kvm_vm.h"
#include "kvm/vcpu.h"
#include "kvm/x86_ops.h"

namespace tdxsim {

bool KvmOnHyperV::flush_remote_tlbs(Kvm& kvm) {
  stats_.remote_flushes.add();
  return flush(kvm, std::nullopt);
}

bool KvmOnHyperV::flush_remote_tlbs_range(Kvm& kvm, Gfn start, uint64_t pages) {
  stats_.range_flushes.add();
  return flush(kvm, Range{start, pages});
}

bool KvmOnHyperV::flush_guest_mapping(Hpa root) {
  stats_.roots_flushed.add();
  return l0_.flush_guest_physical_address_space(root) == HvStatus::kSuccess;
}

bool KvmOnHyperV::flush_root(Hpa root, std::optional<Range> range) {
  if (!range) return flush_guest_mapping(root);
  // hyperv_fill_flush_guest_mapping_list: 4K ranges of up to 2048 pages, at most 510.
  std::vector<HvGpaPageRange> list;
  uint64_t pages = range->pages;
  Gfn cur = range->start;
  while (pages > 0) {
    if (list.size() >= kHvMaxFlushRepCount) {
      stats_.list_overflows.add();
      return false;
    }
    const uint64_t n = std::min(pages, HvGpaPageRange::kMaxPagesPerEntry);
    list.push_back(HvGpaPageRange::pages(cur, n));
    cur += n;
    pages -= n;
  }
  stats_.roots_flushed.add();
  return l0_.flush_guest_physical_address_list(root, list) == HvStatus::kSuccess;
}

bool KvmOnHyperV::flush(Kvm& kvm, std::optional<Range> range) {
  KvmVm* vm = kvm.vm();
  if (vm == nullptr) return false;
  HvRootTdp& tracked = vm->hv_root_tdp();
  MutexLock l(tracked.lock);
  bool ok = true;
  if (tracked.root != kInvalidPage) {
    stats_.shared_root_hits.add();
    ok = flush_root(tracked.root, range);
  } else {
    // The vCPUs diverged (or none loaded a root yet): flush each root, skipping the one the
    // walk adopts as the VM's; more than one root found means they still diverge.
    unsigned unique = 0;
    for (KvmVcpu* vcpu : vm->vcpus()) {
      const Hpa root = vcpu->hv_root_tdp();
      if (root == kInvalidPage || root == tracked.root) continue;
      if (++unique == 1) tracked.root = root;
      if (ok) ok = flush_root(root, range);
      if (!ok && unique > 1) break;
    }
    if (unique > 1) tracked.root = kInvalidPage;
  }
  if (!ok) stats_.failures.add();
  return ok;
}

void KvmOnHyperV::track_root_tdp(KvmVcpu& vcpu, Hpa root) {
  HvRootTdp& tracked = vcpu.vm().hv_root_tdp();
  MutexLock l(tracked.lock);
  tracked.updates.add();
  vcpu.set_hv_root_tdp(root);
  if (root != tracked.root) tracked.root = kInvalidPage;
}

void hv_track_root_tdp(KvmVcpu& vcpu, Hpa root) {
  if (vcpu.vm().ops().remote_flush_hook() != RemoteFlushHook::kHyperV) return;
  KvmOnHyperV::track_root_tdp(vcpu, root);
}

}  // namespace tdxsim
