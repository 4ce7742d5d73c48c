// FuzzInput: a fuzzer's bytes read front to back as the choices of one run.
//
// Every choice consumes the bytes it needs. Past the end each read gives 0, so a short input
// is a short run and never a read out of range; exhausted() is how a decoder knows to stop.
// Choices are made from one byte wherever one suffices, so that libFuzzer's byte mutations
// and its comparison hints land on one decision each.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <span>

namespace tdxsim::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : bytes_(data, size) {}

  bool exhausted() const { return next_ >= bytes_.size(); }

  uint8_t u8() { return next_ < bytes_.size() ? bytes_[next_++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>(u8() | u8() << 8); }
  uint64_t u64() {
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; ++i) v |= uint64_t{u8()} << (8 * i);
    return v;
  }
  // A number below `n` (n > 0): one byte when n fits in one, else two.
  size_t below(size_t n) { return (n <= 256 ? u8() : u16()) % n; }
  // True about `percent` times in a hundred.
  bool chance(unsigned percent) { return u8() % 100 < percent; }
  // An element of a non-empty array, vector or span.
  template <typename Range>
  const auto& pick(const Range& from) {
    return from[below(std::size(from))];
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t next_ = 0;
};

}  // namespace tdxsim::fuzz
