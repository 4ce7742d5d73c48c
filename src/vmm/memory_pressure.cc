#include "vmm/memory_pressure.h"

#include <chrono>

#include "base/rcu.h"
#include "platform/platform.h"

namespace tdxsim::vmm {

MemoryPressure::MemoryPressure(Vm& vm, std::vector<uint32_t> slots)
    : vm_(vm), slots_(std::move(slots)) {
  thread_ = std::thread([this] {
    RcuThread rcu;
    CpuBinding b = vm_.machine().platform().bind(vm_.machine().host_cpu(1));
    while (!stop_.load(std::memory_order_acquire)) {
      for (uint32_t slot : slots_) vm_.reclaim(slot);
      rounds_.fetch_add(1, std::memory_order_release);
      // Reclaim scans are periodic: the guest runs between passes.
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
}

void MemoryPressure::stop() {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
}

}  // namespace tdxsim::vmm
