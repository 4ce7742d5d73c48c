#include "tdx_module/seamcall_leaf.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "platform/vector_file_for_test.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {
namespace {

using testing::report_checked;

struct LeafRow {
  uint16_t number;
  const char* name;
};

// shared/spec/tdx-module-abi.md §1.2 (and the dynamic-PAMT pair of a later module).
const std::vector<LeafRow>& seamcall_table() {
  static const std::vector<LeafRow> rows = {
      {0, "TDH.VP.ENTER"},           {1, "TDH.MNG.ADDCX"},
      {2, "TDH.MEM.PAGE.ADD"},       {3, "TDH.MEM.SEPT.ADD"},
      {4, "TDH.VP.ADDCX"},           {5, "TDH.MEM.PAGE.RELOCATE"},
      {6, "TDH.MEM.PAGE.AUG"},       {7, "TDH.MEM.RANGE.BLOCK"},
      {8, "TDH.MNG.KEY.CONFIG"},     {9, "TDH.MNG.CREATE"},
      {10, "TDH.VP.CREATE"},         {11, "TDH.MNG.RD"},
      {12, "TDH.MEM.RD"},            {13, "TDH.MNG.WR"},
      {14, "TDH.MEM.WR"},            {15, "TDH.MEM.PAGE.DEMOTE"},
      {16, "TDH.MR.EXTEND"},         {17, "TDH.MR.FINALIZE"},
      {18, "TDH.VP.FLUSH"},          {19, "TDH.MNG.VPFLUSHDONE"},
      {20, "TDH.MNG.KEY.FREEID"},    {21, "TDH.MNG.INIT"},
      {22, "TDH.VP.INIT"},           {23, "TDH.MEM.PAGE.PROMOTE"},
      {24, "TDH.PHYMEM.PAGE.RDMD"},  {25, "TDH.MEM.SEPT.RD"},
      {26, "TDH.VP.RD"},             {27, "TDH.MNG.KEY.RECLAIMID"},
      {28, "TDH.PHYMEM.PAGE.RECLAIM"}, {29, "TDH.MEM.PAGE.REMOVE"},
      {30, "TDH.MEM.SEPT.REMOVE"},   {31, "TDH.SYS.KEY.CONFIG"},
      {32, "TDH.SYS.INFO"},          {33, "TDH.SYS.INIT"},
      {34, "TDH.SYS.RD"},            {35, "TDH.SYS.LP.INIT"},
      {36, "TDH.SYS.TDMR.INIT"},     {37, "TDH.SYS.RDALL"},
      {38, "TDH.MEM.TRACK"},         {39, "TDH.MEM.RANGE.UNBLOCK"},
      {40, "TDH.PHYMEM.CACHE.WB"},   {41, "TDH.PHYMEM.PAGE.WBINVD"},
      {42, "TDH.MEM.SEPT.WR"},       {43, "TDH.VP.WR"},
      {44, "TDH.SYS.LP.SHUTDOWN"},   {45, "TDH.SYS.CONFIG"},
      {48, "TDH.SERVTD.BIND"},       {49, "TDH.SERVTD.PREBIND"},
      {52, "TDH.SYS.SHUTDOWN"},      {53, "TDH.SYS.UPDATE"},
      {58, "TDH.PHYMEM.PAMT.ADD"},   {59, "TDH.PHYMEM.PAMT.REMOVE"},
      {64, "TDH.EXPORT.ABORT"},      {65, "TDH.EXPORT.BLOCKW"},
      {66, "TDH.EXPORT.RESTORE"},    {68, "TDH.EXPORT.MEM"},
      {70, "TDH.EXPORT.PAUSE"},      {71, "TDH.EXPORT.TRACK"},
      {72, "TDH.EXPORT.STATE.IMMUTABLE"}, {73, "TDH.EXPORT.STATE.TD"},
      {74, "TDH.EXPORT.STATE.VP"},   {75, "TDH.EXPORT.UNBLOCKW"},
      {80, "TDH.IMPORT.ABORT"},      {81, "TDH.IMPORT.END"},
      {82, "TDH.IMPORT.COMMIT"},     {83, "TDH.IMPORT.MEM"},
      {84, "TDH.IMPORT.TRACK"},      {85, "TDH.IMPORT.STATE.IMMUTABLE"},
      {86, "TDH.IMPORT.STATE.TD"},   {87, "TDH.IMPORT.STATE.VP"},
      {96, "TDH.MIG.STREAM.CREATE"},
  };
  return rows;
}

// abi §1.5.
const std::vector<LeafRow>& tdcall_table() {
  static const std::vector<LeafRow> rows = {
      {0, "TDG.VP.VMCALL"},        {1, "TDG.VP.INFO"},         {2, "TDG.MR.RTMR.EXTEND"},
      {3, "TDG.VP.VEINFO.GET"},    {4, "TDG.MR.REPORT"},       {5, "TDG.VP.CPUIDVE.SET"},
      {6, "TDG.MEM.PAGE.ACCEPT"},  {7, "TDG.VM.RD"},           {8, "TDG.VM.WR"},
      {9, "TDG.VP.RD"},            {10, "TDG.VP.WR"},          {11, "TDG.SYS.RD"},
      {12, "TDG.SYS.RDALL"},       {18, "TDG.SERVTD.RD"},      {20, "TDG.SERVTD.WR"},
      {22, "TDG.MR.VERIFYREPORT"}, {23, "TDG.MEM.PAGE.ATTR.RD"}, {24, "TDG.MEM.PAGE.ATTR.WR"},
      {25, "TDG.VP.ENTER"},        {26, "TDG.VP.INVEPT"},      {27, "TDG.VP.INVVPID"},
  };
  return rows;
}

TEST(SeamcallLeaf, EveryLeafNumberHasItsNameAndBack) {
  std::set<std::string> names;
  for (const auto& r : seamcall_table()) {
    SCOPED_TRACE(r.name);
    const auto leaf = static_cast<SeamcallLeaf>(r.number);
    EXPECT_TRUE(is_defined(leaf));
    EXPECT_STREQ(to_string(leaf), r.name);
    EXPECT_EQ(seamcall_leaf_from_name(r.name), leaf);
    EXPECT_TRUE(names.insert(r.name).second);
  }
  // No number outside the table names a leaf.
  size_t defined = 0;
  for (uint32_t n = 0; n <= 0xFFFF; ++n) defined += is_defined(static_cast<SeamcallLeaf>(n));
  EXPECT_EQ(defined, seamcall_table().size());
  EXPECT_STREQ(to_string(static_cast<SeamcallLeaf>(46)), "?");
  EXPECT_EQ(seamcall_leaf_from_name("TDH.MEM.PAGE.ACCEPT"), std::nullopt);
  EXPECT_EQ(seamcall_leaf_from_name("tdh.mem.page.aug"), std::nullopt);
  report_checked("seamcall_leaves", seamcall_table().size());
}

TEST(TdcallLeaf, EveryLeafNumberHasItsNameAndBack) {
  std::set<std::string> names;
  for (const auto& r : tdcall_table()) {
    SCOPED_TRACE(r.name);
    const auto leaf = static_cast<TdcallLeaf>(r.number);
    EXPECT_TRUE(is_defined(leaf));
    EXPECT_STREQ(to_string(leaf), r.name);
    EXPECT_EQ(tdcall_leaf_from_name(r.name), leaf);
    EXPECT_TRUE(names.insert(r.name).second);
  }
  size_t defined = 0;
  for (uint32_t n = 0; n <= 0xFFFF; ++n) defined += is_defined(static_cast<TdcallLeaf>(n));
  EXPECT_EQ(defined, tdcall_table().size());
  EXPECT_STREQ(to_string(static_cast<TdcallLeaf>(13)), "?");
  report_checked("tdcall_leaves", tdcall_table().size());
}

TEST(LeafAndVersion, DecodesRaxAndChecksItAsTheDispatchersDo) {
  constexpr uint64_t kOk = 0;
  constexpr uint64_t kBad = 0xC000'0100'0000'0000;  // TDX_OPERAND_INVALID|RAX
  struct Row {
    uint64_t rax;
    uint16_t leaf;
    uint8_t version;
    bool reserved_zero;
    uint64_t seamcall;  // check_seamcall()
    uint64_t seamcall_format;
    uint64_t tdcall;  // check_tdcall()
  };
  const Row rows[] = {
      // rax                   leaf ver  rsvd0  seamcall format tdcall
      {0x0000'0000'0000'0000, 0, 0, true, kOk, kOk, kOk},      // VP.ENTER / VP.VMCALL
      {0x0000'0000'0000'0002, 2, 0, true, kOk, kOk, kOk},      // PAGE.ADD / MR.RTMR.EXTEND
      {0x0000'0000'0000'0006, 6, 0, true, kOk, kOk, kOk},      // PAGE.AUG / MEM.PAGE.ACCEPT
      {0x0000'0000'0001'0003, 3, 1, true, kOk, kOk, kBad},     // SEPT.ADD v1
      {0x0000'0000'0002'0003, 3, 2, true, kBad, kBad, kBad},   // no leaf has version 2
      {0x0000'0000'0001'0002, 2, 1, true, kBad, kBad, kBad},   // PAGE.ADD has no v1
      {0x0000'0000'0001'0016, 22, 1, true, kOk, kOk, kBad},    // VP.INIT v1 (Linux)
      {0x0000'0000'0001'000B, 11, 1, true, kOk, kOk, kBad},    // MNG.RD v1
      {0x0000'0000'0001'0017, 23, 1, true, kOk, kOk, kBad},    // PAGE.PROMOTE v1
      {0x0000'0000'0001'001A, 26, 1, true, kOk, kOk, kBad},    // VP.RD v1
      {0x0000'0000'0001'001E, 30, 1, true, kOk, kOk, kBad},    // SEPT.REMOVE v1
      {0x0000'0000'0001'0021, 33, 1, true, kOk, kOk, kBad},    // SYS.INIT v1
      {0x0000'0000'0001'0007, 7, 1, true, kBad, kBad, kOk},    // TDG.VM.RD v1
      {0x0000'0000'0001'0008, 8, 1, true, kBad, kBad, kBad},   // TDG.VM.WR has no v1
      {0x0000'0000'0000'002E, 46, 0, true, kBad, kOk, kBad},   // 46: no leaf
      {0x0000'0000'0000'000D, 13, 0, true, kOk, kOk, kBad},    // MNG.WR; no TDCALL 13
      {0x0000'0000'0000'0060, 96, 0, true, kOk, kOk, kBad},    // MIG.STREAM.CREATE
      {0x0000'0000'0000'FFFF, 0xFFFF, 0, true, kBad, kOk, kBad},
      {0x0000'0000'0100'0002, 2, 0, false, kBad, kBad, kBad},  // bit 24
      {0x0000'0001'0000'0002, 2, 0, false, kBad, kBad, kBad},  // bit 32
      {0x8000'0000'0000'0006, 6, 0, false, kBad, kBad, kBad},  // bit 63
      {0xFFFF'FFFF'FF01'0003, 3, 1, false, kBad, kBad, kBad},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(fmt::format("rax={:#x}", r.rax));
    const LeafAndVersion lv{r.rax};
    EXPECT_EQ(lv.leaf(), r.leaf);
    EXPECT_EQ(lv.version(), r.version);
    EXPECT_EQ(lv.reserved_zero(), r.reserved_zero);
    EXPECT_EQ(lv.check_seamcall(), r.seamcall);
    EXPECT_EQ(lv.check_seamcall_format(), r.seamcall_format);
    EXPECT_EQ(lv.check_tdcall(), r.tdcall);
    if (r.reserved_zero) {
      EXPECT_EQ(LeafAndVersion::of(static_cast<SeamcallLeaf>(r.leaf), r.version), lv);
      EXPECT_EQ(LeafAndVersion::of(static_cast<TdcallLeaf>(r.leaf), r.version), lv);
    }
  }
  EXPECT_EQ(LeafAndVersion::of(SeamcallLeaf::kMemPageAug).raw(), 6u);
  EXPECT_EQ(LeafAndVersion{0x1'0003}.seamcall_leaf(), SeamcallLeaf::kMemSeptAdd);
  EXPECT_EQ(LeafAndVersion{0x6}.tdcall_leaf(), TdcallLeaf::kMemPageAccept);
  report_checked("leaf_and_version", std::size(rows));
}

TEST(TdVmCall, SubFunctionsAndStatusesKeepTheirGhciValues) {
  struct CallRow {
    TdVmCall call;
    uint64_t value;
    const char* name;
  };
  const CallRow calls[] = {
      {TdVmCall::kCpuid, 10, "Instruction.CPUID"},
      {TdVmCall::kHlt, 12, "Instruction.HLT"},
      {TdVmCall::kIo, 30, "Instruction.IO"},
      {TdVmCall::kRdmsr, 31, "Instruction.RDMSR"},
      {TdVmCall::kWrmsr, 32, "Instruction.WRMSR"},
      {TdVmCall::kEptViolation, 48, "#VE.RequestMMIO"},
      {TdVmCall::kGetTdVmCallInfo, 0x10000, "GetTdVmCallInfo"},
      {TdVmCall::kMapGpa, 0x10001, "MapGPA"},
      {TdVmCall::kGetQuote, 0x10002, "GetQuote"},
      {TdVmCall::kReportFatalError, 0x10003, "ReportFatalError"},
      {TdVmCall::kSetupEventNotifyInterrupt, 0x10004, "SetupEventNotifyInterrupt"},
  };
  for (const auto& c : calls) {
    EXPECT_EQ(static_cast<uint64_t>(c.call), c.value);
    EXPECT_STREQ(to_string(c.call), c.name);
  }
  EXPECT_STREQ(to_string(static_cast<TdVmCall>(0x10005)), "?");

  struct StatusRow {
    TdVmCallStatus status;
    uint64_t value;
    const char* name;
  };
  const StatusRow statuses[] = {
      {TdVmCallStatus::kSuccess, 0, "TDVMCALL_STATUS_SUCCESS"},
      {TdVmCallStatus::kRetry, 1, "TDVMCALL_STATUS_RETRY"},
      {TdVmCallStatus::kInvalidOperand, 0x8000000000000000, "TDVMCALL_STATUS_INVALID_OPERAND"},
      {TdVmCallStatus::kAlignError, 0x8000000000000002, "TDVMCALL_STATUS_ALIGN_ERROR"},
      {TdVmCallStatus::kSubfuncUnsupported, 0x8000000000000003,
       "TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED"},
  };
  for (const auto& s : statuses) {
    EXPECT_EQ(static_cast<uint64_t>(s.status), s.value);
    EXPECT_STREQ(to_string(s.status), s.name);
  }
  EXPECT_STREQ(to_string(static_cast<TdVmCallStatus>(2)), "?");
  report_checked("tdvmcall_values", std::size(calls) + std::size(statuses));
}

}  // namespace
}  // namespace tdxsim
