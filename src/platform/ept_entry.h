// An EPT paging-structure entry, every level in one type.
//
// Intel SDM Vol. 3, §29.3.2 "EPT Translation Mechanism", the entry-format tables of the
// PML5E, PML4E, PDPTE (1-GByte page / table), PDE (2-MByte page / table) and PTE. The
// level decides which bits mean what (bit 7 is "page size" only in a PDPTE or PDE, memory
// type only in an entry that maps a page); the walker (page_walk.h) applies those rules,
// this type only names the bits.
#pragma once

#include <cstdint>

#include "base/addr.h"
#include "base/bitfield.h"
#include "platform/key_id.h"

namespace tdxsim {

// EPT memory type of a leaf (SDM Vol. 3 §29.3.7). 2, 3 and 7 are reserved: a leaf carrying
// one is an EPT misconfiguration. The enum can hold them, so a decoded entry never lies.
enum class EptMemType : uint8_t { kUC = 0, kWC = 1, kWT = 4, kWP = 5, kWB = 6 };

constexpr bool is_valid_ept_mem_type(uint64_t raw) {
  return raw == 0 || raw == 1 || raw == 4 || raw == 5 || raw == 6;
}

class EptEntry {
 public:
  using Read = Bit<0>;
  using Write = Bit<1>;
  // Supervisor-mode execute under mode-based execute control (MBEC), any execute otherwise.
  using Exec = Bit<2>;
  using MemType = BitField<5, 3>;  // leaf only
  using IgnorePat = Bit<6>;        // leaf only
  using PageSize = Bit<7>;         // PDPTE/PDE: 1 maps a page; ignored in a PTE
  using Accessed = Bit<8>;         // with EPTP bit 6 (A/D enable)
  using Dirty = Bit<9>;            // leaf, with EPTP bit 6
  using UserExec = Bit<10>;        // with MBEC
  // Address bits 51:12: MAXPHYADDR-1:12 is the address (the key ID in its top bits), the
  // rest is reserved; the walker applies PhysAddrLayout::maxphyaddr.
  using Addr = BitField<51, 12>;
  using SuppressVe = Bit<63>;  // leaf, or the not-present entry that ends a walk

  // Bits the processor ignores at every level, free for software (KVM keeps its SPTE
  // state here). 57, 58, 60 and 61 gain a meaning only under VM-execution controls
  // tdxsim leaves off (guest-paging verification, paging-write, supervisor shadow stack,
  // sub-page write permissions), exactly as KVM does.
  using SoftwareLow = Bit<11>;
  using SoftwareHigh = BitField<62, 52>;
  static constexpr uint64_t ignored_bits_mask() { return SoftwareLow::kMask | SoftwareHigh::kMask; }

  constexpr EptEntry() = default;
  constexpr explicit EptEntry(uint64_t raw) : raw_(raw) {}
  constexpr uint64_t raw() const { return raw_; }
  constexpr bool operator==(const EptEntry&) const = default;

  constexpr bool is_read() const { return Read::get(raw_) != 0; }
  constexpr bool is_write() const { return Write::get(raw_) != 0; }
  constexpr bool is_exec() const { return Exec::get(raw_) != 0; }
  constexpr uint64_t mem_type_raw() const { return MemType::get(raw_); }
  constexpr EptMemType mem_type() const { return static_cast<EptMemType>(MemType::get(raw_)); }
  constexpr bool is_ignore_pat() const { return IgnorePat::get(raw_) != 0; }
  constexpr bool is_page_size() const { return PageSize::get(raw_) != 0; }
  constexpr bool is_accessed() const { return Accessed::get(raw_) != 0; }
  constexpr bool is_dirty() const { return Dirty::get(raw_) != 0; }
  constexpr bool is_user_exec() const { return UserExec::get(raw_) != 0; }
  constexpr bool is_suppress_ve() const { return SuppressVe::get(raw_) != 0; }
  // Bits 51:12 in place, key-ID bits included.
  constexpr uint64_t addr() const { return Addr::in_place(raw_); }
  Hpa hpa(const PhysAddrLayout& layout) const { return layout.strip_key(addr()); }
  KeyId key(const PhysAddrLayout& layout) const { return layout.key_of(addr()); }

  // SDM §29.3.2: an entry is present if any of bits 2:0 is set — or bit 10, under MBEC.
  constexpr bool is_present(bool mbec) const {
    return (raw_ & (Read::kMask | Write::kMask | Exec::kMask)) != 0 || (mbec && is_user_exec());
  }

  constexpr EptEntry with_read(bool v) const { return EptEntry{Read::set(raw_, v)}; }
  constexpr EptEntry with_write(bool v) const { return EptEntry{Write::set(raw_, v)}; }
  constexpr EptEntry with_exec(bool v) const { return EptEntry{Exec::set(raw_, v)}; }
  constexpr EptEntry with_mem_type(EptMemType t) const {
    return EptEntry{MemType::set(raw_, static_cast<uint64_t>(t))};
  }
  // For tests that need a reserved memory type.
  constexpr EptEntry with_mem_type_raw(uint64_t t) const { return EptEntry{MemType::set(raw_, t)}; }
  constexpr EptEntry with_ignore_pat(bool v) const { return EptEntry{IgnorePat::set(raw_, v)}; }
  constexpr EptEntry with_page_size(bool v) const { return EptEntry{PageSize::set(raw_, v)}; }
  constexpr EptEntry with_accessed(bool v) const { return EptEntry{Accessed::set(raw_, v)}; }
  constexpr EptEntry with_dirty(bool v) const { return EptEntry{Dirty::set(raw_, v)}; }
  constexpr EptEntry with_user_exec(bool v) const { return EptEntry{UserExec::set(raw_, v)}; }
  constexpr EptEntry with_suppress_ve(bool v) const { return EptEntry{SuppressVe::set(raw_, v)}; }
  // `pa` is an address in place (key-ID bits included); its bits outside 51:12 are dropped.
  constexpr EptEntry with_addr(uint64_t pa) const {
    return EptEntry{(raw_ & ~Addr::kMask) | Addr::in_place(pa)};
  }

  // A software-defined field: any BitField inside the ignored bits (KVM's SPTE flags).
  template <typename Field>
  constexpr uint64_t software() const {
    static_assert((Field::kMask & ~ignored_bits_mask()) == 0, "not an ignored EPT bit");
    return Field::get(raw_);
  }
  template <typename Field>
  constexpr EptEntry with_software(uint64_t v) const {
    static_assert((Field::kMask & ~ignored_bits_mask()) == 0, "not an ignored EPT bit");
    return EptEntry{Field::set(raw_, v)};
  }

 private:
  uint64_t raw_ = 0;
};

static_assert(sizeof(EptEntry) == 8);
static_assert(EptEntry::ignored_bits_mask() == 0x7FF0'0000'0000'0800ull);
static_assert(EptEntry{}.with_software<Bit<58>>(1).raw() == uint64_t{1} << 58);

}  // namespace tdxsim
