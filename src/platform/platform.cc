#include "platform/platform.h"

#include "base/check.h"

namespace tdxsim {

Platform::Platform(const PlatformConfig& config, FaultInjection& faults)
    : config_(config), faults_(faults), memory_(config.memory) {
  TDXSIM_CHECK(config.packages >= 1 && config.cpus_per_package >= 1,
               "a platform needs at least one package and one CPU per package");
  for (unsigned p = 0; p < config.packages; ++p) {
    for (unsigned c = 0; c < config.cpus_per_package; ++c) {
      TlbConfig tlb = config.tlb;
      tlb.seed = config.tlb.seed + cpus_.size();  // each CPU evicts differently
      cpus_.push_back(std::make_unique<LogicalCpu>(*this, static_cast<unsigned>(cpus_.size()),
                                                   p, tlb));
    }
  }
  if (config.hyperv) {
    std::vector<Tlb*> tlbs;
    for (auto& cpu : cpus_) tlbs.push_back(&cpu->tlb());
    hyperv_ = std::make_unique<HyperVL0>(*config.hyperv, tlbs);
  }
}

Platform::~Platform() = default;

LogicalCpu& Platform::cpu(unsigned id) {
  TDXSIM_CHECK(id < cpus_.size(), "no logical CPU {} (platform has {})", id, cpus_.size());
  return *cpus_[id];
}

namespace {
constinit thread_local LogicalCpu* t_this_cpu = nullptr;
}  // namespace

LogicalCpu* this_cpu() { return t_this_cpu; }

CpuBinding Platform::bind(unsigned id) {
  LogicalCpu& c = cpu(id);
  c.bind_current_thread();
  return CpuBinding(c, std::exchange(t_this_cpu, &c));
}

CpuBinding::~CpuBinding() {
  if (cpu_ == nullptr) return;
  cpu_->unbind_current_thread();
  t_this_cpu = outer_;
}

}  // namespace tdxsim
