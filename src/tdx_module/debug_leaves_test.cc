// TDH.MEM.RD / TDH.MEM.WR (a debug TD's private memory) and TDH.MNG.RD / TDH.MNG.WR (TD
// metadata) through SEAMCALL. Statuses, operand IDs and RCX/RDX/R8 are exact values
// (shared/spec/tdx-module-abi.md §1.2, §1.5, §2; docs/abi.md).
#include <gtest/gtest.h>

#include <cstdio>
#include <iterator>

#include "tdx_module/td_metadata.h"
#include "tdx_module/td_test_harness.h"

namespace tdxsim {
namespace {

using test::detail;
using test::kFreeView;
using test::kGpa;
using test::kOk;
using test::kTdHkid;
using test::op;
using test::pi;
using test::st;

constexpr KeyId kTd{kTdHkid};
constexpr uint64_t k2M = uint64_t{2} << 20;
constexpr uint64_t kPoison = 0xDEAD'BEEF'0000'0000;  // an R8 the leaves must clear on error

class DebugLeavesTest : public test::TdHarness {
 protected:
  static test::TdParams debug_params() {
    test::TdParams p;
    p.attributes |= kTdAttrDebug;
    return p;
  }
  uint64_t mem_rd(Gpa g, SeamcallRegs* out = nullptr) {
    return call(SeamcallLeaf::kMemRd, g.raw(), tdr_.raw(), kPoison, 0, out);
  }
  uint64_t mem_wr(Gpa g, uint64_t value, SeamcallRegs* out = nullptr) {
    return call(SeamcallLeaf::kMemWr, g.raw(), tdr_.raw(), value, 0, out);
  }
  uint64_t mng_rd(uint64_t field, SeamcallRegs* out = nullptr, uint8_t version = 0) {
    return call(SeamcallLeaf::kMngRd, tdr_.raw(), field, kPoison, 0, out, version);
  }
  uint64_t mng_wr(uint64_t field, uint64_t value, uint64_t mask, SeamcallRegs* out = nullptr) {
    return call(SeamcallLeaf::kMngWr, tdr_.raw(), field, value, mask, out);
  }
};

// --- TDH.MEM.RD / TDH.MEM.WR ---------------------------------------------------------------

TEST_F(DebugLeavesTest, MemRdAndWrAccessADebugTdsPagesWithItsKey) {
  init_sys();
  td(/*init=*/true, debug_params());
  tables(kGpa);
  const Hpa src = page();
  for (uint64_t w = 0; w < 512; ++w) mem().write(src + 8 * w, kHostKey, 0x1000 + w);
  const Hpa p = page();
  ASSERT_EQ(add(kGpa, p, src), kOk);

  SeamcallRegs r;
  ASSERT_EQ(mem_rd(kGpa + 8 * 5, &r), kOk);
  EXPECT_EQ(r.r8, 0x1005u);
  EXPECT_EQ(r.rcx, 0u);
  EXPECT_EQ(r.rdx, 0u);
  // WR returns the old value and writes with the TD's key: the guest sees it, the host
  // only ciphertext.
  ASSERT_EQ(mem_wr(kGpa + 0x10, 0xFEED, &r), kOk);
  EXPECT_EQ(r.r8, 0x1002u);
  EXPECT_EQ(mem().read(p + 0x10, kTd).value, 0xFEEDu);
  EXPECT_NE(mem().read(p + 0x10, kHostKey).value, 0xFEEDu);
  ASSERT_EQ(mem_rd(kGpa + 0x10, &r), kOk);
  EXPECT_EQ(r.r8, 0xFEEDu);
  EXPECT_EQ(mem().violation_count(), 0u);

  // Through a 2M leaf the word is found at its offset inside the large page.
  const Gpa g2 = kGpa + k2M;
  tables(g2, 1, 1);
  const Hpa big = page_2m();
  for (uint64_t i = 0; i < 512; ++i) {
    mem().write(src, kHostKey, 0x2000 + i);
    ASSERT_EQ(add(g2 + i * kPageSize, big + i * kPageSize, src), kOk);
  }
  ASSERT_EQ(leaf(SeamcallLeaf::kMemPagePromote, g2, 1), kOk);
  ASSERT_EQ(state(g2, 1), SeptState::kMapped);
  ASSERT_EQ(mem_rd(g2 + 300 * kPageSize, &r), kOk);
  EXPECT_EQ(r.r8, 0x2000u + 300);
  ASSERT_EQ(mem_wr(g2 + 300 * kPageSize + 8, 0xAB, &r), kOk);
  EXPECT_EQ(mem().read(big + 300 * kPageSize + 8, kTd).value, 0xABu);

  // Still open once the TD runs.
  finalize();
  ASSERT_EQ(mem_rd(kGpa + 0x10, &r), kOk);
  EXPECT_EQ(r.r8, 0xFEEDu);
}

TEST_F(DebugLeavesTest, MemRdAndWrNeedAMappedLeaf) {
  init_sys();
  td(/*init=*/true, debug_params());
  tables(kGpa);
  const Hpa p = page();
  ASSERT_EQ(add(kGpa, p, page()), kOk);
  const Hpa blocked = page();
  ASSERT_EQ(add(kGpa + 0x1000, blocked, page()), kOk);
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa + 0x1000, 0), kOk);
  const Hpa pending = page();
  ASSERT_EQ(aug(kGpa + 0x2000, 0, pending), kOk);
  tables(kGpa + k2M, 1, 1);
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa + k2M, 1), kOk);
  const uint64_t not_present = op(TdxStatus::kEptEntryNotPresent, TdxOperand::kRcx);
  const uint64_t inv_rcx = op(TdxStatus::kOperandInvalid, TdxOperand::kRcx);
  struct Case {
    const char* what;
    uint64_t rcx, rdx;
    uint64_t expected, rcx_out, rdx_out;
  };
  const uint64_t tdr = tdr_.raw();
  const Case cases[] = {
      {"not 8-byte aligned", (kGpa + 4).raw(), tdr, inv_rcx, 0, 0},
      {"shared GPA (bit 47)", uint64_t{1} << 47, tdr, inv_rcx, 0, 0},
      {"GPA bit 50 (GPAW 48)", uint64_t{1} << 50, tdr, inv_rcx, 0, 0},
      {"handle bit 0", kGpa.raw(), tdr | 1, op(TdxStatus::kOperandInvalid, TdxOperand::kRdx), 0, 0},
      {"handle not a TDR", kGpa.raw(), tdcs_[0].raw(),
       op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRdx), 0, 0},
      {"FREE 4K entry", (kGpa + 0x3000).raw(), tdr, not_present, kFreeView,
       detail(0, SeptState::kFree)},
      {"no 4K table (its 2M entry FREE)", (kGpa + 3 * k2M).raw(), tdr, not_present,
       kFreeView, detail(1, SeptState::kFree)},
      {"no 2M table (its 512G entry FREE)", (Gpa{uint64_t{1} << 39}).raw(), tdr, not_present,
       kFreeView, detail(3, SeptState::kFree)},
      {"BLOCKED", (kGpa + 0x1008).raw(), tdr, not_present,
       view(SeptState::kBlocked, blocked, Level::k4K), detail(0, SeptState::kBlocked)},
      {"PENDING", (kGpa + 0x2000).raw(), tdr, not_present,
       view(SeptState::kPending, pending, Level::k4K), detail(0, SeptState::kPending)},
      {"under an NL_BLOCKED table", (kGpa + k2M).raw(), tdr, not_present, 0,
       detail(1, SeptState::kNlBlocked)},
  };
  for (SeamcallLeaf l : {SeamcallLeaf::kMemRd, SeamcallLeaf::kMemWr}) {
    for (const Case& c : cases) {
      SeamcallRegs r;
      EXPECT_EQ(call(l, c.rcx, c.rdx, kPoison, 0, &r), c.expected)
          << to_string(l) << ": " << c.what;
      EXPECT_EQ(r.rcx, c.rcx_out) << to_string(l) << ": " << c.what;
      EXPECT_EQ(r.rdx, c.rdx_out) << to_string(l) << ": " << c.what;
      EXPECT_EQ(r.r8, 0u) << to_string(l) << ": " << c.what;
    }
  }
  EXPECT_NE(mem().read(blocked, kTd).value, kPoison) << "no write landed";

  // A locked entry: BUSY with the entry's details.
  const SeptWalkResult e = entry(kGpa, 0);
  mem().fetch_or(e.entry_hpa, kTd, SeptEntry::EntryLock::kMask, std::memory_order_acq_rel);
  SeamcallRegs r;
  EXPECT_EQ(mem_rd(kGpa, &r), op(TdxStatus::kOperandBusy, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, view(SeptState::kMapped, p, Level::k4K));
  EXPECT_EQ(r.rdx, detail(0, SeptState::kMapped));
  EXPECT_EQ(r.r8, 0u);
  const SeptEntry now{mem().load(e.entry_hpa, kTd, std::memory_order_acquire)};
  mem().store(e.entry_hpa, kTd, now.with_lock(false).raw(), std::memory_order_release);
  EXPECT_EQ(mem_rd(kGpa, &r), kOk);
  std::printf("mem_rd_wr_errors: 2 x %zu (+1) vectors checked\n", std::size(cases));
}

TEST_F(DebugLeavesTest, MemRdAndWrAreForDebugTdsOnly) {
  init_sys();
  td(/*init=*/false);
  // op_state first, then the DEBUG attribute, then the GPA.
  EXPECT_EQ(mem_rd(kGpa + 4), st(TdxStatus::kOpStateIncorrect));
  ASSERT_EQ(call(SeamcallLeaf::kMngInit, tdr_.raw(), td_params().raw()), kOk);
  tables(kGpa);
  ASSERT_EQ(add(kGpa, page(), page()), kOk);
  for (SeamcallLeaf l : {SeamcallLeaf::kMemRd, SeamcallLeaf::kMemWr}) {
    SeamcallRegs r;
    EXPECT_EQ(call(l, kGpa.raw(), tdr_.raw(), kPoison, 0, &r), st(TdxStatus::kTdNonDebug))
        << to_string(l);
    EXPECT_EQ(r.r8, 0u);
    EXPECT_EQ(call(l, (kGpa + 4).raw(), tdr_.raw(), kPoison), st(TdxStatus::kTdNonDebug))
        << to_string(l) << " with a bad GPA";
  }
  EXPECT_EQ(st(TdxStatus::kTdNonDebug), 0xC000'0605'0000'0000u);
}

// --- TDH.MNG.RD / TDH.MNG.WR ---------------------------------------------------------------

TEST_F(DebugLeavesTest, MngRdReadsTheFieldsTdxsimKnows) {
  init_sys();
  test::TdParams params;
  params.config_flags = 0x2;  // FLEXIBLE_PENDING_VE
  td(/*init=*/true, params);
  struct Case {
    const char* what;
    uint64_t field;
    uint64_t value;
  };
  const Case cases[] = {
      {"CONFIG_FLAGS", 0x1110'0003'0000'0016, 0x2},
      {"TD_CTLS: PENDING_VE_DISABLE from SEPT_VE_DISABLE", 0x1110'0003'0000'0017, 0x1},
      {"NOTIFY_ENABLES", 0x9100'0000'0000'0010, 0},
      {"NOTIFY_ENABLES, TD context code", 0x9110'0000'0000'0010, 0},
      {"TD_CTLS, vCPU context code (forced to TD)", 0x1120'0003'0000'0017, 0x1},
  };
  for (const Case& c : cases) {
    SeamcallRegs r;
    EXPECT_EQ(mng_rd(c.field, &r), kOk) << c.what;
    EXPECT_EQ(r.r8, c.value) << c.what;
    EXPECT_EQ(r.rcx, tdr_.raw()) << c.what << ": RCX untouched";
    EXPECT_EQ(r.rdx, c.field) << c.what << ": version 0 leaves RDX";
  }
  // Unknown fields (TDCS fields whose IDs the sheets do not give included): R8 = 0.
  for (uint64_t field :
       {uint64_t{0}, uint64_t{0x1110'0003'0000'0018}, td_field::kNotifyEnables + 1}) {
    SeamcallRegs r;
    EXPECT_EQ(mng_rd(field, &r), st(TdxStatus::kMetadataFieldIdIncorrect)) << field;
    EXPECT_EQ(r.r8, 0u);
  }
  EXPECT_EQ(st(TdxStatus::kMetadataFieldIdIncorrect), 0xC000'0C00'0000'0000u);
  // RCX is the TDR; the TD state comes before the field.
  SeamcallRegs r;
  EXPECT_EQ(call(SeamcallLeaf::kMngRd, tdcs_[0].raw(), td_field::kTdCtls, kPoison, 0, &r),
            op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRcx));
  EXPECT_EQ(r.r8, 0u);
  EXPECT_EQ(call(SeamcallLeaf::kMngRd, tdr_.raw() + 8, td_field::kTdCtls),
            op(TdxStatus::kOperandInvalid, TdxOperand::kRcx));
  const Hpa uninit = page();
  ASSERT_EQ(call(SeamcallLeaf::kMngCreate, uninit.raw(), kTdHkid + 1), kOk);
  EXPECT_EQ(call(SeamcallLeaf::kMngRd, uninit.raw(), 0xBAD), st(TdxStatus::kTdKeysNotConfigured));
  std::printf("mng_rd_fields: %zu (+3) vectors checked\n", std::size(cases));
}

TEST_F(DebugLeavesTest, MngRdBeforeInitAndWithoutSeptVeDisable) {
  init_sys();
  td(/*init=*/false);
  EXPECT_EQ(mng_rd(td_field::kTdCtls), st(TdxStatus::kOpStateIncorrect));
  test::TdParams params;
  params.attributes = 0;
  ASSERT_EQ(call(SeamcallLeaf::kMngInit, tdr_.raw(), td_params(params).raw()), kOk);
  SeamcallRegs r;
  ASSERT_EQ(mng_rd(td_field::kTdCtls, &r), kOk);
  EXPECT_EQ(r.r8, 0u) << "PENDING_VE_DISABLE clear";
  ASSERT_EQ(mng_rd(td_field::kConfigFlags, &r), kOk);
  EXPECT_EQ(r.r8, 0u);
  finalize();
  ASSERT_EQ(mng_rd(td_field::kConfigFlags, &r), kOk) << "RUNNABLE too";
}

TEST_F(DebugLeavesTest, MngRdVersionOneEnumeratesTheFields) {
  init_sys();
  td();
  SeamcallRegs r;
  // The null field ID asks for the first field: an informational status.
  const uint64_t first = mng_rd(0, &r, /*version=*/1);
  EXPECT_EQ(first, st(TdxStatus::kMetadataFirstFieldIdInContext));
  EXPECT_EQ(first, 0x0000'0C0B'0000'0000u);
  EXPECT_EQ(first >> 63, 0u) << "not an error";
  EXPECT_EQ(r.rdx, 0x1110'0003'0000'0016u);
  EXPECT_EQ(r.r8, 0u);
  // Each read returns the next ID; the last answers MD_FIELD_ID_NA.
  const uint64_t chain[][2] = {
      {0x1110'0003'0000'0016, 0x1110'0003'0000'0017},
      {0x1110'0003'0000'0017, 0x9110'0000'0000'0010},
      {0x9100'0000'0000'0010, ~uint64_t{0}},
  };
  for (const auto& [field, next] : chain) {
    ASSERT_EQ(mng_rd(field, &r, 1), kOk) << field;
    EXPECT_EQ(r.rdx, next) << field;
  }
  EXPECT_EQ(mng_rd(0xBAD, &r, 1), st(TdxStatus::kMetadataFieldIdIncorrect));
  EXPECT_EQ(r.rdx, ~uint64_t{0});
  EXPECT_EQ(r.r8, 0u);
  EXPECT_EQ(mng_rd(td_field::kTdCtls, &r, 2), op(TdxStatus::kOperandInvalid, TdxOperand::kRax));
}

TEST_F(DebugLeavesTest, MngWrFindsNoFieldTheHostMayWrite) {
  init_sys();
  td();
  for (uint64_t field : {td_field::kConfigFlags, td_field::kTdCtls, td_field::kNotifyEnables}) {
    for (uint64_t mask : {~uint64_t{0}, uint64_t{1}, uint64_t{0}}) {
      SeamcallRegs r;
      EXPECT_EQ(mng_wr(field, 0x5, mask, &r), st(TdxStatus::kMetadataFieldNotWritable)) << field;
      EXPECT_EQ(r.r8, 0u) << field;
    }
  }
  EXPECT_EQ(st(TdxStatus::kMetadataFieldNotWritable), 0xC000'0C01'0000'0000u);
  SeamcallRegs r;
  ASSERT_EQ(mng_rd(td_field::kTdCtls, &r), kOk);
  EXPECT_EQ(r.r8, 1u) << "unchanged";
  EXPECT_EQ(mng_wr(0xBAD, 0x5, ~uint64_t{0}, &r), st(TdxStatus::kMetadataFieldIdIncorrect));
  EXPECT_EQ(r.r8, 0u);
  r = SeamcallRegs{};
  r.rcx = tdr_.raw();
  r.rdx = td_field::kTdCtls;
  EXPECT_EQ(ModuleHarness::call(0, SeamcallLeaf::kMngWr, r, /*version=*/1),
            op(TdxStatus::kOperandInvalid, TdxOperand::kRax));
}

}  // namespace
}  // namespace tdxsim
