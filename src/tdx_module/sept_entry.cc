#include "tdx_module/sept_entry.h"

#include <array>
#include <optional>

namespace tdxsim {

const char* to_string(SeptState s) {
  switch (s) {
    case SeptState::kFree: return "FREE";
    case SeptState::kBlocked: return "BLOCKED";
    case SeptState::kPending: return "PENDING";
    case SeptState::kPendingBlocked: return "PENDING_BLOCKED";
    case SeptState::kMapped: return "MAPPED";
    case SeptState::kRemoved: return "REMOVED";
    case SeptState::kBlockedW: return "BLOCKEDW";
    case SeptState::kExportedBlockedW: return "EXPORTED_BLOCKEDW";
    case SeptState::kExportedDirty: return "EXPORTED_DIRTY";
    case SeptState::kExportedDirtyBlockedW: return "EXPORTED_DIRTY_BLOCKEDW";
    case SeptState::kPendingBlockedW: return "PENDING_BLOCKEDW";
    case SeptState::kPendingExportedBlockedW: return "PENDING_EXPORTED_BLOCKEDW";
    case SeptState::kPendingExportedDirty: return "PENDING_EXPORTED_DIRTY";
    case SeptState::kPendingExportedDirtyBlockedW: return "PENDING_EXPORTED_DIRTY_BLOCKEDW";
    case SeptState::kL2Free: return "L2_FREE";
    case SeptState::kL2Blocked: return "L2_BLOCKED";
    case SeptState::kL2Mapped: return "L2_MAPPED";
    case SeptState::kL2NlBlocked: return "L2_NL_BLOCKED";
    case SeptState::kL2NlMapped: return "L2_NL_MAPPED";
    case SeptState::kNlBlocked: return "NL_BLOCKED";
    case SeptState::kNlMapped: return "NL_MAPPED";
  }
  return "?";
}

void SeptEntry::bad_state_encoding() const {
  TDXSIM_CHECK(false, "S-EPT entry {:#x} holds state encoding {:#x}, which the module never "
               "writes", raw_, state_encoding());
}

void SeptEntry::bad_transition(SeptState to) const {
  TDXSIM_CHECK(false, "S-EPT entry {:#x} ({}) cannot become {}", raw_, to_string(state()),
               to_string(to));
}

uint64_t SeptEntry::arch_view(const PhysAddrLayout& l) const {
  if (state() == SeptState::kFree) return kSve;
  constexpr uint64_t kLeafMask =
      Rwx::kMask | MemType::kMask | Ipat::kMask | Ps::kMask | Addr::kMask | SuppressVe::kMask;
  constexpr uint64_t kNonLeafMask = Rwx::kMask | Ps::kMask;
  // The HKID is the module's business: the host gets the bare HPA.
  return raw_ & (is_leaf() ? kLeafMask : kNonLeafMask) & ~l.keyid_mask();
}

uint64_t SeptEntry::arch_detail(Level level, uint8_t vm) const {
  TDXSIM_CHECK(vm <= 3, "VM index {} out of range", vm);
  return BitField<2, 0>::set(0, sept_level_abi(level)) |
         BitField<15, 8>::set(0, static_cast<uint8_t>(state())) | BitField<17, 16>::set(0, vm);
}

}  // namespace tdxsim
