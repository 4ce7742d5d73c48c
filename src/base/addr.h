// Strong address types for the four address spaces a KVM developer juggles, plus the level
// arithmetic of 4-/5-level x86 page tables.
//
//   Gva  guest virtual address          Gpa  guest physical address
//   Gfn  guest frame number (Gpa >> 12) Hpa  host physical address
//   Pfn  host frame number (Hpa >> 12)
//
// Each is a distinct type with explicit conversions (gpa.gfn(), gfn.gpa(), …); mixing them
// does not compile. KVM keeps these names but passes them as bare u64; tdxsim does not.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>

#include <fmt/format.h>

namespace tdxsim {

inline constexpr unsigned kPageShift = 12;
inline constexpr uint64_t kPageSize = uint64_t{1} << kPageShift;
inline constexpr unsigned kPtesPerTable = 512;
inline constexpr unsigned kLevelBits = 9;

// Page-table level, numbered as KVM does (PG_LEVEL_4K = 1 … 5 for the 5-level root).
// A leaf at level L maps 2^(12 + 9 (L-1)) bytes.
enum class Level : uint8_t { k4K = 1, k2M = 2, k1G = 3, k512G = 4, k256T = 5 };

constexpr unsigned level_num(Level l) { return static_cast<unsigned>(l); }
constexpr Level level_from(unsigned n) { return static_cast<Level>(n); }
// log2 of the bytes one entry at this level maps.
constexpr unsigned level_shift(Level l) { return kPageShift + kLevelBits * (level_num(l) - 1); }
constexpr uint64_t level_bytes(Level l) { return uint64_t{1} << level_shift(l); }
// 4 KiB pages one entry at this level maps (KVM's KVM_PAGES_PER_HPAGE).
constexpr uint64_t level_pages(Level l) { return uint64_t{1} << (kLevelBits * (level_num(l) - 1)); }
constexpr Level level_down(Level l) { return level_from(level_num(l) - 1); }
constexpr Level level_up(Level l) { return level_from(level_num(l) + 1); }
constexpr const char* level_name(Level l) {
  switch (l) {
    case Level::k4K: return "4K";
    case Level::k2M: return "2M";
    case Level::k1G: return "1G";
    case Level::k512G: return "512G";
    case Level::k256T: return "256T";
  }
  return "?";
}

namespace detail {

// The shared shape of every address type: a uint64_t with ordering, hashing and
// same-type arithmetic. Tag keeps the types distinct.
template <typename Tag>
class Address {
 public:
  constexpr Address() = default;
  constexpr explicit Address(uint64_t v) : v_(v) {}
  constexpr uint64_t raw() const { return v_; }
  constexpr auto operator<=>(const Address&) const = default;
  constexpr Tag operator+(uint64_t n) const { return Tag{v_ + n}; }
  constexpr Tag operator-(uint64_t n) const { return Tag{v_ - n}; }
  constexpr uint64_t operator-(Tag o) const { return v_ - o.raw(); }
  constexpr Tag& operator+=(uint64_t n) {
    v_ += n;
    return static_cast<Tag&>(*this);
  }

 private:
  uint64_t v_ = 0;
};

// Byte addresses: level alignment and the index of the entry that maps them at a level.
template <typename Tag>
class ByteAddress : public Address<Tag> {
 public:
  using Address<Tag>::Address;
  using Address<Tag>::raw;
  constexpr Tag align_down(Level l) const { return Tag{raw() & ~(level_bytes(l) - 1)}; }
  constexpr bool is_aligned(Level l) const { return (raw() & (level_bytes(l) - 1)) == 0; }
  // Index of the entry at level `l` that maps this address (KVM's SPTE_INDEX).
  constexpr unsigned index(Level l) const {
    return static_cast<unsigned>((raw() >> level_shift(l)) & (kPtesPerTable - 1));
  }
  constexpr uint64_t page_offset() const { return raw() & (kPageSize - 1); }
};

}  // namespace detail

class Gfn;
class Pfn;

class Gva : public detail::ByteAddress<Gva> {
 public:
  using ByteAddress::ByteAddress;
};

class Gpa : public detail::ByteAddress<Gpa> {
 public:
  using ByteAddress::ByteAddress;
  constexpr Gfn gfn() const;
};

class Hpa : public detail::ByteAddress<Hpa> {
 public:
  using ByteAddress::ByteAddress;
  constexpr Pfn pfn() const;
};

// Frame numbers: a gfn/pfn at a level is aligned to level_pages(l) frames.
class Gfn : public detail::Address<Gfn> {
 public:
  using Address::Address;
  constexpr Gpa gpa() const { return Gpa{raw() << kPageShift}; }
  constexpr Gfn align_down(Level l) const { return Gfn{raw() & ~(level_pages(l) - 1)}; }
  constexpr bool is_aligned(Level l) const { return (raw() & (level_pages(l) - 1)) == 0; }
  // Index of the entry at level `l` that maps this gfn (KVM's SPTE_INDEX(gfn << 12, l)).
  constexpr unsigned index(Level l) const { return gpa().index(l); }
};

class Pfn : public detail::Address<Pfn> {
 public:
  using Address::Address;
  constexpr Hpa hpa() const { return Hpa{raw() << kPageShift}; }
  constexpr Pfn align_down(Level l) const { return Pfn{raw() & ~(level_pages(l) - 1)}; }
  constexpr bool is_aligned(Level l) const { return (raw() & (level_pages(l) - 1)) == 0; }
};

constexpr Gfn Gpa::gfn() const { return Gfn{raw() >> kPageShift}; }
constexpr Pfn Hpa::pfn() const { return Pfn{raw() >> kPageShift}; }

static_assert(level_shift(Level::k2M) == 21 && level_shift(Level::k1G) == 30);
static_assert(level_pages(Level::k1G) == 262144);
static_assert(Gpa{0x4020'3000}.index(Level::k4K) == 3 && Gpa{0x4020'3000}.index(Level::k2M) == 1 &&
              Gpa{0x4020'3000}.index(Level::k1G) == 1);
static_assert(Gfn{0x40203}.index(Level::k2M) == 1);
static_assert(Gpa{0x1234'5678}.align_down(Level::k2M) == Gpa{0x1220'0000});
static_assert(sizeof(Gpa) == 8 && sizeof(Pfn) == 8);

}  // namespace tdxsim

// Hashing, so that addresses can key unordered containers.
template <typename T>
  requires std::is_base_of_v<tdxsim::detail::Address<T>, T>
struct std::hash<T> {
  size_t operator()(T a) const noexcept { return std::hash<uint64_t>{}(a.raw()); }
};

// Formatting tags the space, so a log line never leaves you guessing: G0x…, P0x…, gfn 0x…
namespace tdxsim::detail {
template <typename T>
constexpr const char* address_prefix();
template <> constexpr const char* address_prefix<Gva>() { return "gva:"; }
template <> constexpr const char* address_prefix<Gpa>() { return "gpa:"; }
template <> constexpr const char* address_prefix<Hpa>() { return "hpa:"; }
template <> constexpr const char* address_prefix<Gfn>() { return "gfn:"; }
template <> constexpr const char* address_prefix<Pfn>() { return "pfn:"; }
}  // namespace tdxsim::detail

template <typename T>
  requires std::is_base_of_v<tdxsim::detail::Address<T>, T>
struct fmt::formatter<T> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(T a, Ctx& ctx) const {
    return fmt::format_to(ctx.out(), "{}{:#x}", tdxsim::detail::address_prefix<T>(), a.raw());
  }
};
