// A nested (NPT) page-table entry, every level in one type.
//
// AMD nested paging reuses the long-mode page-table format (AMD APM Vol. 2, §15.25.5
// "Nested Table Walk"): the entries are those of §5.3 "Long-Mode Page Translation"
// (PML5E/PML4E/PDPE/PDE/PTE, Figures 5-18 to 5-25, §5.4 "Page-Translation-Table Entry
// Fields"). The level decides which bits mean what (bit 7 is PS in a PDPE/PDE and PAT in
// a PTE; a large page moves PAT to bit 12); the walker (page_walk.h) applies those rules.
#pragma once

#include <cstdint>

#include "base/addr.h"
#include "base/bitfield.h"
#include "platform/key_id.h"

namespace tdxsim {

class NptEntry {
 public:
  using Present = Bit<0>;
  using Writable = Bit<1>;  // R/W
  using User = Bit<2>;      // U/S: every nested access is a user access (§15.25.5)
  using Pwt = Bit<3>;
  using Pcd = Bit<4>;
  using Accessed = Bit<5>;
  using Dirty = Bit<6>;      // leaf only
  using PageSize = Bit<7>;   // PDPE/PDE: 1 maps a page; must be 0 in PML4E/PML5E
  using PatSmall = Bit<7>;   // PTE
  using Global = Bit<8>;     // leaf only (G has no effect on nested translations)
  using PatLarge = Bit<12>;  // 2M/1G leaf; the address starts above it
  using AvailLow = BitField<11, 9>;
  // Bits 51:12 in place: MAXPHYADDR-1:12 is the address, the rest is reserved.
  using Addr = BitField<51, 12>;
  using AvailHigh = BitField<62, 52>;
  using NoExec = Bit<63>;  // reserved unless EFER.NXE

  static constexpr uint64_t ignored_bits_mask() { return AvailLow::kMask | AvailHigh::kMask; }

  constexpr NptEntry() = default;
  constexpr explicit NptEntry(uint64_t raw) : raw_(raw) {}
  constexpr uint64_t raw() const { return raw_; }
  constexpr bool operator==(const NptEntry&) const = default;

  constexpr bool is_present() const { return Present::get(raw_) != 0; }
  constexpr bool is_writable() const { return Writable::get(raw_) != 0; }
  constexpr bool is_user() const { return User::get(raw_) != 0; }
  constexpr bool is_pwt() const { return Pwt::get(raw_) != 0; }
  constexpr bool is_pcd() const { return Pcd::get(raw_) != 0; }
  constexpr bool is_accessed() const { return Accessed::get(raw_) != 0; }
  constexpr bool is_dirty() const { return Dirty::get(raw_) != 0; }
  constexpr bool is_page_size() const { return PageSize::get(raw_) != 0; }
  constexpr bool is_global() const { return Global::get(raw_) != 0; }
  constexpr bool is_nx() const { return NoExec::get(raw_) != 0; }
  constexpr uint64_t avail_low() const { return AvailLow::get(raw_); }
  constexpr uint64_t avail_high() const { return AvailHigh::get(raw_); }
  // The PAT bit of a leaf at `level`: bit 7 in a PTE, bit 12 in a 2M/1G leaf.
  constexpr bool is_pat(Level level) const {
    return (level == Level::k4K ? PatSmall::get(raw_) : PatLarge::get(raw_)) != 0;
  }
  // Bits 51:12 in place, key-ID bits included (for a table or 4K leaf).
  constexpr uint64_t addr() const { return Addr::in_place(raw_); }
  // The address of a leaf at `level`: bits 51:level_shift, so a large page's PAT bit and
  // reserved bits never leak into it.
  constexpr uint64_t addr(Level level) const { return raw_ & bit_range(51, level_shift(level)); }

  constexpr NptEntry with_present(bool v) const { return NptEntry{Present::set(raw_, v)}; }
  constexpr NptEntry with_writable(bool v) const { return NptEntry{Writable::set(raw_, v)}; }
  constexpr NptEntry with_user(bool v) const { return NptEntry{User::set(raw_, v)}; }
  constexpr NptEntry with_pwt(bool v) const { return NptEntry{Pwt::set(raw_, v)}; }
  constexpr NptEntry with_pcd(bool v) const { return NptEntry{Pcd::set(raw_, v)}; }
  constexpr NptEntry with_accessed(bool v) const { return NptEntry{Accessed::set(raw_, v)}; }
  constexpr NptEntry with_dirty(bool v) const { return NptEntry{Dirty::set(raw_, v)}; }
  constexpr NptEntry with_page_size(bool v) const { return NptEntry{PageSize::set(raw_, v)}; }
  constexpr NptEntry with_global(bool v) const { return NptEntry{Global::set(raw_, v)}; }
  constexpr NptEntry with_nx(bool v) const { return NptEntry{NoExec::set(raw_, v)}; }
  constexpr NptEntry with_avail_low(uint64_t v) const { return NptEntry{AvailLow::set(raw_, v)}; }
  constexpr NptEntry with_avail_high(uint64_t v) const { return NptEntry{AvailHigh::set(raw_, v)}; }
  constexpr NptEntry with_pat(Level level, bool v) const {
    return NptEntry{level == Level::k4K ? PatSmall::set(raw_, v) : PatLarge::set(raw_, v)};
  }
  // `pa` is an address in place (key-ID bits included); its bits outside 51:12 are dropped.
  constexpr NptEntry with_addr(uint64_t pa) const {
    return NptEntry{(raw_ & ~Addr::kMask) | Addr::in_place(pa)};
  }

  // A software-defined field: any BitField inside the AVL bits.
  template <typename Field>
  constexpr uint64_t software() const {
    static_assert((Field::kMask & ~ignored_bits_mask()) == 0, "not an AVL bit of an NPT entry");
    return Field::get(raw_);
  }
  template <typename Field>
  constexpr NptEntry with_software(uint64_t v) const {
    static_assert((Field::kMask & ~ignored_bits_mask()) == 0, "not an AVL bit of an NPT entry");
    return NptEntry{Field::set(raw_, v)};
  }

 private:
  uint64_t raw_ = 0;
};

static_assert(sizeof(NptEntry) == 8);
static_assert(NptEntry::ignored_bits_mask() == 0x7FF0'0000'0000'0E00ull);

}  // namespace tdxsim
