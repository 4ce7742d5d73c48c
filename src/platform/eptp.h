// The extended-page-table pointer (VMCS field 0x201A): Intel SDM Vol. 3 §25.6.11
// "Extended-Page-Table Pointer (EPTP)"; its VM-entry checks are §27.2.1.1.
#pragma once

#include <cstdint>

#include "base/addr.h"
#include "base/bitfield.h"
#include "platform/ept_entry.h"
#include "platform/key_id.h"
#include "platform/page_walk.h"

namespace tdxsim {

class Eptp {
 public:
  using MemType = BitField<2, 0>;           // paging-structure memory type: UC or WB
  using WalkLengthMinus1 = BitField<5, 3>;  // 3: 4-level, 4: 5-level
  using AdEnable = Bit<6>;
  using SupervisorShadowStack = Bit<7>;  // tdxsim models no shadow stacks: must be 0
  using Reserved = BitField<11, 8>;
  using Root = BitField<51, 12>;  // the PML4/PML5 table's HPA ("EP4TA")

  constexpr Eptp() = default;
  constexpr explicit Eptp(uint64_t raw) : raw_(raw) {}
  constexpr uint64_t raw() const { return raw_; }
  constexpr bool operator==(const Eptp&) const = default;

  // A write-back EPTP, the only kind KVM builds.
  static constexpr Eptp make(Hpa root, unsigned levels, bool ad_enabled) {
    return Eptp{}
        .with_mem_type(EptMemType::kWB)
        .with_levels(levels)
        .with_ad_enabled(ad_enabled)
        .with_root(root);
  }

  constexpr EptMemType mem_type() const { return static_cast<EptMemType>(MemType::get(raw_)); }
  constexpr unsigned levels() const {
    return static_cast<unsigned>(WalkLengthMinus1::get(raw_)) + 1;
  }
  constexpr bool is_ad_enabled() const { return AdEnable::get(raw_) != 0; }
  constexpr Hpa root() const { return Hpa{Root::in_place(raw_)}; }

  constexpr Eptp with_mem_type(EptMemType t) const {
    return Eptp{MemType::set(raw_, static_cast<uint64_t>(t))};
  }
  constexpr Eptp with_levels(unsigned n) const { return Eptp{WalkLengthMinus1::set(raw_, n - 1)}; }
  constexpr Eptp with_ad_enabled(bool v) const { return Eptp{AdEnable::set(raw_, v)}; }
  constexpr Eptp with_root(Hpa root) const {
    return Eptp{(raw_ & ~Root::kMask) | Root::in_place(root.raw())};
  }

  // The VM-entry checks of §27.2.1.1 for a processor with 5-level EPT, A/D flags and no
  // supervisor shadow stacks: memory type UC or WB, a walk length of 4 or 5, bits 11:7 and
  // 63:MAXPHYADDR clear.
  constexpr bool is_valid(const PhysAddrLayout& layout) const {
    const auto t = MemType::get(raw_);
    const unsigned n = levels();
    return (t == 0 || t == 6) && (n == 4 || n == 5) &&
           (raw_ & (SupervisorShadowStack::kMask | Reserved::kMask)) == 0 &&
           (raw_ & ~layout.phys_mask()) == 0;
  }

  // The walk this EPTP selects; MBEC and execute-only support keep WalkContext's defaults.
  WalkContext walk_context(KeyId table_key) const {
    WalkContext ctx;
    ctx.format = PagingFormat::kEpt;
    ctx.root = root();
    ctx.levels = levels();
    ctx.ad_enabled = is_ad_enabled();
    ctx.table_key = table_key;
    return ctx;
  }

 private:
  uint64_t raw_ = 0;
};

static_assert(sizeof(Eptp) == 8);
static_assert(Eptp::make(Hpa{0x1234'5000}, 4, true).raw() == 0x1234'505Eull);

}  // namespace tdxsim
