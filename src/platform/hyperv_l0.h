// Microsoft Hyper-V as the L0 hypervisor under KVM (KVM runs as L1; its guests are L2).
//
// The L0 shadows L1's EPT/NPT: translations derived from L1's second-level tables ("GPA
// translations") are cached by the L0, tagged by the L1 root they came from, on top of the
// CPUs' own TLBs. Who drops them:
//   Intel: L1's INVEPT traps to the L0, which drops the GPA translations of that EP4TA (or
//          all of them); the flush hypercalls drop them on every CPU without IPIs.
//   AMD:   an ASID flush requested through the VMCB (TLB_CONTROL) is seen by the L0, which
//          drops that ASID's GPA translations too — except with the *enlightened TLB*
//          (HV_X64_NESTED_ENLIGHTENED_TLB with enlightened_npt_tlb set), where an ASID flush
//          drops only GVA-derived entries and only the GPA-flush hypercalls drop GPA ones.
//
// Hypercalls (Hyper-V TLFS §12.5, "Nested virtualization"): call codes 0x00af and 0x00b0.
// HvCallFlushGuestPhysicalAddressList is the only ranged GPA flush on Intel; bare-metal KVM
// turns range flushes into full INVEPTs.
//
// Thread safety: all members lock the L0's mutex; the hypercalls also lock each CPU's TLB.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "base/addr.h"
#include "base/atomic.h"
#include "base/bitfield.h"
#include "base/lock.h"
#include "base/thread_annotations.h"
#include "base/trace.h"
#include "platform/translation.h"

namespace tdxsim {

class Tlb;

enum class HvCallCode : uint16_t {
  kFlushGuestPhysicalAddressSpace = 0x00af,
  kFlushGuestPhysicalAddressList = 0x00b0,
};

enum class HvStatus : uint16_t {
  kSuccess = 0x0000,
  kInvalidHypercallCode = 0x0002,
  kInvalidHypercallInput = 0x0003,
  kInvalidParameter = 0x0005,
};
const char* to_string(HvStatus s);

// HV_GPA_PAGE_RANGE: one element of the list flush. BasePfn is a 4 KiB frame number;
// the range is AdditionalPages + 1 pages of 4 KiB, or of 2 MiB when LargePage is set.
class HvGpaPageRange {
 public:
  using AdditionalPages = BitField<10, 0>;
  using LargePage = Bit<11>;
  using BasePfn = BitField<63, 12>;
  static constexpr uint64_t kMaxPagesPerEntry = AdditionalPages::kMax + 1;  // 2048

  constexpr HvGpaPageRange() = default;
  constexpr explicit HvGpaPageRange(uint64_t raw) : raw_(raw) {}
  static constexpr HvGpaPageRange pages(Gfn base, uint64_t count) {
    uint64_t r = BasePfn::set(0, base.raw());
    return HvGpaPageRange{AdditionalPages::set(r, count - 1)};
  }
  constexpr uint64_t raw() const { return raw_; }
  constexpr Gpa start() const { return Gfn{BasePfn::get(raw_)}.gpa(); }
  constexpr uint64_t bytes() const {
    const uint64_t unit = LargePage::get(raw_) ? level_bytes(Level::k2M) : kPageSize;
    return (AdditionalPages::get(raw_) + 1) * unit;
  }

 private:
  uint64_t raw_ = 0;
};
static_assert(sizeof(HvGpaPageRange) == 8);

// (4096 - 16) / 8: the list elements that fit in one input page after the header.
inline constexpr size_t kHvMaxFlushRepCount = 510;

struct HyperVConfig {
  bool enlightened_tlb = false;  // AMD: HV_X64_NESTED_ENLIGHTENED_TLB + enlightened_npt_tlb
};

struct HyperVStats {
  Counter flush_space_calls, flush_list_calls, list_entries, translations_dropped;
  Counter trapped_invept, asid_flushes_seen;
};

// One GPA-flush hypercall as the L0 received it (for checkers and the run's statistics).
struct HvFlushHypercall {
  HvCallCode code = HvCallCode::kFlushGuestPhysicalAddressSpace;
  Hpa root;
  std::vector<HvGpaPageRange> list;  // the list flush's ranges; empty for the space flush
};

// One cached GPA translation of the L0.
struct L0Translation {
  Hpa root;  // the L1 second-level root it was derived from
  uint16_t asid = 0;
  Gpa gpa;  // aligned to level
  Level level = Level::k4K;
  Hpa hpa;
  KeyId key;
  Perms perms;
};

class HyperVL0 {
 public:
  HyperVL0(const HyperVConfig& config, std::span<Tlb* const> cpu_tlbs);

  const HyperVConfig& config() const { return config_; }

  // --- The L0's shadow of L1's tables (used by the CPUs' translation path) ---------------
  std::optional<L0Translation> lookup(Hpa root, Gpa gpa);
  // A CPU's fill races with drops from other threads (a hypercall, another CPU's INVEPT):
  // the fill is made with the generation read before its walk and is dropped when any drop
  // came between, as the L0's own shadow-table synchronisation would ensure.
  uint64_t generation();
  void insert(const L0Translation& t, uint64_t generation);
  void drop(Hpa root, Gpa gpa);  // the L0 re-syncs one shadow entry after a fault

  // --- Hypercalls from L1 ------------------------------------------------------------------
  HvStatus flush_guest_physical_address_space(Hpa root);
  HvStatus flush_guest_physical_address_list(Hpa root, std::span<const HvGpaPageRange> list);

  // --- Intercepts ----------------------------------------------------------------------------
  // Intel: L1 executed INVEPT (single-context for `ep4ta`, or all-context).
  void on_invept(bool all_context, uint64_t ep4ta);
  // AMD: L1 entered a guest with TLB_CONTROL requesting an ASID flush.
  void on_asid_flush(uint16_t asid, bool all_asids);

  size_t cached();
  const HyperVStats& stats() const { return stats_; }

  // Every flush hypercall, before the L0 acts on it.
  Tracepoint<HvFlushHypercall> hypercalls;

 private:
  struct Key {
    uint64_t root;
    uint64_t gpa;
    Level level;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  template <typename Pred>
  size_t drop_if_locked(Pred pred) TDXSIM_REQUIRES(mu_);
  size_t flush_range(Hpa root, Gpa gpa, uint64_t bytes);

  HyperVConfig config_;
  std::vector<Tlb*> tlbs_;
  Mutex mu_{"hyperv_l0"};
  std::unordered_map<Key, L0Translation, KeyHash> cache_ TDXSIM_GUARDED_BY(mu_);
  uint64_t drops_ TDXSIM_GUARDED_BY(mu_) = 0;
  HyperVStats stats_;
};

}  // namespace tdxsim
