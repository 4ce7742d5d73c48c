// SeptEntry: a Secure-EPT entry exactly as the TDX module stores it in an S-EPT page.
//
// One word serves two readers. The CPU's EPT walker (platform/page_walk.h) reads it as an
// ordinary EPT entry with the TD's HKID as the table key, so the entry alone decides what
// the guest may touch: only MAPPED leaves and NL_MAPPED tables are present (RWX = 7);
// every other state has RWX = 0, the access faults, and bit 63 (suppress #VE) being set in
// every entry the module writes sends the fault to the module, which decides between a
// #VE and a TD exit (shared/spec/tdx-module-abi.md §3.1). The module reads the same word
// for its own state, encoded in bits the walker ignores or that agree with the hardware
// meaning (TDX module src/common/x86_defs/x86_defs.h, src/common/memory_handlers/
// sept_manager.h; include/auto_gen/sept_state_lookup.h):
//
//   63   62:57 56  55  54   53   52   51:12        11   10  9  8  7   6    5:3  2:0
//   SVE  -     TDP TDB TDBW TDEX TDHP address      TDEL -   D  -  PS  IPAT MT   RWX
//
//   state encoding (7 bits) = PS:IPAT:TDP:TDB:TDBW:TDEX:D (PS is bit 6 of the encoding)
//
// PS (bit 7) is the leaf flag at every level: the hardware's page-size bit of a 2M/1G leaf,
// and a bit the walker ignores in a 4K PTE. A leaf's memory type follows IPAT (MT = WB
// with IPAT = 1, module sept_set_mt_from_ipat_tdmem), so a present leaf is always WB with
// ignore-PAT. The address carries the TD's HKID in the key bits (PhysAddrLayout::with_key),
// tables and pages alike. D (bit 9) is part of the state, so the S-EPT is walked with EPTP
// A/D flags off (WalkContext::ad_enabled = false): hardware must never set it.
//
// Host-side entry lock (module tdx_locks.h, sept_lock_acquire_host/guest): TDEL (bit 11)
// is a per-entry lock taken with a locked bit-test-and-set, TDHP (bit 52) its host-priority
// flag. A host request that finds TDEL set sets TDHP and answers OPERAND_BUSY; a host that
// gets the lock clears TDHP; a guest that gets the lock but sees TDHP releases it and
// answers OPERAND_BUSY_HOST_PRIORITY. Both bits are ignored by the walker, are outside the
// state encoding and never appear in the architectural view; with_state() keeps them (the
// module's state update rewrites only the encoding), the builders produce them clear.
//
// Architectural view (what TDH.MEM.SEPT.RD and the S-EPT error paths return in RCX; module
// set_arch_septe_details_in_vmm_regs, masks SEPT_ARCH_ENTRY_{LEAF,NON_LEAF}_MASK):
//   FREE            0 with SVE (bit 63) set.
//   leaf states     RWX, MT, IPAT, PS, SVE and the address with its HKID bits cleared —
//                   BLOCKED/PENDING show RWX = 0 but keep the HPA.
//   non-leaf        RWX and PS only: the child S-EPT page's HPA is not revealed, nor SVE
//                   (NL_MAPPED reads 0x7, NL_BLOCKED 0x0). REMOVED (PS = 0) reads 0.
// The RDX detail word is level (2:0, 0 = 4K) | public state (15:8) | VM index (17:16).
//
// Not modelled here: the migration and L2 (TD partitioning) states are only names
// (SeptState has them; decoding knows the migration encodings), the 2M ACCEPT_COUNTER, and
// the migration epoch a REMOVED entry carries.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "base/addr.h"
#include "base/bitfield.h"
#include "base/check.h"
#include "platform/ept_entry.h"
#include "platform/key_id.h"

namespace tdxsim {

// S-EPT entry states, with their public values: what RDX bits 15:8 report on errors and
// TDH.MEM.SEPT.RD returns (module sept_state_lookup.c, public_state). Values are ABI.
enum class SeptState : uint8_t {
  kFree = 0x00,
  kBlocked = 0x01,
  kPending = 0x02,
  kPendingBlocked = 0x03,
  kMapped = 0x04,
  kRemoved = 0x05,  // import only
  // Live migration (names only).
  kBlockedW = 0x08,
  kExportedBlockedW = 0x09,
  kExportedDirty = 0x0B,
  kExportedDirtyBlockedW = 0x0C,
  kPendingBlockedW = 0x10,
  kPendingExportedBlockedW = 0x11,
  kPendingExportedDirty = 0x13,
  kPendingExportedDirtyBlockedW = 0x14,
  // TD partitioning: L2 S-EPT states (names only; never in an L1 S-EPT entry).
  kL2Free = 0x40,
  kL2Blocked = 0x41,
  kL2Mapped = 0x44,
  kL2NlBlocked = 0xC1,
  kL2NlMapped = 0xC4,
  // Non-leaf.
  kNlBlocked = 0x81,
  kNlMapped = 0x84,
};

const char* to_string(SeptState s);

// Every state an L1 S-EPT entry can hold (the ones with an encoding), in the module's
// state-index order (sept_special_flags_lookup[].index: the columns of its leaf tables).
inline constexpr SeptState kL1SeptStates[] = {
    SeptState::kFree,          SeptState::kRemoved,
    SeptState::kNlMapped,      SeptState::kNlBlocked,
    SeptState::kMapped,        SeptState::kBlocked,
    SeptState::kBlockedW,      SeptState::kExportedBlockedW,
    SeptState::kExportedDirty, SeptState::kExportedDirtyBlockedW,
    SeptState::kPending,       SeptState::kPendingBlocked,
    SeptState::kPendingBlockedW, SeptState::kPendingExportedBlockedW,
    SeptState::kPendingExportedDirty, SeptState::kPendingExportedDirtyBlockedW,
};

// The 7-bit state encoding PS:IPAT:TDP:TDB:TDBW:TDEX:D (module sept_state_lookup.h,
// SEPT_STATE_*_ENCODING), or nullopt for a state with no L1 encoding (the L2 states).
constexpr std::optional<uint8_t> sept_state_encoding(SeptState s) {
  switch (s) {
    case SeptState::kFree: return 0x0E;
    case SeptState::kRemoved: return 0x0C;
    case SeptState::kNlMapped: return 0x00;
    case SeptState::kNlBlocked: return 0x08;
    case SeptState::kMapped: return 0x60;
    case SeptState::kBlocked: return 0x68;
    case SeptState::kBlockedW: return 0x64;
    case SeptState::kExportedBlockedW: return 0x66;
    case SeptState::kExportedDirty: return 0x63;
    case SeptState::kExportedDirtyBlockedW: return 0x67;
    case SeptState::kPending: return 0x70;
    case SeptState::kPendingBlocked: return 0x78;
    case SeptState::kPendingBlockedW: return 0x74;
    case SeptState::kPendingExportedBlockedW: return 0x76;
    case SeptState::kPendingExportedDirty: return 0x73;
    case SeptState::kPendingExportedDirtyBlockedW: return 0x77;
    case SeptState::kL2Free:
    case SeptState::kL2Blocked:
    case SeptState::kL2Mapped:
    case SeptState::kL2NlBlocked:
    case SeptState::kL2NlMapped: return std::nullopt;
  }
  return std::nullopt;
}

// The state an encoding names, or nullopt for the 112 encodings the module never writes.
constexpr std::optional<SeptState> sept_state_from_encoding(uint8_t encoding) {
  for (SeptState s : kL1SeptStates) {
    if (sept_state_encoding(s) == encoding) return s;
  }
  return std::nullopt;
}

// The level as the module's ABI numbers it (ept_level_t: 0 = 4K … 4 = PML5), used in the
// RDX detail word and in page-info operands.
constexpr uint8_t sept_level_abi(Level l) { return static_cast<uint8_t>(level_num(l) - 1); }

class SeptEntry {
 public:
  using Rwx = BitField<2, 0>;
  using MemType = BitField<5, 3>;
  using Ipat = Bit<6>;   // state bit; with MT = WB in every leaf
  using Ps = Bit<7>;     // state bit: leaf
  using D = Bit<9>;      // state bit
  using EntryLock = Bit<11>;     // TDEL: host-side entry lock
  using Addr = BitField<51, 12>;  // HPA | HKID << keyid_shift
  using HostPriority = Bit<52>;  // TDHP: set by a host that found TDEL taken
  using Tdex = Bit<53>;  // state bit: exported
  using Tdbw = Bit<54>;  // state bit: blocked for writing
  using Tdb = Bit<55>;   // state bit: blocked
  using Tdp = Bit<56>;   // state bit: pending
  using SuppressVe = Bit<63>;

  static constexpr uint64_t kStateMask = D::kMask | Tdex::kMask | Tdbw::kMask | Tdb::kMask |
                                         Tdp::kMask | Ipat::kMask | Ps::kMask;

  // FREE, as every entry of a new S-EPT page starts (an all-zero word would read NL_MAPPED).
  constexpr SeptEntry() : raw_(free_raw()) {}
  constexpr explicit SeptEntry(uint64_t raw) : raw_(raw) {}
  constexpr uint64_t raw() const { return raw_; }
  constexpr bool operator==(const SeptEntry&) const = default;
  // The hardware's view of the same word.
  constexpr EptEntry ept() const { return EptEntry{raw_}; }

  // --- Builders (module sept_set_leaf_*, sept_set_mapped_non_leaf_*, SEPTE_INIT_VALUE) ---
  // FREE: the state encoding and SVE, nothing else (what SEPT.ADD fills a new page with).
  static constexpr SeptEntry free() { return SeptEntry{free_raw()}; }
  // A leaf mapping `hpa` (aligned to `level`, 4K…1G) for the TD with key `hkid`.
  static constexpr SeptEntry mapped(Hpa hpa, KeyId hkid, Level level, const PhysAddrLayout& l) {
    return leaf(SeptState::kMapped, hpa, hkid, level, l);
  }
  // The same page, added by TDH.MEM.PAGE.AUG and waiting for the guest's ACCEPT.
  static constexpr SeptEntry pending(Hpa hpa, KeyId hkid, Level level, const PhysAddrLayout& l) {
    return leaf(SeptState::kPending, hpa, hkid, level, l);
  }
  // NL_MAPPED: points at the child S-EPT page `child` (4K aligned).
  static constexpr SeptEntry non_leaf(Hpa child, KeyId hkid, const PhysAddrLayout& l) {
    TDXSIM_CHECK(child.is_aligned(Level::k4K), "S-EPT page {} not 4K aligned", child);
    return SeptEntry{kSve | with_encoding(0, SeptState::kNlMapped) | Rwx::set(0, 7) |
                     Addr::in_place(l.with_key(child, hkid))};
  }

  // --- State --------------------------------------------------------------------------
  constexpr uint8_t state_encoding() const {
    return static_cast<uint8_t>(D::get(raw_) | BitField<4, 1>::set(0, raw_ >> Tdex::kLo) |
                                BitField<6, 5>::set(0, raw_ >> Ipat::kLo));
  }
  // REQUIRES: the entry holds one of the module's encodings (checked: anything else is a
  // simulator bug — the module never writes one).
  SeptState state() const {
    const std::optional<SeptState> s = kStateByEncoding[state_encoding()];
    if (!s) [[unlikely]] bad_state_encoding();
    return *s;
  }
  // The module's leaf test (PS); meaningful for every state but FREE, which reads false.
  constexpr bool is_leaf() const { return Ps::get(raw_) != 0; }
  // NL_MAPPED is the one encoding with every state bit clear, so the test a walk makes of
  // each entry it crosses needs no decoding.
  constexpr bool is_nl_mapped() const { return (raw_ & kStateMask) == 0; }

  // The entry in `s`, keeping the address and the lock bits (the module's state update
  // rewrites only the encoding): RWX = 7 for MAPPED and NL_MAPPED, 0 otherwise; MT from
  // IPAT; SVE set. So blocking and unblocking keep the HPA. FREE gives free() and REMOVED
  // its bare encoding with SVE (the module writes whole init values for both).
  // REQUIRES (checked): `s` is a state tdxsim models — FREE, REMOVED, MAPPED, BLOCKED,
  // PENDING, PENDING_BLOCKED, NL_MAPPED, NL_BLOCKED — and, unless FREE or REMOVED, of the
  // entry's own kind: a leaf state for a leaf, an NL state for a non-leaf (the builders
  // make entries from FREE; PROMOTE/DEMOTE build new ones).
  // Inline: ACCEPT's constant MAPPED folds the encoding to constants, so it pays a table
  // lookup and a few masks, not a call.
  SeptEntry with_state(SeptState s) const;

  // --- Address ------------------------------------------------------------------------
  constexpr Hpa hpa(const PhysAddrLayout& l) const { return hpa(hpa_mask(l)); }
  // hpa(l) in two steps, for a loop that computes the mask once.
  static constexpr uint64_t hpa_mask(const PhysAddrLayout& l) {
    return Addr::kMask & l.frame_mask();
  }
  constexpr Hpa hpa(uint64_t mask) const { return Hpa{raw_ & mask}; }
  constexpr KeyId hkid(const PhysAddrLayout& l) const { return l.key_of(Addr::in_place(raw_)); }

  // --- Entry lock bits (see the header comment) -----------------------------------------
  constexpr bool is_locked() const { return EntryLock::get(raw_) != 0; }
  constexpr bool host_priority() const { return HostPriority::get(raw_) != 0; }
  constexpr SeptEntry with_lock(bool v) const { return SeptEntry{EntryLock::set(raw_, v)}; }
  constexpr SeptEntry with_host_priority(bool v) const {
    return SeptEntry{HostPriority::set(raw_, v)};
  }

  // --- What the host sees -----------------------------------------------------------------
  // RCX of TDH.MEM.SEPT.RD and of S-EPT errors (see the header comment).
  uint64_t arch_view(const PhysAddrLayout& l) const;
  // RDX: level (2:0) | state (15:8) | VM index (17:16); `level` is the entry's own level.
  uint64_t arch_detail(Level level, uint8_t vm = 0) const;

 private:
  // Encoding → state for every 7-bit encoding: the module's own lookup (sept_state_lookup)
  // is a table for the same reason — every walk asks for the state of every entry it crosses.
  static constexpr std::array<std::optional<SeptState>, 128> kStateByEncoding = [] {
    std::array<std::optional<SeptState>, 128> t{};
    for (uint8_t e = 0; e < 128; ++e) t[e] = sept_state_from_encoding(e);
    return t;
  }();
  [[noreturn]] void bad_state_encoding() const;
  [[noreturn]] void bad_transition(SeptState to) const;

  static constexpr uint64_t kSve = SuppressVe::kMask;
  static constexpr uint64_t kWbMemType = MemType::set(0, static_cast<uint64_t>(EptMemType::kWB));

  // The state's encoding spread over its bits (module SEPT_STATE_ENC_TO_MASK), in `raw`.
  static constexpr uint64_t with_encoding(uint64_t raw, SeptState s) {
    const std::optional<uint8_t> enc = sept_state_encoding(s);
    TDXSIM_CHECK(enc.has_value(), "S-EPT state {} has no L1 encoding", to_string(s));
    const uint8_t e = *enc;
    raw = (raw & ~kStateMask) | D::set(0, e);
    raw |= BitField<56, 53>::set(0, e >> 1);
    raw |= BitField<7, 6>::set(0, e >> 5);
    return raw;
  }
  static constexpr uint64_t free_raw() { return kSve | with_encoding(0, SeptState::kFree); }
  static constexpr SeptEntry leaf(SeptState s, Hpa hpa, KeyId hkid, Level level,
                                  const PhysAddrLayout& l) {
    TDXSIM_CHECK(level <= Level::k1G && hpa.is_aligned(level), "S-EPT leaf {} at level {}", hpa,
                 level_name(level));
    uint64_t raw = kSve | with_encoding(0, s) | kWbMemType | Addr::in_place(l.with_key(hpa, hkid));
    if (s == SeptState::kMapped) raw = Rwx::set(raw, 7);
    return SeptEntry{raw};
  }

  uint64_t raw_;
};

inline SeptEntry SeptEntry::with_state(SeptState s) const {
  bool leaf_state = false;
  switch (s) {
    case SeptState::kFree:
      return free();
    case SeptState::kRemoved:
      return SeptEntry{kSve | with_encoding(0, SeptState::kRemoved)};
    case SeptState::kMapped:
    case SeptState::kBlocked:
    case SeptState::kPending:
    case SeptState::kPendingBlocked:
      leaf_state = true;
      break;
    case SeptState::kNlMapped:
    case SeptState::kNlBlocked:
      break;
    default:
      TDXSIM_CHECK(false, "S-EPT state {} is not modelled", to_string(s));
  }
  const SeptState from = state();
  if (from == SeptState::kFree || from == SeptState::kRemoved || is_leaf() != leaf_state)
      [[unlikely]] {
    bad_transition(s);
  }
  uint64_t raw = with_encoding(raw_, s) | kSve;
  // Module sept_set_mt_from_ipat_tdmem: a leaf is WB, a table entry's MT bits are reserved.
  raw = MemType::set(raw, Ipat::get(raw) != 0 ? MemType::get(kWbMemType) : 0);
  // Only these two are present to the walker; blocking and PENDING clear RWX.
  const bool present = s == SeptState::kMapped || s == SeptState::kNlMapped;
  raw = Rwx::set(raw, present ? 7 : 0);
  return SeptEntry{raw};
}

static_assert(sizeof(SeptEntry) == 8);
// The module's own init value for a FREE entry (SEPTE_INIT_VALUE): TDEX, TDBW, TDB and SVE.
static_assert(SeptEntry::free().raw() == 0x80E0'0000'0000'0000ull);
static_assert(SeptEntry::free().state_encoding() == 0x0E);
static_assert(SeptEntry::kStateMask == 0x01E0'0000'0000'02C0ull);
static_assert(sept_state_encoding(SeptState::kNlMapped) == 0);
// Hardware ignores every state bit outside PS/IPAT, which agree with a present WB leaf.
static_assert(((SeptEntry::kStateMask & ~(SeptEntry::Ps::kMask | SeptEntry::Ipat::kMask |
                                          SeptEntry::D::kMask)) &
               ~EptEntry::ignored_bits_mask()) == 0);

}  // namespace tdxsim
