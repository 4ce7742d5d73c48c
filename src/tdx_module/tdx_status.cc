#include "tdx_module/tdx_status.h"

#include <fmt/format.h>

#include "platform/seamcall.h"

namespace tdxsim {
namespace {

// Names as Intel's error-code header and Linux's tdx_errno.h spell them. nullptr for a
// value outside the enum, so that describe_status can tell "unknown" from a real name.
const char* status_name(TdxStatus s) {
  switch (s) {
    case TdxStatus::kSuccess: return "TDX_SUCCESS";
    case TdxStatus::kNonRecoverableVcpu: return "TDX_NON_RECOVERABLE_VCPU";
    case TdxStatus::kNonRecoverableTd: return "TDX_NON_RECOVERABLE_TD";
    case TdxStatus::kInterruptedResumable: return "TDX_INTERRUPTED_RESUMABLE";
    case TdxStatus::kInterruptedRestartable: return "TDX_INTERRUPTED_RESTARTABLE";
    case TdxStatus::kNonRecoverableTdNonAccessible: return "TDX_NON_RECOVERABLE_TD_NON_ACCESSIBLE";
    case TdxStatus::kInvalidResumption: return "TDX_INVALID_RESUMPTION";
    case TdxStatus::kNonRecoverableTdWrongApicMode: return "TDX_NON_RECOVERABLE_TD_WRONG_APIC_MODE";
    case TdxStatus::kCrossTdFault: return "TDX_CROSS_TD_FAULT";
    case TdxStatus::kCrossTdTrap: return "TDX_CROSS_TD_TRAP";
    case TdxStatus::kNonRecoverableTdCorruptedMd: return "TDX_NON_RECOVERABLE_TD_CORRUPTED_MD";
    case TdxStatus::kOperandInvalid: return "TDX_OPERAND_INVALID";
    case TdxStatus::kOperandAddrRangeError: return "TDX_OPERAND_ADDR_RANGE_ERROR";
    case TdxStatus::kOperandBusy: return "TDX_OPERAND_BUSY";
    case TdxStatus::kPreviousTlbEpochBusy: return "TDX_PREVIOUS_TLB_EPOCH_BUSY";
    case TdxStatus::kSysBusy: return "TDX_SYS_BUSY";
    case TdxStatus::kRndNoEntropy: return "TDX_RND_NO_ENTROPY";
    case TdxStatus::kOperandBusyHostPriority: return "TDX_OPERAND_BUSY_HOST_PRIORITY";
    case TdxStatus::kHostPriorityBusyTimeout: return "TDX_HOST_PRIORITY_BUSY_TIMEOUT";
    case TdxStatus::kPageMetadataIncorrect: return "TDX_PAGE_METADATA_INCORRECT";
    case TdxStatus::kPageAlreadyFree: return "TDX_PAGE_ALREADY_FREE";
    case TdxStatus::kPageNotOwnedByTd: return "TDX_PAGE_NOT_OWNED_BY_TD";
    case TdxStatus::kPageNotFree: return "TDX_PAGE_NOT_FREE";
    case TdxStatus::kTdAssociatedPagesExist: return "TDX_TD_ASSOCIATED_PAGES_EXIST";
    case TdxStatus::kSysNotReady: return "TDX_SYS_NOT_READY";
    case TdxStatus::kSysShutdown: return "TDX_SYS_SHUTDOWN";
    case TdxStatus::kTdFatal: return "TDX_TD_FATAL";
    case TdxStatus::kTdNonDebug: return "TDX_TD_NON_DEBUG";
    case TdxStatus::kTdcsNotAllocated: return "TDX_TDCS_NOT_ALLOCATED";
    case TdxStatus::kLifecycleStateIncorrect: return "TDX_LIFECYCLE_STATE_INCORRECT";
    case TdxStatus::kOpStateIncorrect: return "TDX_OP_STATE_INCORRECT";
    case TdxStatus::kNoVcpus: return "TDX_NO_VCPUS";
    case TdxStatus::kTdcxNumIncorrect: return "TDX_TDCX_NUM_INCORRECT";
    case TdxStatus::kVcpuStateIncorrect: return "TDX_VCPU_STATE_INCORRECT";
    case TdxStatus::kVcpuAssociated: return "TDX_VCPU_ASSOCIATED";
    case TdxStatus::kVcpuNotAssociated: return "TDX_VCPU_NOT_ASSOCIATED";
    case TdxStatus::kNoValidVeInfo: return "TDX_NO_VALID_VE_INFO";
    case TdxStatus::kMaxVcpusExceeded: return "TDX_MAX_VCPUS_EXCEEDED";
    case TdxStatus::kTscRollback: return "TDX_TSC_ROLLBACK";
    case TdxStatus::kKeyGenerationFailed: return "TDX_KEY_GENERATION_FAILED";
    case TdxStatus::kTdKeysNotConfigured: return "TDX_TD_KEYS_NOT_CONFIGURED";
    case TdxStatus::kKeyStateIncorrect: return "TDX_KEY_STATE_INCORRECT";
    case TdxStatus::kKeyConfigured: return "TDX_KEY_CONFIGURED";
    case TdxStatus::kWbcacheNotComplete: return "TDX_WBCACHE_NOT_COMPLETE";
    case TdxStatus::kHkidNotFree: return "TDX_HKID_NOT_FREE";
    case TdxStatus::kNoHkidReadyToWbcache: return "TDX_NO_HKID_READY_TO_WBCACHE";
    case TdxStatus::kWbcacheResumeError: return "TDX_WBCACHE_RESUME_ERROR";
    case TdxStatus::kFlushvpNotDone: return "TDX_FLUSHVP_NOT_DONE";
    case TdxStatus::kInconsistentMsr: return "TDX_INCONSISTENT_MSR";
    case TdxStatus::kIncorrectMsrValue: return "TDX_INCORRECT_MSR_VALUE";
    case TdxStatus::kEptWalkFailed: return "TDX_EPT_WALK_FAILED";
    case TdxStatus::kEptEntryFree: return "TDX_EPT_ENTRY_FREE";
    case TdxStatus::kEptEntryNotFree: return "TDX_EPT_ENTRY_NOT_FREE";
    case TdxStatus::kEptEntryNotPresent: return "TDX_EPT_ENTRY_NOT_PRESENT";
    case TdxStatus::kEptEntryNotLeaf: return "TDX_EPT_ENTRY_NOT_LEAF";
    case TdxStatus::kEptEntryLeaf: return "TDX_EPT_ENTRY_LEAF";
    case TdxStatus::kGpaRangeNotBlocked: return "TDX_GPA_RANGE_NOT_BLOCKED";
    case TdxStatus::kGpaRangeAlreadyBlocked: return "TDX_GPA_RANGE_ALREADY_BLOCKED";
    case TdxStatus::kTlbTrackingNotDone: return "TDX_TLB_TRACKING_NOT_DONE";
    case TdxStatus::kEptInvalidPromoteConditions: return "TDX_EPT_INVALID_PROMOTE_CONDITIONS";
    case TdxStatus::kPageAlreadyAccepted: return "TDX_PAGE_ALREADY_ACCEPTED";
    case TdxStatus::kPageSizeMismatch: return "TDX_PAGE_SIZE_MISMATCH";
    case TdxStatus::kGpaRangeBlocked: return "TDX_GPA_RANGE_BLOCKED";
    case TdxStatus::kEptEntryStateIncorrect: return "TDX_EPT_ENTRY_STATE_INCORRECT";
    case TdxStatus::kEptPageNotFree: return "TDX_EPT_PAGE_NOT_FREE";
    case TdxStatus::kMetadataFieldNotReadable: return "TDX_METADATA_FIELD_NOT_READABLE";
    case TdxStatus::kSysInitNotPending: return "TDX_SYS_INIT_NOT_PENDING";
    case TdxStatus::kSysLpInitNotDone: return "TDX_SYS_LP_INIT_NOT_DONE";
    case TdxStatus::kSysLpInitDone: return "TDX_SYS_LP_INIT_DONE";
    case TdxStatus::kSysKeyConfigNotPending: return "TDX_SYS_KEY_CONFIG_NOT_PENDING";
    case TdxStatus::kSysStateIncorrect: return "TDX_SYS_STATE_INCORRECT";
    case TdxStatus::kSysConfigNotPending: return "TDX_SYS_CONFIG_NOT_PENDING";
    case TdxStatus::kMetadataFieldIdIncorrect: return "TDX_METADATA_FIELD_ID_INCORRECT";
    case TdxStatus::kMetadataFieldNotWritable: return "TDX_METADATA_FIELD_NOT_WRITABLE";
    case TdxStatus::kMetadataFirstFieldIdInContext:
      return "TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT";
  }
  return nullptr;
}

const char* operand_name(TdxOperand op) {
  switch (op) {
    case TdxOperand::kRax: return "RAX";
    case TdxOperand::kRcx: return "RCX";
    case TdxOperand::kRdx: return "RDX";
    case TdxOperand::kRbx: return "RBX";
    case TdxOperand::kRbp: return "RBP";
    case TdxOperand::kRsi: return "RSI";
    case TdxOperand::kRdi: return "RDI";
    case TdxOperand::kR8: return "R8";
    case TdxOperand::kR9: return "R9";
    case TdxOperand::kR10: return "R10";
    case TdxOperand::kR11: return "R11";
    case TdxOperand::kR12: return "R12";
    case TdxOperand::kR13: return "R13";
    case TdxOperand::kR14: return "R14";
    case TdxOperand::kR15: return "R15";
    case TdxOperand::kAttributes: return "ATTRIBUTES";
    case TdxOperand::kXfam: return "XFAM";
    case TdxOperand::kExecControls: return "EXEC_CONTROLS";
    case TdxOperand::kEptpControls: return "EPTP_CONTROLS";
    case TdxOperand::kMaxVcpus: return "MAX_VCPUS";
    case TdxOperand::kCpuidConfig: return "CPUID_CONFIG";
    case TdxOperand::kTscFrequency: return "TSC_FREQUENCY";
    case TdxOperand::kTdr: return "TDR";
    case TdxOperand::kTdcx: return "TDCX";
    case TdxOperand::kTdvpr: return "TDVPR";
    case TdxOperand::kRegPage: return "REG_PAGE";
    case TdxOperand::kTdcs: return "TDCS";
    case TdxOperand::kTdvps: return "TDVPS";
    case TdxOperand::kSeptTree: return "SEPT_TREE";
    case TdxOperand::kSeptEntry: return "SEPT_ENTRY";
    case TdxOperand::kTdEpoch: return "TD_EPOCH";
    case TdxOperand::kOpState: return "OP_STATE";
    case TdxOperand::kMetadataField: return "METADATA_FIELD";
    case TdxOperand::kSys: return "SYS";
    case TdxOperand::kTdmr: return "TDMR";
    case TdxOperand::kKot: return "KOT";
    case TdxOperand::kKet: return "KET";
    case TdxOperand::kWbcache: return "WBCACHE";
  }
  return nullptr;
}

// What bits 31:0 (details L2) carry depends on the status (abi §1.4, §2.1, §2.4).
enum class Details : uint8_t { kOperand, kLevel, kExitReason, kMsr };

Details details_kind(TdxStatus s) {
  switch (s) {
    // A guest ACCEPT reports the level where it found the mapping (rules A10).
    case TdxStatus::kPageAlreadyAccepted:
    case TdxStatus::kPageSizeMismatch:
      return Details::kLevel;
    // The statuses TDH.VP.ENTER returns on a TD exit carry the VMX exit reason.
    case TdxStatus::kSuccess:
    case TdxStatus::kNonRecoverableVcpu:
    case TdxStatus::kNonRecoverableTd:
    case TdxStatus::kNonRecoverableTdNonAccessible:
    case TdxStatus::kNonRecoverableTdWrongApicMode:
    case TdxStatus::kNonRecoverableTdCorruptedMd:
      return Details::kExitReason;
    case TdxStatus::kInconsistentMsr:
    case TdxStatus::kIncorrectMsrValue:
      return Details::kMsr;
    default:
      return Details::kOperand;
  }
}

// Values only Linux defines (abi §2.3): the software-defined class 0xFF, and two
// non-recoverable statuses whose Linux constants differ from what module 1.5.01 returns.
const char* linux_only_name(uint64_t rax) {
  switch (rax) {
    case linux_status::kSwError: return "TDX_SW_ERROR";
    case linux_status::kSeamcallVmFailInvalid: return "TDX_SEAMCALL_VMFAILINVALID";
    case linux_status::kSeamcallGp: return "TDX_SEAMCALL_GP";
    case linux_status::kSeamcallUd: return "TDX_SEAMCALL_UD";
    case 0x4000'0002'0000'0000: return "TDX_NON_RECOVERABLE_TD (Linux value)";
    case 0x6000'0007'0000'0000: return "TDX_NON_RECOVERABLE_TD_WRONG_APIC_MODE (Linux value)";
    default: return nullptr;
  }
}

constexpr uint8_t kOperandClass = 0x01;

}  // namespace

const char* to_string(TdxStatus s) {
  const char* name = status_name(s);
  return name != nullptr ? name : "?";
}

const char* to_string(TdxOperand op) {
  const char* name = operand_name(op);
  return name != nullptr ? name : "?";
}

std::string describe_status(uint64_t rax) {
  if (const char* name = linux_only_name(rax)) return name;
  const char* name = status_name(status_of(rax));
  if (name == nullptr) return fmt::format("{:#018x} (unknown)", rax);
  const uint32_t details = details_l2(rax);
  switch (details_kind(status_of(rax))) {
    case Details::kLevel:
      return fmt::format("{}|level {}", name, details);
    case Details::kExitReason:
      if (details == 0) return name;
      return fmt::format("{}|exit reason {}", name, details);
    case Details::kMsr:
      if (details == 0) return name;
      return fmt::format("{}|MSR {:#x}", name, details);
    case Details::kOperand:
      // Operand 0 is RAX (the leaf/version word), but only the operand class reports it;
      // elsewhere zero details mean "no operand".
      if (details == 0 && status_class(rax) != kOperandClass) return name;
      if (const char* op = operand_name(static_cast<TdxOperand>(details)))
        return fmt::format("{}|{}", name, op);
      return fmt::format("{}|operand {:#x}", name, details);
  }
  return name;
}

}  // namespace tdxsim
