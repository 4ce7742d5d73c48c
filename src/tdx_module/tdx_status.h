// TDX module completion statuses: the exact 64-bit values RAX carries back from a SEAMCALL
// or TDCALL (Intel TDX module 1.5.01, include/auto_gen/tdx_error_codes_defs.h, as listed in
// shared/spec/tdx-module-abi.md §2). These values are ABI: DO NOT CHANGE THEM.
//
// Layout (§2.1): bit 63 ERROR, 62 NON_RECOVERABLE, 61 FATAL, 60 host-recoverability hint,
// 47:40 class, 39:32 details L1 — together bits 63:32 name the status (`TdxStatus`) —
// and 31:0 details L2: the operand ID (`TdxOperand`), a level, or on a TD exit the VMX
// exit reason. Linux compares bits 63:32 only (TDX_SEAMCALL_STATUS_MASK).
#pragma once

#include <cstdint>
#include <string>

namespace tdxsim {

enum class TdxStatus : uint64_t {
  kSuccess = 0x0000'0000'0000'0000,
  kNonRecoverableVcpu = 0x4000'0001'0000'0000,
  kNonRecoverableTd = 0x6000'0002'0000'0000,  // Linux defines 0x4000000200000000 (§2.3)
  kInterruptedResumable = 0x8000'0003'0000'0000,
  kInterruptedRestartable = 0x8000'0004'0000'0000,
  kNonRecoverableTdNonAccessible = 0x6000'0005'0000'0000,
  kInvalidResumption = 0xC000'0006'0000'0000,
  kNonRecoverableTdWrongApicMode = 0xE000'0007'0000'0000,
  kCrossTdFault = 0x8000'0008'0000'0000,
  kCrossTdTrap = 0x9000'0009'0000'0000,
  kNonRecoverableTdCorruptedMd = 0x6000'000A'0000'0000,
  kOperandInvalid = 0xC000'0100'0000'0000,
  kOperandAddrRangeError = 0xC000'0101'0000'0000,
  kOperandBusy = 0x8000'0200'0000'0000,
  kPreviousTlbEpochBusy = 0x8000'0201'0000'0000,
  kSysBusy = 0x8000'0202'0000'0000,
  kRndNoEntropy = 0x8000'0203'0000'0000,
  kOperandBusyHostPriority = 0x8000'0204'0000'0000,
  kHostPriorityBusyTimeout = 0x9000'0205'0000'0000,
  kPageMetadataIncorrect = 0xC000'0300'0000'0000,
  kPageAlreadyFree = 0x0000'0301'0000'0000,
  kPageNotOwnedByTd = 0xC000'0302'0000'0000,
  kPageNotFree = 0xC000'0303'0000'0000,
  kTdAssociatedPagesExist = 0xC000'0400'0000'0000,
  kSysNotReady = 0xC000'0505'0000'0000,
  kSysShutdown = 0xC000'0506'0000'0000,
  kTdFatal = 0xE000'0604'0000'0000,
  kTdNonDebug = 0xC000'0605'0000'0000,
  kTdcsNotAllocated = 0xC000'0606'0000'0000,
  kLifecycleStateIncorrect = 0xC000'0607'0000'0000,
  kOpStateIncorrect = 0xC000'0608'0000'0000,
  kNoVcpus = 0xC000'0609'0000'0000,
  kTdcxNumIncorrect = 0xC000'0610'0000'0000,
  kVcpuStateIncorrect = 0xC000'0700'0000'0000,
  kVcpuAssociated = 0x8000'0701'0000'0000,
  kVcpuNotAssociated = 0x8000'0702'0000'0000,
  kNoValidVeInfo = 0xC000'0704'0000'0000,
  kMaxVcpusExceeded = 0xC000'0705'0000'0000,
  kTscRollback = 0xC000'0706'0000'0000,
  kKeyGenerationFailed = 0x8000'0800'0000'0000,
  kTdKeysNotConfigured = 0x8000'0810'0000'0000,
  kKeyStateIncorrect = 0xC000'0811'0000'0000,
  kKeyConfigured = 0x0000'0815'0000'0000,
  kWbcacheNotComplete = 0x8000'0817'0000'0000,
  kHkidNotFree = 0xC000'0820'0000'0000,
  kNoHkidReadyToWbcache = 0x0000'0821'0000'0000,
  kWbcacheResumeError = 0xC000'0823'0000'0000,
  kFlushvpNotDone = 0x8000'0824'0000'0000,
  kInconsistentMsr = 0xC000'0920'0000'0000,
  kIncorrectMsrValue = 0xC000'0921'0000'0000,
  kEptWalkFailed = 0xC000'0B00'0000'0000,
  kEptEntryFree = 0xC000'0B01'0000'0000,
  kEptEntryNotFree = 0xC000'0B02'0000'0000,
  kEptEntryNotPresent = 0xC000'0B03'0000'0000,
  kEptEntryNotLeaf = 0xC000'0B04'0000'0000,
  kEptEntryLeaf = 0xC000'0B05'0000'0000,
  kGpaRangeNotBlocked = 0xC000'0B06'0000'0000,
  kGpaRangeAlreadyBlocked = 0x0000'0B07'0000'0000,
  kTlbTrackingNotDone = 0xC000'0B08'0000'0000,
  kEptInvalidPromoteConditions = 0xC000'0B09'0000'0000,
  kPageAlreadyAccepted = 0x0000'0B0A'0000'0000,
  kPageSizeMismatch = 0xC000'0B0B'0000'0000,
  kGpaRangeBlocked = 0xC000'0B0C'0000'0000,
  kEptEntryStateIncorrect = 0xC000'0B0D'0000'0000,
  kEptPageNotFree = 0xC000'0B0E'0000'0000,
  kMetadataFieldNotReadable = 0xC000'0C02'0000'0000,
  kSysInitNotPending = 0xC000'0500'0000'0000,
  kSysLpInitNotDone = 0xC000'0502'0000'0000,
  kSysLpInitDone = 0xC000'0503'0000'0000,
  kSysKeyConfigNotPending = 0xC000'0507'0000'0000,
  kSysStateIncorrect = 0xC000'0508'0000'0000,
  kSysConfigNotPending = 0xC000'050C'0000'0000,
  kMetadataFieldIdIncorrect = 0xC000'0C00'0000'0000,
  // Not in the abi sheet's list; the module's own table (include/auto_gen/
  // tdx_error_codes_defs.h) gives them, as it gives every value above.
  kMetadataFieldNotWritable = 0xC000'0C01'0000'0000,
  kMetadataFirstFieldIdInContext = 0x0000'0C0B'0000'0000,
};

// Operand IDs (bits 31:0 of an error; §2.4). ABI values.
enum class TdxOperand : uint32_t {
  kRax = 0, kRcx = 1, kRdx = 2, kRbx = 3, kRbp = 5, kRsi = 6, kRdi = 7,
  kR8 = 8, kR9 = 9, kR10 = 10, kR11 = 11, kR12 = 12, kR13 = 13, kR14 = 14, kR15 = 15,
  kAttributes = 64, kXfam = 65, kExecControls = 66, kEptpControls = 67, kMaxVcpus = 68,
  kCpuidConfig = 69, kTscFrequency = 70,
  kTdr = 0x80, kTdcx = 0x81, kTdvpr = 0x82, kRegPage = 0x84, kTdcs = 0x90, kTdvps = 0x91,
  kSeptTree = 0x92, kSeptEntry = 0x93, kTdEpoch = 0xA9, kOpState = 0xAC,
  kMetadataField = 0xB0, kSys = 0xB8, kTdmr = 0xB9, kKot = 0xBA, kKet = 0xBB, kWbcache = 0xBC,
};

inline constexpr uint64_t kTdxStatusMask = 0xFFFF'FFFF'0000'0000;

constexpr uint64_t raw(TdxStatus s) { return static_cast<uint64_t>(s); }
// A status with an operand ID (api_error_with_operand_id).
constexpr uint64_t with_operand(TdxStatus s, TdxOperand op) {
  return raw(s) | static_cast<uint32_t>(op);
}
// A status with a level or other details in bits 31:0.
constexpr uint64_t with_details(TdxStatus s, uint32_t details) { return raw(s) | details; }

constexpr TdxStatus status_of(uint64_t rax) { return static_cast<TdxStatus>(rax & kTdxStatusMask); }
constexpr uint32_t details_l2(uint64_t rax) { return static_cast<uint32_t>(rax); }
constexpr uint8_t status_class(uint64_t rax) { return static_cast<uint8_t>(rax >> 40); }
// Bits 31:0 read as an operand ID: what they mean for the statuses built with with_operand
// (BUSY, OPERAND_INVALID, …); for others they are a level or an exit reason.
constexpr TdxOperand operand_id(uint64_t rax) { return static_cast<TdxOperand>(details_l2(rax)); }
constexpr bool is_error(uint64_t rax) { return (rax >> 63) != 0; }
constexpr bool is_non_recoverable(uint64_t rax) { return ((rax >> 62) & 1) != 0; }
constexpr bool is_status(uint64_t rax, TdxStatus s) { return status_of(rax) == s; }

// "TDX_OPERAND_BUSY|SEPT_TREE", "TDX_SUCCESS", "0x8000ff00ffff0000 (unknown)".
std::string describe_status(uint64_t rax);
const char* to_string(TdxStatus s);
const char* to_string(TdxOperand op);

static_assert(with_operand(TdxStatus::kOperandBusy, TdxOperand::kSeptTree) == 0x8000'0200'0000'0092);
static_assert(with_operand(TdxStatus::kTlbTrackingNotDone, TdxOperand::kRcx) == 0xC000'0B08'0000'0001);
static_assert(status_class(raw(TdxStatus::kEptEntryStateIncorrect)) == 0x0B);
static_assert(operand_id(0x8000'0200'0000'0092) == TdxOperand::kSeptTree);

}  // namespace tdxsim
