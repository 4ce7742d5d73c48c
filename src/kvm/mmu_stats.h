// MmuStats: what the MMU counts for a VM — KVM's per-VM stats (pages per level), the per-vCPU
// fault outcomes summed, zaps by why and which alias, and TLB flush requests.
//
// Thread safety: relaxed counters, written by every thread that faults or zaps and read as
// totals; a reader racing with writers sees some recent value of each, not a snapshot.
#pragma once

#include <array>
#include <cstdint>

#include "base/addr.h"
#include "base/atomic.h"
#include "base/sharded_counter.h"
#include "kvm/page_fault.h"

namespace tdxsim {

// Why a range was zapped: the producer of the kvm_gfn_range (or the whole-root teardown).
enum class ZapReason : uint8_t {
  kMemslot,     // memslot deleted or moved (kvm_arch_flush_shadow_memslot)
  kNotifier,    // MMU notifier: the host unmapped or moved the backing
  kAttributes,  // KVM_SET_MEMORY_ATTRIBUTES: the old alias retires
  kGmemPunch,   // guest_memfd hole punched (or the file released)
  kRoots,       // whole roots: fast zap, notifier release, VM teardown
  kCount,
};
const char* to_string(ZapReason r);

// Which alias a zap aimed at.
enum class ZapAlias : uint8_t { kShared, kPrivate, kCount };

struct MmuStats {
  static constexpr unsigned kLeafLevels = 3;  // 4K, 2M, 1G
  // Leaves mapped now, [mirror][level - 1] (kvm->stat.pages, split by root type). Sharded:
  // every fault that maps a page changes one, on every vCPU thread at once.
  std::array<std::array<ShardedCounter, kLeafLevels>, 2> pages;
  // Fault outcomes, by RetPf (KVM's per-vCPU pf_fixed, pf_spurious, … summed).
  std::array<ShardedCounter, 7> faults;
  // Leaves zapped, [reason][alias].
  std::array<std::array<Counter, static_cast<size_t>(ZapAlias::kCount)>,
             static_cast<size_t>(ZapReason::kCount)>
      zapped;
  // Zap requests (ranges handed to the MMU), [reason][alias].
  std::array<std::array<Counter, static_cast<size_t>(ZapAlias::kCount)>,
             static_cast<size_t>(ZapReason::kCount)>
      zap_requests;
  Counter remote_tlb_flushes;        // kvm_flush_remote_tlbs calls
  Counter remote_tlb_flushes_range;  // kvm_flush_remote_tlbs_range calls (a full flush follows
                                     // when the vendor has no ranged hook)
  Counter memory_fault_exits;

  int64_t pages_mapped(bool mirror, Level level) const {
    return pages[mirror ? 1 : 0][level_num(level) - 1].value();
  }
  uint64_t fault_count(RetPf r) const {
    return static_cast<uint64_t>(faults[static_cast<size_t>(r)].value());
  }
};

}  // namespace tdxsim
