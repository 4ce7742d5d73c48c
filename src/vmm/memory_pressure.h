// MemoryPressure: the host reclaiming a VM's shared memory while it runs — a thread that
// keeps migrating the resident pages of chosen memslots' userspace mappings (HostMm::reclaim:
// MMU-notifier invalidations, the pages moved to new frames with their contents). KVM must
// zap exactly the shared mappings (a TD's private memory has no userspace mapping and is
// never touched: seed 001), and the guest must keep seeing its data.
//
// Thread safety: start/stop from one thread; the pressure thread runs on the machine's
// second host CPU.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "base/thread.h"
#include "vmm/vm.h"

namespace tdxsim::vmm {

class MemoryPressure {
 public:
  // Starts reclaiming `slots` of `vm` in turn, round after round, until stop(). A non-zero
  // `window` reclaims that many bytes of each slot a round, moving on through the slot round
  // after round (kswapd's scan of a part at a time); 0 reclaims whole slots every round.
  // REQUIRES: the machine has at least 2 host CPUs; window page-aligned.
  MemoryPressure(Vm& vm, std::vector<uint32_t> slots, uint64_t window = 0);
  ~MemoryPressure() { stop(); }
  MemoryPressure(const MemoryPressure&) = delete;
  MemoryPressure& operator=(const MemoryPressure&) = delete;

  void stop();
  // Full passes over the slots so far.
  uint64_t rounds() const { return rounds_.load(std::memory_order_acquire); }

 private:
  Vm& vm_;
  const std::vector<uint32_t> slots_;
  const uint64_t window_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> rounds_{0};
  Thread thread_;
};

}  // namespace tdxsim::vmm
