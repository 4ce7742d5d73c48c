#include "vmm/machine.h"

#include "base/check.h"
#include "kvm/vmx/tdx.h"
#include "kvm/vmx/tdx_host.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim::vmm {

Machine::Machine(const MachineConfig& config) : config_(config) {
  TDXSIM_CHECK(
      config.host_cpus >= 1 && config.host_cpus < config.packages * config.cpus_per_package,
      "a machine of {} CPUs cannot keep {} for host threads and still run vCPUs",
      config.packages * config.cpus_per_package, config.host_cpus);
  PlatformConfig pc;
  pc.packages = config.packages;
  pc.cpus_per_package = config.cpus_per_package;
  pc.memory.bytes = config.memory_bytes;
  pc.memory.huge_2m_pages = config.huge_2m_pages;
  pc.tlb.capacity = config.tlb_entries;
  pc.hyperv = config.hyperv;
  pc.vendor = config.vendor;
  pc.memory.reuse = config.frame_reuse;
  pc.probe_tlb_hits = config.probe_tlb_hits;
  TDXSIM_CHECK(!(config.tdx && config.hyperv),
               "a TDX host runs on bare metal: TDX and Hyper-V exclude each other");
  TDXSIM_CHECK(!(config.tdx && config.vendor == CpuVendor::kAmd), "TDX is Intel's");
  for (BugId id : config.bugs) faults_.enable(id);
  platform_ = std::make_unique<Platform>(pc, faults_);
  if (platform_->hyperv() != nullptr) {
    kvm_on_hyperv_ = std::make_unique<KvmOnHyperV>(*platform_->hyperv());
  }
  if (config.vendor == CpuVendor::kAmd) {
    svm_ = std::make_unique<SvmOps>(*platform_);
    // svm_hv_hardware_setup: Hyper-V's flush only with the enlightened NPT TLB.
    if (kvm_on_hyperv_ && config.hyperv->enlightened_tlb) {
      svm_->enable_hyperv_flush(kvm_on_hyperv_.get());
    }
    kvm_ = std::make_unique<KvmHost>(*platform_, *svm_);
    return;
  }
  // hardware_setup with EPT: Hyper-V's GPA-flush enlightenment.
  if (kvm_on_hyperv_) vmx_.enable_hyperv_flush(kvm_on_hyperv_.get());
  if (config.tdx) {
    module_ = std::make_unique<TdxModule>(*platform_);
    platform_->install_seam_module(module_.get());
    auto host = TdxHost::bring_up(*platform_, *module_);
    TDXSIM_CHECK(host.has_value(), "TDX bring-up failed: {}", host.error());
    tdx_host_ = std::move(*host);
    tdx_ops_ = std::make_unique<TdxOps>(*tdx_host_);
  }
  vt_ = std::make_unique<VtOps>(vmx_, tdx_ops_.get());
  kvm_ = std::make_unique<KvmHost>(*platform_, *vt_);
}

Machine::~Machine() = default;

unsigned Machine::host_cpu(unsigned i) const {
  TDXSIM_CHECK(i < config_.host_cpus, "host thread {} of {}", i, config_.host_cpus);
  return i;
}

unsigned Machine::vcpu_cpu_count() const {
  return config_.packages * config_.cpus_per_package - config_.host_cpus;
}

unsigned Machine::vcpu_cpu(unsigned n) const {
  TDXSIM_CHECK(n < vcpu_cpu_count(), "vCPU CPU {} of {}", n, vcpu_cpu_count());
  return config_.host_cpus + n;
}

}  // namespace tdxsim::vmm
