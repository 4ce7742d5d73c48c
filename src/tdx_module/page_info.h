// The two operands nearly every TDX memory leaf starts with, and the checks the module runs
// on them before it looks at any S-EPT entry.
//
//   RCX  "page info": GPA | level  (TDX module include/tdx_api_defs.h, page_info_api_input_t)
//   RDX  TD handle:   TDR HPA | flag (td_handle_and_flags_t)
//
// The TDX module numbers S-EPT levels from 0 (4K) — KVM and addr.h's Level from 1 — and
// for a leaf that adds or removes an S-EPT *table* the level is that of the entry that
// points to the table (shared/spec/tdx-module-abi.md §1.1).
//
// Check order (module src/common/helpers/helpers.c, verify_page_info_input and
// check_gpa_validity; shared/spec/tdx-module-rules.md §1): reserved bits 11:3 and 63:52,
// then the level against the leaf's range, then alignment of the GPA to the level, then
// the private-GPA rule. Every failure is TDX_OPERAND_INVALID|RCX (0xC000010000000001).
#pragma once

#include <cstdint>
#include <optional>

#include "base/addr.h"
#include "base/bitfield.h"
#include "base/check.h"
#include "platform/key_id.h"
#include "tdx_module/seamcall_leaf.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {

// The TD's guest-physical address width, TD_PARAMS.CONFIG_FLAGS.GPAW (0 → 48, 1 → 52).
// The GPA's shared bit is its top bit: 47 or 51 (module helpers.h, get_gpa_shared_bit).
enum class Gpaw : uint8_t { k48 = 48, k52 = 52 };

constexpr unsigned shared_bit(Gpaw w) {
  return static_cast<unsigned>(w) - 1;
}
constexpr bool is_shared_gpa(Gpa gpa, Gpaw w) {
  return ((gpa.raw() >> shared_bit(w)) & 1) != 0;
}

// Module 1.5.01's check_gpa_validity: bits 63:52 (above the module's fixed MAX_PA of 52,
// not the platform's MAXPHYADDR) must be 0, and with GPAW 48 so must 51:48, which the CPU
// treats as reserved in every paging entry of such a TD (rules A18).
constexpr bool is_valid_gpa(Gpa gpa, Gpaw w) {
  return (gpa.raw() & bit_range(63, static_cast<unsigned>(w))) == 0;
}
// The GPA leaves' rule: valid and not shared. With GPAW 48 a GPA fails exactly when any
// of bits 63:47 is set; with GPAW 52, when any of 63:51 is.
constexpr bool is_valid_private_gpa(Gpa gpa, Gpaw w) {
  return is_valid_gpa(gpa, w) && !is_shared_gpa(gpa, w);
}

// A leaf's admissible page-info levels, in TDX numbering (0 = 4K).
struct LevelRange {
  unsigned min = 0;
  unsigned max = 0;
  constexpr bool operator==(const LevelRange&) const = default;
};

// The level range each leaf passes to verify_page_info_input (rules A17). `ept_pwl` is
// TDCS EPTP.PWL: the S-EPT's levels minus one (3 for 4-level, 4 for 5-level); the leaves
// that reach the S-EPT's top take it as their maximum.
// Returns: nullopt for a leaf whose RCX is not a page-info operand (TDH.MR.EXTEND's RCX
// is a bare 256-byte-aligned GPA).
// REQUIRES: ept_pwl is 3 or 4.
// Inline: every memory leaf asks, and the answer is a constant for most.
inline std::optional<LevelRange> page_info_levels(SeamcallLeaf leaf, unsigned ept_pwl) {
  TDXSIM_CHECK(ept_pwl == 3 || ept_pwl == 4, "EPT PWL {} is neither 3 nor 4", ept_pwl);
  // The ranges each handler passes to verify_page_info_input (module
  // src/vmm_dispatcher/api_calls/tdh_mem_*.c; rules A17).
  switch (leaf) {
    case SeamcallLeaf::kMemPageAdd:
    case SeamcallLeaf::kMemPageRelocate:
      return LevelRange{0, 0};
    case SeamcallLeaf::kMemPageAug:
      return LevelRange{0, 1};
    case SeamcallLeaf::kMemPageRemove:
      return LevelRange{0, 2};
    case SeamcallLeaf::kMemPageDemote:
    case SeamcallLeaf::kMemPagePromote:
      return LevelRange{1, 2};
    case SeamcallLeaf::kMemSeptAdd:
    case SeamcallLeaf::kMemSeptRemove:
      return LevelRange{1, ept_pwl};
    case SeamcallLeaf::kMemRangeBlock:
    case SeamcallLeaf::kMemRangeUnblock:
    case SeamcallLeaf::kMemSeptRd:
      return LevelRange{0, ept_pwl};
    default:
      return std::nullopt;
  }
}

inline std::optional<LevelRange> page_info_levels(TdcallLeaf leaf) {
  // Module 1.5.01 rejects a 1G ACCEPT with OPERAND_INVALID (abi §8.1).
  if (leaf == TdcallLeaf::kMemPageAccept) return LevelRange{0, 1};
  return std::nullopt;
}

// RCX of the GPA leaves.
class PageInfo {
 public:
  using LevelBits = BitField<2, 0>;
  using Reserved0 = BitField<11, 3>;  // must be 0
  using GpaBits = BitField<51, 12>;
  using Reserved1 = BitField<63, 52>;  // must be 0

  // The highest level an S-EPT has: the 256T entry of a 5-level table.
  static constexpr unsigned kMaxTdxLevel = 4;

  constexpr PageInfo() = default;
  constexpr explicit PageInfo(uint64_t raw) : raw_(raw) {}
  // What Linux passes: gpa | level. Bits of `gpa` outside 51:12 are dropped.
  static constexpr PageInfo of(Gpa gpa, unsigned tdx_level) {
    return PageInfo{GpaBits::in_place(gpa.raw()) | LevelBits::set(0, tdx_level)};
  }
  static constexpr PageInfo of(Gpa gpa, Level level) { return of(gpa, to_tdx_level(level)); }

  static constexpr unsigned to_tdx_level(Level l) { return level_num(l) - 1; }
  static constexpr Level from_tdx_level(unsigned tdx_level) { return level_from(tdx_level + 1); }

  constexpr uint64_t raw() const { return raw_; }
  constexpr bool operator==(const PageInfo&) const = default;
  constexpr unsigned tdx_level() const { return static_cast<unsigned>(LevelBits::get(raw_)); }
  // REQUIRES: tdx_level() <= kMaxTdxLevel (validate() passed).
  constexpr Level level() const { return from_tdx_level(tdx_level()); }
  // Bits 51:12 in place (module page_info_to_pa): the level bits are not part of the GPA.
  constexpr Gpa gpa() const { return Gpa{GpaBits::in_place(raw_)}; }
  constexpr bool reserved_zero() const {
    return Reserved0::get(raw_) == 0 && Reserved1::get(raw_) == 0;
  }
  // The GPA is aligned to what one entry at its level maps (module is_gpa_aligned). A level
  // beyond any S-EPT is never aligned.
  constexpr bool is_aligned() const {
    return tdx_level() <= kMaxTdxLevel && gpa().is_aligned(level());
  }

  // verify_page_info_input: reserved bits, then min <= level <= max, then alignment.
  // Returns: raw(kSuccess) or TDX_OPERAND_INVALID|RCX.
  // REQUIRES: min <= max <= kMaxTdxLevel (checked).
  // Inline, as validate_private: AUG and ACCEPT check their operand on every page.
  uint64_t validate(unsigned min_tdx_level, unsigned max_tdx_level) const {
    TDXSIM_CHECK(min_tdx_level <= max_tdx_level && max_tdx_level <= kMaxTdxLevel,
                 "bad page-info level range {}..{}", min_tdx_level, max_tdx_level);
    if (!reserved_zero() || tdx_level() < min_tdx_level || tdx_level() > max_tdx_level ||
        !is_aligned()) {
      return kInvalidRcx;
    }
    return kOk;
  }
  uint64_t validate(LevelRange range) const { return validate(range.min, range.max); }
  // validate(), then the private-GPA rule: the whole operand check of a host GPA leaf.
  // Returns: raw(kSuccess) or TDX_OPERAND_INVALID|RCX.
  uint64_t validate_private(LevelRange range, Gpaw gpaw) const {
    if (const uint64_t status = validate(range); status != kOk) return status;
    return is_valid_private_gpa(gpa(), gpaw) ? kOk : kInvalidRcx;
  }

 private:
  // tdxsim::raw: the member raw() hides it here.
  static constexpr uint64_t kOk = tdxsim::raw(TdxStatus::kSuccess);
  static constexpr uint64_t kInvalidRcx =
      with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRcx);

  uint64_t raw_ = 0;
};

static_assert(sizeof(PageInfo) == 8);
static_assert(PageInfo::of(Gpa{0x20'0000}, Level::k2M).raw() == 0x20'0001);

// RDX of most TD-scope leaves: the TDR page's HPA, with bit 0 a per-leaf flag —
// ALLOW_EXISTING for TDH.MEM.SEPT.ADD (version 1), L2 S-EPT-add mode for
// TDH.MEM.PAGE.DEMOTE. Elsewhere RDX is a plain 4K-aligned HPA and bit 0 is misalignment.
class TdHandle {
 public:
  using Flag = Bit<0>;
  using Reserved0 = BitField<11, 1>;  // must be 0
  using TdrBits = BitField<51, 12>;
  using Reserved1 = BitField<63, 52>;  // must be 0: at or above the module's MAX_PA

  constexpr TdHandle() = default;
  constexpr explicit TdHandle(uint64_t raw) : raw_(raw) {}
  static constexpr TdHandle of(Hpa tdr, bool flag = false) {
    return TdHandle{TdrBits::in_place(tdr.raw()) | Flag::set(0, flag)};
  }

  constexpr uint64_t raw() const { return raw_; }
  constexpr bool operator==(const TdHandle&) const = default;
  constexpr Hpa tdr() const { return Hpa{TdrBits::in_place(raw_)}; }
  constexpr bool flag() const { return Flag::get(raw_) != 0; }
  constexpr bool allow_existing() const { return flag(); }
  constexpr bool l2_sept_add_mode() const { return flag(); }
  constexpr bool reserved_zero() const {
    return Reserved0::get(raw_) == 0 && Reserved1::get(raw_) == 0;
  }

  // The format part of the TDR operand check: reserved bits (and bit 0 where the leaf has
  // no flag), then no key-ID bits in the TDR HPA (module hpa_check_with_pwr_2_alignment).
  // Whether the page lies in a TDMR and is a TDR in PAMT is the PAMT's check, not this one.
  // Returns: raw(kSuccess) or TDX_OPERAND_INVALID|RDX. Inline: every TDR-handle leaf's first
  // check.
  uint64_t check(bool leaf_has_flag, const PhysAddrLayout& layout) const {
    constexpr uint64_t kInvalidRdx = with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRdx);
    if (!reserved_zero()) return kInvalidRdx;
    if (flag() && !leaf_has_flag) return kInvalidRdx;
    // The TDR is a private page: the module refuses an HPA that already carries a key ID.
    if ((tdr().raw() & layout.keyid_mask()) != 0) return kInvalidRdx;
    return tdxsim::raw(TdxStatus::kSuccess);
  }

 private:
  uint64_t raw_ = 0;
};

static_assert(sizeof(TdHandle) == 8);

}  // namespace tdxsim
