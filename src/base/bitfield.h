// BitField<Hi, Lo>: a field of a 64-bit hardware word, written with the bit numbers exactly
// as the manuals print them ("51:12"), upper bit first. Hardware entries are value types
// over one uint64_t (so they can be compared and swapped as a whole word); C bitfields are
// never used because their layout is implementation-defined.
#pragma once

#include <cstdint>

namespace tdxsim {

template <unsigned Hi, unsigned Lo>
struct BitField {
  static_assert(Hi >= Lo && Hi < 64, "BitField<Hi, Lo> needs 63 >= Hi >= Lo");
  static constexpr unsigned kHi = Hi;
  static constexpr unsigned kLo = Lo;
  static constexpr unsigned kWidth = Hi - Lo + 1;
  // The field's value range, unshifted.
  static constexpr uint64_t kMax = kWidth == 64 ? ~uint64_t{0} : (uint64_t{1} << kWidth) - 1;
  // The field's bits in place.
  static constexpr uint64_t kMask = kMax << Lo;

  static constexpr uint64_t get(uint64_t word) { return (word & kMask) >> Lo; }
  // Returns `word` with the field replaced; bits of `value` beyond the field are dropped.
  static constexpr uint64_t set(uint64_t word, uint64_t value) {
    return (word & ~kMask) | ((value << Lo) & kMask);
  }
  // The field's bits of `word`, left in place (for address fields such as PFN 51:12).
  static constexpr uint64_t in_place(uint64_t word) { return word & kMask; }
};

template <unsigned N>
using Bit = BitField<N, N>;

// A mask of bits Hi..Lo, for the places that need a plain mask (reserved-bit checks).
constexpr uint64_t bit_range(unsigned hi, unsigned lo) {
  return (hi - lo + 1 == 64 ? ~uint64_t{0} : ((uint64_t{1} << (hi - lo + 1)) - 1)) << lo;
}

static_assert(BitField<51, 12>::kMask == 0x000F'FFFF'FFFF'F000ull);
static_assert(Bit<63>::kMask == 0x8000'0000'0000'0000ull);
static_assert(BitField<5, 3>::set(0, 6) == 0x30);
static_assert(BitField<5, 3>::get(0x30) == 6);
static_assert(bit_range(51, 12) == BitField<51, 12>::kMask);

}  // namespace tdxsim
