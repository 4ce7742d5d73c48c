// Spte: one entry of a KVM TDP page table — the hardware entry (an EPT entry,
// platform/ept_entry.h, or an AMD NPT entry, platform/npt_entry.h) plus the software state KVM
// keeps in the bits the processor ignores.
//
// Two formats, one TDP MMU (as upstream): the format is chosen once per host by the vendor
// (KvmX86Ops::spte_format(); upstream's global masks, set by kvm_mmu_set_ept_masks() for
// VMX and left at kvm_mmu_reset_all_pte_masks()'s defaults for SVM) and every VM's TdpMmu
// holds it (TdpMmuConfig::format). Bits that mean the same in both formats are read without
// it; accessed, dirty, executable, host-/MMU-writable, suppress-#VE and MMIO-ness take it.
//
// EPT layout (bit numbers from upstream Linux arch/x86/kvm/mmu/spte.h and spte.c,
// kvm_mmu_set_ept_masks(), 6.10+; shared/spec/kvm-tdx-mmu.md §1.5 for FROZEN):
//
//   63   62:59  58    57     56:52   51:12          11       10  9  8  7   6    5:3  2:0
//   SVE  -      MMUW  HOSTW  -       pfn / table    PRESENT  -   D  A  PS  IPAT MT   RWX
//
//   MMIO SPTEs:  62:52 generation 18:8, 51:12 gpa, 10:3 generation 7:0, RWX|SVE the value
//
// NPT layout (the non-EPT defaults of kvm_mmu_reset_all_pte_masks(); APM Vol. 2 §5.4):
//
//   63   62:52  51:12          11       10    9      8  7   6  5  4:3  2  1  0
//   NX   -      pfn / table    PRESENT  MMUW  HOSTW  G  PS  D  A  -    U  W  P
//
//   MMIO SPTEs (svm_adjust_mmio_mask): P and the reserved bits 51:MAXPHYADDR the value, W|U
//   the access, the gpa below MAXPHYADDR, the generation where EPT has it. The walker finds
//   reserved bits in a present entry and reports #NPF with PFERR_RSVD, which KVM takes as
//   MMIO (handle_mmio_page_fault). With MAXPHYADDR 52 no bit is reserved and KVM turns MMIO
//   caching off (enable_mmio_caching): every MMIO access faults through the memslot lookup.
//
// Common to both: bit 0 (EPT R, NPT P), bit 1 (W), bit 7 (PS at 2M/1G), bit 11 (KVM's
// shadow-present), 51:12 (the frame), the MMIO generation bits, SHADOW_NONPRESENT_VALUE
// (bit 63: EPT suppress-#VE, NPT NX with P clear — not present either way) and FROZEN_SPTE.
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
//   write-protected. The low ignored bits 9 and 10 KVM uses for other paging modes
//   (DEFAULT_SPTE_HOST_WRITABLE / DEFAULT_SPTE_MMU_WRITABLE, NPT's) are D and user-execute
//   under EPT, hence the high ones. Invariant: W ⇒ MMU-writable ⇒ host-writable.
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
#include "platform/npt_entry.h"

namespace tdxsim {

// The hardware format of a VM's TDP entries. Chosen by the vendor for the whole host.
enum class SpteFormat : uint8_t {
  kEpt,  // VMX (and TDX's shared EPT and mirror)
  kNpt,  // SVM nested paging
};
constexpr const char* to_string(SpteFormat f) { return f == SpteFormat::kEpt ? "EPT" : "NPT"; }

// An EPT VM's MMIO SPTE value (kvm->arch.shadow_mmio_value), compared under
// Spte::kEptMmioMask. The values are the architectural effect they select; do not change them.
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

// What makes an SPTE an MMIO SPTE in one VM: shadow_mmio_mask, kvm->arch.shadow_mmio_value
// and shadow_mmio_access_mask, with enable_mmio_caching and the gpa bits an MMIO SPTE can hold
// (those below the reserved bits an NPT value sets).
struct MmioSpteMasks {
  uint64_t mask = 0;
  uint64_t value = 0;
  uint64_t access = 0;
  // enable_mmio_caching: false when the format has no encoding that faults as MMIO.
  bool caching = true;
  unsigned gpa_bits = 52;

  // An EPT VM's (VMX: the misconfiguration value; TD: the #VE value).
  static constexpr MmioSpteMasks ept(MmioValue v);
  // An NPT VM's on a host with MAXPHYADDR `phys_bits` (svm_adjust_mmio_mask): P plus the
  // reserved bits 51:phys_bits, so the access is an #NPF with PFERR_RSVD; W|U recorded as the
  // access. phys_bits 52 leaves no reserved bit: caching off (kvm_mmu_reset_all_pte_masks).
  static constexpr MmioSpteMasks npt(unsigned phys_bits);

  constexpr bool operator==(const MmioSpteMasks&) const = default;
};

// The access a leaf grants. KVM's TDP faults always ask for all of it; a read-only memslot
// or VMA takes write away through host_writable.
struct SpteLeafAttrs {
  bool read = true;  // NPT: a present entry is readable, so this must stay true
  bool write = true;
  bool exec = true;
  // EPT only (vmx_get_mt_mask): NPT leaves carry no memory type, the guest's PAT decides.
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
  // --- Bits every format shares --------------------------------------------------------------
  using Read = EptEntry::Read;  // NPT: P, which for a nested walk also means readable
  using Write = EptEntry::Write;
  using PageSize = EptEntry::PageSize;  // at 2M and 1G; NPT's PAT bit at 4K (never set)
  using Addr = EptEntry::Addr;
  static_assert(Read::kMask == NptEntry::Present::kMask && Write::kMask == NptEntry::Writable::kMask &&
                PageSize::kMask == NptEntry::PageSize::kMask && Addr::kMask == NptEntry::Addr::kMask);

  // KVM's software bits common to every format.
  using MmuPresent = Bit<11>;            // SPTE_MMU_PRESENT_MASK
  using MmioGenLow = BitField<10, 3>;    // generation bits 7:0
  using MmioGenHigh = BitField<62, 52>;  // generation bits 18:8

  // --- EPT ---------------------------------------------------------------------------------
  using EptExec = EptEntry::Exec;
  using EptMemType = EptEntry::MemType;
  using EptIgnorePat = EptEntry::IgnorePat;
  using EptAccessed = EptEntry::Accessed;
  using EptDirty = EptEntry::Dirty;
  using EptSuppressVe = EptEntry::SuppressVe;
  using EptHostWritable = Bit<57>;  // EPT_SPTE_HOST_WRITABLE
  using EptMmuWritable = Bit<58>;   // EPT_SPTE_MMU_WRITABLE
  static constexpr uint64_t kEptRwxMask = Read::kMask | Write::kMask | EptExec::kMask;
  // shadow_mmio_mask for EPT: RWX and SVE decide MMIO-ness; the gpa and generation ride along.
  static constexpr uint64_t kEptMmioMask = kEptRwxMask | EptSuppressVe::kMask;

  // --- NPT ---------------------------------------------------------------------------------
  using NptUser = NptEntry::User;  // PT_USER_MASK: every nested access is a user access
  using NptAccessed = NptEntry::Accessed;
  using NptDirty = NptEntry::Dirty;
  using NptNoExec = NptEntry::NoExec;  // shadow_nx_mask
  using NptHostWritable = Bit<9>;      // DEFAULT_SPTE_HOST_WRITABLE
  using NptMmuWritable = Bit<10>;      // DEFAULT_SPTE_MMU_WRITABLE

  // What differs by format (upstream's shadow_*_mask globals).
  struct Masks {
    uint64_t present;  // shadow_present_mask: in every shadow-present SPTE
    uint64_t user;     // shadow_user_mask
    uint64_t x;        // shadow_x_mask
    uint64_t nx;       // shadow_nx_mask
    uint64_t accessed;
    uint64_t dirty;
    uint64_t host_writable;
    uint64_t mmu_writable;
    uint64_t suppress_ve;
  };
  static constexpr Masks kEptMasks{EptSuppressVe::kMask, 0, EptExec::kMask, 0,
                                   EptAccessed::kMask, EptDirty::kMask, EptHostWritable::kMask,
                                   EptMmuWritable::kMask, EptSuppressVe::kMask};
  static constexpr Masks kNptMasks{NptEntry::Present::kMask, NptUser::kMask, 0, NptNoExec::kMask,
                                   NptAccessed::kMask, NptDirty::kMask, NptHostWritable::kMask,
                                   NptMmuWritable::kMask, 0};
  static constexpr const Masks& masks(SpteFormat f) {
    return f == SpteFormat::kEpt ? kEptMasks : kNptMasks;
  }

  // SHADOW_NONPRESENT_VALUE (every format on x86-64): what every entry of a fresh table and
  // every zapped entry holds. EPT: SVE, so a fault is an exit to KVM; NPT: NX with P clear.
  static constexpr uint64_t kNonPresentValue = uint64_t{1} << 63;
  // FROZEN_SPTE: the per-entry lock a thread holding mmu_lock for read writes while it does
  // a multi-step change (a SEAMCALL for a mirror entry, a zap's TLB flush). Bits 0-2 clear so
  // the CPU treats it as not present in either format, SVE so an EPT fault is an EPT
  // violation (the vCPU retries until the real value is published), no PRESENT so no walker
  // descends, no PFN bits so it names no memory (L1TF), and a pattern no other SPTE takes, so
  // is_frozen() is an equality test.
  static constexpr uint64_t kFrozenValue = kNonPresentValue | 0x5a0;
  static constexpr uint64_t kMmioGenMax =
      (uint64_t{1} << (MmioGenLow::kWidth + MmioGenHigh::kWidth)) - 1;

  constexpr Spte() = default;
  constexpr explicit Spte(uint64_t raw) : raw_(raw) {}
  constexpr uint64_t raw() const { return raw_; }
  constexpr bool operator==(const Spte&) const = default;
  // The same word as the CPU's walker reads it.
  constexpr EptEntry ept() const { return EptEntry{raw_}; }
  constexpr NptEntry npt() const { return NptEntry{raw_}; }

  // --- Builders ---------------------------------------------------------------------------
  static constexpr Spte nonpresent() { return Spte{kNonPresentValue}; }
  static constexpr Spte frozen() { return Spte{kFrozenValue}; }
  // A leaf mapping `pfn` (aligned to `level`) at `level` (4K, 2M or 1G): make_spte.
  static constexpr Spte make_leaf(SpteFormat f, Pfn pfn, Level level, const SpteLeafAttrs& attrs);
  // A non-leaf entry pointing at the page-table page `child_table`: make_nonleaf_spte. Full
  // access (EPT RWX; NPT P|W|U, NX clear), so the leaf alone decides it; A set, since KVM
  // runs with A/D on.
  static constexpr Spte make_nonleaf(SpteFormat f, Hpa child_table);
  // An MMIO SPTE for `gfn` (direct bits excluded) tagged with the memslot generation:
  // make_mmio_spte. REQUIRES: m.caching; generation <= kMmioGenMax; gfn below m.gpa_bits.
  static constexpr Spte make_mmio(const MmioSpteMasks& m, Gfn gfn, uint64_t generation);
  // An EPT VM's MMIO SPTE (the value names the format).
  static constexpr Spte make_mmio(Gfn gfn, uint64_t generation, MmioValue value) {
    return make_mmio(MmioSpteMasks::ept(value), gfn, generation);
  }

  // --- Predicates: every format -------------------------------------------------------------
  constexpr bool is_shadow_present() const { return MmuPresent::get(raw_) != 0; }
  constexpr bool is_frozen() const { return raw_ == kFrozenValue; }
  // Bit 7. Meaningful as "maps a page" only at 2M and 1G; is_last() applies the level.
  constexpr bool is_large() const { return PageSize::get(raw_) != 0; }
  // A shadow-present entry at `level` maps a page (rather than a table).
  constexpr bool is_last(Level level) const { return level == Level::k4K || is_large(); }
  constexpr bool is_writable() const { return Write::get(raw_) != 0; }

  // --- Predicates: by format ----------------------------------------------------------------
  // is_mmio_spte: only with caching on (a VM without it has no MMIO SPTEs at all).
  constexpr bool is_mmio(const MmioSpteMasks& m) const {
    return m.caching && (raw_ & m.mask) == m.value;
  }
  constexpr bool is_mmio(MmioValue v) const { return is_mmio(MmioSpteMasks::ept(v)); }
  // is_executable_pte: X set (EPT) or NX clear (NPT).
  constexpr bool is_executable(SpteFormat f) const {
    const Masks& m = masks(f);
    return (raw_ & (m.x | m.nx)) == m.x;
  }
  constexpr bool is_host_writable(SpteFormat f) const { return (raw_ & masks(f).host_writable) != 0; }
  constexpr bool is_mmu_writable(SpteFormat f) const { return (raw_ & masks(f).mmu_writable) != 0; }
  constexpr bool is_accessed(SpteFormat f) const { return (raw_ & masks(f).accessed) != 0; }
  constexpr bool is_dirty(SpteFormat f) const { return (raw_ & masks(f).dirty) != 0; }
  // EPT suppress-#VE; NPT has no #VE (bit 63 is NX there), so never.
  constexpr bool is_suppress_ve(SpteFormat f) const { return (raw_ & masks(f).suppress_ve) != 0; }
  // W ⇒ MMU-writable ⇒ host-writable (check_spte_writable_invariants).
  constexpr bool writable_bits_consistent(SpteFormat f) const {
    return (!is_writable() || is_mmu_writable(f)) && (!is_mmu_writable(f) || is_host_writable(f));
  }

  // --- Fields -----------------------------------------------------------------------------
  // The frame a shadow-present entry names: the page of a leaf, the table of a non-leaf.
  constexpr Pfn pfn() const { return Pfn{Addr::get(raw_)}; }
  constexpr Hpa child_table() const { return Hpa{Addr::in_place(raw_)}; }
  // get_mmio_spte_gfn: the gpa bits without the value's reserved bits (NPT).
  constexpr Gfn mmio_gfn(const MmioSpteMasks& m) const { return Gfn{Addr::get(raw_ & ~m.mask)}; }
  constexpr uint64_t mmio_generation() const {
    return MmioGenLow::get(raw_) | (MmioGenHigh::get(raw_) << MmioGenLow::kWidth);
  }

  // Aging with A/D on clears A and nothing else (mark_spte_for_access_track): the mapping
  // keeps working and the CPU sets A again on the next access.
  // spte_has_volatile_bits: whether the CPU (or a lockless fault) may change bits of this
  // leaf without mmu_lock — A while it is clear, D while the leaf is writable and clean, W
  // while it is MMU-writable but not writable. Such a leaf must be written atomically even
  // under the write lock, or a flag the CPU sets between the read and the store is lost.
  constexpr bool has_volatile_bits(SpteFormat f) const {
    if (!is_writable() && is_mmu_writable(f)) return true;
    return !is_accessed(f) || (is_writable() && !is_dirty(f));
  }
  constexpr Spte with_accessed(SpteFormat f, bool v) const {
    const uint64_t a = masks(f).accessed;
    return Spte{v ? raw_ | a : raw_ & ~a};
  }
  constexpr Spte with_dirty(SpteFormat f, bool v) const {
    const uint64_t d = masks(f).dirty;
    return Spte{v ? raw_ | d : raw_ & ~d};
  }

 private:
  uint64_t raw_ = 0;
};

constexpr MmioSpteMasks MmioSpteMasks::ept(MmioValue v) {
  return MmioSpteMasks{Spte::kEptMmioMask, static_cast<uint64_t>(v), 0, true, 52};
}

constexpr MmioSpteMasks MmioSpteMasks::npt(unsigned phys_bits) {
  TDXSIM_CHECK(phys_bits >= 32 && phys_bits <= 52, "MAXPHYADDR {}", phys_bits);
  if (phys_bits == 52) return MmioSpteMasks{0, 0, 0, false, 52};
  const uint64_t rsvd = bit_range(51, phys_bits) | NptEntry::Present::kMask;
  return MmioSpteMasks{rsvd, rsvd, Spte::Write::kMask | Spte::NptUser::kMask, true, phys_bits};
}

constexpr Spte Spte::make_leaf(SpteFormat f, Pfn pfn, Level level, const SpteLeafAttrs& attrs) {
  // KVM's TDP MMU maps at most 1G; bit 7 is reserved above it.
  TDXSIM_CHECK(level <= Level::k1G, "a {} leaf", level_name(level));
  TDXSIM_CHECK(pfn.is_aligned(level), "{} leaf at {} misaligned", level_name(level), pfn);
  TDXSIM_CHECK(pfn.raw() <= Addr::kMax, "{} beyond bits 51:12", pfn);
  // W without R is an EPT misconfiguration, not a permission.
  TDXSIM_CHECK(attrs.read || !attrs.write, "a write-only leaf");
  // An NPT entry is readable exactly when present: there is no execute-only NPT leaf.
  TDXSIM_CHECK(f == SpteFormat::kEpt || attrs.read, "an unreadable NPT leaf");
  const Masks& m = masks(f);

  // Whatever the guest asked for, the host's refusal wins (make_spte drops ACC_WRITE_MASK).
  const bool write = attrs.write && attrs.host_writable;
  uint64_t raw = MmuPresent::kMask | m.present | m.user;
  raw = Read::set(raw, attrs.read);
  raw = Write::set(raw, write);
  raw |= attrs.exec ? m.x : m.nx;
  if (f == SpteFormat::kEpt) {
    raw = EptMemType::set(raw, static_cast<uint64_t>(attrs.mem_type));
    raw = EptIgnorePat::set(raw, attrs.ignore_pat);
  }
  raw = PageSize::set(raw, level != Level::k4K);
  if (attrs.host_writable) raw |= m.host_writable;
  // The TDP MMU shadows no guest page tables, so nothing else write-protects a page: a
  // writable leaf is MMU-writable.
  if (write) raw |= m.mmu_writable;
  if (!attrs.prefetch) raw |= m.accessed;
  // A writable leaf starts dirty, prefetched or not: KVM accounts the page as written when it
  // maps it writable (dirty logging write-protects instead), so the CPU never has to set D.
  if (write) raw |= m.dirty;
  raw |= Addr::in_place(pfn.hpa().raw());
  return Spte{raw};
}

constexpr Spte Spte::make_nonleaf(SpteFormat f, Hpa child_table) {
  TDXSIM_CHECK(child_table.is_aligned(Level::k4K), "table {} not page-aligned", child_table);
  TDXSIM_CHECK(child_table.raw() <= Addr::kMask, "table {} beyond bits 51:12", child_table);
  const Masks& m = masks(f);
  return Spte{MmuPresent::kMask | m.present | Read::kMask | Write::kMask | m.user | m.x |
              m.accessed | child_table.raw()};
}

constexpr Spte Spte::make_mmio(const MmioSpteMasks& m, Gfn gfn, uint64_t generation) {
  TDXSIM_CHECK(m.caching, "an MMIO SPTE with MMIO caching off");
  TDXSIM_CHECK(generation <= kMmioGenMax, "MMIO generation {:#x} beyond 19 bits", generation);
  TDXSIM_CHECK(gfn.raw() <= Addr::kMax, "{} beyond bits 51:12", gfn);
  TDXSIM_CHECK((gfn.gpa().raw() & m.mask) == 0, "{} overlaps the MMIO value's bits", gfn);
  uint64_t raw = m.value | m.access | Addr::in_place(gfn.gpa().raw());
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
static_assert(Spte::EptHostWritable::kMask == uint64_t{1} << 57);
static_assert(Spte::EptMmuWritable::kMask == uint64_t{1} << 58);
static_assert(Spte::kEptMmioMask == 0x8000'0000'0000'0007ull);
static_assert(Spte::kMmioGenMax == 0x7FFFF);
// FROZEN is non-present to hardware and to KVM, and never mistaken for MMIO.
static_assert((Spte::kFrozenValue & Spte::kEptRwxMask) == 0);
static_assert(!Spte::frozen().is_shadow_present());
static_assert(!Spte::frozen().is_mmio(MmioValue::kEptMisconfig) &&
              !Spte::frozen().is_mmio(MmioValue::kTdVe));
static_assert(!Spte::nonpresent().is_mmio(MmioValue::kEptMisconfig) &&
              !Spte::nonpresent().is_mmio(MmioValue::kTdVe));
// KVM's software bits sit where the processor ignores them.
static_assert(((Spte::MmuPresent::kMask | Spte::EptHostWritable::kMask |
                Spte::EptMmuWritable::kMask) &
               ~EptEntry::ignored_bits_mask()) == 0);
// The generation never overlaps what decides MMIO-ness or shadow-presence.
static_assert(((Spte::MmioGenLow::kMask | Spte::MmioGenHigh::kMask) &
               (Spte::kEptMmioMask | Spte::MmuPresent::kMask | Spte::Addr::kMask)) == 0);
// Built values, worked out by hand from the layout above.
static_assert(Spte::make_leaf(SpteFormat::kEpt, Pfn{0x1234}, Level::k4K, {}).raw() ==
              0x8600'0000'0123'4B37ull);
static_assert(Spte::make_leaf(SpteFormat::kEpt, Pfn{0x200}, Level::k2M, {.write = false}).raw() ==
              0x8200'0000'0020'09B5ull);
static_assert(Spte::make_nonleaf(SpteFormat::kEpt, Hpa{0x1234'5000}).raw() ==
              0x8000'0000'1234'5907ull);
static_assert(Spte::make_mmio(Gfn{0xFEE00}, 0x7FFFF, MmioValue::kEptMisconfig).raw() ==
              0x7FF0'0000'FEE0'07FEull);
static_assert(Spte::make_mmio(Gfn{0xFEE00}, 0, MmioValue::kTdVe).raw() == 0xFEE0'0000ull);
// A shadow-present SPTE always has SVE, the MMIO values never: the two never alias.
static_assert(!Spte::make_leaf(SpteFormat::kEpt, Pfn{0}, Level::k4K, {.read = false, .write = false})
                   .is_mmio(MmioValue::kTdVe));

// NPT: the non-EPT defaults (spte.h DEFAULT_SPTE_{HOST,MMU}_WRITABLE; spte.c
// kvm_mmu_reset_all_pte_masks: PT_PRESENT_MASK, PT_USER_MASK, PT64_NX_MASK, A 5, D 6).
static_assert(Spte::NptHostWritable::kMask == uint64_t{1} << 9);
static_assert(Spte::NptMmuWritable::kMask == uint64_t{1} << 10);
static_assert(Spte::kNptMasks.accessed == 0x20 && Spte::kNptMasks.dirty == 0x40 &&
              Spte::kNptMasks.user == 0x4 && Spte::kNptMasks.nx == uint64_t{1} << 63 &&
              Spte::kNptMasks.x == 0);
// KVM's NPT software bits are AVL bits of the hardware entry.
static_assert(((Spte::MmuPresent::kMask | Spte::NptHostWritable::kMask |
                Spte::NptMmuWritable::kMask) &
               ~NptEntry::ignored_bits_mask()) == 0);
// NONPRESENT and FROZEN have P clear: not present to the NPT walker either.
static_assert((Spte::kNonPresentValue & NptEntry::Present::kMask) == 0 &&
              (Spte::kFrozenValue & NptEntry::Present::kMask) == 0);
// A 4K leaf: PRESENT 0x800 | MMUW 0x400 | HOSTW 0x200 | D 0x40 | A 0x20 | U 4 | W 2 | P 1.
static_assert(Spte::make_leaf(SpteFormat::kNpt, Pfn{0x1234}, Level::k4K, {}).raw() ==
              0x0000'0000'0123'4E67ull);
// A 2M read-only leaf: PRESENT 0x800 | HOSTW 0x200 | PS 0x80 | A 0x20 | U 4 | P 1.
static_assert(Spte::make_leaf(SpteFormat::kNpt, Pfn{0x200}, Level::k2M, {.write = false}).raw() ==
              0x0000'0000'0020'0AA5ull);
// Not executable: NX.
static_assert(Spte::make_leaf(SpteFormat::kNpt, Pfn{0x1234}, Level::k4K, {.exec = false}).raw() ==
              0x8000'0000'0123'4E67ull);
// A non-leaf: PRESENT 0x800 | A 0x20 | U 4 | W 2 | P 1.
static_assert(Spte::make_nonleaf(SpteFormat::kNpt, Hpa{0x1234'5000}).raw() ==
              0x0000'0000'1234'5827ull);
// MMIO with MAXPHYADDR 48: value 51:48 | P, access W|U, generation 0x7FFFF in 62:52 and 10:3.
static_assert(MmioSpteMasks::npt(48).mask == 0x000F'0000'0000'0001ull);
static_assert(Spte::make_mmio(MmioSpteMasks::npt(48), Gfn{0xFEE00}, 0x7FFFF).raw() ==
              0x7FFF'0000'FEE0'07FFull);
static_assert(Spte::make_mmio(MmioSpteMasks::npt(48), Gfn{0xFEE00}, 0x7FFFF)
                  .mmio_gfn(MmioSpteMasks::npt(48)) == Gfn{0xFEE00});
// Neither NONPRESENT, FROZEN nor a shadow-present leaf is an NPT MMIO SPTE.
static_assert(!Spte::nonpresent().is_mmio(MmioSpteMasks::npt(48)) &&
              !Spte::frozen().is_mmio(MmioSpteMasks::npt(48)) &&
              !Spte::make_leaf(SpteFormat::kNpt, Pfn{1}, Level::k4K, {}).is_mmio(MmioSpteMasks::npt(48)));
// MAXPHYADDR 52: nothing reserved, so no MMIO SPTEs at all.
static_assert(!MmioSpteMasks::npt(52).caching && !Spte{0}.is_mmio(MmioSpteMasks::npt(52)));

}  // namespace tdxsim
