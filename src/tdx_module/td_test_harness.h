// Test support for the leaves that act on one TD: a ModuleHarness with the TD built as KVM
// builds it (MNG.CREATE, KEY.CONFIG on every package, ADDCX, MNG.INIT, a vCPU, S-EPT tables,
// AUG, FINALIZE), the exact status values spelled as the sheets give them, and views of the
// S-EPT as the module's walk and as the CPU's walker see it.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "platform/page_walk.h"
#include "tdx_module/module_test_harness.h"
#include "tdx_module/sept_walk.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim::test {

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
inline uint64_t pi(Gpa gpa, unsigned tdx_level) {
  return PageInfo::of(gpa.align_down(PageInfo::from_tdx_level(tdx_level)), tdx_level).raw();
}

// A GPA in the first 1G of the TD's space, 2M aligned; tests offset from it.
constexpr Gpa kGpa{0x20'0000};

class TdHarness : public ModuleHarness {
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

  // MNG.CREATE, KEY.CONFIG everywhere, ADDCX; then MNG.INIT with `params` unless `init` is
  // false.
  Hpa td(bool init = true, const TdParams& params = {}) {
    TdSpec spec;
    spec.hkid = kTdHkid;
    spec.init = init;
    spec.params = params;
    BuiltTd built = build_td(spec);
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
  // An entry in leaf state `s` mapping `p` at `l`, and its architectural view (RCX).
  SeptEntry sept_leaf(SeptState s, Hpa p, Level l) {
    const bool pending = s == SeptState::kPending || s == SeptState::kPendingBlocked;
    const SeptEntry e = pending ? SeptEntry::pending(p, KeyId{kTdHkid}, l, layout())
                                : SeptEntry::mapped(p, KeyId{kTdHkid}, l, layout());
    return e.with_state(s);
  }
  uint64_t view(SeptState s, Hpa p, Level l) { return sept_leaf(s, p, l).arch_view(layout()); }
  // TDH.MEM.PAGE.ADD of `dst` at `gpa` (4K) from `src`.
  uint64_t add(Gpa gpa, Hpa dst, Hpa src) {
    return call(SeamcallLeaf::kMemPageAdd, pi(gpa, 0), tdr_.raw(), dst.raw(), src.raw());
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

}  // namespace tdxsim::test
