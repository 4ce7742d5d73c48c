// Machine: one simulated host as a VMM finds it — the platform (logical CPUs in packages,
// host memory), the TDX module when the host has TDX (brought up as Linux does at boot),
// and KVM loaded with the Intel vendor table (VMX, plus TDX when present).
//
// CPU placement. SEAMCALLs and VM entries are CPU-local, so every thread that reaches them
// runs bound to a logical CPU. The first `host_cpus` CPUs are for host threads (the VMM's
// main thread, the memory-pressure thread): each has its own, so none waits for another's
// CPU while holding a lock. The rest run vCPUs; a vCPU thread stays bound to its CPU while it
// handles its exits (it runs there, as a real vCPU thread would) and may move between runs.
//
// Thread safety: the accessors may be called from any thread; construction and destruction
// from one, with no VM alive.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "base/fault_injection.h"
#include "kvm/hyperv/kvm_onhyperv.h"
#include "kvm/kvm_vm.h"
#include "kvm/svm/svm.h"
#include "kvm/vmx/vmx.h"
#include "kvm/vmx/vt_ops.h"
#include "platform/platform.h"

namespace tdxsim {
class TdxModule;
class TdxHost;
class TdxOps;
}  // namespace tdxsim

namespace tdxsim::vmm {

struct MachineConfig {
  unsigned packages = 2;
  unsigned cpus_per_package = 4;
  uint64_t memory_bytes = uint64_t{1} << 30;
  uint64_t huge_2m_pages = 0;  // reserved for THP-backed shared memory
  bool tdx = true;             // the TDX module is loaded and KVM enables TDX
  unsigned host_cpus = 2;      // CPUs 0..host_cpus-1 run host threads
  // Entries per logical CPU's TLB: a second-level TLB's size (Intel's STLB holds 1536 or
  // 2048). A finite TLB evicts, as hardware does; 0 would keep every translation forever.
  uint32_t tlb_entries = 1536;
  // KVM runs nested on Hyper-V (the L0), with the GPA-flush enlightenment KVM then uses for
  // its remote flushes. A TDX host is bare metal: the two exclude each other.
  std::optional<HyperVConfig> hyperv;
  // AMD: KVM loads the SVM vendor (NPT, ASIDs) and there is no TDX.
  CpuVendor vendor = CpuVendor::kIntel;
  // Which free frame the host allocator hands out next (kLowestFirst makes a freed page
  // table's page the next one allocated: the reuse seed 003 needs).
  ReusePolicy frame_reuse = ReusePolicy::kLastFreedFirst;
  // Bug switches turned on before anything runs (the run's --inject).
  std::vector<BugId> bugs;
  // Every TLB hit re-walked to classify it for the stale-use checker (PlatformConfig's
  // probe_tlb_hits): a walk per hit; benchmarks of the model's own paths turn it off.
  bool probe_tlb_hits = true;
};

class Machine {
 public:
  // Aborts (TDXSIM_CHECK) when the TDX bring-up fails: the machine is the simulation's own
  // assembly, not input.
  explicit Machine(const MachineConfig& config);
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  const MachineConfig& config() const { return config_; }
  FaultInjection& faults() { return faults_; }
  Platform& platform() { return *platform_; }
  KvmHost& kvm() { return *kvm_; }
  VmxOps& vmx() { return vmx_; }
  // Null on an Intel host.
  SvmOps* svm() { return svm_.get(); }
  // Null when the host has no TDX.
  TdxModule* tdx_module() { return module_.get(); }
  TdxHost* tdx_host() { return tdx_host_.get(); }
  TdxOps* tdx() { return tdx_ops_.get(); }
  // Null unless KVM runs on Hyper-V.
  KvmOnHyperV* kvm_on_hyperv() { return kvm_on_hyperv_.get(); }

  // Logical CPU for host thread `i` (0: the VMM's main thread). REQUIRES: i < host_cpus.
  unsigned host_cpu(unsigned i) const;
  // How many CPUs run vCPUs, and the n-th of them.
  unsigned vcpu_cpu_count() const;
  unsigned vcpu_cpu(unsigned n) const;

 private:
  MachineConfig config_;
  FaultInjection faults_;
  std::unique_ptr<Platform> platform_;
  std::unique_ptr<TdxModule> module_;
  std::unique_ptr<TdxHost> tdx_host_;
  std::unique_ptr<TdxOps> tdx_ops_;
  std::unique_ptr<KvmOnHyperV> kvm_on_hyperv_;
  VmxOps vmx_;
  std::unique_ptr<VtOps> vt_;
  std::unique_ptr<SvmOps> svm_;
  std::unique_ptr<KvmHost> kvm_;
};

}  // namespace tdxsim::vmm
