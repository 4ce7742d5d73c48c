// Memory-encryption key IDs and where they sit in a physical address.
//
// With MKTME/TDX the key ID is carried in the top bits of the physical address that the
// CPU presents to memory: an S-EPT leaf names a private frame as (HKID << keyid_shift) | HPA,
// while the host and the shared EPT use key ID 0. tdxsim keeps that layout, so a walk of
// any EPT yields both the frame and the key its access uses.
#pragma once

#include <compare>
#include <cstdint>

#include "base/addr.h"
#include "base/check.h"

namespace tdxsim {

// Key ID 0 is the host's (TME's default key); a TD's HKID is never 0.
class KeyId {
 public:
  constexpr KeyId() = default;
  constexpr explicit KeyId(uint16_t v) : v_(v) {}
  constexpr uint16_t raw() const { return v_; }
  constexpr bool is_host() const { return v_ == 0; }
  constexpr auto operator<=>(const KeyId&) const = default;

 private:
  uint16_t v_ = 0;
};

inline constexpr KeyId kHostKey{0};

// The platform's physical-address layout: MAXPHYADDR and how many of its top bits carry
// the key ID (IA32_TME_ACTIVATE.MK_TME_KEYID_BITS).
struct PhysAddrLayout {
  unsigned maxphyaddr = 52;
  unsigned keyid_bits = 6;

  constexpr unsigned keyid_shift() const { return maxphyaddr - keyid_bits; }
  constexpr uint64_t keyid_mask() const {
    return ((uint64_t{1} << keyid_bits) - 1) << keyid_shift();
  }
  // The HPA bits that name memory (below the key ID).
  constexpr uint64_t frame_mask() const { return (uint64_t{1} << keyid_shift()) - 1; }
  // Physical-address bits a paging-structure entry may set (MAXPHYADDR-1:0).
  constexpr uint64_t phys_mask() const { return (uint64_t{1} << maxphyaddr) - 1; }
  constexpr uint16_t max_keyid() const { return static_cast<uint16_t>((1u << keyid_bits) - 1); }

  // The address the CPU presents for `hpa` under `key`.
  constexpr uint64_t with_key(Hpa hpa, KeyId key) const {
    return (hpa.raw() & frame_mask()) | (uint64_t{key.raw()} << keyid_shift());
  }
  constexpr Hpa strip_key(uint64_t pa) const { return Hpa{pa & frame_mask()}; }
  constexpr KeyId key_of(uint64_t pa) const {
    return KeyId{static_cast<uint16_t>((pa & keyid_mask()) >> keyid_shift())};
  }
};

static_assert(PhysAddrLayout{}.keyid_shift() == 46);
static_assert(PhysAddrLayout{}.key_of(PhysAddrLayout{}.with_key(Hpa{0x5000}, KeyId{3})) == KeyId{3});

}  // namespace tdxsim
