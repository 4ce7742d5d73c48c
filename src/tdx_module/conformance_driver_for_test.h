// Test support for sept_conformance_test.cc: the vocabulary of its table (the leaf a row
// issues, the TD and the S-EPT entry at kGpa it meets, what RCX and RDX should hold) and the
// driver that plays one row on a fresh TD. The driver builds the starting entry with the
// SEAMCALLs KVM would use (SEPT.ADD, PAGE.ADD, AUG, PROMOTE, BLOCK, TRACK, FINALIZE), issues
// the leaf — the guest's ones through TDH.VP.ENTER —, and checks status, RCX, RDX and the
// entry's state afterwards as TDH.MEM.SEPT.RD reports it.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <ostream>
#include <vector>

#include "platform/scripted_guest.h"
#include "tdx_module/td_exit.h"
#include "tdx_module/td_test_harness.h"

namespace tdxsim::test {

// The EPT-violation qualification of a guest load whose entry grants nothing: data read
// (bit 0), the guest linear address valid (7) and translated (8) (SDM Table 28-7).
inline constexpr uint64_t kReadQual = 0x181;

// What a row issues. kSeptAddV1 is version 1 with ALLOW_EXISTING, kSeptAddV0Ae version 0
// with it. kAugNotNda gives AUG a TDCS page, kAug2MNotFree a 2M frame run one of whose frames
// is an S-EPT page. MEM.RD/WR rows get a debug TD. kAccept is the guest's
// TDG.MEM.PAGE.ACCEPT; kLoad a guest load (SEPT_VE_DISABLE set, as by default), kLoadVe one
// in a TD without it, whose #VE handler runs TDG.VP.VEINFO.GET.
// clang-format off
enum class Leaf : uint8_t {
  kPageAdd, kSeptAddV0, kSeptAddV1, kSeptAddV0Ae, kAug, kAugNotNda, kAug2MNotFree, kBlock,
  kUnblock, kPageRemove, kSeptRemove, kRelocate, kDemote, kPromote, kMrExtend, kMemRd, kMemWr,
  kSeptRd, kAccept, kLoad, kLoadVe,
};
// clang-format on

// The TD a row meets. INITIALIZED never tracks a block, nor needs to (rules A6). kRun blocks
// after FINALIZE then TRACKs with no vCPU inside (tracked); kRunUntracked does not TRACK;
// kRunBlockedEarly blocks before FINALIZE (rules A7). kUninit: no MNG.INIT; kNoKeys:
// KEY.CONFIG on one package of two; kTornDown: after KEY.FREEID.
// clang-format off
enum class TdState : uint8_t {
  kInit, kRun, kRunUntracked, kRunBlockedEarly, kUninit, kNoKeys, kTornDown,
};
// clang-format on

// The entry at kGpa a row starts from, and what lies around it: kNoTables, the root's level-3
// entry FREE; 4K leaves under a 4K table; 2M leaves (level 1) without one; a level-1
// non-leaf whose 4K table is empty, holds one PENDING page at kGpa, or is full of 512
// PENDING pages on one aligned 2M frame run (which PROMOTE can merge).
// clang-format off
enum class Start : uint8_t {
  kNoTables, kFree4K, kMapped4K, kBlocked4K, kPending4K, kPendingBlocked4K, kFree2M, kMapped2M,
  kBlocked2M, kPending2M, kPendingBlocked2M, kNlMappedEmpty, kNlBlockedEmpty, kNlMappedOne,
  kNlBlockedOne, kNlMappedFull, kNlBlockedFull,
};
// clang-format on

// What RCX and RDX should hold. kEntry: the start entry's details (RCX its architectural
// view, RDX level | state << 8); kFreeBelow: those of the FREE 4K entry a walk went on to
// below it. Otherwise RDX is the row's value and RCX: 0 (kNone), the page or the S-EPT page
// the start entry maps (kPage, kTable), an EPT-violation exit's qualification for a data
// write (kWrite, 2) or a guest load (kRead, kReadQual), or TDG.VP.VEINFO.GET's exit reason
// after an EPT-violation #VE (kVeInfo, 48).
enum class Out : uint8_t { kNone, kEntry, kFreeBelow, kPage, kTable, kWrite, kRead, kVeInfo };

struct Cell {
  const char* name;
  Leaf leaf;
  TdState td;
  Start start;
  uint8_t level;  // the page-info level the leaf names; leaves taking a bare GPA ignore it
  uint64_t status;
  Out out;
  uint64_t rdx = 0;
  // The start entry's state afterwards where it changes (unchecked where SEPT.RD is closed).
  std::optional<SeptState> after = {};
  bool disabled = false;  // tdxsim answers otherwise than the sheet: DISABLED_, see the row
};

inline void PrintTo(const Cell& c, std::ostream* os) {
  *os << c.name;
}

class ConformanceDriver : public TdHarness {
 protected:
  struct Answer {
    uint64_t status, rcx, rdx;
  };

  void play(const Cell& c) {
    init_sys();
    build_td(c);
    if (::testing::Test::HasFatalFailure()) return;
    const bool sept_open =
        c.td != TdState::kUninit && c.td != TdState::kNoKeys && c.td != TdState::kTornDown;
    if (sept_open) {
      build_start(c);
      if (::testing::Test::HasFatalFailure()) return;
      SeamcallRegs r;
      ASSERT_EQ(leaf(SeamcallLeaf::kMemSeptRd, kGpa, level_of(c.start), &r), kOk) << "setup";
      ASSERT_EQ(r.rdx, detail(level_of(c.start), state_of(c.start))) << "setup";
    } else if (c.td == TdState::kTornDown) {
      tear_down();
      if (::testing::Test::HasFatalFailure()) return;
    }
    const Answer a = issue(c);
    const Answer want = expected(c);
    EXPECT_EQ(a.status, want.status) << describe_status(a.status);
    EXPECT_EQ(a.rcx, want.rcx) << "RCX";
    EXPECT_EQ(a.rdx, want.rdx) << "RDX";
    if (sept_open) {
      SeamcallRegs r;
      ASSERT_EQ(leaf(SeamcallLeaf::kMemSeptRd, kGpa, level_of(c.start), &r), kOk);
      EXPECT_EQ(static_cast<SeptState>((r.rdx >> 8) & 0xFF), c.after.value_or(state_of(c.start)))
          << "state afterwards";
    }
  }

 private:
  static SeptState state_of(Start s) {
    using enum SeptState;
    constexpr SeptState kState[] = {kFree,           kFree,     kMapped,    kBlocked,  kPending,
                                    kPendingBlocked, kFree,     kMapped,    kBlocked,  kPending,
                                    kPendingBlocked, kNlMapped, kNlBlocked, kNlMapped, kNlBlocked,
                                    kNlMapped,       kNlBlocked};
    static_assert(std::size(kState) == static_cast<size_t>(Start::kNlBlockedFull) + 1);
    return kState[static_cast<size_t>(s)];
  }
  static unsigned level_of(Start s) {
    if (s == Start::kNoTables) return 3;
    return s <= Start::kPendingBlocked4K ? 0 : 1;
  }
  static bool is_blocked_start(Start s) {
    const SeptState st = state_of(s);
    return st == SeptState::kBlocked || st == SeptState::kPendingBlocked ||
           st == SeptState::kNlBlocked;
  }

  void build_td(const Cell& c) {
    if (c.td == TdState::kNoKeys) {
      tdr_ = page();
      ASSERT_EQ(call(SeamcallLeaf::kMngCreate, tdr_.raw(), kTdHkid), kOk);
      ASSERT_EQ(call_on(package_leaders()[0], SeamcallLeaf::kMngKeyConfig, tdr_.raw()), kOk);
      return;
    }
    TdParams p;
    if (c.leaf == Leaf::kMemRd || c.leaf == Leaf::kMemWr) p.attributes |= kTdAttrDebug;
    if (c.leaf == Leaf::kLoadVe) p.attributes &= ~kTdAttrSeptVeDisable;
    td(/*init=*/c.td != TdState::kUninit, p);
    if (c.td == TdState::kUninit) return;
    // One vCPU, kept for TDH.VP.ENTER (TdHarness::finalize makes its own).
    tdvpr_ = page();
    ASSERT_EQ(call(SeamcallLeaf::kVpCreate, tdvpr_.raw(), tdr_.raw()), kOk);
    for (unsigned i = 1; i < module_.config().tdvps_pages; ++i) {
      ASSERT_EQ(call(SeamcallLeaf::kVpAddcx, page().raw(), tdvpr_.raw()), kOk);
    }
    ASSERT_EQ(call(SeamcallLeaf::kVpInit, tdvpr_.raw(), 0), kOk);
  }

  void build_start(const Cell& c) {
    const Start s = c.start;
    if (s != Start::kNoTables) tables(kGpa, 3, 2);
    const bool has_table = level_of(s) == 0 || s >= Start::kNlMappedEmpty;
    if (has_table || s == Start::kMapped2M || s == Start::kBlocked2M) {
      table_ = tables(kGpa, 1, 1).at(0);
    }
    switch (s) {
      case Start::kMapped4K:
      case Start::kBlocked4K:
        page_ = page();
        ASSERT_EQ(add(kGpa, page_, page()), kOk);
        break;
      case Start::kPending4K:
      case Start::kPendingBlocked4K:
      case Start::kNlMappedOne:
      case Start::kNlBlockedOne:
        page_ = page();
        ASSERT_EQ(aug(kGpa, 0, page_), kOk);
        break;
      case Start::kMapped2M:
      case Start::kBlocked2M: {
        // Before FINALIZE a MAPPED 2M leaf exists only as 512 added pages, promoted.
        page_ = page_2m();
        const Hpa src = page();
        for (uint64_t i = 0; i < 512; ++i) {
          ASSERT_EQ(add(kGpa + i * kPageSize, page_ + i * kPageSize, src), kOk);
        }
        ASSERT_EQ(leaf(SeamcallLeaf::kMemPagePromote, kGpa, 1), kOk);
        break;
      }
      case Start::kPending2M:
      case Start::kPendingBlocked2M:
        page_ = page_2m();
        ASSERT_EQ(aug(kGpa, 1, page_), kOk);
        break;
      case Start::kNlMappedFull:
      case Start::kNlBlockedFull:
        page_ = page_2m();
        for (uint64_t i = 0; i < 512; ++i) {
          ASSERT_EQ(aug(kGpa + i * kPageSize, 0, page_ + i * kPageSize), kOk);
        }
        break;
      default:
        break;
    }
    const bool blocked = is_blocked_start(s);
    const auto block = [&] {
      ASSERT_EQ(leaf(SeamcallLeaf::kMemRangeBlock, kGpa, level_of(s)), kOk) << "setup";
    };
    switch (c.td) {
      case TdState::kInit:
        if (blocked) block();
        break;
      case TdState::kRunBlockedEarly:
        if (blocked) block();
        ASSERT_EQ(call(SeamcallLeaf::kMrFinalize, tdr_.raw()), kOk);
        break;
      case TdState::kRun:
      case TdState::kRunUntracked:
        ASSERT_EQ(call(SeamcallLeaf::kMrFinalize, tdr_.raw()), kOk);
        if (blocked) block();
        // No vCPU is inside: one TRACK retires the block's epoch.
        if (blocked && c.td == TdState::kRun) {
          ASSERT_EQ(track(), kOk);
        }
        break;
      default:
        break;
    }
  }

  void tear_down() {
    ASSERT_EQ(call(SeamcallLeaf::kMngVpflushdone, tdr_.raw()), kOk);
    for (unsigned cpu : package_leaders()) {
      ASSERT_EQ(call_on(cpu, SeamcallLeaf::kPhymemCacheWb), kOk);
    }
    ASSERT_EQ(call(SeamcallLeaf::kMngKeyFreeid, tdr_.raw()), kOk);
  }

  Answer expected(const Cell& c) {
    const SeptState s = state_of(c.start);
    const unsigned l = level_of(c.start);
    switch (c.out) {
      case Out::kNone:
        return {c.status, 0, c.rdx};
      case Out::kFreeBelow:
        return {c.status, kFreeView, detail(0, SeptState::kFree)};
      case Out::kPage:
        return {c.status, page_.raw(), c.rdx};
      case Out::kTable:
        return {c.status, table_.raw(), c.rdx};
      case Out::kWrite:
        return {c.status, kEptQualDataWrite, c.rdx};
      case Out::kRead:
        return {c.status, kReadQual, c.rdx};
      case Out::kVeInfo:
        return {c.status, static_cast<uint64_t>(VmxExitReason::kEptViolation), c.rdx};
      case Out::kEntry:
        break;
    }
    return {c.status, view_of(s, l), detail(l, s)};
  }
  // A non-leaf shows its RWX only, never the table's HPA; NL_BLOCKED has none.
  uint64_t view_of(SeptState s, unsigned level) {
    if (s == SeptState::kFree) return kFreeView;
    if (s == SeptState::kNlMapped) return 0x7;
    if (s == SeptState::kNlBlocked) return 0;
    return view(s, page_, level == 0 ? Level::k4K : Level::k2M);
  }

  Answer issue(const Cell& c) {
    using enum SeamcallLeaf;
    constexpr SeamcallLeaf kSeamcall[] = {
        kMemPageAdd,    kMemSeptAdd,      kMemSeptAdd,    kMemSeptAdd,      kMemPageAug,
        kMemPageAug,    kMemPageAug,      kMemRangeBlock, kMemRangeUnblock, kMemPageRemove,
        kMemSeptRemove, kMemPageRelocate, kMemPageDemote, kMemPagePromote,  kMrExtend,
        kMemRd,         kMemWr,           kMemSeptRd};
    // The guest's leaves follow the SEAMCALL ones.
    static_assert(std::size(kSeamcall) == static_cast<size_t>(Leaf::kSeptRd) + 1);
    const Leaf l = c.leaf;
    if (l == Leaf::kAccept || l == Leaf::kLoad || l == Leaf::kLoadVe) return run_guest(c);
    const bool bare_gpa = l == Leaf::kMrExtend || l == Leaf::kMemRd || l == Leaf::kMemWr;
    const bool allow_existing = l == Leaf::kSeptAddV1 || l == Leaf::kSeptAddV0Ae;
    // R8: the new page where the leaf takes one (the others ignore it; MEM.WR writes it).
    Hpa r8 = c.level == 1 && l == Leaf::kAug ? page_2m() : page();
    if (l == Leaf::kAugNotNda) r8 = tdcs_[0];
    if (l == Leaf::kAug2MNotFree) {
      r8 = page_2m();
      EXPECT_EQ(call(kMemSeptAdd, pi(kGpa + (2 << 20), 1), tdr_.raw(), (r8 + 5 * kPageSize).raw()),
                kOk)
          << "one frame of the run becomes the next 2M's table";
    }
    SeamcallRegs r;
    const uint64_t s =
        call(kSeamcall[static_cast<size_t>(l)], bare_gpa ? kGpa.raw() : pi(kGpa, c.level),
             TdHandle::of(tdr_, allow_existing).raw(), r8.raw(),
             l == Leaf::kPageAdd ? page().raw() : 0, &r, l == Leaf::kSeptAddV1 ? 1 : 0);
    return {s, r.rcx, r.rdx};
  }

  // Runs the row's guest code once. Returns: the guest's RAX, RCX and RDX when it ran to its
  // HLT; the TD exit's status, RCX and RDX for an EPT-violation exit; else the entry's status.
  Answer run_guest(const Cell& c) {
    using SG = ScriptedGuest;
    std::vector<GuestInsn> code, handler;
    if (c.leaf == Leaf::kAccept) {
      // RCX cleared after the TDCALL: what the guest sees of an ACCEPT is its RAX.
      code = {SG::mov(Gpr::kRcx, pi(kGpa, c.level)),
              SG::mov(Gpr::kRax, LeafAndVersion::of(TdcallLeaf::kMemPageAccept).raw()),
              SG::op(GuestInsnKind::kTdcall), SG::mov(Gpr::kRcx, 0)};
    } else {
      code = {SG::load(kGpa, Gpr::kRbx)};
      handler = {SG::mov(Gpr::kRax, LeafAndVersion::of(TdcallLeaf::kVpVeinfoGet).raw()),
                 SG::op(GuestInsnKind::kTdcall)};
    }
    guest_ = std::make_unique<SG>(code, handler);
    EXPECT_TRUE(module_.attach_guest(tdvpr_, guest_.get()));
    SeamcallRegs r;
    r.rax = LeafAndVersion::of(SeamcallLeaf::kVpEnter).raw();
    r.rcx = tdvpr_.raw();
    uint64_t s = 0;
    {
      CpuBinding b = platform_.bind(0);
      s = host_seamcall(b.cpu(), r);
      b.cpu().handle_interrupts();
    }
    if (s == static_cast<uint64_t>(VmxExitReason::kTdcall) &&
        r.r11 == static_cast<uint64_t>(TdVmCall::kHlt)) {
      const GuestState g = *module_.vcpu_guest_state(tdvpr_);
      return {g.regs[Gpr::kRax], g.regs[Gpr::kRcx], g.regs[Gpr::kRdx]};
    }
    if (s == static_cast<uint64_t>(VmxExitReason::kEptViolation)) {
      EXPECT_EQ(r.r8, kGpa.raw()) << "the faulting GPA";
      return {s, r.rcx, r.rdx};
    }
    return {s, 0, 0};
  }

  Hpa tdvpr_;
  Hpa page_;   // what the start entry maps, or the first of its children's frames
  Hpa table_;  // the 4K S-EPT page under kGpa's level-1 entry
  std::unique_ptr<ScriptedGuest> guest_;
};

}  // namespace tdxsim::test
