#include "tdx_module/seamcall_leaf.h"

#include <array>
#include <span>

#include "tdx_module/tdx_status.h"

namespace tdxsim {
namespace {

template <typename Leaf>
struct LeafName {
  Leaf leaf;
  const char* name;
};

// One table per interface drives to_string, is_defined and the name lookup alike.
constexpr LeafName<SeamcallLeaf> kSeamcallLeaves[] = {
    {SeamcallLeaf::kVpEnter, "TDH.VP.ENTER"},
    {SeamcallLeaf::kMngAddcx, "TDH.MNG.ADDCX"},
    {SeamcallLeaf::kMemPageAdd, "TDH.MEM.PAGE.ADD"},
    {SeamcallLeaf::kMemSeptAdd, "TDH.MEM.SEPT.ADD"},
    {SeamcallLeaf::kVpAddcx, "TDH.VP.ADDCX"},
    {SeamcallLeaf::kMemPageRelocate, "TDH.MEM.PAGE.RELOCATE"},
    {SeamcallLeaf::kMemPageAug, "TDH.MEM.PAGE.AUG"},
    {SeamcallLeaf::kMemRangeBlock, "TDH.MEM.RANGE.BLOCK"},
    {SeamcallLeaf::kMngKeyConfig, "TDH.MNG.KEY.CONFIG"},
    {SeamcallLeaf::kMngCreate, "TDH.MNG.CREATE"},
    {SeamcallLeaf::kVpCreate, "TDH.VP.CREATE"},
    {SeamcallLeaf::kMngRd, "TDH.MNG.RD"},
    {SeamcallLeaf::kMemRd, "TDH.MEM.RD"},
    {SeamcallLeaf::kMngWr, "TDH.MNG.WR"},
    {SeamcallLeaf::kMemWr, "TDH.MEM.WR"},
    {SeamcallLeaf::kMemPageDemote, "TDH.MEM.PAGE.DEMOTE"},
    {SeamcallLeaf::kMrExtend, "TDH.MR.EXTEND"},
    {SeamcallLeaf::kMrFinalize, "TDH.MR.FINALIZE"},
    {SeamcallLeaf::kVpFlush, "TDH.VP.FLUSH"},
    {SeamcallLeaf::kMngVpflushdone, "TDH.MNG.VPFLUSHDONE"},
    {SeamcallLeaf::kMngKeyFreeid, "TDH.MNG.KEY.FREEID"},
    {SeamcallLeaf::kMngInit, "TDH.MNG.INIT"},
    {SeamcallLeaf::kVpInit, "TDH.VP.INIT"},
    {SeamcallLeaf::kMemPagePromote, "TDH.MEM.PAGE.PROMOTE"},
    {SeamcallLeaf::kPhymemPageRdmd, "TDH.PHYMEM.PAGE.RDMD"},
    {SeamcallLeaf::kMemSeptRd, "TDH.MEM.SEPT.RD"},
    {SeamcallLeaf::kVpRd, "TDH.VP.RD"},
    {SeamcallLeaf::kMngKeyReclaimid, "TDH.MNG.KEY.RECLAIMID"},
    {SeamcallLeaf::kPhymemPageReclaim, "TDH.PHYMEM.PAGE.RECLAIM"},
    {SeamcallLeaf::kMemPageRemove, "TDH.MEM.PAGE.REMOVE"},
    {SeamcallLeaf::kMemSeptRemove, "TDH.MEM.SEPT.REMOVE"},
    {SeamcallLeaf::kSysKeyConfig, "TDH.SYS.KEY.CONFIG"},
    {SeamcallLeaf::kSysInfo, "TDH.SYS.INFO"},
    {SeamcallLeaf::kSysInit, "TDH.SYS.INIT"},
    {SeamcallLeaf::kSysRd, "TDH.SYS.RD"},
    {SeamcallLeaf::kSysLpInit, "TDH.SYS.LP.INIT"},
    {SeamcallLeaf::kSysTdmrInit, "TDH.SYS.TDMR.INIT"},
    {SeamcallLeaf::kSysRdall, "TDH.SYS.RDALL"},
    {SeamcallLeaf::kMemTrack, "TDH.MEM.TRACK"},
    {SeamcallLeaf::kMemRangeUnblock, "TDH.MEM.RANGE.UNBLOCK"},
    {SeamcallLeaf::kPhymemCacheWb, "TDH.PHYMEM.CACHE.WB"},
    {SeamcallLeaf::kPhymemPageWbinvd, "TDH.PHYMEM.PAGE.WBINVD"},
    {SeamcallLeaf::kMemSeptWr, "TDH.MEM.SEPT.WR"},
    {SeamcallLeaf::kVpWr, "TDH.VP.WR"},
    {SeamcallLeaf::kSysLpShutdown, "TDH.SYS.LP.SHUTDOWN"},
    {SeamcallLeaf::kSysConfig, "TDH.SYS.CONFIG"},
    {SeamcallLeaf::kServtdBind, "TDH.SERVTD.BIND"},
    {SeamcallLeaf::kServtdPrebind, "TDH.SERVTD.PREBIND"},
    {SeamcallLeaf::kSysShutdown, "TDH.SYS.SHUTDOWN"},
    {SeamcallLeaf::kSysUpdate, "TDH.SYS.UPDATE"},
    {SeamcallLeaf::kPhymemPamtAdd, "TDH.PHYMEM.PAMT.ADD"},
    {SeamcallLeaf::kPhymemPamtRemove, "TDH.PHYMEM.PAMT.REMOVE"},
    {SeamcallLeaf::kExportAbort, "TDH.EXPORT.ABORT"},
    {SeamcallLeaf::kExportBlockw, "TDH.EXPORT.BLOCKW"},
    {SeamcallLeaf::kExportRestore, "TDH.EXPORT.RESTORE"},
    {SeamcallLeaf::kExportMem, "TDH.EXPORT.MEM"},
    {SeamcallLeaf::kExportPause, "TDH.EXPORT.PAUSE"},
    {SeamcallLeaf::kExportTrack, "TDH.EXPORT.TRACK"},
    {SeamcallLeaf::kExportStateImmutable, "TDH.EXPORT.STATE.IMMUTABLE"},
    {SeamcallLeaf::kExportStateTd, "TDH.EXPORT.STATE.TD"},
    {SeamcallLeaf::kExportStateVp, "TDH.EXPORT.STATE.VP"},
    {SeamcallLeaf::kExportUnblockw, "TDH.EXPORT.UNBLOCKW"},
    {SeamcallLeaf::kImportAbort, "TDH.IMPORT.ABORT"},
    {SeamcallLeaf::kImportEnd, "TDH.IMPORT.END"},
    {SeamcallLeaf::kImportCommit, "TDH.IMPORT.COMMIT"},
    {SeamcallLeaf::kImportMem, "TDH.IMPORT.MEM"},
    {SeamcallLeaf::kImportTrack, "TDH.IMPORT.TRACK"},
    {SeamcallLeaf::kImportStateImmutable, "TDH.IMPORT.STATE.IMMUTABLE"},
    {SeamcallLeaf::kImportStateTd, "TDH.IMPORT.STATE.TD"},
    {SeamcallLeaf::kImportStateVp, "TDH.IMPORT.STATE.VP"},
    {SeamcallLeaf::kMigStreamCreate, "TDH.MIG.STREAM.CREATE"},
};

constexpr LeafName<TdcallLeaf> kTdcallLeaves[] = {
    {TdcallLeaf::kVpVmcall, "TDG.VP.VMCALL"},
    {TdcallLeaf::kVpInfo, "TDG.VP.INFO"},
    {TdcallLeaf::kMrRtmrExtend, "TDG.MR.RTMR.EXTEND"},
    {TdcallLeaf::kVpVeinfoGet, "TDG.VP.VEINFO.GET"},
    {TdcallLeaf::kMrReport, "TDG.MR.REPORT"},
    {TdcallLeaf::kVpCpuidveSet, "TDG.VP.CPUIDVE.SET"},
    {TdcallLeaf::kMemPageAccept, "TDG.MEM.PAGE.ACCEPT"},
    {TdcallLeaf::kVmRd, "TDG.VM.RD"},
    {TdcallLeaf::kVmWr, "TDG.VM.WR"},
    {TdcallLeaf::kVpRd, "TDG.VP.RD"},
    {TdcallLeaf::kVpWr, "TDG.VP.WR"},
    {TdcallLeaf::kSysRd, "TDG.SYS.RD"},
    {TdcallLeaf::kSysRdall, "TDG.SYS.RDALL"},
    {TdcallLeaf::kServtdRd, "TDG.SERVTD.RD"},
    {TdcallLeaf::kServtdWr, "TDG.SERVTD.WR"},
    {TdcallLeaf::kMrVerifyreport, "TDG.MR.VERIFYREPORT"},
    {TdcallLeaf::kMemPageAttrRd, "TDG.MEM.PAGE.ATTR.RD"},
    {TdcallLeaf::kMemPageAttrWr, "TDG.MEM.PAGE.ATTR.WR"},
    {TdcallLeaf::kVpEnter, "TDG.VP.ENTER"},
    {TdcallLeaf::kVpInvept, "TDG.VP.INVEPT"},
    {TdcallLeaf::kVpInvvpid, "TDG.VP.INVVPID"},
};

template <typename Leaf>
const char* find_name(std::span<const LeafName<Leaf>> table, Leaf leaf) {
  for (const auto& e : table) {
    if (e.leaf == leaf) return e.name;
  }
  return nullptr;
}

// Which leaf numbers the table defines, one bit each, built from the table at compile time:
// every SEAMCALL and TDCALL asks, so the answer is one bit test, not a search.
template <typename Leaf, size_t N>
struct DefinedLeaves {
  static constexpr size_t kWords = 4;  // leaf numbers below 256
  std::array<uint64_t, kWords> bits{};
  constexpr explicit DefinedLeaves(const LeafName<Leaf> (&table)[N]) {
    for (const auto& e : table) {
      const auto n = static_cast<size_t>(e.leaf);
      if (n >= kWords * 64) throw "a leaf number past the bitmap";  // a compile-time error
      bits[n / 64] |= uint64_t{1} << (n % 64);
    }
  }
  constexpr bool has(Leaf leaf) const {
    const auto n = static_cast<size_t>(leaf);
    return n < kWords * 64 && (bits[n / 64] >> (n % 64) & 1) != 0;
  }
};

constexpr DefinedLeaves kDefinedSeamcalls{kSeamcallLeaves};
constexpr DefinedLeaves kDefinedTdcalls{kTdcallLeaves};

template <typename Leaf>
std::optional<Leaf> find_leaf(std::span<const LeafName<Leaf>> table, std::string_view name) {
  for (const auto& e : table) {
    if (name == e.name) return e.leaf;
  }
  return std::nullopt;
}

constexpr uint64_t kOk = raw(TdxStatus::kSuccess);
constexpr uint64_t kOperandInvalidRax = with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRax);

}  // namespace

const char* to_string(SeamcallLeaf leaf) {
  const char* name = find_name<SeamcallLeaf>(kSeamcallLeaves, leaf);
  return name != nullptr ? name : "?";
}

const char* to_string(TdcallLeaf leaf) {
  const char* name = find_name<TdcallLeaf>(kTdcallLeaves, leaf);
  return name != nullptr ? name : "?";
}

bool is_defined(SeamcallLeaf leaf) {
  return kDefinedSeamcalls.has(leaf);
}
bool is_defined(TdcallLeaf leaf) {
  return kDefinedTdcalls.has(leaf);
}

std::optional<SeamcallLeaf> seamcall_leaf_from_name(std::string_view name) {
  return find_leaf<SeamcallLeaf>(kSeamcallLeaves, name);
}

std::optional<TdcallLeaf> tdcall_leaf_from_name(std::string_view name) {
  return find_leaf<TdcallLeaf>(kTdcallLeaves, name);
}

uint8_t max_version(SeamcallLeaf leaf) {
  switch (leaf) {
    case SeamcallLeaf::kMemSeptAdd:
    case SeamcallLeaf::kMngRd:
    case SeamcallLeaf::kVpInit:
    case SeamcallLeaf::kMemPagePromote:
    case SeamcallLeaf::kVpRd:
    case SeamcallLeaf::kMemSeptRemove:
    case SeamcallLeaf::kSysInit:
      return 1;
    default:
      return 0;
  }
}

uint8_t max_version(TdcallLeaf leaf) {
  return leaf == TdcallLeaf::kVmRd ? 1 : 0;
}

uint64_t LeafAndVersion::check_seamcall_format() const {
  if (!reserved_zero()) return kOperandInvalidRax;
  if (version() > max_version(seamcall_leaf())) return kOperandInvalidRax;
  return kOk;
}

uint64_t LeafAndVersion::check_seamcall() const {
  if (const uint64_t status = check_seamcall_format(); status != kOk) return status;
  return is_defined(seamcall_leaf()) ? kOk : kOperandInvalidRax;
}

uint64_t LeafAndVersion::check_tdcall() const {
  if (!reserved_zero()) return kOperandInvalidRax;
  if (version() > max_version(tdcall_leaf())) return kOperandInvalidRax;
  return is_defined(tdcall_leaf()) ? kOk : kOperandInvalidRax;
}

const char* to_string(TdVmCall call) {
  // The GHCI's names, as in "TDG.VP.VMCALL<MapGPA>".
  switch (call) {
    case TdVmCall::kCpuid:
      return "Instruction.CPUID";
    case TdVmCall::kHlt:
      return "Instruction.HLT";
    case TdVmCall::kIo:
      return "Instruction.IO";
    case TdVmCall::kRdmsr:
      return "Instruction.RDMSR";
    case TdVmCall::kWrmsr:
      return "Instruction.WRMSR";
    case TdVmCall::kEptViolation:
      return "#VE.RequestMMIO";
    case TdVmCall::kGetTdVmCallInfo:
      return "GetTdVmCallInfo";
    case TdVmCall::kMapGpa:
      return "MapGPA";
    case TdVmCall::kGetQuote:
      return "GetQuote";
    case TdVmCall::kReportFatalError:
      return "ReportFatalError";
    case TdVmCall::kSetupEventNotifyInterrupt:
      return "SetupEventNotifyInterrupt";
  }
  return "?";
}

const char* to_string(TdVmCallStatus status) {
  switch (status) {
    case TdVmCallStatus::kSuccess:
      return "TDVMCALL_STATUS_SUCCESS";
    case TdVmCallStatus::kRetry:
      return "TDVMCALL_STATUS_RETRY";
    case TdVmCallStatus::kInvalidOperand:
      return "TDVMCALL_STATUS_INVALID_OPERAND";
    case TdVmCallStatus::kAlignError:
      return "TDVMCALL_STATUS_ALIGN_ERROR";
    case TdVmCallStatus::kSubfuncUnsupported:
      return "TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED";
  }
  return "?";
}

}  // namespace tdxsim
