#include "tdx_module/sept_state.h"

#include <array>
#include <initializer_list>

#include "base/check.h"

namespace tdxsim {
namespace {

using enum SeptState;

// A state's column: its place in kL1SeptStates, which is the module's state index order.
constexpr int column(SeptState s) {
  for (size_t i = 0; i < std::size(kL1SeptStates); ++i) {
    if (kL1SeptStates[i] == s) return static_cast<int>(i);
  }
  return -1;
}

constexpr uint16_t states(std::initializer_list<SeptState> list) {
  uint16_t bits = 0;
  for (SeptState s : list) bits = static_cast<uint16_t>(bits | (1u << column(s)));
  return bits;
}

struct Row {
  uint16_t leaf;
  uint16_t allowed;  // one bit per column
};

constexpr uint16_t n(SeptLeaf l) { return static_cast<uint16_t>(l); }

// Every migration form of a leaf, with the plain leaf states: what RELOCATE admits.
constexpr uint16_t kAnyLeaf =
    states({kMapped, kBlocked, kBlockedW, kExportedBlockedW, kExportedDirty,
            kExportedDirtyBlockedW, kPending, kPendingBlocked, kPendingBlockedW,
            kPendingExportedBlockedW, kPendingExportedDirty, kPendingExportedDirtyBlockedW});
constexpr uint16_t kEveryState = static_cast<uint16_t>((1u << std::size(kL1SeptStates)) - 1);

constexpr std::array kSeamcallRows = {
    Row{n(SeptLeaf::kMemPageAdd), states({kFree})},
    Row{n(SeptLeaf::kMemSeptAdd), states({kFree, kNlMapped})},
    Row{n(SeptLeaf::kMemPageRelocate), kAnyLeaf},
    Row{n(SeptLeaf::kMemPageAug), states({kFree, kRemoved})},
    Row{n(SeptLeaf::kMemRangeBlock),
        states({kNlMapped, kMapped, kBlockedW, kPending, kPendingBlockedW})},
    Row{n(SeptLeaf::kMemRd),
        states({kMapped, kBlockedW, kExportedBlockedW, kExportedDirty, kExportedDirtyBlockedW})},
    Row{n(SeptLeaf::kMemWr), states({kMapped, kExportedDirty})},
    Row{n(SeptLeaf::kMemPageDemote), states({kMapped, kBlocked, kPending, kPendingBlocked})},
    Row{n(SeptLeaf::kMrExtend), states({kMapped})},
    Row{n(SeptLeaf::kMemPagePromote), states({kNlMapped, kNlBlocked})},
    Row{n(SeptLeaf::kMemSeptRd), kEveryState},
    Row{n(SeptLeaf::kMemPageRemove),
        states({kMapped, kBlocked, kBlockedW, kPending, kPendingBlocked, kPendingBlockedW})},
    Row{n(SeptLeaf::kMemSeptRemove), states({kNlMapped, kNlBlocked})},
    Row{n(SeptLeaf::kMemRangeUnblock), states({kNlBlocked, kBlocked, kPendingBlocked})},
};

constexpr std::array kTdcallRows = {
    Row{kSeptTdcallAccept, states({kPending, kPendingExportedDirty})},
};

constexpr uint16_t kTlbTrackingMask = static_cast<uint16_t>(
    kEveryState & ~states({kFree, kRemoved, kExportedBlockedW, kPendingExportedBlockedW}));
constexpr uint16_t kBlockedMask = states({kNlBlocked, kBlocked, kPendingBlocked});
constexpr uint16_t kPendingMask =
    states({kPending, kPendingBlocked, kPendingBlockedW, kPendingExportedBlockedW,
            kPendingExportedDirty, kPendingExportedDirtyBlockedW});
constexpr uint16_t kGuestAccessibleMask = states(
    {kMapped, kBlockedW, kExportedBlockedW, kExportedDirty, kExportedDirtyBlockedW});

// column() by the state's value: every SEAMCALL and TDCALL that touches an entry asks.
constexpr auto kColumnByValue = [] {
  std::array<int8_t, 256> t{};
  for (int8_t& c : t) c = -1;
  for (size_t i = 0; i < std::size(kL1SeptStates); ++i) {
    t[static_cast<uint8_t>(kL1SeptStates[i])] = static_cast<int8_t>(i);
  }
  return t;
}();

uint16_t bit_of(SeptState s) {
  const int c = kColumnByValue[static_cast<uint8_t>(s)];
  TDXSIM_CHECK(c >= 0, "{} is not an L1 S-EPT state", to_string(s));
  return static_cast<uint16_t>(1u << c);
}

// The rows indexed by leaf number (0: no row), so a check is two loads, not a search: every
// SEAMCALL that acts on an entry asks once.
constexpr size_t kLeafIndexSize = 64;

template <size_t N>
constexpr std::array<uint16_t, kLeafIndexSize> by_leaf(const std::array<Row, N>& rows) {
  std::array<uint16_t, kLeafIndexSize> t{};
  for (const Row& r : rows) {
    if (r.leaf >= kLeafIndexSize) throw "an S-EPT leaf number beyond the index";
    t[r.leaf] = r.allowed;
  }
  return t;
}

constexpr auto kSeamcallByLeaf = by_leaf(kSeamcallRows);
constexpr auto kTdcallByLeaf = by_leaf(kTdcallRows);

bool lookup(const std::array<uint16_t, kLeafIndexSize>& allowed, uint16_t leaf, SeptState s) {
  const uint16_t bit = bit_of(s);
  return leaf < kLeafIndexSize && (allowed[leaf] & bit) != 0;
}

}  // namespace

bool sept_leaf_allowed(uint16_t leaf, SeptState s) {
  return lookup(kSeamcallByLeaf, leaf, s);
}
bool sept_tdcall_allowed(uint16_t leaf, SeptState s) {
  return lookup(kTdcallByLeaf, leaf, s);
}

bool tlb_tracking_required(SeptState s) { return (kTlbTrackingMask & bit_of(s)) != 0; }
bool is_blocked(SeptState s) { return (kBlockedMask & bit_of(s)) != 0; }
bool is_pending(SeptState s) { return (kPendingMask & bit_of(s)) != 0; }
bool is_guest_accessible_leaf(SeptState s) { return (kGuestAccessibleMask & bit_of(s)) != 0; }
bool is_leaf_state(SeptState s) { return (kAnyLeaf & bit_of(s)) != 0; }

SeptState blocked_state(SeptState s) {
  switch (s) {
    case kMapped: return kBlocked;
    case kPending: return kPendingBlocked;
    case kNlMapped: return kNlBlocked;
    default: TDXSIM_CHECK(false, "RANGE.BLOCK has no transition from {}", to_string(s));
  }
  return s;
}

SeptState unblocked_state(SeptState s) {
  switch (s) {
    case kBlocked: return kMapped;
    case kPendingBlocked: return kPending;
    case kNlBlocked: return kNlMapped;
    default: TDXSIM_CHECK(false, "RANGE.UNBLOCK has no transition from {}", to_string(s));
  }
  return s;
}

}  // namespace tdxsim
