// mix64: splitmix64's output function, a full-avalanche 64-bit mix. The one hash the model
// uses for its own tables, seeded choices and ciphertext-like values.
#pragma once

#include <cstdint>

namespace tdxsim {

constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace tdxsim
