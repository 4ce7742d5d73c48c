// KvmHost and KvmVm: the kvm module loaded on one host (/dev/kvm with its vendor table) and
// one x86 VM it created (struct kvm with kvm_arch: the generic Kvm, its MMU, the vendor's
// per-VM state and the vCPUs).
//
// Creation (KVM_CREATE_VM): Kvm, then the MMU, then the vendor's vm_init. Destruction runs in
// the order a TD needs, which is also right for the others:
//   1. private memory released (kvm_gmem_release: every guest_memfd-backed private mapping
//      removed while the vendor can still remove it — a TD's HKID is still assigned)
//   2. vendor vm_pre_destroy (TDX: VP.FLUSH, VPFLUSHDONE, CACHE.WB, KEY.FREEID)
//   3. every vCPU: MMU unloaded, vendor vcpu_free
//   4. the MMU (remaining tables freed, external ones through free_external_spt)
//   5. vendor vm_destroy, then the generic Kvm.
//
// Thread safety: create_vcpu is serialised (kvm->lock); vcpu(), vcpus() and
// make_all_cpus_request may run on any thread at any time (vCPUs are published once and live
// as long as the VM). The destructor REQUIRES that no vCPU runs.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "base/atomic.h"
#include "base/lock.h"
#include "kvm/kvm.h"
#include "kvm/mmu.h"
#include "kvm/vcpu.h"
#include "kvm/x86_ops.h"

namespace tdxsim {

class Platform;

// The vendor's per-VM state (kvm_vmx, kvm_tdx).
class VendorVm {
 public:
  virtual ~VendorVm() = default;
};

// INVALID_PAGE: no root.
inline constexpr Hpa kInvalidPage{~uint64_t{0}};

// kvm->arch.hv_root_tdp with its lock (upstream under CONFIG_HYPERV, present in every VM):
// the TDP root all vCPUs share when they do, else kInvalidPage; each vCPU's own is
// KvmVcpu::hv_root_tdp, also under this lock. Only KVM-on-Hyper-V code (kvm/hyperv/) may
// touch it, and only on a Hyper-V host (seed 000).
struct HvRootTdp {
  Mutex lock{"kvm->arch.hv_root_tdp_lock"};
  Hpa root TDXSIM_GUARDED_BY(lock) = kInvalidPage;
  // Every update of the tracking (vCPU roots recorded): an invariant says this stays 0 on
  // a host that is not Hyper-V.
  Counter updates;
};

struct KvmVmConfig {
  VmType type = VmType::kDefault;
  uint32_t max_vcpus = 64;  // KVM_CAP_MAX_VCPUS
  uint32_t max_memslots = kDefaultMaxMemslots;
  uint64_t first_generation = 0;  // KvmConfig::first_generation
  KvmMmuConfig mmu;
};

class KvmHost {
 public:
  // REQUIRES: platform and ops outlive the host and its VMs.
  KvmHost(Platform& platform, KvmX86Ops& ops) : platform_(platform), ops_(ops) {}
  Platform& platform() const { return platform_; }
  KvmX86Ops& ops() const { return ops_; }

 private:
  Platform& platform_;
  KvmX86Ops& ops_;
};

class KvmVm {
 public:
  // KVM_CREATE_VM. EINVAL when the vendor does not run the type.
  static KvmResult<std::unique_ptr<KvmVm>> create(KvmHost& host, HostMm& mm,
                                                  const KvmVmConfig& config);
  ~KvmVm();
  KvmVm(const KvmVm&) = delete;
  KvmVm& operator=(const KvmVm&) = delete;

  KvmHost& host() const { return host_; }
  Platform& platform() const { return host_.platform(); }
  KvmX86Ops& ops() const { return host_.ops(); }
  Kvm& kvm() { return *kvm_; }
  const Kvm& kvm() const { return *kvm_; }
  KvmMmu& mmu() { return *mmu_; }
  const KvmVmConfig& config() const { return config_; }

  VendorVm* vendor() const { return vendor_.get(); }
  void set_vendor(std::unique_ptr<VendorVm> v) { vendor_ = std::move(v); }
  template <class T>
  T& vendor_as() const {
    return static_cast<T&>(*vendor_);
  }

  // KVM_CREATE_VCPU. EINVAL for an id outside [0, max_vcpus), EEXIST for one in use,
  // whatever the vendor refuses.
  KvmResult<KvmVcpu*> create_vcpu(int id);
  // The vCPU with `id`, or nullptr.
  KvmVcpu* vcpu(int id) const;
  // Online vCPUs in creation order (kvm_for_each_vcpu): a snapshot.
  std::vector<KvmVcpu*> vcpus() const;
  uint32_t online_vcpus() const {
    return static_cast<uint32_t>(online_.load(std::memory_order_acquire));
  }

  HvRootTdp& hv_root_tdp() { return hv_root_tdp_; }

  // kvm_make_all_cpus_request: `r` on every vCPU, kicking those in guest mode, and for a
  // waiting request returning only when each of them has left guest mode.
  void make_all_cpus_request(KvmRequest r);

 private:
  KvmVm(KvmHost& host, HostMm& mm, const KvmVmConfig& config);
  // Step 1 of destruction: kvm_gmem_release for every bound file.
  void release_private_memory();

  KvmHost& host_;
  const KvmVmConfig config_;
  std::unique_ptr<Kvm> kvm_;
  std::unique_ptr<KvmMmu> mmu_;
  std::unique_ptr<VendorVm> vendor_;
  bool vendor_initialised_ = false;

  HvRootTdp hv_root_tdp_;
  Mutex lock_{"kvm->lock"};
  // Slots fixed at creation (max_vcpus), filled in creation order and published by online_:
  // readers never lock.
  std::vector<std::unique_ptr<KvmVcpu>> vcpus_;
  AtomicWord online_;
};

}  // namespace tdxsim
