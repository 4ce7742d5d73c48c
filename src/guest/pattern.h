// The data guest and host write and check: a value that is a function of (GPA, round), so
// either side can verify what the other wrote in any round without sharing state, and the
// words sampled from a range (the stride).
//
// Stride: the first and the last 8-byte word of every 4K page. One word per page catches a
// page mapped to the wrong frame, or not at all; the last word also catches a mapping shifted
// within the page and a conversion that covered only part of the page range's end. Every word
// of GiBs would be 512 times the instructions for no more coverage of the mapping (the unit
// of translation is the page), so fill/verify cost two instructions per page.
#pragma once

#include <array>
#include <cstdint>

#include "base/addr.h"
#include "base/check.h"
#include "base/mix.h"

namespace tdxsim::guest {

using PatternFn = uint64_t (*)(Gpa gpa, uint64_t round);

// Odd, so never the zeros of a fresh or freshly converted page. `gpa` is the GPA without a
// TD's shared bit: the host and the guest's private and shared views agree on it.
constexpr uint64_t pattern(Gpa gpa, uint64_t round) {
  return mix64(gpa.raw() ^ mix64(round + 0x9E37'79B9'7F4A'7C15ull)) | 1;
}

inline constexpr std::array<uint64_t, 2> kSampleOffsets = {0, kPageSize - 8};

// Calls f(gpa) for every sampled word of [base, base + bytes), in the order fill writes them.
// REQUIRES: base and bytes 4K-aligned (checked).
template <class F>
void for_each_sample(Gpa base, uint64_t bytes, F&& f) {
  TDXSIM_CHECK(base.is_aligned(Level::k4K) && bytes % kPageSize == 0,
               "sampled range {:#x}+{:#x} is not 4K-aligned", base.raw(), bytes);
  for (uint64_t page = 0; page < bytes; page += kPageSize) {
    for (uint64_t off : kSampleOffsets) f(base + page + off);
  }
}

}  // namespace tdxsim::guest
