// Spte: one entry of a KVM TDP page table — the hardware EPT entry (platform/ept_entry.h)
// plus the software state KVM keeps in the bits the processor ignores.
//
// Layout (bit numbers from upstream Linux arch/x86/kvm/mmu/spte.h and spte.c,
// kvm_mmu_set_ept_masks(), 6.10+; shared/spec/kvm-tdx-mmu.md §1.5 for FROZEN):
//
//   63   62:59  58    57     56:52   51:12          11       10  9  8  7   6    5:3  2:0
//   SVE  -      MMUW  HOSTW  -       pfn / table    PRESENT  -   D  A  PS  IPAT MT   RWX
//
//   MMIO SPTEs:  62:52 generation 18:8, 51:12 gpa, 10:3 generation 7:0, RWX|SVE the value
//
// Why these bits:
// - 51:12 name the frame with key ID 0 in the key bits: KVM maps shared memory with the host
//   key, and a mirror leaf records only which host page backs a private gfn — the TDX module
//   puts the TD's HKID into the real S-EPT entry, which KVM never sees.
// - PRESENT (bit 11, SPTE_MMU_PRESENT_MASK): "shadow-present", i.e. KVM's own notion of an
//   entry that maps memory or a table. It is independent of RWX, because a shadow-present
//   SPTE may be hardware-non-present (an access-tracked one) and an MMIO SPTE may have RWX
//   set (the EPT misconfiguration value) while mapping nothing. Bit 11 is ignored at every
//   EPT level.
// - SVE (bit 63): EPT suppress-#VE. KVM sets it in every SPTE it builds (shadow_present_mask
//   for EPT includes it) and in the non-present value (SHADOW_NONPRESENT_VALUE), so a fault
//   on an entry KVM owns is an EPT violation KVM sees, never a #VE into the guest. A TD runs
//   with EPT-violation #VE enabled by the TDX module, so a zeroed entry there would deliver
//   #VE; only the TD's MMIO SPTE clears SVE, on purpose (see MmioValue).
// - HOSTW/MMUW (57, 58; EPT_SPTE_HOST_WRITABLE / EPT_SPTE_MMU_WRITABLE): why a leaf is
//   write-protected. The low ignored bits 9 and 10 KVM uses for other paging modes are D and
//   user-execute under EPT, hence the high ones. Invariant: W ⇒ MMU-writable ⇒ host-writable.
// - 53:52 (A/D tracking type) and 55:54 (access-track saved R/X) are not modelled: tdxsim
//   runs EPT with A/D flags on, as TDX requires (kvm-tdx-mmu.md §2.2 bring-up), so every SPTE
//   carries the "A/D enabled" encoding, which is 0, and aging clears A rather than RWX.
// - The L1TF mask (shadow_nonpresent_or_rsvd_mask) is empty: the modelled CPUs (TDX-capable)
//   are not L1TF-vulnerable, so an MMIO SPTE holds its gpa unshifted.
//
// MBEC: bit 10 (user-execute) would make FROZEN_SPTE (0x5a0 has bit 10) present if mode-based
// execute control were on. KVM never enables MBEC for its TDP, and neither does tdxsim.
#pragma once

#include <cstdint>

#include "base/addr.h"
#include "base/bitfield.h"
#include "base/check.h"
#include "platform/ept_entry.h"

namespace tdxsim {

// The per-VM MMIO SPTE value (kvm->arch.shadow_mmio_value), compared under Spte::kMmioMask.
// The values are the architectural effect they select; do not change them.
enum class MmioValue : uint64_t {
  // VMX_EPT_MISCONFIG_WX_VALUE: W|X without R is an EPT misconfiguration (exit 49), which
  // KVM takes as "emulate MMIO" without a page-fault walk.
  kEptMisconfig = 0x6,
  // A TD's shared MMIO (kvm_mmu_set_mmio_spte_value(kvm, 0)): RWX = 0 and SVE clear, so the
  // CPU delivers the EPT violation to the guest as a #VE (the TDX module turns EPT-violation
  // #VE on for every TD), and the guest asks for MMIO with TDVMCALL<MMIO>: KVM cannot read a
  // TD's registers or instruction to emulate the access itself.
  kTdVe = 0x0,
};

// The access a leaf grants. KVM's TDP faults always ask for all of it; a read-only memslot
// or VMA takes write away through host_writable.
struct SpteLeafAttrs {
  bool read = true;
  bool write = true;
  bool exec = true;
  EptMemType mem_type = EptMemType::kWB;
  bool ignore_pat = false;
  // The host lets the guest write this page (clear for read-only memslots and VMAs).
  bool host_writable = true;
  // A prefetched leaf starts not accessed, so aging does not count a page the guest never
  // touched (make_spte's `prefetch`).
  bool prefetch = false;
};

class Spte {
 public:
  // Hardware bits, exactly as platform/ept_entry.h names them.
  using Read = EptEntry::Read;
  using Write = EptEntry::Write;
  using Exec = EptEntry::Exec;
  using MemType = EptEntry::MemType;
  using IgnorePat = EptEntry::IgnorePat;
  using PageSize = EptEntry::PageSize;
  using Accessed = EptEntry::Accessed;
  using Dirty = EptEntry::Dirty;
  using Addr = EptEntry::Addr;
  using SuppressVe = EptEntry::SuppressVe;

  // KVM's software bits.
  using MmuPresent = Bit<11>;
  using HostWritable = Bit<57>;
  using MmuWritable = Bit<58>;
  using MmioGenLow = BitField<10, 3>;    // generation bits 7:0
  using MmioGenHigh = BitField<62, 52>;  // generation bits 18:8

  static constexpr uint64_t kRwxMask = Read::kMask | Write::kMask | Exec::kMask;
  // SHADOW_NONPRESENT_VALUE: what every entry of a fresh table and every zapped entry holds.
  static constexpr uint64_t kNonPresentValue = SuppressVe::kMask;
  // FROZEN_SPTE: the per-entry lock a thread holding mmu_lock for read writes while it does
  // a multi-step change (a SEAMCALL for a mirror entry, a zap's TLB flush). RWX = 0 so the CPU
  // treats it as not present, SVE so that fault is an EPT violation (the vCPU retries until
  // the real value is published), no PRESENT so no walker descends, no PFN bits so it names
  // no memory (L1TF), and a pattern no other SPTE takes, so is_frozen() is an equality test.
  static constexpr uint64_t kFrozenValue = kNonPresentValue | 0x5a0;
  // shadow_mmio_mask for EPT: RWX and SVE decide MMIO-ness; the gpa and generation ride along.
  static constexpr uint64_t kMmioMask = kRwxMask | SuppressVe::kMask;
  static constexpr uint64_t kMmioGenMax =
      (uint64_t{1} << (MmioGenLow::kWidth + MmioGenHigh::kWidth)) - 1;

  constexpr Spte() = default;
  constexpr explicit Spte(uint64_t raw) : raw_(raw) {}
  constexpr uint64_t raw() const { return raw_; }
  constexpr bool operator==(const Spte&) const = default;
  // The same word as the CPU's walker reads it.
  constexpr EptEntry ept() const { return EptEntry{raw_}; }

  // --- Builders ---------------------------------------------------------------------------
  static constexpr Spte nonpresent() { return Spte{kNonPresentValue}; }
  static constexpr Spte frozen() { return Spte{kFrozenValue}; }
  // A leaf mapping `pfn` (aligned to `level`) at `level` (4K, 2M or 1G): make_spte.
  static constexpr Spte make_leaf(Pfn pfn, Level level, const SpteLeafAttrs& attrs);
  // A non-leaf entry pointing at the page-table page `child_table`: make_nonleaf_spte. Full
  // RWX, so the leaf alone decides the access; A set, since KVM runs EPT with A/D on.
  static constexpr Spte make_nonleaf(Hpa child_table);
  // An MMIO SPTE for `gfn` (direct bits excluded) tagged with the memslot generation.
  // REQUIRES: generation <= kMmioGenMax; gfn fits bits 51:12.
  static constexpr Spte make_mmio(Gfn gfn, uint64_t generation, MmioValue value);

  // --- Predicates -------------------------------------------------------------------------
  constexpr bool is_shadow_present() const { return MmuPresent::get(raw_) != 0; }
  constexpr bool is_frozen() const { return raw_ == kFrozenValue; }
  constexpr bool is_mmio(MmioValue v) const {
    return (raw_ & kMmioMask) == static_cast<uint64_t>(v);
  }
  // Bit 7. Meaningful as "maps a page" only at 2M and 1G; is_last() applies the level.
  constexpr bool is_large() const { return PageSize::get(raw_) != 0; }
  // A shadow-present entry at `level` maps a page (rather than a table).
  constexpr bool is_last(Level level) const { return level == Level::k4K || is_large(); }
  constexpr bool is_writable() const { return Write::get(raw_) != 0; }
  constexpr bool is_executable() const { return Exec::get(raw_) != 0; }
  constexpr bool is_host_writable() const { return HostWritable::get(raw_) != 0; }
  constexpr bool is_mmu_writable() const { return MmuWritable::get(raw_) != 0; }
  constexpr bool is_accessed() const { return Accessed::get(raw_) != 0; }
  constexpr bool is_dirty() const { return Dirty::get(raw_) != 0; }
  constexpr bool is_suppress_ve() const { return SuppressVe::get(raw_) != 0; }
  // W ⇒ MMU-writable ⇒ host-writable (check_spte_writable_invariants).
  constexpr bool writable_bits_consistent() const {
    return (!is_writable() || is_mmu_writable()) && (!is_mmu_writable() || is_host_writable());
  }

  // --- Fields -----------------------------------------------------------------------------
  // The frame a shadow-present entry names: the page of a leaf, the table of a non-leaf.
  constexpr Pfn pfn() const { return Pfn{Addr::get(raw_)}; }
  constexpr Hpa child_table() const { return Hpa{Addr::in_place(raw_)}; }
  constexpr Gfn mmio_gfn() const { return Gfn{Addr::get(raw_)}; }
  constexpr uint64_t mmio_generation() const {
    return MmioGenLow::get(raw_) | (MmioGenHigh::get(raw_) << MmioGenLow::kWidth);
  }

  // Aging with A/D on clears A and nothing else (mark_spte_for_access_track): the mapping
  // keeps working and the CPU sets A again on the next access.
  constexpr Spte with_accessed(bool v) const { return Spte{Accessed::set(raw_, v)}; }

 private:
  uint64_t raw_ = 0;
};

constexpr Spte Spte::make_leaf(Pfn pfn, Level level, const SpteLeafAttrs& attrs) {
  // KVM's TDP MMU maps at most 1G; bit 7 is reserved above it.
  TDXSIM_CHECK(level <= Level::k1G, "a {} leaf", level_name(level));
  TDXSIM_CHECK(pfn.is_aligned(level), "{} leaf at {} misaligned", level_name(level), pfn);
  TDXSIM_CHECK(pfn.raw() <= Addr::kMax, "{} beyond bits 51:12", pfn);
  // W without R is an EPT misconfiguration, not a permission.
  TDXSIM_CHECK(attrs.read || !attrs.write, "a write-only leaf");

  // Whatever the guest asked for, the host's refusal wins (make_spte drops ACC_WRITE_MASK).
  const bool write = attrs.write && attrs.host_writable;
  uint64_t raw = MmuPresent::kMask | SuppressVe::kMask;
  raw = Read::set(raw, attrs.read);
  raw = Write::set(raw, write);
  raw = Exec::set(raw, attrs.exec);
  raw = MemType::set(raw, static_cast<uint64_t>(attrs.mem_type));
  raw = IgnorePat::set(raw, attrs.ignore_pat);
  raw = PageSize::set(raw, level != Level::k4K);
  raw = HostWritable::set(raw, attrs.host_writable);
  // The TDP MMU shadows no guest page tables, so nothing else write-protects a page: a
  // writable leaf is MMU-writable.
  raw = MmuWritable::set(raw, write);
  raw = Accessed::set(raw, !attrs.prefetch);
  // A writable leaf starts dirty, prefetched or not: KVM accounts the page as written when it
  // maps it writable (dirty logging write-protects instead), so the CPU never has to set D.
  raw = Dirty::set(raw, write);
  raw |= Addr::in_place(pfn.hpa().raw());
  return Spte{raw};
}

constexpr Spte Spte::make_nonleaf(Hpa child_table) {
  TDXSIM_CHECK(child_table.is_aligned(Level::k4K), "table {} not page-aligned", child_table);
  TDXSIM_CHECK(child_table.raw() <= Addr::kMask, "table {} beyond bits 51:12", child_table);
  return Spte{MmuPresent::kMask | SuppressVe::kMask | kRwxMask | Accessed::kMask |
              child_table.raw()};
}

constexpr Spte Spte::make_mmio(Gfn gfn, uint64_t generation, MmioValue value) {
  TDXSIM_CHECK(generation <= kMmioGenMax, "MMIO generation {:#x} beyond 19 bits", generation);
  TDXSIM_CHECK(gfn.raw() <= Addr::kMax, "{} beyond bits 51:12", gfn);
  uint64_t raw = static_cast<uint64_t>(value) | Addr::in_place(gfn.gpa().raw());
  raw = MmioGenLow::set(raw, generation);
  raw = MmioGenHigh::set(raw, generation >> MmioGenLow::kWidth);
  return Spte{raw};
}

static_assert(sizeof(Spte) == 8);
// The exact upstream values (spte.h: SPTE_MMU_PRESENT_MASK, SHADOW_NONPRESENT_VALUE,
// FROZEN_SPTE, EPT_SPTE_{HOST,MMU}_WRITABLE; spte.c: kvm_mmu_set_ept_masks).
static_assert(Spte::MmuPresent::kMask == 0x800);
static_assert(Spte::kNonPresentValue == 0x8000'0000'0000'0000ull);
static_assert(Spte::kFrozenValue == 0x8000'0000'0000'05A0ull);
static_assert(Spte::HostWritable::kMask == uint64_t{1} << 57);
static_assert(Spte::MmuWritable::kMask == uint64_t{1} << 58);
static_assert(Spte::kMmioMask == 0x8000'0000'0000'0007ull);
static_assert(Spte::kMmioGenMax == 0x7FFFF);
// FROZEN is non-present to hardware and to KVM, and never mistaken for MMIO.
static_assert((Spte::kFrozenValue & Spte::kRwxMask) == 0);
static_assert(!Spte::frozen().is_shadow_present());
static_assert(!Spte::frozen().is_mmio(MmioValue::kEptMisconfig) &&
              !Spte::frozen().is_mmio(MmioValue::kTdVe));
static_assert(!Spte::nonpresent().is_mmio(MmioValue::kEptMisconfig) &&
              !Spte::nonpresent().is_mmio(MmioValue::kTdVe));
// KVM's software bits sit where the processor ignores them.
static_assert(((Spte::MmuPresent::kMask | Spte::HostWritable::kMask | Spte::MmuWritable::kMask) &
               ~EptEntry::ignored_bits_mask()) == 0);
// The generation never overlaps what decides MMIO-ness or shadow-presence.
static_assert(((Spte::MmioGenLow::kMask | Spte::MmioGenHigh::kMask) &
               (Spte::kMmioMask | Spte::MmuPresent::kMask | Spte::Addr::kMask)) == 0);
// Built values, worked out by hand from the layout above.
static_assert(Spte::make_leaf(Pfn{0x1234}, Level::k4K, {}).raw() == 0x8600'0000'0123'4B37ull);
static_assert(Spte::make_leaf(Pfn{0x200}, Level::k2M, {.write = false}).raw() ==
              0x8200'0000'0020'09B5ull);
static_assert(Spte::make_nonleaf(Hpa{0x1234'5000}).raw() == 0x8000'0000'1234'5907ull);
static_assert(Spte::make_mmio(Gfn{0xFEE00}, 0x7FFFF, MmioValue::kEptMisconfig).raw() ==
              0x7FF0'0000'FEE0'07FEull);
static_assert(Spte::make_mmio(Gfn{0xFEE00}, 0, MmioValue::kTdVe).raw() == 0xFEE0'0000ull);
// A shadow-present SPTE always has SVE, the MMIO values never: the two never alias.
static_assert(!Spte::make_leaf(Pfn{0}, Level::k4K, {.read = false, .write = false})
                   .is_mmio(MmioValue::kTdVe));

}  // namespace tdxsim
