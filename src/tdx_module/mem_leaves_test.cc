// The S-EPT memory leaves through SEAMCALL, as KVM drives them: every call on a bound
// logical CPU through host_seamcall. Statuses, operand IDs and the RCX/RDX details are the
// exact values of shared/spec/tdx-module-rules.md §1 and tdx-module-abi.md §3.3.
#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

#include "base/fault_injection.h"
#include "platform/page_walk.h"
#include "platform/platform.h"
#include "tdx_module/measurement.h"
#include "tdx_module/module_test_harness.h"
#include "tdx_module/sept_walk.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {
namespace {

constexpr uint16_t kTdHkid = 33;
constexpr uint64_t kOk = 0;
constexpr uint64_t kFreeView = uint64_t{1} << 63;  // FREE's architectural view: SVE alone

constexpr uint64_t op(TdxStatus s, TdxOperand o) { return with_operand(s, o); }
constexpr uint64_t st(TdxStatus s) { return raw(s); }
constexpr uint64_t detail(unsigned tdx_level, SeptState s) {
  return tdx_level | uint64_t{static_cast<uint8_t>(s)} << 8;
}
// Page info for the entry at `tdx_level` that maps `gpa`: the GPA aligned to that level, as
// KVM passes it (an unaligned one is an operand error, tested with PageInfo::of directly).
uint64_t pi(Gpa gpa, unsigned tdx_level) {
  return PageInfo::of(gpa.align_down(PageInfo::from_tdx_level(tdx_level)), tdx_level).raw();
}

// Every GPA below lives in the first 1G of the TD's space; each test uses its own 2M.
constexpr Gpa kGpa{0x20'0000};

class MemLeavesTest : public test::ModuleHarness {
 protected:
  using ModuleHarness::call;

  // A leaf with RCX, RDX, R8, R9; the outputs in *out when given.
  uint64_t call(SeamcallLeaf leaf, uint64_t rcx, uint64_t rdx = 0, uint64_t r8 = 0,
                uint64_t r9 = 0, SeamcallRegs* out = nullptr, uint8_t version = 0) {
    SeamcallRegs regs;
    regs.rcx = rcx;
    regs.rdx = rdx;
    regs.r8 = r8;
    regs.r9 = r9;
    const uint64_t s = call(0, leaf, regs, version);
    if (out != nullptr) *out = regs;
    return s;
  }

  // A 2M-aligned run of 512 allocated frames (the allocator hands out fresh frames in
  // order; the frames skipped to reach the alignment stay allocated).
  Hpa page_2m() {
    Hpa first = page();
    while (!first.is_aligned(Level::k2M)) first = page();
    for (uint64_t i = 1; i < 512; ++i) EXPECT_EQ(page(), first + i * kPageSize);
    return first;
  }

  // MNG.CREATE, KEY.CONFIG everywhere, ADDCX; then MNG.INIT unless `init` is false.
  Hpa td(bool init = true) {
    test::TdSpec spec;
    spec.hkid = kTdHkid;
    spec.init = init;
    test::BuiltTd built = build_td(spec);
    tdr_ = built.tdr;
    tdcs_ = std::move(built.tdcs);
    return tdr_;
  }
  // One vCPU, created and initialised (what MR.FINALIZE needs).
  void vcpu() { ASSERT_FALSE(build_vcpu(tdr_).empty()); }
  void finalize() {
    vcpu();
    ASSERT_EQ(call(SeamcallLeaf::kMrFinalize, tdr_.raw()), kOk);
    ASSERT_EQ(module_.td_op_state(tdr_), TdOpState::kRunnable);
  }
  Hpa root() const { return tdcs_[kTdcsSeptRootPageIndex]; }

  // SEPT.ADD from `from_level` (TDX numbering) down to `to_level` for `gpa`; the pages.
  std::vector<Hpa> tables(Gpa gpa, unsigned from_level = 3, unsigned to_level = 1) {
    std::vector<Hpa> pages;
    for (unsigned l = from_level; l >= to_level && l > 0; --l) {
      pages.push_back(page());
      EXPECT_EQ(call(SeamcallLeaf::kMemSeptAdd, pi(gpa, l), tdr_.raw(), pages.back().raw()), kOk)
          << "level " << l;
    }
    return pages;
  }
  uint64_t aug(Gpa gpa, unsigned level, Hpa p, SeamcallRegs* out = nullptr) {
    return call(SeamcallLeaf::kMemPageAug, pi(gpa, level), tdr_.raw(), p.raw(), 0, out);
  }
  uint64_t leaf(SeamcallLeaf l, Gpa gpa, unsigned level, SeamcallRegs* out = nullptr) {
    return call(l, pi(gpa, level), tdr_.raw(), 0, 0, out);
  }
  uint64_t track() { return call(SeamcallLeaf::kMemTrack, tdr_.raw()); }
  // The entry as the module's walk finds it (test-side, no locks).
  SeptWalkResult entry(Gpa gpa, unsigned tdx_level) {
    return sept_walk(mem(), layout(), root(), 4, KeyId{kTdHkid}, gpa,
                     PageInfo::from_tdx_level(tdx_level));
  }
  SeptState state(Gpa gpa, unsigned tdx_level) { return entry(gpa, tdx_level).entry.state(); }
  uint64_t pending_view(Hpa p, Level l) {
    return SeptEntry::pending(p, KeyId{kTdHkid}, l, layout()).arch_view(layout());
  }
  uint64_t bepoch(Hpa p) {
    SeamcallRegs r;
    EXPECT_EQ(call(SeamcallLeaf::kPhymemPageRdmd, p.raw(), 0, 0, 0, &r), kOk);
    return r.r9;
  }
  uint64_t children() { return *module_.td_child_count(tdr_); }
  PamtPageType type_of(Hpa h, Level l = Level::k4K) const {
    return module_.pamt().peek_type(h.pfn(), l);
  }
  // The CPU's view through the TD's secure EPT (the hardware walker, no side effects).
  WalkResult hw_walk(Gpa gpa) {
    WalkContext ctx;
    ctx.root = root();
    ctx.levels = 4;
    ctx.ad_enabled = false;
    ctx.table_key = KeyId{kTdHkid};
    return walk(mem(), layout(), ctx, gpa, AccessRequest{}, WalkMode::kProbe);
  }

  Hpa tdr_;
  std::vector<Hpa> tdcs_;
};

// --- SEPT.ADD, AUG, SEPT.RD ----------------------------------------------------------------------

TEST_F(MemLeavesTest, SeptAddAugAndSeptRdBuildAPendingPage) {
  init_sys();
  td();
  const uint64_t base_children = children();
  SeamcallRegs r;
  // An empty root: level 3 entry FREE.
  ASSERT_EQ(leaf(SeamcallLeaf::kMemSeptRd, kGpa, 3, &r), kOk);
  EXPECT_EQ(r.rcx, kFreeView);
  EXPECT_EQ(r.rdx, detail(3, SeptState::kFree));

  const std::vector<Hpa> pt = tables(kGpa);
  ASSERT_EQ(pt.size(), 3u);
  EXPECT_EQ(children(), base_children + 3);
  for (const Hpa& p : pt) {
    EXPECT_EQ(type_of(p), PamtPageType::kEpt);
    EXPECT_EQ(mem().key(p.pfn()), KeyId{kTdHkid});
    SeamcallRegs md;
    ASSERT_EQ(call(SeamcallLeaf::kPhymemPageRdmd, p.raw(), 0, 0, 0, &md), kOk);
    EXPECT_EQ(md.rdx, tdr_.raw()) << "owner";
    EXPECT_EQ(md.r9, 0u) << "BEPOCH";
    // Every entry FREE under the TD's key; the host sees ciphertext.
    // (Entries 0 and 1 hold the NL_MAPPED ones leading to kGpa.)
    for (uint64_t i = 2; i < 512; i += 97) {
      EXPECT_EQ(mem().read(p + 8 * i, KeyId{kTdHkid}).value, SeptEntry::free().raw());
      EXPECT_NE(mem().read(p + 8 * i, kHostKey).value, SeptEntry::free().raw());
    }
  }
  for (unsigned l = 1; l <= 3; ++l) {
    ASSERT_EQ(leaf(SeamcallLeaf::kMemSeptRd, kGpa, l, &r), kOk) << l;
    EXPECT_EQ(r.rcx, 0x7u) << "NL_MAPPED hides the child HPA";
    EXPECT_EQ(r.rdx, detail(l, SeptState::kNlMapped));
  }

  // AUG 4K: PENDING, PT_REG owned by the TDR, BEPOCH 0, re-keyed, not zeroed.
  const Hpa p = page();
  mem().write(p, kHostKey, uint64_t{0x1234});
  const Gpa g = kGpa + 0x3000;
  ASSERT_EQ(aug(g, 0, p), kOk);
  EXPECT_EQ(children(), base_children + 4);
  EXPECT_EQ(type_of(p), PamtPageType::kReg);
  EXPECT_EQ(bepoch(p), 0u);
  EXPECT_EQ(mem().key(p.pfn()), KeyId{kTdHkid});
  ASSERT_EQ(leaf(SeamcallLeaf::kMemSeptRd, g, 0, &r), kOk);
  EXPECT_EQ(r.rcx, pending_view(p, Level::k4K));
  EXPECT_EQ(r.rcx & 7, 0u) << "PENDING has RWX = 0";
  EXPECT_EQ(r.rdx, detail(0, SeptState::kPending));
  EXPECT_EQ(state(g, 0), SeptState::kPending);

  // The CPU's walker faults on it: the entry is not present.
  const WalkResult w = hw_walk(g);
  ASSERT_FALSE(w.has_value());
  ASSERT_TRUE(std::holds_alternative<EptViolation>(w.error()));
  EXPECT_EQ(std::get<EptViolation>(w.error()).level, Level::k4K);
  EXPECT_TRUE(std::get<EptViolation>(w.error()).suppress_ve);

  // SEPT.ADD v1 with ALLOW_EXISTING on the existing table: success, page not consumed.
  const Hpa spare = page();
  ASSERT_EQ(call(SeamcallLeaf::kMemSeptAdd, pi(kGpa, 1), TdHandle::of(tdr_, true).raw(),
                 spare.raw(), 0, &r, /*version=*/1),
            kOk);
  EXPECT_EQ(r.r8, spare.raw() | uint64_t{1} << 63);
  EXPECT_EQ(type_of(spare), PamtPageType::kNda);
}

TEST_F(MemLeavesTest, SeptAddVersionsAllowExistingAndPageRegisters) {
  init_sys();
  td();
  tables(kGpa, 3, 2);
  const uint64_t bit63 = uint64_t{1} << 63;
  const uint64_t handle_ae = TdHandle::of(tdr_, true).raw();
  struct Case {
    const char* what;
    uint8_t version;
    uint64_t rdx;
    unsigned level;  // 2: an existing table; 1: a FREE entry
    uint64_t r8, r9;
    uint64_t expected, out_r8, out_r9;
  };
  const Hpa spare = page();
  const uint64_t incorrect = op(TdxStatus::kEptEntryStateIncorrect, TdxOperand::kRcx);
  const Case cases[] = {
      // The module honours ALLOW_EXISTING in version 0 too; version 0 leaves R8 alone.
      {"v0 existing, ALLOW_EXISTING", 0, handle_ae, 2, spare.raw(), 0, kOk, spare.raw(), 0},
      {"v0 existing, no flag", 0, tdr_.raw(), 2, spare.raw(), 0, incorrect, spare.raw(), 0},
      {"v0 no page on FREE", 0, tdr_.raw(), 1, 0, 0, op(TdxStatus::kOperandInvalid, TdxOperand::kR8), 0, 0},
      {"v1 no page, existing table", 1, tdr_.raw(), 2, 0, 0, kOk, 0, 0},
      {"v1 no page on FREE", 1, tdr_.raw(), 1, 0, 0, incorrect, 0, 0},
      {"v1 existing, input bit 63 ignored", 1, handle_ae, 2, spare.raw() | bit63, 0, kOk,
       spare.raw() | bit63, 0},
      {"v1 an L2 page: no such VM", 1, tdr_.raw(), 1, spare.raw(), 0x5000 | bit63,
       op(TdxStatus::kOperandInvalid, TdxOperand::kR9), spare.raw(), 0x5000},
      {"v1 reserved handle bit", 1, tdr_.raw() | 2, 1, spare.raw(), 0,
       op(TdxStatus::kOperandInvalid, TdxOperand::kRdx), spare.raw(), 0},
  };
  for (const Case& c : cases) {
    SeamcallRegs r;
    EXPECT_EQ(call(SeamcallLeaf::kMemSeptAdd, pi(kGpa, c.level), c.rdx, c.r8, c.r9, &r, c.version),
              c.expected)
        << c.what;
    EXPECT_EQ(r.r8, c.out_r8) << c.what;
    EXPECT_EQ(r.r9, c.out_r9) << c.what;
    EXPECT_EQ(type_of(spare), PamtPageType::kNda) << c.what;
  }
  // v1 adding a table: the page consumed, R8 = 0.
  SeamcallRegs r;
  ASSERT_EQ(call(SeamcallLeaf::kMemSeptAdd, pi(kGpa, 1), tdr_.raw(), spare.raw(), 0, &r, 1), kOk);
  EXPECT_EQ(r.r8, 0u);
  EXPECT_EQ(type_of(spare), PamtPageType::kEpt);
  std::printf("sept_add_versions: %zu (+1) vectors checked\n", std::size(cases));
}

TEST_F(MemLeavesTest, Aug2MChecksTheWholeRange) {
  init_sys();
  td();
  tables(kGpa, 3, 2);
  const uint64_t base_children = children();
  const Hpa big = page_2m();
  struct Case {
    const char* what;
    uint64_t r8;
    uint64_t expected;
  };
  const Case cases[] = {
      {"4K-aligned only", (big + kPageSize).raw(), op(TdxStatus::kOperandInvalid, TdxOperand::kR8)},
      {"not 4K aligned", big.raw() + 8, op(TdxStatus::kOperandInvalid, TdxOperand::kR8)},
      {"key bits", layout().with_key(big, KeyId{kTdHkid}), op(TdxStatus::kOperandInvalid, TdxOperand::kR8)},
      {"beyond memory", test::kHarnessMemBytes, op(TdxStatus::kOperandAddrRangeError, TdxOperand::kR8)},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(aug(kGpa, 1, Hpa{c.r8}), c.expected) << c.what;
  }
  // A 4K frame inside the range given to the TD (as an S-EPT page elsewhere).
  ASSERT_EQ(call(SeamcallLeaf::kMemSeptAdd, pi(kGpa + 0x40'0000, 1), tdr_.raw(),
                 (big + 5 * kPageSize).raw()),
            kOk);
  EXPECT_EQ(aug(kGpa, 1, big), op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kR8));
  EXPECT_EQ(state(kGpa, 1), SeptState::kFree) << "nothing changed";

  const Hpa big2 = page_2m();
  SeamcallRegs r;
  ASSERT_EQ(aug(kGpa, 1, big2), kOk);
  EXPECT_EQ(children(), base_children + 1 + 512);
  EXPECT_EQ(type_of(big2, Level::k2M), PamtPageType::kReg);
  EXPECT_EQ(mem().key((big2 + 511 * kPageSize).pfn()), KeyId{kTdHkid});
  ASSERT_EQ(leaf(SeamcallLeaf::kMemSeptRd, kGpa, 1, &r), kOk);
  EXPECT_EQ(r.rcx, pending_view(big2, Level::k2M));
  EXPECT_EQ(r.rdx, detail(1, SeptState::kPending));
  // A 4K walk inside the 2M leaf stops at it.
  EXPECT_EQ(leaf(SeamcallLeaf::kMemSeptRd, kGpa + 0x1000, 0, &r),
            op(TdxStatus::kEptWalkFailed, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, pending_view(big2, Level::k2M));
  EXPECT_EQ(r.rdx, detail(1, SeptState::kPending));
  std::printf("aug_2m_page_operands: %zu vectors checked\n", std::size(cases));
}

TEST_F(MemLeavesTest, WalkFailuresReportTheEntryWhereTheWalkStopped) {
  init_sys();
  td();
  SeamcallRegs r;
  const uint64_t failed = op(TdxStatus::kEptWalkFailed, TdxOperand::kRcx);
  // No table at all: the root's level-3 entry is FREE — even with a bad page (A1).
  EXPECT_EQ(aug(kGpa, 0, Hpa{0x123}, &r), failed);
  EXPECT_EQ(r.rcx, kFreeView);
  EXPECT_EQ(r.rdx, detail(3, SeptState::kFree));
  EXPECT_EQ(r.r8, 0x123u) << "R8 untouched";
  // Tables down to level 2: stops at the FREE level-1 entry.
  tables(kGpa, 3, 2);
  EXPECT_EQ(call(SeamcallLeaf::kMemSeptAdd, pi(kGpa, 0 + 1), tdr_.raw(), 0x5, 0, &r),
            op(TdxStatus::kOperandInvalid, TdxOperand::kR8))
      << "SEPT.ADD at level 1 reaches its entry, then checks the page";
  EXPECT_EQ(aug(kGpa, 0, page(), &r), failed);
  EXPECT_EQ(r.rdx, detail(1, SeptState::kFree));
  for (SeamcallLeaf l : {SeamcallLeaf::kMemRangeBlock, SeamcallLeaf::kMemRangeUnblock,
                         SeamcallLeaf::kMemPageRemove, SeamcallLeaf::kMemSeptRd}) {
    EXPECT_EQ(leaf(l, kGpa, 0, &r), failed) << to_string(l);
    EXPECT_EQ(r.rcx, kFreeView);
    EXPECT_EQ(r.rdx, detail(1, SeptState::kFree));
  }
  EXPECT_EQ(leaf(SeamcallLeaf::kMemSeptRemove, kGpa, 1, &r),
            op(TdxStatus::kEptEntryStateIncorrect, TdxOperand::kRcx));
  EXPECT_EQ(r.rdx, detail(1, SeptState::kFree));

  // An NL_BLOCKED parent stops the walk too.
  tables(kGpa, 1, 1);
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa, 1), kOk);
  EXPECT_EQ(aug(kGpa, 0, page(), &r), failed);
  EXPECT_EQ(r.rcx, 0u) << "NL_BLOCKED reads RWX = 0";
  EXPECT_EQ(r.rdx, detail(1, SeptState::kNlBlocked));
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeUnblock, kGpa, 1), kOk);
  EXPECT_EQ(aug(kGpa, 0, page()), kOk);
}

// --- State errors (abi §3.3) ----------------------------------------------------------------------

TEST_F(MemLeavesTest, IllegalTransitionsAnswerStateIncorrectWithDetails) {
  init_sys();
  td();
  tables(kGpa);
  const Hpa p = page();
  ASSERT_EQ(aug(kGpa, 0, p), kOk);
  const uint64_t pend = pending_view(p, Level::k4K);
  const uint64_t incorrect = op(TdxStatus::kEptEntryStateIncorrect, TdxOperand::kRcx);
  struct Case {
    const char* what;
    SeamcallLeaf leaf;
    Gpa gpa;
    unsigned level;
    uint64_t r8;
    uint64_t expected, rcx, rdx;
  };
  const Hpa fresh = page();
  const Case cases[] = {
      {"AUG on PENDING (with a bad page: state first)", SeamcallLeaf::kMemPageAug, kGpa, 0, 0x7,
       incorrect, pend, detail(0, SeptState::kPending)},
      {"AUG on NL_MAPPED", SeamcallLeaf::kMemPageAug, kGpa, 1, fresh.raw(), incorrect, 0x7,
       detail(1, SeptState::kNlMapped)},
      {"SEPT.ADD on NL_MAPPED (v0)", SeamcallLeaf::kMemSeptAdd, kGpa, 1, fresh.raw(), incorrect, 0x7,
       detail(1, SeptState::kNlMapped)},
      {"BLOCK on FREE", SeamcallLeaf::kMemRangeBlock, kGpa + 0x1000, 0, 0, incorrect, kFreeView,
       detail(0, SeptState::kFree)},
      {"UNBLOCK on PENDING", SeamcallLeaf::kMemRangeUnblock, kGpa, 0, 0, incorrect, pend,
       detail(0, SeptState::kPending)},
      {"UNBLOCK on NL_MAPPED", SeamcallLeaf::kMemRangeUnblock, kGpa, 1, 0, incorrect, 0x7,
       detail(1, SeptState::kNlMapped)},
      {"REMOVE on NL_MAPPED", SeamcallLeaf::kMemPageRemove, kGpa, 1, 0, incorrect, 0x7,
       detail(1, SeptState::kNlMapped)},
      {"REMOVE on FREE", SeamcallLeaf::kMemPageRemove, kGpa + 0x1000, 0, 0, incorrect, kFreeView,
       detail(0, SeptState::kFree)},
      {"SEPT.REMOVE on FREE", SeamcallLeaf::kMemSeptRemove, kGpa + 0x20'0000, 1, 0, incorrect,
       kFreeView, detail(1, SeptState::kFree)},
  };
  for (const Case& c : cases) {
    SeamcallRegs r;
    EXPECT_EQ(call(c.leaf, pi(c.gpa, c.level), tdr_.raw(), c.r8, 0, &r), c.expected) << c.what;
    EXPECT_EQ(r.rcx, c.rcx) << c.what;
    EXPECT_EQ(r.rdx, c.rdx) << c.what;
  }
  // SEPT.ADD / SEPT.REMOVE on a leaf: a 2M PENDING page at level 1.
  tables(kGpa + 0x4000'0000, 2, 2);
  const Hpa big = page_2m();
  ASSERT_EQ(aug(kGpa + 0x4000'0000, 1, big), kOk);
  SeamcallRegs r;
  EXPECT_EQ(call(SeamcallLeaf::kMemSeptAdd, pi(kGpa + 0x4000'0000, 1), tdr_.raw(), page().raw(), 0, &r),
            incorrect);
  EXPECT_EQ(r.rdx, detail(1, SeptState::kPending));
  EXPECT_EQ(leaf(SeamcallLeaf::kMemSeptRemove, kGpa + 0x4000'0000, 1, &r), incorrect);
  EXPECT_EQ(r.rcx, pending_view(big, Level::k2M));
  EXPECT_EQ(state(kGpa, 0), SeptState::kPending) << "nothing changed";
  std::printf("illegal_transitions: %zu (+2) vectors checked\n", std::size(cases));
}

TEST_F(MemLeavesTest, AugAndPageAddRefuseEveryNonFreeEntry) {
  init_sys();
  td();
  tables(kGpa);
  const Hpa mapped = page();
  ASSERT_EQ(call(SeamcallLeaf::kMemPageAdd, pi(kGpa, 0), tdr_.raw(), mapped.raw(), page().raw()), kOk);
  const Hpa blocked = page();
  ASSERT_EQ(call(SeamcallLeaf::kMemPageAdd, pi(kGpa + 0x1000, 0), tdr_.raw(), blocked.raw(), page().raw()),
            kOk);
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa + 0x1000, 0), kOk);
  const Hpa pending = page();
  ASSERT_EQ(aug(kGpa + 0x2000, 0, pending), kOk);
  const KeyId k{kTdHkid};
  const uint64_t mapped_view = SeptEntry::mapped(mapped, k, Level::k4K, layout()).arch_view(layout());
  const uint64_t blocked_view = SeptEntry::mapped(blocked, k, Level::k4K, layout())
                                    .with_state(SeptState::kBlocked)
                                    .arch_view(layout());
  const uint64_t incorrect = op(TdxStatus::kEptEntryStateIncorrect, TdxOperand::kRcx);
  struct Case {
    const char* what;
    SeamcallLeaf leaf;
    Gpa gpa;
    uint64_t rcx_out, rdx_out;
  };
  const Case cases[] = {
      {"AUG on MAPPED", SeamcallLeaf::kMemPageAug, kGpa, mapped_view, detail(0, SeptState::kMapped)},
      {"AUG on BLOCKED", SeamcallLeaf::kMemPageAug, kGpa + 0x1000, blocked_view, detail(0, SeptState::kBlocked)},
      {"PAGE.ADD on MAPPED", SeamcallLeaf::kMemPageAdd, kGpa, mapped_view, detail(0, SeptState::kMapped)},
      {"PAGE.ADD on BLOCKED", SeamcallLeaf::kMemPageAdd, kGpa + 0x1000, blocked_view,
       detail(0, SeptState::kBlocked)},
      {"PAGE.ADD on PENDING", SeamcallLeaf::kMemPageAdd, kGpa + 0x2000, pending_view(pending, Level::k4K),
       detail(0, SeptState::kPending)},
  };
  for (const Case& c : cases) {
    SeamcallRegs r;
    EXPECT_EQ(call(c.leaf, pi(c.gpa, 0), tdr_.raw(), page().raw(), page().raw(), &r), incorrect) << c.what;
    EXPECT_EQ(r.rcx, c.rcx_out) << c.what;
    EXPECT_EQ(r.rdx, c.rdx_out) << c.what;
  }
  EXPECT_EQ(blocked_view & 7, 0u) << "BLOCKED keeps the HPA, RWX = 0";
  EXPECT_EQ(blocked_view & ~uint64_t{0xFFF} & ~(uint64_t{1} << 63), blocked.raw());
  // The CPU faults on the blocked page, translates the mapped one.
  EXPECT_FALSE(hw_walk(kGpa + 0x1000).has_value());
  EXPECT_TRUE(hw_walk(kGpa).has_value());
  // REMOVE of a BLOCKED page before FINALIZE.
  SeamcallRegs r;
  ASSERT_EQ(leaf(SeamcallLeaf::kMemPageRemove, kGpa + 0x1000, 0, &r), kOk);
  EXPECT_EQ(r.rcx, blocked.raw());
  std::printf("aug_page_add_non_free: %zu vectors checked\n", std::size(cases));
}

TEST_F(MemLeavesTest, OpStateGateComesBeforeOperandsAndFormatIsChecked) {
  init_sys();
  td(/*init=*/false);
  const uint64_t bad_rcx = uint64_t{1} << 5;  // a reserved page-info bit
  const SeamcallLeaf gpa_leaves[] = {
      SeamcallLeaf::kMemSeptAdd,    SeamcallLeaf::kMemPageAug,       SeamcallLeaf::kMemSeptRd,
      SeamcallLeaf::kMemRangeBlock, SeamcallLeaf::kMemRangeUnblock,  SeamcallLeaf::kMemPageRemove,
      SeamcallLeaf::kMemSeptRemove, SeamcallLeaf::kMemPageAdd,       SeamcallLeaf::kMrExtend};
  for (SeamcallLeaf l : gpa_leaves) {
    EXPECT_EQ(call(l, bad_rcx, tdr_.raw(), 0x7), st(TdxStatus::kOpStateIncorrect)) << to_string(l);
  }
  EXPECT_EQ(track(), st(TdxStatus::kOpStateIncorrect));
  EXPECT_EQ(call(SeamcallLeaf::kMrFinalize, tdr_.raw()), st(TdxStatus::kOpStateIncorrect));
  // A TD whose keys are not configured: the lifecycle check comes first.
  const Hpa no_keys = page();
  ASSERT_EQ(call(SeamcallLeaf::kMngCreate, no_keys.raw(), 40), kOk);
  for (SeamcallLeaf l : gpa_leaves) {
    EXPECT_EQ(call(l, bad_rcx, no_keys.raw(), 0x7), st(TdxStatus::kTdKeysNotConfigured)) << to_string(l);
  }
  EXPECT_EQ(call(SeamcallLeaf::kMemTrack, no_keys.raw()), st(TdxStatus::kTdKeysNotConfigured));
  ASSERT_EQ(call(SeamcallLeaf::kMngInit, tdr_.raw(), td_params().raw()), kOk);

  const uint64_t inv_rcx = op(TdxStatus::kOperandInvalid, TdxOperand::kRcx);
  struct Case {
    const char* what;
    SeamcallLeaf leaf;
    uint64_t rcx, rdx;
    uint64_t expected;
  };
  const Case cases[] = {
      {"reserved bit 3", SeamcallLeaf::kMemPageAug, kGpa.raw() | 8, tdr_.raw(), inv_rcx},
      {"reserved bit 52", SeamcallLeaf::kMemSeptRd, uint64_t{1} << 52, tdr_.raw(), inv_rcx},
      {"AUG level 2", SeamcallLeaf::kMemPageAug, pi(kGpa, 2), tdr_.raw(), inv_rcx},
      {"SEPT.ADD level 0", SeamcallLeaf::kMemSeptAdd, pi(kGpa, 0), tdr_.raw(), inv_rcx},
      {"SEPT.ADD level 4 in a 4-level TD", SeamcallLeaf::kMemSeptAdd, pi(Gpa{0}, 4), tdr_.raw(), inv_rcx},
      {"REMOVE level 3", SeamcallLeaf::kMemPageRemove, pi(Gpa{0}, 3), tdr_.raw(), inv_rcx},
      {"PAGE.ADD level 1", SeamcallLeaf::kMemPageAdd, pi(kGpa, 1), tdr_.raw(), inv_rcx},
      {"2M level, 4K-aligned GPA", SeamcallLeaf::kMemRangeBlock,
       PageInfo::of(kGpa + 0x1000, 1).raw(), tdr_.raw(), inv_rcx},
      {"shared GPA (bit 47)", SeamcallLeaf::kMemPageAug, pi(Gpa{uint64_t{1} << 47}, 0), tdr_.raw(), inv_rcx},
      {"GPA bit 50 (GPAW 48)", SeamcallLeaf::kMemSeptRd, pi(Gpa{uint64_t{1} << 50}, 0), tdr_.raw(), inv_rcx},
      {"MR.EXTEND not 256-aligned", SeamcallLeaf::kMrExtend, kGpa.raw() + 0x80, tdr_.raw(), inv_rcx},
      {"TDR handle bit 0 (AUG has no flag)", SeamcallLeaf::kMemPageAug, pi(kGpa, 0), tdr_.raw() | 1,
       op(TdxStatus::kOperandInvalid, TdxOperand::kRdx)},
      {"TDR handle not a TDR", SeamcallLeaf::kMemPageAug, pi(kGpa, 0), tdcs_[0].raw(),
       op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRdx)},
      {"TRACK on a non-TDR", SeamcallLeaf::kMemTrack, tdcs_[0].raw(), 0,
       op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRcx)},
      {"MR.EXTEND on a FREE walk", SeamcallLeaf::kMrExtend, kGpa.raw(), tdr_.raw(),
       op(TdxStatus::kEptEntryNotPresent, TdxOperand::kRcx)},
      {"FINALIZE without vCPUs", SeamcallLeaf::kMrFinalize, tdr_.raw(), 0, st(TdxStatus::kNoVcpus)},
  };
  for (const Case& c : cases) {
    SeamcallRegs r;
    EXPECT_EQ(call(c.leaf, c.rcx, c.rdx, page().raw(), 0, &r), c.expected) << c.what;
    // GPA leaves clear RCX/RDX on entry; TRACK's and FINALIZE's RCX is their TDR.
    if (c.expected != op(TdxStatus::kEptEntryNotPresent, TdxOperand::kRcx) &&
        c.leaf != SeamcallLeaf::kMemTrack && c.leaf != SeamcallLeaf::kMrFinalize) {
      EXPECT_EQ(r.rcx, 0u) << c.what;
      EXPECT_EQ(r.rdx, 0u) << c.what;
    }
  }
  std::printf("op_state_gate: %zu leaves, operand_format: %zu vectors checked\n", std::size(gpa_leaves),
              std::size(cases));
}

// --- BLOCK, TRACK, REMOVE, UNBLOCK, SEPT.REMOVE ------------------------------------------------------

TEST_F(MemLeavesTest, BeforeFinalizeRemovalNeedsNoBlockNorTracking) {
  init_sys();
  td();
  const std::vector<Hpa> pt = tables(kGpa);
  const uint64_t base_children = children();
  const Hpa p = page();
  ASSERT_EQ(aug(kGpa, 0, p), kOk);
  SeamcallRegs r;
  // BLOCK records TD_EPOCH (1 after MNG.INIT); a second BLOCK is informational.
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa, 0), kOk);
  EXPECT_EQ(bepoch(p), 1u);
  EXPECT_EQ(state(kGpa, 0), SeptState::kPendingBlocked);
  const uint64_t already = leaf(SeamcallLeaf::kMemRangeBlock, kGpa, 0, &r);
  EXPECT_EQ(already, op(TdxStatus::kGpaRangeAlreadyBlocked, TdxOperand::kRcx));
  EXPECT_EQ(already >> 63, 0u) << "informational";
  EXPECT_EQ(r.rcx, pending_view(p, Level::k4K));
  EXPECT_EQ(r.rdx, detail(0, SeptState::kPendingBlocked));
  // UNBLOCK needs no tracking before FINALIZE (A6).
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeUnblock, kGpa, 0), kOk);
  EXPECT_EQ(state(kGpa, 0), SeptState::kPending);
  // TRACK is allowed in INITIALIZED and advances the epoch (A8).
  EXPECT_EQ(track(), kOk);
  EXPECT_EQ(module_.td_epoch(tdr_), 2u);
  // REMOVE of an unblocked PENDING page.
  ASSERT_EQ(leaf(SeamcallLeaf::kMemPageRemove, kGpa, 0, &r), kOk);
  EXPECT_EQ(r.rcx, p.raw());
  EXPECT_EQ(type_of(p), PamtPageType::kNda);
  EXPECT_EQ(mem().key(p.pfn()), KeyId{kTdHkid}) << "the host must WBINVD and re-key it";
  EXPECT_EQ(state(kGpa, 0), SeptState::kFree);
  EXPECT_EQ(children(), base_children);
  // SEPT.REMOVE of the now empty table, then its parents.
  for (unsigned l = 1; l <= 3; ++l) {
    ASSERT_EQ(leaf(SeamcallLeaf::kMemSeptRemove, kGpa, l, &r), kOk) << l;
    EXPECT_EQ(r.rcx, pt[3 - l].raw());
    EXPECT_EQ(type_of(pt[3 - l]), PamtPageType::kNda);
  }
  EXPECT_EQ(children(), base_children - 3);
  EXPECT_EQ(state(kGpa, 3), SeptState::kFree);
  // The frames can be given to the TD again.
  ASSERT_EQ(call(SeamcallLeaf::kPhymemPageWbinvd, layout().with_key(p, KeyId{kTdHkid})), kOk);
  tables(kGpa);
  EXPECT_EQ(aug(kGpa, 0, p), kOk);
}

TEST_F(MemLeavesTest, RunnableRemovalProtocolBlockTrackRemove) {
  init_sys();
  td();
  tables(kGpa);
  const Hpa p = page();
  ASSERT_EQ(aug(kGpa, 0, p), kOk);
  const Hpa blocked_early = page();
  ASSERT_EQ(aug(kGpa + 0x1000, 0, blocked_early), kOk);
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa + 0x1000, 0), kOk);  // BEPOCH 1
  finalize();
  EXPECT_EQ(module_.td_epoch(tdr_), 1u);
  const uint64_t base_children = children();
  SeamcallRegs r;

  EXPECT_EQ(leaf(SeamcallLeaf::kMemPageRemove, kGpa, 0, &r),
            op(TdxStatus::kGpaRangeNotBlocked, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, pending_view(p, Level::k4K));
  EXPECT_EQ(r.rdx, detail(0, SeptState::kPending));
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa, 0), kOk);
  EXPECT_EQ(leaf(SeamcallLeaf::kMemPageRemove, kGpa, 0, &r),
            op(TdxStatus::kTlbTrackingNotDone, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, 0u) << "no details (A3)";
  EXPECT_EQ(r.rdx, 0u);
  EXPECT_EQ(leaf(SeamcallLeaf::kMemRangeUnblock, kGpa, 0, &r),
            op(TdxStatus::kTlbTrackingNotDone, TdxOperand::kSeptTree));
  EXPECT_EQ(r.rcx, 0u);
  EXPECT_EQ(r.rdx, 0u);
  // A block made before FINALIZE (BEPOCH 1 = TD_EPOCH) is not tracked either (A7).
  EXPECT_EQ(leaf(SeamcallLeaf::kMemPageRemove, kGpa + 0x1000, 0),
            op(TdxStatus::kTlbTrackingNotDone, TdxOperand::kRcx));

  // No vCPU ever ran: TRACK succeeds, and again.
  ASSERT_EQ(track(), kOk);
  EXPECT_EQ(module_.td_epoch(tdr_), 2u);
  ASSERT_EQ(leaf(SeamcallLeaf::kMemPageRemove, kGpa, 0, &r), kOk);
  EXPECT_EQ(r.rcx, p.raw());
  EXPECT_EQ(r.rdx, 0u);
  EXPECT_EQ(type_of(p), PamtPageType::kNda);
  EXPECT_EQ(children(), base_children - 1);
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeUnblock, kGpa + 0x1000, 0), kOk);
  EXPECT_EQ(state(kGpa + 0x1000, 0), SeptState::kPending);
  ASSERT_EQ(track(), kOk);
  EXPECT_EQ(module_.td_epoch(tdr_), 3u);

  // SEPT.REMOVE: NL_MAPPED → NOT_BLOCKED; blocked untracked with a child → TRACKING (A5);
  // tracked with a child → PAGE_NOT_FREE with the parent's details.
  EXPECT_EQ(leaf(SeamcallLeaf::kMemSeptRemove, kGpa, 1, &r),
            op(TdxStatus::kGpaRangeNotBlocked, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, 0x7u);
  EXPECT_EQ(r.rdx, detail(1, SeptState::kNlMapped));
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa, 1), kOk);
  EXPECT_EQ(leaf(SeamcallLeaf::kMemSeptRemove, kGpa, 1, &r),
            op(TdxStatus::kTlbTrackingNotDone, TdxOperand::kRcx));
  ASSERT_EQ(track(), kOk);
  EXPECT_EQ(leaf(SeamcallLeaf::kMemSeptRemove, kGpa, 1, &r),
            op(TdxStatus::kEptPageNotFree, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, 0u) << "NL_BLOCKED's view";
  EXPECT_EQ(r.rdx, detail(1, SeptState::kNlBlocked));
}

TEST_F(MemLeavesTest, BlockOfANonLeafStampsTheChildTableAndRemovesItWhenEmpty) {
  init_sys();
  td();
  const std::vector<Hpa> pt = tables(kGpa);
  finalize();
  ASSERT_EQ(track(), kOk);  // TD_EPOCH 2
  ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa, 1), kOk);
  EXPECT_EQ(bepoch(pt[2]), 2u) << "the child S-EPT page carries BEPOCH";
  EXPECT_EQ(state(kGpa, 1), SeptState::kNlBlocked);
  SeamcallRegs r;
  EXPECT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa, 1, &r),
            op(TdxStatus::kGpaRangeAlreadyBlocked, TdxOperand::kRcx));
  EXPECT_EQ(r.rdx, detail(1, SeptState::kNlBlocked));
  EXPECT_EQ(leaf(SeamcallLeaf::kMemSeptRemove, kGpa, 1),
            op(TdxStatus::kTlbTrackingNotDone, TdxOperand::kRcx));
  ASSERT_EQ(track(), kOk);
  ASSERT_EQ(leaf(SeamcallLeaf::kMemSeptRemove, kGpa, 1, &r), kOk);
  EXPECT_EQ(r.rcx, pt[2].raw());
  EXPECT_EQ(state(kGpa, 1), SeptState::kFree);
}

TEST_F(MemLeavesTest, RemovedPageKeepsTheTdsDirtyLinesUntilWbinvd) {
  init_sys();
  td();
  tables(kGpa);
  const Hpa src = page();
  mem().fill(src.pfn(), kHostKey, 0xABCD);
  const Hpa p = page();
  ASSERT_EQ(call(SeamcallLeaf::kMemPageAdd, pi(kGpa, 0), tdr_.raw(), p.raw(), src.raw()), kOk);
  EXPECT_TRUE(mem().has_dirty_lines(p.pfn()));
  SeamcallRegs r;
  ASSERT_EQ(leaf(SeamcallLeaf::kMemPageRemove, kGpa, 0, &r), kOk);
  EXPECT_EQ(r.rcx, p.raw());
  EXPECT_EQ(type_of(p), PamtPageType::kNda);
  EXPECT_TRUE(mem().has_dirty_lines(p.pfn())) << "REMOVE does not write back";
  EXPECT_EQ(mem().key(p.pfn()), KeyId{kTdHkid});
  ASSERT_EQ(call(SeamcallLeaf::kPhymemPageWbinvd, layout().with_key(p, KeyId{kTdHkid})), kOk);
  EXPECT_FALSE(mem().has_dirty_lines(p.pfn()));
}

// --- Contention -----------------------------------------------------------------------------------

TEST_F(MemLeavesTest, ALockedEntryAnswersBusyAndAsksHostPriority) {
  init_sys();
  td();
  tables(kGpa);
  const SeptWalkResult e = entry(kGpa, 0);
  // Someone (a guest's ACCEPT) holds the entry lock.
  mem().fetch_or(e.entry_hpa, KeyId{kTdHkid}, SeptEntry::EntryLock::kMask, std::memory_order_acq_rel);
  SeamcallRegs r;
  const Hpa p = page();
  EXPECT_EQ(aug(kGpa, 0, p, &r), op(TdxStatus::kOperandBusy, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, kFreeView);
  EXPECT_EQ(r.rdx, detail(0, SeptState::kFree));
  SeptEntry now{mem().load(e.entry_hpa, KeyId{kTdHkid}, std::memory_order_acquire)};
  EXPECT_TRUE(now.host_priority());
  EXPECT_EQ(type_of(p), PamtPageType::kNda);
  // Released: the host gets it, clears TDHP, and the result has no lock bits.
  mem().store(e.entry_hpa, KeyId{kTdHkid}, now.with_lock(false).raw(), std::memory_order_release);
  ASSERT_EQ(aug(kGpa, 0, p), kOk);
  now = SeptEntry{mem().load(e.entry_hpa, KeyId{kTdHkid}, std::memory_order_acquire)};
  EXPECT_FALSE(now.is_locked());
  EXPECT_FALSE(now.host_priority());
  EXPECT_EQ(now.state(), SeptState::kPending);
}

// --- PAGE.ADD, MR.EXTEND, MR.FINALIZE -------------------------------------------------------------

TEST_F(MemLeavesTest, BuildMeasuresAddsAndExtendsAndMapsPagesWithTheTdKey) {
  init_sys();
  td();
  tables(kGpa);
  const uint64_t base_children = children();
  TdMeasurement expected;
  // Two source pages with a recognisable pattern.
  std::vector<Hpa> targets;
  for (unsigned i = 0; i < 2; ++i) {
    const Hpa src = page();
    for (uint64_t w = 0; w < 512; ++w) mem().write(src + 8 * w, kHostKey, w * 0x0101'0101 + i);
    const Hpa dst = page();
    const Gpa g = kGpa + i * kPageSize;
    ASSERT_EQ(call(SeamcallLeaf::kMemPageAdd, pi(g, 0), tdr_.raw(), dst.raw(), src.raw()), kOk);
    expected.extend_page_add(g);
    targets.push_back(dst);
    EXPECT_EQ(type_of(dst), PamtPageType::kReg);
    EXPECT_EQ(bepoch(dst), 0u);
    EXPECT_EQ(mem().page_hash(dst.pfn(), KeyId{kTdHkid}), mem().page_hash(src.pfn(), kHostKey));
    // The host reads ciphertext.
    EXPECT_NE(mem().read(dst + 8, kHostKey).value, mem().read(src + 8, kHostKey).value);
  }
  EXPECT_EQ(children(), base_children + 2);
  // Extend the second page's first two chunks.
  for (uint64_t off : {uint64_t{0}, uint64_t{256}}) {
    const Gpa g = kGpa + kPageSize + off;
    ASSERT_EQ(call(SeamcallLeaf::kMrExtend, g.raw(), tdr_.raw()), kOk);
    std::array<uint8_t, 256> chunk{};
    for (size_t i = 0; i < 256; i += 8) {
      const uint64_t w = mem().read(targets[1] + off + i, KeyId{kTdHkid}).value;
      for (size_t b = 0; b < 8; ++b) chunk[i + b] = static_cast<uint8_t>(w >> (8 * b));
    }
    expected.extend_mr_extend(g, chunk);
  }
  SeamcallRegs r;
  // PAGE.ADD on a MAPPED entry; a private-keyed source; MR.EXTEND of a PENDING page.
  EXPECT_EQ(call(SeamcallLeaf::kMemPageAdd, pi(kGpa, 0), tdr_.raw(), page().raw(), page().raw(), &r),
            op(TdxStatus::kEptEntryStateIncorrect, TdxOperand::kRcx));
  EXPECT_EQ(r.rcx, SeptEntry::mapped(targets[0], KeyId{kTdHkid}, Level::k4K, layout()).arch_view(layout()));
  EXPECT_EQ(r.rdx, detail(0, SeptState::kMapped));
  EXPECT_EQ(call(SeamcallLeaf::kMemPageAdd, pi(kGpa + 0x5000, 0), tdr_.raw(), page().raw(),
                 layout().with_key(page(), KeyId{kTdHkid})),
            op(TdxStatus::kOperandInvalid, TdxOperand::kR9));
  EXPECT_EQ(call(SeamcallLeaf::kMemPageAdd, pi(kGpa + 0x5000, 0), tdr_.raw(), tdcs_[0].raw(), page().raw()),
            op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kR8));
  ASSERT_EQ(aug(kGpa + 0x6000, 0, page()), kOk);
  EXPECT_EQ(call(SeamcallLeaf::kMrExtend, (kGpa + 0x6000).raw(), tdr_.raw(), 0, 0, &r),
            st(TdxStatus::kEptEntryNotPresent));
  EXPECT_EQ(r.rcx, 0u);

  // The CPU translates an added page with the TD's key.
  const WalkResult w = hw_walk(kGpa + kPageSize + 0x10);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->hpa, targets[1]);
  EXPECT_EQ(w->key, KeyId{kTdHkid});
  EXPECT_TRUE(w->perms.read && w->perms.write && w->perms.exec);

  // A source that is another TD's private frame (read with the host key): ciphertext.
  const Hpa foreign = targets[0];
  const Hpa dst = page();
  ASSERT_EQ(call(SeamcallLeaf::kMemPageAdd, pi(kGpa + 0x7000, 0), tdr_.raw(), dst.raw(), foreign.raw()), kOk);
  expected.extend_page_add(kGpa + 0x7000);
  EXPECT_NE(mem().page_hash(dst.pfn(), KeyId{kTdHkid}), mem().page_hash(foreign.pfn(), KeyId{kTdHkid}));

  EXPECT_EQ(module_.td_mrtd(tdr_), std::nullopt);
  finalize();
  ASSERT_TRUE(module_.td_mrtd(tdr_).has_value());
  EXPECT_EQ(*module_.td_mrtd(tdr_), expected.finalize());
  // After FINALIZE the build leaves are closed.
  EXPECT_EQ(call(SeamcallLeaf::kMemPageAdd, pi(kGpa + 0x8000, 0), tdr_.raw(), page().raw(), page().raw()),
            st(TdxStatus::kOpStateIncorrect));
  EXPECT_EQ(call(SeamcallLeaf::kMrExtend, kGpa.raw(), tdr_.raw()), st(TdxStatus::kOpStateIncorrect));
  EXPECT_EQ(call(SeamcallLeaf::kMrFinalize, tdr_.raw()), st(TdxStatus::kOpStateIncorrect));
}

}  // namespace
}  // namespace tdxsim
