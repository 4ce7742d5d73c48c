// The simulated machine: host memory, logical CPUs grouped into packages, the optional
// Hyper-V L0 underneath, and the SEAM module slot. Many platforms may live in one process.
//
// Thread safety: the object graph is fixed at construction (install_seam_module before
// threads run); each part documents its own rules.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "base/check_clock.h"
#include "base/fault_injection.h"
#include "platform/guest_access.h"
#include "platform/host_memory.h"
#include "platform/hyperv_l0.h"
#include "platform/logical_cpu.h"
#include "platform/seamcall.h"

namespace tdxsim {

enum class CpuVendor : uint8_t { kIntel, kAmd };

struct PlatformConfig {
  CpuVendor vendor = CpuVendor::kIntel;
  unsigned packages = 1;
  unsigned cpus_per_package = 4;
  HostMemoryConfig memory{};
  TlbConfig tlb{};
  // Classify every translation a TLB or the L0 serves against a fresh walk (costs a walk
  // per hit; benchmarks of the hit path turn it off).
  bool probe_tlb_hits = true;
  // Present when KVM runs nested under Hyper-V.
  std::optional<HyperVConfig> hyperv;
};

class CpuBinding;

class Platform {
 public:
  // `faults` supplies the environment faults the hardware honours (SEAMCALL instruction
  // failures); it outlives the platform.
  Platform(const PlatformConfig& config, FaultInjection& faults);
  ~Platform();
  Platform(const Platform&) = delete;
  Platform& operator=(const Platform&) = delete;

  const PlatformConfig& config() const { return config_; }
  CpuVendor vendor() const { return config_.vendor; }
  HostMemory& memory() { return memory_; }
  FaultInjection& faults() { return faults_; }
  unsigned cpu_count() const { return static_cast<unsigned>(cpus_.size()); }
  unsigned package_count() const { return config_.packages; }
  LogicalCpu& cpu(unsigned id);
  HyperVL0* hyperv() { return hyperv_.get(); }
  // The clock checkers stamp their events with (the CPUs read it when they probe hits).
  CheckClock& check_clock() { return check_clock_; }
  // guest_access.h. REQUIRES: no vCPU runs a guest while it is installed or removed.
  void set_guest_access_observer(GuestAccessObserver* o) {
    access_observer_.store(o, std::memory_order_release);
  }
  GuestAccessObserver* guest_access_observer() const {
    return access_observer_.load(std::memory_order_acquire);
  }

  void install_seam_module(SeamModule* module) { seam_module_ = module; }
  SeamModule* seam_module() { return seam_module_; }

  // Binds the calling thread to logical CPU `id`, waiting while another thread runs there.
  // The binding ends (and the CPU's queued interrupts are handled) when it is destroyed.
  [[nodiscard]] CpuBinding bind(unsigned id);

 private:
  PlatformConfig config_;
  FaultInjection& faults_;
  HostMemory memory_;
  std::vector<std::unique_ptr<LogicalCpu>> cpus_;
  std::unique_ptr<HyperVL0> hyperv_;
  CheckClock check_clock_;
  std::atomic<GuestAccessObserver*> access_observer_{nullptr};
  SeamModule* seam_module_ = nullptr;
};

// RAII: the calling thread runs on one logical CPU for the binding's lifetime.
class CpuBinding {
 public:
  CpuBinding(CpuBinding&& o) noexcept : cpu_(std::exchange(o.cpu_, nullptr)), outer_(o.outer_) {}
  CpuBinding& operator=(CpuBinding&&) = delete;
  ~CpuBinding();
  LogicalCpu& cpu() const { return *cpu_; }

 private:
  friend class Platform;
  CpuBinding(LogicalCpu& cpu, LogicalCpu* outer) : cpu_(&cpu), outer_(outer) {}
  LogicalCpu* cpu_;
  LogicalCpu* outer_;  // this_cpu() before the binding (a thread may nest bindings)
};

}  // namespace tdxsim
