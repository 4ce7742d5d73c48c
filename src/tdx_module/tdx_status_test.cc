#include "tdx_module/tdx_status.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "platform/vector_file_for_test.h"

namespace tdxsim {
namespace {

using testing::report_checked;

struct StatusRow {
  TdxStatus status;
  uint64_t value;  // written from shared/spec/tdx-module-abi.md §2.2, not from the header
  const char* name;
};

// Every enumerator of TdxStatus, with its ABI value and its Intel/Linux name.
const std::vector<StatusRow>& status_table() {
  static const std::vector<StatusRow> rows = {
      {TdxStatus::kSuccess, 0x0000000000000000, "TDX_SUCCESS"},
      {TdxStatus::kNonRecoverableVcpu, 0x4000000100000000, "TDX_NON_RECOVERABLE_VCPU"},
      {TdxStatus::kNonRecoverableTd, 0x6000000200000000, "TDX_NON_RECOVERABLE_TD"},
      {TdxStatus::kInterruptedResumable, 0x8000000300000000, "TDX_INTERRUPTED_RESUMABLE"},
      {TdxStatus::kInterruptedRestartable, 0x8000000400000000, "TDX_INTERRUPTED_RESTARTABLE"},
      {TdxStatus::kNonRecoverableTdNonAccessible, 0x6000000500000000,
       "TDX_NON_RECOVERABLE_TD_NON_ACCESSIBLE"},
      {TdxStatus::kInvalidResumption, 0xC000000600000000, "TDX_INVALID_RESUMPTION"},
      {TdxStatus::kNonRecoverableTdWrongApicMode, 0xE000000700000000,
       "TDX_NON_RECOVERABLE_TD_WRONG_APIC_MODE"},
      {TdxStatus::kCrossTdFault, 0x8000000800000000, "TDX_CROSS_TD_FAULT"},
      {TdxStatus::kCrossTdTrap, 0x9000000900000000, "TDX_CROSS_TD_TRAP"},
      {TdxStatus::kNonRecoverableTdCorruptedMd, 0x6000000A00000000,
       "TDX_NON_RECOVERABLE_TD_CORRUPTED_MD"},
      {TdxStatus::kOperandInvalid, 0xC000010000000000, "TDX_OPERAND_INVALID"},
      {TdxStatus::kOperandAddrRangeError, 0xC000010100000000, "TDX_OPERAND_ADDR_RANGE_ERROR"},
      {TdxStatus::kOperandBusy, 0x8000020000000000, "TDX_OPERAND_BUSY"},
      {TdxStatus::kPreviousTlbEpochBusy, 0x8000020100000000, "TDX_PREVIOUS_TLB_EPOCH_BUSY"},
      {TdxStatus::kSysBusy, 0x8000020200000000, "TDX_SYS_BUSY"},
      {TdxStatus::kRndNoEntropy, 0x8000020300000000, "TDX_RND_NO_ENTROPY"},
      {TdxStatus::kOperandBusyHostPriority, 0x8000020400000000, "TDX_OPERAND_BUSY_HOST_PRIORITY"},
      {TdxStatus::kHostPriorityBusyTimeout, 0x9000020500000000, "TDX_HOST_PRIORITY_BUSY_TIMEOUT"},
      {TdxStatus::kPageMetadataIncorrect, 0xC000030000000000, "TDX_PAGE_METADATA_INCORRECT"},
      {TdxStatus::kPageAlreadyFree, 0x0000030100000000, "TDX_PAGE_ALREADY_FREE"},
      {TdxStatus::kPageNotOwnedByTd, 0xC000030200000000, "TDX_PAGE_NOT_OWNED_BY_TD"},
      {TdxStatus::kPageNotFree, 0xC000030300000000, "TDX_PAGE_NOT_FREE"},
      {TdxStatus::kTdAssociatedPagesExist, 0xC000040000000000, "TDX_TD_ASSOCIATED_PAGES_EXIST"},
      {TdxStatus::kSysNotReady, 0xC000050500000000, "TDX_SYS_NOT_READY"},
      {TdxStatus::kSysShutdown, 0xC000050600000000, "TDX_SYS_SHUTDOWN"},
      {TdxStatus::kTdFatal, 0xE000060400000000, "TDX_TD_FATAL"},
      {TdxStatus::kTdNonDebug, 0xC000060500000000, "TDX_TD_NON_DEBUG"},
      {TdxStatus::kTdcsNotAllocated, 0xC000060600000000, "TDX_TDCS_NOT_ALLOCATED"},
      {TdxStatus::kLifecycleStateIncorrect, 0xC000060700000000, "TDX_LIFECYCLE_STATE_INCORRECT"},
      {TdxStatus::kOpStateIncorrect, 0xC000060800000000, "TDX_OP_STATE_INCORRECT"},
      {TdxStatus::kNoVcpus, 0xC000060900000000, "TDX_NO_VCPUS"},
      {TdxStatus::kTdcxNumIncorrect, 0xC000061000000000, "TDX_TDCX_NUM_INCORRECT"},
      {TdxStatus::kVcpuStateIncorrect, 0xC000070000000000, "TDX_VCPU_STATE_INCORRECT"},
      {TdxStatus::kVcpuAssociated, 0x8000070100000000, "TDX_VCPU_ASSOCIATED"},
      {TdxStatus::kVcpuNotAssociated, 0x8000070200000000, "TDX_VCPU_NOT_ASSOCIATED"},
      {TdxStatus::kNoValidVeInfo, 0xC000070400000000, "TDX_NO_VALID_VE_INFO"},
      {TdxStatus::kMaxVcpusExceeded, 0xC000070500000000, "TDX_MAX_VCPUS_EXCEEDED"},
      {TdxStatus::kTscRollback, 0xC000070600000000, "TDX_TSC_ROLLBACK"},
      {TdxStatus::kKeyGenerationFailed, 0x8000080000000000, "TDX_KEY_GENERATION_FAILED"},
      {TdxStatus::kTdKeysNotConfigured, 0x8000081000000000, "TDX_TD_KEYS_NOT_CONFIGURED"},
      {TdxStatus::kKeyStateIncorrect, 0xC000081100000000, "TDX_KEY_STATE_INCORRECT"},
      {TdxStatus::kKeyConfigured, 0x0000081500000000, "TDX_KEY_CONFIGURED"},
      {TdxStatus::kWbcacheNotComplete, 0x8000081700000000, "TDX_WBCACHE_NOT_COMPLETE"},
      {TdxStatus::kHkidNotFree, 0xC000082000000000, "TDX_HKID_NOT_FREE"},
      {TdxStatus::kNoHkidReadyToWbcache, 0x0000082100000000, "TDX_NO_HKID_READY_TO_WBCACHE"},
      {TdxStatus::kWbcacheResumeError, 0xC000082300000000, "TDX_WBCACHE_RESUME_ERROR"},
      {TdxStatus::kFlushvpNotDone, 0x8000082400000000, "TDX_FLUSHVP_NOT_DONE"},
      {TdxStatus::kInconsistentMsr, 0xC000092000000000, "TDX_INCONSISTENT_MSR"},
      {TdxStatus::kIncorrectMsrValue, 0xC000092100000000, "TDX_INCORRECT_MSR_VALUE"},
      {TdxStatus::kEptWalkFailed, 0xC0000B0000000000, "TDX_EPT_WALK_FAILED"},
      {TdxStatus::kEptEntryFree, 0xC0000B0100000000, "TDX_EPT_ENTRY_FREE"},
      {TdxStatus::kEptEntryNotFree, 0xC0000B0200000000, "TDX_EPT_ENTRY_NOT_FREE"},
      {TdxStatus::kEptEntryNotPresent, 0xC0000B0300000000, "TDX_EPT_ENTRY_NOT_PRESENT"},
      {TdxStatus::kEptEntryNotLeaf, 0xC0000B0400000000, "TDX_EPT_ENTRY_NOT_LEAF"},
      {TdxStatus::kEptEntryLeaf, 0xC0000B0500000000, "TDX_EPT_ENTRY_LEAF"},
      {TdxStatus::kGpaRangeNotBlocked, 0xC0000B0600000000, "TDX_GPA_RANGE_NOT_BLOCKED"},
      {TdxStatus::kGpaRangeAlreadyBlocked, 0x00000B0700000000, "TDX_GPA_RANGE_ALREADY_BLOCKED"},
      {TdxStatus::kTlbTrackingNotDone, 0xC0000B0800000000, "TDX_TLB_TRACKING_NOT_DONE"},
      {TdxStatus::kEptInvalidPromoteConditions, 0xC0000B0900000000,
       "TDX_EPT_INVALID_PROMOTE_CONDITIONS"},
      {TdxStatus::kPageAlreadyAccepted, 0x00000B0A00000000, "TDX_PAGE_ALREADY_ACCEPTED"},
      {TdxStatus::kPageSizeMismatch, 0xC0000B0B00000000, "TDX_PAGE_SIZE_MISMATCH"},
      {TdxStatus::kGpaRangeBlocked, 0xC0000B0C00000000, "TDX_GPA_RANGE_BLOCKED"},
      {TdxStatus::kEptEntryStateIncorrect, 0xC0000B0D00000000, "TDX_EPT_ENTRY_STATE_INCORRECT"},
      {TdxStatus::kEptPageNotFree, 0xC0000B0E00000000, "TDX_EPT_PAGE_NOT_FREE"},
      {TdxStatus::kMetadataFieldNotReadable, 0xC0000C0200000000, "TDX_METADATA_FIELD_NOT_READABLE"},
      {TdxStatus::kSysInitNotPending, 0xC000050000000000, "TDX_SYS_INIT_NOT_PENDING"},
      {TdxStatus::kSysLpInitNotDone, 0xC000050200000000, "TDX_SYS_LP_INIT_NOT_DONE"},
      {TdxStatus::kSysLpInitDone, 0xC000050300000000, "TDX_SYS_LP_INIT_DONE"},
      {TdxStatus::kSysKeyConfigNotPending, 0xC000050700000000, "TDX_SYS_KEY_CONFIG_NOT_PENDING"},
      {TdxStatus::kSysStateIncorrect, 0xC000050800000000, "TDX_SYS_STATE_INCORRECT"},
      {TdxStatus::kSysConfigNotPending, 0xC000050C00000000, "TDX_SYS_CONFIG_NOT_PENDING"},
      {TdxStatus::kMetadataFieldIdIncorrect, 0xC0000C0000000000, "TDX_METADATA_FIELD_ID_INCORRECT"},
      {TdxStatus::kMetadataFieldNotWritable, 0xC0000C0100000000, "TDX_METADATA_FIELD_NOT_WRITABLE"},
      {TdxStatus::kMetadataFirstFieldIdInContext, 0x00000C0B00000000,
       "TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT"},
  };
  return rows;
}

struct OperandRow {
  TdxOperand operand;
  uint32_t value;  // abi §2.4
  const char* name;
};

const std::vector<OperandRow>& operand_table() {
  static const std::vector<OperandRow> rows = {
      {TdxOperand::kRax, 0, "RAX"},
      {TdxOperand::kRcx, 1, "RCX"},
      {TdxOperand::kRdx, 2, "RDX"},
      {TdxOperand::kRbx, 3, "RBX"},
      {TdxOperand::kRbp, 5, "RBP"},
      {TdxOperand::kRsi, 6, "RSI"},
      {TdxOperand::kRdi, 7, "RDI"},
      {TdxOperand::kR8, 8, "R8"},
      {TdxOperand::kR9, 9, "R9"},
      {TdxOperand::kR10, 10, "R10"},
      {TdxOperand::kR11, 11, "R11"},
      {TdxOperand::kR12, 12, "R12"},
      {TdxOperand::kR13, 13, "R13"},
      {TdxOperand::kR14, 14, "R14"},
      {TdxOperand::kR15, 15, "R15"},
      {TdxOperand::kAttributes, 64, "ATTRIBUTES"},
      {TdxOperand::kXfam, 65, "XFAM"},
      {TdxOperand::kExecControls, 66, "EXEC_CONTROLS"},
      {TdxOperand::kEptpControls, 67, "EPTP_CONTROLS"},
      {TdxOperand::kMaxVcpus, 68, "MAX_VCPUS"},
      {TdxOperand::kCpuidConfig, 69, "CPUID_CONFIG"},
      {TdxOperand::kTscFrequency, 70, "TSC_FREQUENCY"},
      {TdxOperand::kTdr, 128, "TDR"},
      {TdxOperand::kTdcx, 129, "TDCX"},
      {TdxOperand::kTdvpr, 130, "TDVPR"},
      {TdxOperand::kRegPage, 132, "REG_PAGE"},
      {TdxOperand::kTdcs, 144, "TDCS"},
      {TdxOperand::kTdvps, 145, "TDVPS"},
      {TdxOperand::kSeptTree, 146, "SEPT_TREE"},
      {TdxOperand::kSeptEntry, 147, "SEPT_ENTRY"},
      {TdxOperand::kTdEpoch, 169, "TD_EPOCH"},
      {TdxOperand::kOpState, 172, "OP_STATE"},
      {TdxOperand::kMetadataField, 176, "METADATA_FIELD"},
      {TdxOperand::kSys, 184, "SYS"},
      {TdxOperand::kTdmr, 185, "TDMR"},
      {TdxOperand::kKot, 186, "KOT"},
      {TdxOperand::kKet, 187, "KET"},
      {TdxOperand::kWbcache, 188, "WBCACHE"},
  };
  return rows;
}

// Which statuses describe_status prints with a level / exit reason / MSR instead of an
// operand, mirrored from abi §1.4, §2.2 and rules A10.
enum class Kind { kOperand, kLevel, kExitReason, kMsr };

Kind kind_of(TdxStatus s) {
  switch (s) {
    case TdxStatus::kPageAlreadyAccepted:
    case TdxStatus::kPageSizeMismatch:
      return Kind::kLevel;
    case TdxStatus::kSuccess:
    case TdxStatus::kNonRecoverableVcpu:
    case TdxStatus::kNonRecoverableTd:
    case TdxStatus::kNonRecoverableTdNonAccessible:
    case TdxStatus::kNonRecoverableTdWrongApicMode:
    case TdxStatus::kNonRecoverableTdCorruptedMd:
      return Kind::kExitReason;
    case TdxStatus::kInconsistentMsr:
    case TdxStatus::kIncorrectMsrValue:
      return Kind::kMsr;
    default:
      return Kind::kOperand;
  }
}

// The inverse of describe_status, built from the tables above only: a description that
// parses back to the value it came from names the status and its details unambiguously.
std::optional<uint64_t> parse_description(const std::string& text) {
  static const auto by_name = [] {
    std::map<std::string, uint64_t> m;
    for (const auto& r : status_table()) m[r.name] = r.value;
    return m;
  }();
  static const auto operands = [] {
    std::map<std::string, uint32_t> m;
    for (const auto& r : operand_table()) m[r.name] = r.value;
    return m;
  }();
  const auto bar = text.find('|');
  const auto it = by_name.find(text.substr(0, bar));
  if (it == by_name.end()) return std::nullopt;
  if (bar == std::string::npos) return it->second;
  const std::string details = text.substr(bar + 1);
  for (const char* prefix : {"level ", "exit reason ", "MSR ", "operand "}) {
    if (details.starts_with(prefix)) {
      return it->second | std::stoull(details.substr(std::string(prefix).size()), nullptr, 0);
    }
  }
  if (auto op = operands.find(details); op != operands.end()) return it->second | op->second;
  return std::nullopt;
}

TEST(TdxStatus, EveryStatusHasItsAbiValueAndName) {
  std::set<std::string> names;
  std::set<uint64_t> values;
  for (const auto& r : status_table()) {
    SCOPED_TRACE(r.name);
    EXPECT_EQ(raw(r.status), r.value);
    EXPECT_STREQ(to_string(r.status), r.name);
    EXPECT_TRUE(names.insert(r.name).second) << "duplicate name";
    EXPECT_TRUE(values.insert(r.value).second) << "duplicate value";
    EXPECT_EQ(status_of(r.value | 0x1234), r.status);
    // Bit 63 is the error bit; the informational statuses have it clear.
    EXPECT_EQ(is_error(r.value), (r.value >> 63) != 0);
  }
  report_checked("tdx_status_names", status_table().size());
}

TEST(TdxStatus, EveryOperandHasItsAbiValueAndName) {
  std::set<std::string> names;
  for (const auto& r : operand_table()) {
    SCOPED_TRACE(r.name);
    EXPECT_EQ(static_cast<uint32_t>(r.operand), r.value);
    EXPECT_STREQ(to_string(r.operand), r.name);
    EXPECT_TRUE(names.insert(r.name).second) << "duplicate name";
  }
  report_checked("tdx_operand_names", operand_table().size());
}

TEST(TdxStatus, DescriptionsRoundTrip) {
  // A set: with_operand(s, RAX) is the bare status.
  std::set<uint64_t> values;
  for (const auto& s : status_table()) {
    values.insert(s.value);
    switch (kind_of(s.status)) {
      case Kind::kOperand:
        for (const auto& op : operand_table()) values.insert(with_operand(s.status, op.operand));
        values.insert(with_details(s.status, 0x77));  // an ID no operand has
        break;
      case Kind::kLevel:
        for (uint32_t level = 0; level <= 4; ++level) values.insert(with_details(s.status, level));
        break;
      case Kind::kExitReason:
        for (uint32_t reason : {1u, 12u, 30u, 48u, 77u})
          values.insert(with_details(s.status, reason));
        break;
      case Kind::kMsr:
        for (uint32_t msr : {0x10u, 0x3au, 0xc0000080u}) values.insert(with_details(s.status, msr));
        break;
    }
  }
  std::set<std::string> seen;
  for (uint64_t v : values) {
    const std::string text = describe_status(v);
    SCOPED_TRACE(text);
    EXPECT_EQ(parse_description(text), v) << fmt::format("{:#018x}", v);
    EXPECT_TRUE(seen.insert(text).second) << "two values share a description";
  }
  report_checked("tdx_status_descriptions", values.size());
}

TEST(TdxStatus, DescribesAsLinuxAndTheModuleWriteThem) {
  struct Row {
    uint64_t rax;
    const char* text;
  };
  const Row rows[] = {
      {0x0000000000000000, "TDX_SUCCESS"},
      {0x8000020000000092, "TDX_OPERAND_BUSY|SEPT_TREE"},
      {0x80000200000000A9, "TDX_OPERAND_BUSY|TD_EPOCH"},
      {0x8000020000000001, "TDX_OPERAND_BUSY|RCX"},
      {0x00000B0A00000001, "TDX_PAGE_ALREADY_ACCEPTED|level 1"},
      {0x00000B0A00000000, "TDX_PAGE_ALREADY_ACCEPTED|level 0"},
      {0xC0000B0B00000001, "TDX_PAGE_SIZE_MISMATCH|level 1"},
      {0xC0000B0800000001, "TDX_TLB_TRACKING_NOT_DONE|RCX"},
      {0xC0000B0800000092, "TDX_TLB_TRACKING_NOT_DONE|SEPT_TREE"},
      {0xC0000B0D00000001, "TDX_EPT_ENTRY_STATE_INCORRECT|RCX"},
      {0xC000030000000008, "TDX_PAGE_METADATA_INCORRECT|R8"},
      {0xC000010000000045, "TDX_OPERAND_INVALID|CPUID_CONFIG"},
      // Operand 0 is RAX only for the operand class (an unknown leaf); elsewhere zero
      // details mean no operand at all.
      {0xC000010000000000, "TDX_OPERAND_INVALID|RAX"},
      {0xC000060800000000, "TDX_OP_STATE_INCORRECT"},
      {0x8000020100000000, "TDX_PREVIOUS_TLB_EPOCH_BUSY"},
      {0x0000081500000000, "TDX_KEY_CONFIGURED"},
      // TD exits: the low half is the VMX exit reason.
      {0x0000000000000030, "TDX_SUCCESS|exit reason 48"},
      {0x6000000200000002, "TDX_NON_RECOVERABLE_TD|exit reason 2"},
      {0xC000092000000010, "TDX_INCONSISTENT_MSR|MSR 0x10"},
      // Linux's software-defined class 0xFF and its own encodings (abi §2.3).
      {0x8000FF0000000000, "TDX_SW_ERROR"},
      {0x8000FF00FFFF0000, "TDX_SEAMCALL_VMFAILINVALID"},
      {0x8000FF000000000D, "TDX_SEAMCALL_GP"},
      {0x8000FF0000000006, "TDX_SEAMCALL_UD"},
      {0x4000000200000000, "TDX_NON_RECOVERABLE_TD (Linux value)"},
      {0x6000000700000000, "TDX_NON_RECOVERABLE_TD_WRONG_APIC_MODE (Linux value)"},
      // Unknown statuses keep their hex; unknown operands are numbered.
      {0x8000FF0000000001, "0x8000ff0000000001 (unknown)"},
      {0xC000FFFF00000000, "0xc000ffff00000000 (unknown)"},
      {0xC0000B1200000000, "0xc0000b1200000000 (unknown)"},
      {0x8000020000000077, "TDX_OPERAND_BUSY|operand 0x77"},
  };
  for (const auto& r : rows)
    EXPECT_EQ(describe_status(r.rax), r.text) << fmt::format("{:#x}", r.rax);
  report_checked("tdx_status_examples", std::size(rows));
}

TEST(TdxStatus, UnknownEnumValuesPrintAsQuestionMarks) {
  EXPECT_STREQ(to_string(static_cast<TdxStatus>(0xC000FFFF00000000)), "?");
  EXPECT_STREQ(to_string(static_cast<TdxOperand>(4)), "?");
  EXPECT_STREQ(to_string(static_cast<TdxOperand>(0x77)), "?");
}

}  // namespace
}  // namespace tdxsim
