#include "vmm/memory_pressure.h"

#include <chrono>

#include "base/rcu.h"
#include "base/sched.h"
#include "base/thread.h"
#include "platform/platform.h"

namespace tdxsim::vmm {

MemoryPressure::MemoryPressure(Vm& vm, std::vector<uint32_t> slots, uint64_t window)
    : vm_(vm), slots_(std::move(slots)), window_(window) {
  thread_ = Thread([this] {
    RcuThread rcu;
    CpuBinding b = vm_.machine().platform().bind(vm_.machine().host_cpu(1));
    uint64_t cursor = 0;
    while (!stop_.load(std::memory_order_acquire)) {
      for (uint32_t slot : slots_) {
        if (window_ == 0) {
          vm_.reclaim(slot);
          continue;
        }
        const uint64_t size = vm_.region_size(slot);
        if (size != 0) vm_.reclaim(slot, cursor % size / kPageSize * kPageSize, window_);
      }
      cursor += window_;
      rounds_.fetch_add(1, std::memory_order_release);
      // Reclaim scans are periodic: the guest runs between passes.
      sched_sleep_for(std::chrono::milliseconds(2));
    }
  });
}

void MemoryPressure::stop() {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
}

}  // namespace tdxsim::vmm
