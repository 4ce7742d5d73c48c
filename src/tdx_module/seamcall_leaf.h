// Leaf numbers of the TDX module's two interfaces, the RAX word that selects one, and the
// numbers of the guest-host calls that travel through TDG.VP.VMCALL.
//
// SEAMCALL (host → module) and TDCALL (guest → module) both take RAX = leaf | version << 16
// (TDX module include/tdx_api_defs.h, tdx_leaf_and_version_t; shared/spec/tdx-module-abi.md
// §1.1). Leaf numbers: seamcall_leaf_opcode_t and tdcall_leaf_opcode_t of the same header
// (abi §1.2, §1.5). TDG.VP.VMCALL sub-functions and their R10 statuses follow the GHCI as
// Linux defines them (arch/x86/include/asm/shared/tdx.h; abi §8.2).
//
// Every number here is ABI: DO NOT CHANGE THEM.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "base/bitfield.h"

namespace tdxsim {

// SEAMCALL leaves. ABI values.
enum class SeamcallLeaf : uint16_t {
  kVpEnter = 0,
  kMngAddcx = 1,
  kMemPageAdd = 2,
  kMemSeptAdd = 3,
  kVpAddcx = 4,
  kMemPageRelocate = 5,
  kMemPageAug = 6,
  kMemRangeBlock = 7,
  kMngKeyConfig = 8,
  kMngCreate = 9,
  kVpCreate = 10,
  kMngRd = 11,
  kMemRd = 12,
  kMngWr = 13,
  kMemWr = 14,
  kMemPageDemote = 15,
  kMrExtend = 16,
  kMrFinalize = 17,
  kVpFlush = 18,
  kMngVpflushdone = 19,
  kMngKeyFreeid = 20,
  kMngInit = 21,
  kVpInit = 22,
  kMemPagePromote = 23,
  kPhymemPageRdmd = 24,
  kMemSeptRd = 25,
  kVpRd = 26,
  kMngKeyReclaimid = 27,
  kPhymemPageReclaim = 28,
  kMemPageRemove = 29,
  kMemSeptRemove = 30,
  kSysKeyConfig = 31,
  kSysInfo = 32,
  kSysInit = 33,
  kSysRd = 34,
  kSysLpInit = 35,
  kSysTdmrInit = 36,
  kSysRdall = 37,
  kMemTrack = 38,
  kMemRangeUnblock = 39,
  kPhymemCacheWb = 40,
  kPhymemPageWbinvd = 41,
  kMemSeptWr = 42,  // defined, but module 1.5.01 does not dispatch it (abi §1.2)
  kVpWr = 43,
  kSysLpShutdown = 44,
  kSysConfig = 45,
  kServtdBind = 48,
  kServtdPrebind = 49,
  kSysShutdown = 52,
  kSysUpdate = 53,
  // Dynamic PAMT: not in 1.5.01; numbers from a later module's tdx_api_defs.h.
  kPhymemPamtAdd = 58,
  kPhymemPamtRemove = 59,
  // Live migration.
  kExportAbort = 64,
  kExportBlockw = 65,
  kExportRestore = 66,
  kExportMem = 68,
  kExportPause = 70,
  kExportTrack = 71,
  kExportStateImmutable = 72,
  kExportStateTd = 73,
  kExportStateVp = 74,
  kExportUnblockw = 75,
  kImportAbort = 80,
  kImportEnd = 81,
  kImportCommit = 82,
  kImportMem = 83,
  kImportTrack = 84,
  kImportStateImmutable = 85,
  kImportStateTd = 86,
  kImportStateVp = 87,
  kMigStreamCreate = 96,
};

// TDCALL leaves. ABI values.
enum class TdcallLeaf : uint16_t {
  kVpVmcall = 0,
  kVpInfo = 1,
  kMrRtmrExtend = 2,
  kVpVeinfoGet = 3,
  kMrReport = 4,
  kVpCpuidveSet = 5,
  kMemPageAccept = 6,
  kVmRd = 7,
  kVmWr = 8,
  kVpRd = 9,
  kVpWr = 10,
  kSysRd = 11,
  kSysRdall = 12,
  kServtdRd = 18,
  kServtdWr = 20,
  kMrVerifyreport = 22,
  kMemPageAttrRd = 23,
  kMemPageAttrWr = 24,
  kVpEnter = 25,
  kVpInvept = 26,
  kVpInvvpid = 27,
};

// "TDH.MEM.PAGE.AUG", "TDG.MEM.PAGE.ACCEPT"; "?" for a number no leaf has.
const char* to_string(SeamcallLeaf leaf);
const char* to_string(TdcallLeaf leaf);
// Returns: whether the number names a leaf of the enum.
bool is_defined(SeamcallLeaf leaf);
bool is_defined(TdcallLeaf leaf);
// The inverse of to_string ("TDH.MR.EXTEND" → kMrExtend); nullopt for any other text.
std::optional<SeamcallLeaf> seamcall_leaf_from_name(std::string_view name);
std::optional<TdcallLeaf> tdcall_leaf_from_name(std::string_view name);

// The highest version the module accepts in RAX bits 23:16; only a few leaves have a
// version 1. The VMM dispatcher lets version > 0 through for SEPT.ADD, MNG.RD, VP.INIT,
// PAGE.PROMOTE, VP.RD, SEPT.REMOVE and SYS.INIT (module src/vmm_dispatcher/
// tdx_vmm_dispatcher.c at commit 1666adc4; 1.5.01's list lacks VP.INIT and SYS.INIT, but
// Linux calls TDH.VP.INIT version 1), and SEPT.ADD's handler refuses versions above 1. The
// TD dispatcher lets a version through only for TDG.VM.RD (src/td_dispatcher/
// tdx_td_dispatcher.c).
uint8_t max_version(SeamcallLeaf leaf);
uint8_t max_version(TdcallLeaf leaf);

// RAX on entry to SEAMCALL or TDCALL (tdx_leaf_and_version_t).
class LeafAndVersion {
 public:
  using Leaf = BitField<15, 0>;
  using Version = BitField<23, 16>;
  using Reserved = BitField<63, 24>;  // must be 0

  constexpr LeafAndVersion() = default;
  constexpr explicit LeafAndVersion(uint64_t rax) : raw_(rax) {}
  static constexpr LeafAndVersion of(SeamcallLeaf leaf, uint8_t version = 0) {
    return LeafAndVersion{Version::set(Leaf::set(0, static_cast<uint16_t>(leaf)), version)};
  }
  static constexpr LeafAndVersion of(TdcallLeaf leaf, uint8_t version = 0) {
    return LeafAndVersion{Version::set(Leaf::set(0, static_cast<uint16_t>(leaf)), version)};
  }

  constexpr uint64_t raw() const { return raw_; }
  constexpr bool operator==(const LeafAndVersion&) const = default;
  constexpr uint16_t leaf() const { return static_cast<uint16_t>(Leaf::get(raw_)); }
  constexpr uint8_t version() const { return static_cast<uint8_t>(Version::get(raw_)); }
  constexpr bool reserved_zero() const { return Reserved::get(raw_) == 0; }
  constexpr SeamcallLeaf seamcall_leaf() const { return static_cast<SeamcallLeaf>(leaf()); }
  constexpr TdcallLeaf tdcall_leaf() const { return static_cast<TdcallLeaf>(leaf()); }

  // The dispatchers' first checks, in their order: reserved bits 63:24, then the version
  // (an undefined leaf has no version above 0), then the leaf itself.
  // Returns: raw(TdxStatus::kSuccess), or TDX_OPERAND_INVALID|RAX (0xC000010000000000).
  // The VMM dispatcher checks the module's system state (SYS_NOT_READY, SYS_SHUTDOWN)
  // between the version and the leaf; a caller that models that state splits the check
  // with check_seamcall_format() and is_defined().
  uint64_t check_seamcall() const;
  uint64_t check_seamcall_format() const;
  uint64_t check_tdcall() const;

 private:
  uint64_t raw_ = 0;
};

static_assert(sizeof(LeafAndVersion) == 8);
static_assert(LeafAndVersion::of(SeamcallLeaf::kMemSeptAdd, 1).raw() == 0x1'0003);

// TDG.VP.VMCALL sub-functions (R11 with R10 = 0, the GHCI's standard calls). The GHCI's
// own calls sit at 0x10000 and up; the instruction-emulation calls reuse the VMX exit
// reason of the instruction they stand for. ABI values.
enum class TdVmCall : uint64_t {
  kCpuid = 10,
  kHlt = 12,
  kIo = 30,
  kRdmsr = 31,
  kWrmsr = 32,
  kEptViolation = 48,  // MMIO: #VE on a shared GPA, converted by the guest
  kGetTdVmCallInfo = 0x10000,
  kMapGpa = 0x10001,
  kGetQuote = 0x10002,
  kReportFatalError = 0x10003,
  kSetupEventNotifyInterrupt = 0x10004,
};

// TDG.VP.VMCALL completion status, returned to the guest in R10. ABI values.
enum class TdVmCallStatus : uint64_t {
  kSuccess = 0,
  kRetry = 1,  // MapGPA: R11 = the GPA to resume from
  kInvalidOperand = 0x8000'0000'0000'0000,
  kAlignError = 0x8000'0000'0000'0002,
  kSubfuncUnsupported = 0x8000'0000'0000'0003,
};

// "MapGPA", "Instruction.CPUID"; "TDVMCALL_STATUS_RETRY". "?" when undefined.
const char* to_string(TdVmCall call);
const char* to_string(TdVmCallStatus status);

}  // namespace tdxsim
