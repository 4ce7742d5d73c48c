#include "tdx_module/page_info.h"

#include "base/check.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {
namespace {

constexpr uint64_t kOk = raw(TdxStatus::kSuccess);
constexpr uint64_t kInvalidRdx = with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRdx);

}  // namespace

std::optional<LevelRange> page_info_levels(SeamcallLeaf leaf, unsigned ept_pwl) {
  TDXSIM_CHECK(ept_pwl == 3 || ept_pwl == 4, "EPT PWL {} is neither 3 nor 4", ept_pwl);
  // The ranges each handler passes to verify_page_info_input (module
  // src/vmm_dispatcher/api_calls/tdh_mem_*.c; rules A17).
  switch (leaf) {
    case SeamcallLeaf::kMemPageAdd:
    case SeamcallLeaf::kMemPageRelocate:
      return LevelRange{0, 0};
    case SeamcallLeaf::kMemPageAug:
      return LevelRange{0, 1};
    case SeamcallLeaf::kMemPageRemove:
      return LevelRange{0, 2};
    case SeamcallLeaf::kMemPageDemote:
    case SeamcallLeaf::kMemPagePromote:
      return LevelRange{1, 2};
    case SeamcallLeaf::kMemSeptAdd:
    case SeamcallLeaf::kMemSeptRemove:
      return LevelRange{1, ept_pwl};
    case SeamcallLeaf::kMemRangeBlock:
    case SeamcallLeaf::kMemRangeUnblock:
    case SeamcallLeaf::kMemSeptRd:
      return LevelRange{0, ept_pwl};
    default:
      return std::nullopt;
  }
}

std::optional<LevelRange> page_info_levels(TdcallLeaf leaf) {
  // Module 1.5.01 rejects a 1G ACCEPT with OPERAND_INVALID (abi §8.1).
  if (leaf == TdcallLeaf::kMemPageAccept) return LevelRange{0, 1};
  return std::nullopt;
}

uint64_t TdHandle::check(bool leaf_has_flag, const PhysAddrLayout& layout) const {
  if (!reserved_zero()) return kInvalidRdx;
  if (flag() && !leaf_has_flag) return kInvalidRdx;
  // The TDR is a private page: the module refuses an HPA that already carries a key ID.
  if ((tdr().raw() & layout.keyid_mask()) != 0) return kInvalidRdx;
  return kOk;
}

}  // namespace tdxsim
