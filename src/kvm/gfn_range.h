// GfnRange: kvm_gfn_range, a range of one memslot's gfns that generic KVM hands to the arch
// MMU to unmap, age or re-attribute, and the attribute filter that says which alias
// (private, shared or both) the caller means.
#pragma once

#include <cstdint>

#include "base/addr.h"

namespace tdxsim {

struct Memslot;

// kvm_gfn_range_filter. Zero is deliberately not a valid filter for an unmap: every producer
// must say what it targets (kvm-tdx-mmu.md §1.9). The memory-attribute hooks get zero and
// the arch chooses the alias from the attributes being set.
enum AttrFilter : uint8_t {
  kFilterShared = 1u << 0,   // KVM_FILTER_SHARED
  kFilterPrivate = 1u << 1,  // KVM_FILTER_PRIVATE
};

// Memory attributes (KVM_SET_MEMORY_ATTRIBUTES). PRIVATE is the only one x86 supports.
inline constexpr uint64_t kMemAttrPrivate = uint64_t{1} << 3;  // KVM_MEMORY_ATTRIBUTE_PRIVATE

struct GfnRange {
  const Memslot* slot = nullptr;
  Gfn start;  // inclusive; never carries a direct (shared) bit
  Gfn end;    // exclusive
  uint8_t attr_filter = 0;
  // The handler may sleep or yield mmu_lock (notifier ranges that allow blocking).
  bool may_block = false;
  // For the memory-attribute hooks: the attributes the range is being set to.
  uint64_t attributes = 0;
};

}  // namespace tdxsim
