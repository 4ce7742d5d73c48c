// TdxModule through SEAMCALL, exactly as KVM will drive it: every call runs on a bound
// logical CPU through host_seamcall.
#include "tdx_module/tdx_module.h"

#include <gtest/gtest.h>

#include <expected>
#include <string>
#include <vector>

#include "base/fault_injection.h"
#include "platform/platform.h"
#include "tdx_module/module_test_harness.h"

namespace tdxsim {
namespace {

using test::TdParams;
constexpr uint64_t kMemBytes = test::kHarnessMemBytes;
constexpr uint64_t kChunk = test::kHarnessTdmrChunk;
constexpr uint16_t kGlobalHkid = test::kHarnessGlobalHkid;
constexpr uint16_t kTdHkid = 33;

constexpr uint64_t kSysInitNotPending = raw(TdxStatus::kSysInitNotPending);
constexpr uint64_t kOk = 0;

constexpr uint64_t op(TdxStatus s, TdxOperand o) { return with_operand(s, o); }
constexpr uint64_t st(TdxStatus s) { return raw(s); }

class TdxModuleTest : public test::ModuleHarness {
 protected:
  using ModuleHarness::call;

  uint64_t call(unsigned cpu, SeamcallRegs& regs) {
    CpuBinding b = platform_.bind(cpu);
    return host_seamcall(b.cpu(), regs);
  }
  uint64_t call(SeamcallLeaf leaf, uint64_t rcx = 0, uint64_t rdx = 0, uint64_t r8 = 0) {
    SeamcallRegs regs;
    regs.rcx = rcx;
    regs.rdx = rdx;
    regs.r8 = r8;
    return call(0, leaf, regs);
  }
  // MNG.CREATE, KEY.CONFIG on every package, ADDCX × tdcs_pages.
  Hpa keyed_td(std::vector<Hpa>* tdcs) {
    test::TdSpec spec;
    spec.init = false;
    return with_tdcs(build_td(spec), tdcs);
  }

  // keyed_td, then MNG.INIT.
  Hpa initialized_td(std::vector<Hpa>* tdcs, const TdParams& p = {}) {
    test::TdSpec spec;
    spec.params = p;
    return with_tdcs(build_td(spec), tdcs);
  }

  // VP.CREATE and VP.ADDCX × (tdvps_pages - 1); the pages in *pages, TDVPR first.
  Hpa created_vcpu(Hpa tdr, std::vector<Hpa>* pages) {
    const std::vector<Hpa> mine = build_vcpu(tdr, /*init=*/false);
    pages->insert(pages->end(), mine.begin(), mine.end());
    return mine.empty() ? Hpa{} : mine.front();
  }

  static Hpa with_tdcs(const test::BuiltTd& td, std::vector<Hpa>* tdcs) {
    if (tdcs != nullptr) tdcs->insert(tdcs->end(), td.tdcs.begin(), td.tdcs.end());
    return td.tdr;
  }

  PamtPageType type_of(Hpa h) const { return module_.pamt().peek_type(h.pfn(), Level::k4K); }
};

// --- The shared builders -----------------------------------------------------------------------

// A failed step is named, so that a test outside a fixture can report it.
TEST_F(TdxModuleTest, BuildersReportTheStepThatFailed) {
  const std::expected<test::BuiltTd, std::string> early =
      test::build_td(platform_, module_, seamcall_on());
  ASSERT_FALSE(early.has_value());
  EXPECT_NE(early.error().find("MNG.CREATE"), std::string::npos) << early.error();
  init_sys();
  const ::testing::AssertionResult again = test::bring_up_sys(platform_, module_, seamcall_on());
  EXPECT_FALSE(again);
  EXPECT_NE(std::string(again.message()).find("SYS.INIT"), std::string::npos) << again.message();
}

// --- SYS gating --------------------------------------------------------------------------------


TEST_F(TdxModuleTest, EveryNonSysLeafIsNotReadyUntilSysKeyConfigOnEveryPackage) {
  const uint64_t not_ready = st(TdxStatus::kSysNotReady);
  const SeamcallLeaf gated[] = {
      SeamcallLeaf::kMngCreate,  SeamcallLeaf::kMngKeyConfig,    SeamcallLeaf::kMngAddcx,
      SeamcallLeaf::kMngInit,    SeamcallLeaf::kVpCreate,        SeamcallLeaf::kVpFlush,
      SeamcallLeaf::kVpEnter,    SeamcallLeaf::kMemPageAug,      SeamcallLeaf::kPhymemCacheWb,
      SeamcallLeaf::kPhymemPageReclaim, SeamcallLeaf::kPhymemPageRdmd, SeamcallLeaf::kSysTdmrInit,
      SeamcallLeaf::kMngKeyReclaimid,   static_cast<SeamcallLeaf>(200)};
  const auto expect_gated = [&](const char* when) {
    for (SeamcallLeaf leaf : gated) {
      EXPECT_EQ(call(leaf), not_ready) << to_string(leaf) << " " << when;
    }
  };
  expect_gated("before SYS.INIT");
  // RAX format errors come before the system state.
  SeamcallRegs regs;
  regs.rax = uint64_t{1} << 24 | static_cast<uint64_t>(SeamcallLeaf::kMngCreate);
  EXPECT_EQ(call(0, regs), op(TdxStatus::kOperandInvalid, TdxOperand::kRax));
  regs = {};
  EXPECT_EQ(call(0, SeamcallLeaf::kMngCreate, regs, /*version=*/1),
            op(TdxStatus::kOperandInvalid, TdxOperand::kRax));

  // The SYS leaves out of order.
  EXPECT_EQ(call(SeamcallLeaf::kSysLpInit), raw(TdxStatus::kSysStateIncorrect));
  EXPECT_EQ(call(SeamcallLeaf::kSysConfig, 0, 1, kGlobalHkid), raw(TdxStatus::kSysConfigNotPending));
  EXPECT_EQ(call(SeamcallLeaf::kSysKeyConfig), raw(TdxStatus::kSysKeyConfigNotPending));
  EXPECT_EQ(call(SeamcallLeaf::kSysInit, 1), op(TdxStatus::kOperandInvalid, TdxOperand::kRcx));
  EXPECT_EQ(call(SeamcallLeaf::kSysInit), kOk);
  EXPECT_EQ(call(SeamcallLeaf::kSysInit), kSysInitNotPending);
  expect_gated("after SYS.INIT");

  EXPECT_EQ(call(SeamcallLeaf::kSysConfig, 0, 1, kGlobalHkid), raw(TdxStatus::kSysLpInitNotDone));
  for (unsigned c = 0; c < platform_.cpu_count(); ++c) {
    EXPECT_EQ(call_on(c, SeamcallLeaf::kSysLpInit), kOk) << c;
    EXPECT_EQ(call_on(c, SeamcallLeaf::kSysLpInit), raw(TdxStatus::kSysLpInitDone)) << c;
  }
  EXPECT_EQ(call(SeamcallLeaf::kSysKeyConfig), raw(TdxStatus::kSysKeyConfigNotPending));
  EXPECT_EQ(call(SeamcallLeaf::kSysConfig, 0, 0, kGlobalHkid),
            op(TdxStatus::kOperandInvalid, TdxOperand::kRdx));
  EXPECT_EQ(call(SeamcallLeaf::kSysConfig, 0, 1, 5), op(TdxStatus::kOperandInvalid, TdxOperand::kR8));
  EXPECT_EQ(call(SeamcallLeaf::kSysConfig, 0, 1, kGlobalHkid), kOk);
  EXPECT_EQ(call(SeamcallLeaf::kSysConfig, 0, 1, kGlobalHkid), raw(TdxStatus::kSysConfigNotPending));
  expect_gated("after SYS.CONFIG");

  const std::vector<unsigned> leaders = package_leaders();
  ASSERT_EQ(leaders.size(), 2u);
  EXPECT_EQ(call_on(leaders[0], SeamcallLeaf::kSysKeyConfig), kOk);
  // Again on the same package (another CPU of it): informational, not an error.
  for (unsigned c = 0; c < platform_.cpu_count(); ++c) {
    if (platform_.cpu(c).package() == platform_.cpu(leaders[0]).package()) {
      EXPECT_EQ(call_on(c, SeamcallLeaf::kSysKeyConfig), st(TdxStatus::kKeyConfigured)) << c;
    }
  }
  expect_gated("with one package's key configured");
  EXPECT_EQ(call_on(leaders[1], SeamcallLeaf::kSysKeyConfig), kOk);
  EXPECT_TRUE(module_.sys_ready());

  // READY: leaves run; the PAMT is usable only as far as TDMR.INIT has gone.
  EXPECT_EQ(call(SeamcallLeaf::kMngKeyReclaimid), kOk);
  EXPECT_EQ(call(SeamcallLeaf::kSysInfo), op(TdxStatus::kOperandInvalid, TdxOperand::kRax))
      << "SYS.INFO is not dispatched by tdxsim";
  EXPECT_EQ(call(static_cast<SeamcallLeaf>(200)), op(TdxStatus::kOperandInvalid, TdxOperand::kRax));
  const Hpa tdr = page();
  EXPECT_EQ(call(SeamcallLeaf::kMngCreate, tdr.raw(), kTdHkid),
            op(TdxStatus::kOperandAddrRangeError, TdxOperand::kRcx));
  EXPECT_EQ(call(SeamcallLeaf::kSysTdmrInit, kChunk), op(TdxStatus::kOperandInvalid, TdxOperand::kRcx));
  for (uint64_t expected = kChunk; expected <= kMemBytes; expected += kChunk) {
    SeamcallRegs r;
    EXPECT_EQ(call(0, SeamcallLeaf::kSysTdmrInit, r), kOk);
    EXPECT_EQ(r.rdx, expected);
    EXPECT_EQ(module_.tdmr_initialized(), expected == kMemBytes);
  }
  EXPECT_EQ(call(SeamcallLeaf::kMngCreate, tdr.raw(), kTdHkid), kOk);
}

// --- The whole life of a TD ------------------------------------------------------------------------

TEST_F(TdxModuleTest, BuildAndTeardownWithEveryStepsExactStatus) {
  init_sys();
  const std::vector<unsigned> leaders = package_leaders();
  const Hpa tdr = page();
  EXPECT_EQ(call(SeamcallLeaf::kMngCreate, tdr.raw(), kTdHkid), kOk);
  EXPECT_EQ(type_of(tdr), PamtPageType::kTdr);
  EXPECT_EQ(module_.td_lifecycle(tdr), TdLifecycle::kHkidAssigned);
  // The HKID and the global HKID are taken; non-private HKIDs are operand errors.
  EXPECT_EQ(call(SeamcallLeaf::kMngCreate, page().raw(), kTdHkid), st(TdxStatus::kHkidNotFree));
  EXPECT_EQ(call(SeamcallLeaf::kMngCreate, page().raw(), kGlobalHkid), st(TdxStatus::kHkidNotFree));
  EXPECT_EQ(call(SeamcallLeaf::kMngCreate, page().raw(), 5),
            op(TdxStatus::kOperandInvalid, TdxOperand::kRdx));
  EXPECT_EQ(call(SeamcallLeaf::kMngCreate, page().raw(), (uint64_t{1} << 16) | (kTdHkid + 1)),
            op(TdxStatus::kOperandInvalid, TdxOperand::kRdx));

  // KEY.CONFIG on each package; a repeat on a package is informational.
  EXPECT_EQ(call(SeamcallLeaf::kMngAddcx, page().raw(), tdr.raw()), st(TdxStatus::kTdKeysNotConfigured));
  EXPECT_EQ(call_on(leaders[0], SeamcallLeaf::kMngKeyConfig, tdr.raw()), kOk);
  EXPECT_EQ(call_on(leaders[0], SeamcallLeaf::kMngKeyConfig, tdr.raw()), st(TdxStatus::kKeyConfigured));
  EXPECT_EQ(module_.td_lifecycle(tdr), TdLifecycle::kHkidAssigned);
  EXPECT_EQ(call_on(leaders[1], SeamcallLeaf::kMngKeyConfig, tdr.raw()), kOk);
  EXPECT_EQ(module_.td_lifecycle(tdr), TdLifecycle::kKeysConfigured);
  EXPECT_EQ(call_on(leaders[1], SeamcallLeaf::kMngKeyConfig, tdr.raw()),
            st(TdxStatus::kLifecycleStateIncorrect));

  // TDCS pages.
  EXPECT_EQ(call(SeamcallLeaf::kMngInit, tdr.raw(), td_params({}).raw()), st(TdxStatus::kTdcsNotAllocated));
  EXPECT_EQ(call(SeamcallLeaf::kVpCreate, page().raw(), tdr.raw()), st(TdxStatus::kTdcsNotAllocated));
  std::vector<Hpa> tdcs;
  for (unsigned i = 0; i < module_.config().tdcs_pages; ++i) {
    tdcs.push_back(page());
    EXPECT_EQ(call(SeamcallLeaf::kMngAddcx, tdcs.back().raw(), tdr.raw()), kOk);
    EXPECT_EQ(type_of(tdcs.back()), PamtPageType::kTdcx);
  }
  EXPECT_EQ(call(SeamcallLeaf::kMngAddcx, page().raw(), tdr.raw()), st(TdxStatus::kTdcxNumIncorrect));
  EXPECT_EQ(module_.td_child_count(tdr), module_.config().tdcs_pages);

  // MNG.INIT, once.
  EXPECT_EQ(call(SeamcallLeaf::kVpCreate, page().raw(), tdr.raw()), st(TdxStatus::kOpStateIncorrect));
  EXPECT_EQ(call(SeamcallLeaf::kMngInit, tdr.raw(), td_params({}).raw()), kOk);
  EXPECT_EQ(module_.td_op_state(tdr), TdOpState::kInitialized);
  EXPECT_EQ(call(SeamcallLeaf::kMngInit, tdr.raw(), td_params({}).raw()), st(TdxStatus::kOpStateIncorrect));

  // vCPU 0: create, TDCX pages, init.
  const Hpa tdvpr = page();
  EXPECT_EQ(call(SeamcallLeaf::kVpCreate, tdvpr.raw(), tdr.raw()), kOk);
  EXPECT_EQ(type_of(tdvpr), PamtPageType::kTdvpr);
  EXPECT_EQ(module_.vcpu_state(tdvpr), VcpuState::kCreated);
  EXPECT_EQ(call(SeamcallLeaf::kVpInit, tdvpr.raw(), 0x1234), st(TdxStatus::kTdcxNumIncorrect));
  std::vector<Hpa> vcpu_pages{tdvpr};
  for (unsigned i = 1; i < module_.config().tdvps_pages; ++i) {
    vcpu_pages.push_back(page());
    EXPECT_EQ(call(SeamcallLeaf::kVpAddcx, vcpu_pages.back().raw(), tdvpr.raw()), kOk);
  }
  EXPECT_EQ(call(SeamcallLeaf::kVpAddcx, page().raw(), tdvpr.raw()), st(TdxStatus::kTdcxNumIncorrect));
  EXPECT_EQ(call(SeamcallLeaf::kVpInit, tdvpr.raw(), 0x1234), kOk);
  EXPECT_EQ(module_.vcpu_state(tdvpr), VcpuState::kReady);
  EXPECT_EQ(call(SeamcallLeaf::kVpInit, tdvpr.raw(), 0x1234), st(TdxStatus::kVcpuStateIncorrect));
  EXPECT_EQ(call(SeamcallLeaf::kVpAddcx, page().raw(), tdvpr.raw()), st(TdxStatus::kVcpuStateIncorrect));

  // vCPU 1: MAX_VCPUS is 1.
  const Hpa tdvpr1 = created_vcpu(tdr, &vcpu_pages);
  EXPECT_EQ(call(SeamcallLeaf::kVpInit, tdvpr1.raw(), 0), st(TdxStatus::kMaxVcpusExceeded));
  EXPECT_EQ(module_.vcpu_state(tdvpr1), VcpuState::kCreated);
  EXPECT_EQ(module_.td_child_count(tdr), module_.config().tdcs_pages + vcpu_pages.size());

  // Neither vCPU ever ran, so neither is associated with any LP: VP.FLUSH answers "not
  // associated" everywhere (module tdh_vp_flush.c: ASSOC_LPID -1), which KVM treats as done.
  for (unsigned c = 0; c < platform_.cpu_count(); ++c) {
    EXPECT_EQ(call_on(c, SeamcallLeaf::kVpFlush, tdvpr.raw()), st(TdxStatus::kVcpuNotAssociated)) << c;
  }

  // Teardown, with every early step refused.
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageReclaim, tdcs[0].raw()), st(TdxStatus::kLifecycleStateIncorrect));
  EXPECT_EQ(call(SeamcallLeaf::kMngKeyFreeid, tdr.raw()), st(TdxStatus::kLifecycleStateIncorrect));
  EXPECT_EQ(call(SeamcallLeaf::kPhymemCacheWb), st(TdxStatus::kNoHkidReadyToWbcache));
  EXPECT_EQ(call(SeamcallLeaf::kMngVpflushdone, tdr.raw()), kOk);
  EXPECT_EQ(module_.td_lifecycle(tdr), TdLifecycle::kBlocked);
  EXPECT_EQ(call(SeamcallLeaf::kMngVpflushdone, tdr.raw()), st(TdxStatus::kLifecycleStateIncorrect));
  EXPECT_EQ(call(SeamcallLeaf::kVpFlush, tdvpr.raw()), st(TdxStatus::kTdKeysNotConfigured));
  EXPECT_EQ(call(SeamcallLeaf::kMngKeyFreeid, tdr.raw()), st(TdxStatus::kWbcacheNotComplete));
  EXPECT_EQ(call(SeamcallLeaf::kPhymemCacheWb, 2), op(TdxStatus::kOperandInvalid, TdxOperand::kRcx));
  EXPECT_EQ(call(SeamcallLeaf::kPhymemCacheWb, 1), st(TdxStatus::kWbcacheResumeError));
  EXPECT_EQ(call_on(leaders[0], SeamcallLeaf::kPhymemCacheWb), kOk);
  EXPECT_EQ(call(SeamcallLeaf::kMngKeyFreeid, tdr.raw()), st(TdxStatus::kWbcacheNotComplete));
  EXPECT_EQ(call_on(leaders[1], SeamcallLeaf::kPhymemCacheWb), kOk);
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageReclaim, tdcs[0].raw()), st(TdxStatus::kLifecycleStateIncorrect));
  EXPECT_EQ(call(SeamcallLeaf::kMngKeyFreeid, tdr.raw()), kOk);
  EXPECT_EQ(module_.td_lifecycle(tdr), TdLifecycle::kTeardown);
  EXPECT_EQ(call(SeamcallLeaf::kPhymemCacheWb), st(TdxStatus::kNoHkidReadyToWbcache));

  // Reclaim: the TDR only last.
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageReclaim, tdr.raw()), st(TdxStatus::kTdAssociatedPagesExist));
  std::vector<Hpa> children = tdcs;
  children.insert(children.end(), vcpu_pages.begin(), vcpu_pages.end());
  for (const Hpa& h : children) {
    const PamtPageType type = type_of(h);
    SeamcallRegs r;
    r.rcx = h.raw();
    EXPECT_EQ(call(0, SeamcallLeaf::kPhymemPageReclaim, r), kOk);
    EXPECT_EQ(r.rcx, static_cast<uint64_t>(type));
    EXPECT_EQ(r.rdx, tdr.raw());
    EXPECT_EQ(r.r8, 0u);
    EXPECT_EQ(type_of(h), PamtPageType::kNda);
  }
  EXPECT_EQ(module_.td_child_count(tdr), 0u);
  EXPECT_EQ(module_.vcpu_count(), 0u);
  SeamcallRegs r;
  r.rcx = tdr.raw();
  EXPECT_EQ(call(0, SeamcallLeaf::kPhymemPageReclaim, r), kOk);
  EXPECT_EQ(r.rcx, static_cast<uint64_t>(PamtPageType::kTdr));
  EXPECT_EQ(r.rdx, 0u);
  EXPECT_EQ(type_of(tdr), PamtPageType::kNda);
  EXPECT_EQ(module_.td_count(), 0u);
  // No PAMT entry is assigned any more: nothing of the TD is left.
  for (PamtPageType t : {PamtPageType::kTdr, PamtPageType::kTdcx, PamtPageType::kTdvpr,
                         PamtPageType::kReg, PamtPageType::kEpt}) {
    EXPECT_EQ(module_.pamt().count(t), 0u) << to_string(t);
  }
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageReclaim, tdr.raw()),
            op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRcx));

  // The host writes back the TDR's lines (global key) before reusing the frame; the TD's
  // pages were written back by CACHE.WB. The freed HKID can be assigned again.
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageWbinvd,
                 platform_.memory().layout().with_key(tdr, KeyId{kGlobalHkid})),
            kOk);
  EXPECT_FALSE(platform_.memory().has_dirty_lines(tdr.pfn()));
  for (const Hpa& h : children) EXPECT_FALSE(platform_.memory().has_dirty_lines(h.pfn()));
  EXPECT_EQ(platform_.memory().violation_count(), 0u);
  EXPECT_EQ(call(SeamcallLeaf::kMngCreate, page().raw(), kTdHkid), kOk);
}

// --- Illegal orders ------------------------------------------------------------------------------

TEST_F(TdxModuleTest, LeavesInTheWrongStateAnswerTheModulesStatus) {
  init_sys();
  // A TD with keys but no TDCS, one without keys, one initialised, one blocked.
  const Hpa no_keys = page();
  ASSERT_EQ(call(SeamcallLeaf::kMngCreate, no_keys.raw(), 40), kOk);
  const Hpa no_tdcs = page();
  ASSERT_EQ(call(SeamcallLeaf::kMngCreate, no_tdcs.raw(), 41), kOk);
  for (unsigned c : package_leaders()) ASSERT_EQ(call_on(c, SeamcallLeaf::kMngKeyConfig, no_tdcs.raw()), kOk);
  const Hpa init = initialized_td(nullptr);
  std::vector<Hpa> vp;
  const Hpa tdvpr = created_vcpu(init, &vp);
  ASSERT_EQ(call(SeamcallLeaf::kVpInit, tdvpr.raw()), kOk);

  struct Case {
    const char* what;
    SeamcallLeaf leaf;
    uint64_t rcx, rdx;
    uint64_t expected;
  };
  const Case cases[] = {
      {"ADDCX without keys", SeamcallLeaf::kMngAddcx, page().raw(), no_keys.raw(), st(TdxStatus::kTdKeysNotConfigured)},
      {"INIT without keys", SeamcallLeaf::kMngInit, no_keys.raw(), td_params({}).raw(), st(TdxStatus::kTdKeysNotConfigured)},
      {"VP.CREATE without keys", SeamcallLeaf::kVpCreate, page().raw(), no_keys.raw(), st(TdxStatus::kTdKeysNotConfigured)},
      {"VPFLUSHDONE is fine without keys", SeamcallLeaf::kMngVpflushdone, no_keys.raw(), 0, kOk},
      {"FREEID before VPFLUSHDONE", SeamcallLeaf::kMngKeyFreeid, no_tdcs.raw(), 0, st(TdxStatus::kLifecycleStateIncorrect)},
      {"INIT without TDCS", SeamcallLeaf::kMngInit, no_tdcs.raw(), td_params({}).raw(), st(TdxStatus::kTdcsNotAllocated)},
      {"VP.CREATE without TDCS", SeamcallLeaf::kVpCreate, page().raw(), no_tdcs.raw(), st(TdxStatus::kTdcsNotAllocated)},
      {"ADDCX after TDCS complete", SeamcallLeaf::kMngAddcx, page().raw(), init.raw(), st(TdxStatus::kTdcxNumIncorrect)},
      {"INIT twice", SeamcallLeaf::kMngInit, init.raw(), td_params({}).raw(), st(TdxStatus::kOpStateIncorrect)},
      {"KEY.CONFIG after all packages", SeamcallLeaf::kMngKeyConfig, init.raw(), 0, st(TdxStatus::kLifecycleStateIncorrect)},
      {"VP.INIT twice", SeamcallLeaf::kVpInit, tdvpr.raw(), 0, st(TdxStatus::kVcpuStateIncorrect)},
      {"RECLAIM of a live TD's TDVPR", SeamcallLeaf::kPhymemPageReclaim, tdvpr.raw(), 0, st(TdxStatus::kLifecycleStateIncorrect)},
      {"RECLAIM of a live TDR", SeamcallLeaf::kPhymemPageReclaim, init.raw(), 0, st(TdxStatus::kLifecycleStateIncorrect)},
      {"VPFLUSHDONE then FREEID without CACHE.WB", SeamcallLeaf::kMngVpflushdone, init.raw(), 0, kOk},
      {"... FREEID", SeamcallLeaf::kMngKeyFreeid, init.raw(), 0, st(TdxStatus::kWbcacheNotComplete)},
      {"VP.CREATE on a blocked TD", SeamcallLeaf::kVpCreate, page().raw(), init.raw(), st(TdxStatus::kTdKeysNotConfigured)},
      {"ADDCX on a blocked TD", SeamcallLeaf::kMngAddcx, page().raw(), init.raw(), st(TdxStatus::kTdKeysNotConfigured)},
      {"VP.FLUSH on a blocked TD", SeamcallLeaf::kVpFlush, tdvpr.raw(), 0, st(TdxStatus::kTdKeysNotConfigured)},
      {"VP.WR on a blocked TD", SeamcallLeaf::kVpWr, tdvpr.raw(), vp_field::kSharedEptp, st(TdxStatus::kTdKeysNotConfigured)},
      {"KEY.CONFIG on a blocked TD", SeamcallLeaf::kMngKeyConfig, init.raw(), 0, st(TdxStatus::kLifecycleStateIncorrect)},
      {"VPFLUSHDONE twice", SeamcallLeaf::kMngVpflushdone, init.raw(), 0, st(TdxStatus::kLifecycleStateIncorrect)},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(call(c.leaf, c.rcx, c.rdx), c.expected) << c.what << ": " << describe_status(c.expected);
  }
}

// --- HPA operands -----------------------------------------------------------------------------------

TEST_F(TdxModuleTest, HpaOperandErrorsNameTheOperand) {
  init_sys();
  std::vector<Hpa> tdcs;
  const Hpa tdr = initialized_td(&tdcs);
  std::vector<Hpa> vp;
  const Hpa tdvpr = created_vcpu(tdr, &vp);
  const PhysAddrLayout& l = platform_.memory().layout();
  const Hpa free_page = page();
  const uint64_t keyed = l.with_key(free_page, KeyId{kTdHkid});

  struct Case {
    const char* what;
    SeamcallLeaf leaf;
    uint64_t rcx, rdx;
    uint64_t expected;
  };
  const Case cases[] = {
      {"CREATE: misaligned", SeamcallLeaf::kMngCreate, free_page.raw() + 8, 40, op(TdxStatus::kOperandInvalid, TdxOperand::kRcx)},
      {"CREATE: HKID bits", SeamcallLeaf::kMngCreate, keyed, 40, op(TdxStatus::kOperandInvalid, TdxOperand::kRcx)},
      {"CREATE: above MAX_PA", SeamcallLeaf::kMngCreate, uint64_t{1} << 52, 40, op(TdxStatus::kOperandInvalid, TdxOperand::kRcx)},
      {"CREATE: outside memory", SeamcallLeaf::kMngCreate, kMemBytes, 40, op(TdxStatus::kOperandAddrRangeError, TdxOperand::kRcx)},
      {"CREATE: page is a TDR", SeamcallLeaf::kMngCreate, tdr.raw(), 40, op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRcx)},
      {"CREATE: page is a TDCS page", SeamcallLeaf::kMngCreate, tdcs[0].raw(), 40, op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRcx)},
      {"KEY.CONFIG: not a TDR", SeamcallLeaf::kMngKeyConfig, free_page.raw(), 0, op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRcx)},
      {"ADDCX: TDR misaligned", SeamcallLeaf::kMngAddcx, free_page.raw(), tdr.raw() + 1, op(TdxStatus::kOperandInvalid, TdxOperand::kRdx)},
      {"ADDCX: TDR is a TDCS page", SeamcallLeaf::kMngAddcx, free_page.raw(), tdcs[1].raw(), op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRdx)},
      {"ADDCX: TDR outside memory", SeamcallLeaf::kMngAddcx, free_page.raw(), kMemBytes + kPageSize, op(TdxStatus::kOperandAddrRangeError, TdxOperand::kRdx)},
      // The leaf holds the TDR shared through RDX, so the exclusive walk for RCX finds the
      // entry locked before it can look at its type: BUSY, as in the module.
      {"VP.CREATE: page is its own TDR", SeamcallLeaf::kVpCreate, tdr.raw(), tdr.raw(), op(TdxStatus::kOperandBusy, TdxOperand::kRcx)},
      {"VP.CREATE: page is a TDCS page", SeamcallLeaf::kVpCreate, tdcs[0].raw(), tdr.raw(), op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRcx)},
      {"VP.CREATE: HKID bits", SeamcallLeaf::kVpCreate, keyed, tdr.raw(), op(TdxStatus::kOperandInvalid, TdxOperand::kRcx)},
      {"VP.ADDCX: TDVPR is the TDR", SeamcallLeaf::kVpAddcx, free_page.raw(), tdr.raw(), op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRdx)},
      {"VP.ADDCX: page is a TDVPR", SeamcallLeaf::kVpAddcx, tdvpr.raw(), tdvpr.raw(), st(TdxStatus::kTdcxNumIncorrect)},
      {"VP.INIT: not a TDVPR", SeamcallLeaf::kVpInit, free_page.raw(), 0, op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRcx)},
      {"VP.FLUSH: HKID bits", SeamcallLeaf::kVpFlush, l.with_key(tdvpr, KeyId{kTdHkid}), 0, op(TdxStatus::kOperandInvalid, TdxOperand::kRcx)},
      {"RECLAIM: free page", SeamcallLeaf::kPhymemPageReclaim, free_page.raw(), 0, op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRcx)},
      {"RECLAIM: misaligned", SeamcallLeaf::kPhymemPageReclaim, tdr.raw() + 0x800, 0, op(TdxStatus::kOperandInvalid, TdxOperand::kRcx)},
      {"RECLAIM: outside memory", SeamcallLeaf::kPhymemPageReclaim, kMemBytes, 0, op(TdxStatus::kOperandAddrRangeError, TdxOperand::kRcx)},
      {"WBINVD: page not free", SeamcallLeaf::kPhymemPageWbinvd, l.with_key(tdcs[0], KeyId{kTdHkid}), 0, op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRcx)},
      {"WBINVD: misaligned", SeamcallLeaf::kPhymemPageWbinvd, keyed + 64, 0, op(TdxStatus::kOperandInvalid, TdxOperand::kRcx)},
      {"RDMD: HKID bits", SeamcallLeaf::kPhymemPageRdmd, keyed, 0, op(TdxStatus::kOperandInvalid, TdxOperand::kRcx)},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(call(c.leaf, c.rcx, c.rdx), c.expected) << c.what << ": " << describe_status(c.expected);
  }
  // The failures left nothing behind.
  EXPECT_EQ(type_of(free_page), PamtPageType::kNda);
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageWbinvd, keyed), kOk);
}

TEST_F(TdxModuleTest, RdmdReportsTypeOwnerAndSize) {
  init_sys();
  std::vector<Hpa> tdcs;
  const Hpa tdr = keyed_td(&tdcs);
  SeamcallRegs r;
  r.rcx = tdcs[2].raw();
  EXPECT_EQ(call(0, SeamcallLeaf::kPhymemPageRdmd, r), kOk);
  EXPECT_EQ(r.rcx, static_cast<uint64_t>(PamtPageType::kTdcx));
  EXPECT_EQ(r.rdx, tdr.raw());
  EXPECT_EQ(r.r8, 0u);
  EXPECT_EQ(r.r9, 0u);
  r = {};
  r.rcx = tdr.raw();
  EXPECT_EQ(call(0, SeamcallLeaf::kPhymemPageRdmd, r), kOk);
  EXPECT_EQ(r.rcx, static_cast<uint64_t>(PamtPageType::kTdr));
  EXPECT_EQ(r.rdx, 0u);
  r = {};
  r.rcx = page().raw();
  EXPECT_EQ(call(0, SeamcallLeaf::kPhymemPageRdmd, r), kOk);
  EXPECT_EQ(r.rcx, static_cast<uint64_t>(PamtPageType::kNda));
}

// --- TD_PARAMS -------------------------------------------------------------------------------------

TEST_F(TdxModuleTest, MngInitChecksTdParamsFieldByField) {
  init_sys();
  const Hpa tdr = keyed_td(nullptr);
  struct Case {
    const char* what;
    TdParams params;
    uint64_t expected;
  };
  TdParams bad_attr;
  bad_attr.attributes |= uint64_t{1} << 1;
  TdParams no_vcpus;
  no_vcpus.max_vcpus = 0;
  TdParams uc;
  uc.eptp_controls = 0 | (3 << 3);
  TdParams pwl2;
  pwl2.eptp_controls = 6 | (2 << 3);
  TdParams eptp_rsvd;
  eptp_rsvd.eptp_controls |= 1 << 6;
  TdParams flags;
  flags.config_flags = 1 << 3;
  TdParams gpaw52_4level;
  gpaw52_4level.config_flags = 1;
  const Case cases[] = {
      {"unsupported attribute", bad_attr, op(TdxStatus::kOperandInvalid, TdxOperand::kAttributes)},
      {"MAX_VCPUS 0", no_vcpus, op(TdxStatus::kOperandInvalid, TdxOperand::kMaxVcpus)},
      {"UC S-EPT", uc, op(TdxStatus::kOperandInvalid, TdxOperand::kEptpControls)},
      {"3-level S-EPT", pwl2, op(TdxStatus::kOperandInvalid, TdxOperand::kEptpControls)},
      {"EPTP reserved bit", eptp_rsvd, op(TdxStatus::kOperandInvalid, TdxOperand::kEptpControls)},
      {"reserved config flag", flags, op(TdxStatus::kOperandInvalid, TdxOperand::kExecControls)},
      {"GPAW 52 with 4 levels", gpaw52_4level, op(TdxStatus::kOperandInvalid, TdxOperand::kEptpControls)},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(call(SeamcallLeaf::kMngInit, tdr.raw(), td_params(c.params).raw()), c.expected) << c.what;
    EXPECT_EQ(module_.td_op_state(tdr), TdOpState::kUninitialized) << c.what;
  }
  EXPECT_EQ(call(SeamcallLeaf::kMngInit, tdr.raw(), td_params({}).raw() + 8),
            op(TdxStatus::kOperandInvalid, TdxOperand::kRdx));
  EXPECT_EQ(call(SeamcallLeaf::kMngInit, tdr.raw(),
                 platform_.memory().layout().with_key(td_params({}), KeyId{1})),
            op(TdxStatus::kOperandInvalid, TdxOperand::kRdx));
  TdParams gpaw52;
  gpaw52.config_flags = 1;
  gpaw52.eptp_controls = 6 | (4 << 3);
  EXPECT_EQ(call(SeamcallLeaf::kMngInit, tdr.raw(), td_params(gpaw52).raw()), kOk);
  EXPECT_EQ(module_.td_op_state(tdr), TdOpState::kInitialized);
}

// --- Metadata ------------------------------------------------------------------------------------------

TEST_F(TdxModuleTest, VpWrSetsTheSharedEptpAndVpRdReadsIt) {
  init_sys();
  const Hpa tdr = initialized_td(nullptr);
  std::vector<Hpa> vp;
  const Hpa tdvpr = created_vcpu(tdr, &vp);
  ASSERT_EQ(call(SeamcallLeaf::kVpInit, tdvpr.raw()), kOk);
  const Hpa root = page();
  SeamcallRegs w;
  w.rcx = tdvpr.raw();
  w.rdx = vp_field::kSharedEptp;
  w.r8 = root.raw();
  w.r9 = ~uint64_t{0};
  EXPECT_EQ(call(0, SeamcallLeaf::kVpWr, w), kOk);
  EXPECT_EQ(w.r8, 0u);  // the previous value
  SeamcallRegs r;
  r.rcx = tdvpr.raw();
  r.rdx = vp_field::kSharedEptp;
  EXPECT_EQ(call(0, SeamcallLeaf::kVpRd, r), kOk);
  EXPECT_EQ(r.r8, Eptp::make(root, 4, false).raw());
  r.rdx = 0x1234;
  EXPECT_EQ(call(0, SeamcallLeaf::kVpRd, r), raw(TdxStatus::kMetadataFieldIdIncorrect));
  EXPECT_EQ(r.r8, 0u);
}

// --- Confidentiality -------------------------------------------------------------------------------------

TEST_F(TdxModuleTest, HostSeesOnlyCiphertextOfModulePages) {
  init_sys();
  std::vector<Hpa> tdcs;
  const Hpa tdr = initialized_td(&tdcs);
  std::vector<Hpa> vp;
  created_vcpu(tdr, &vp);
  HostMemory& mem = platform_.memory();
  EXPECT_EQ(mem.key(tdr.pfn()), KeyId{kGlobalHkid});
  for (size_t i = 0; i < tdcs.size(); ++i) {
    EXPECT_EQ(mem.key(tdcs[i].pfn()), KeyId{kTdHkid});
    // What the module wrote: ones in the MSR bitmaps, FREE entries in the S-EPT root, zeros.
    uint64_t written = 0;
    if (i == kTdcsMsrBitmapsPageIndex) written = ~uint64_t{0};
    if (i == kTdcsSeptRootPageIndex) written = 0x80E0'0000'0000'0000ull;
    for (uint64_t off : {uint64_t{0}, uint64_t{8}, uint64_t{0xFF8}}) {
      const MemWord host = mem.read(tdcs[i] + off, kHostKey);
      EXPECT_NE(host.value, written) << "TDCS page " << i;
      EXPECT_EQ(host.origin, kHostKey);
      EXPECT_EQ(mem.read(tdcs[i] + off, KeyId{kTdHkid}).value, written) << "TDCS page " << i;
    }
  }
  for (const Hpa& h : vp) {
    EXPECT_EQ(mem.key(h.pfn()), KeyId{kTdHkid});
    EXPECT_NE(mem.read(h, kHostKey).value, 0u);
  }
  EXPECT_NE(mem.read(tdr, kHostKey).value, 0u);
  EXPECT_EQ(mem.violation_count(), 0u);
}

}  // namespace
}  // namespace tdxsim

namespace tdxsim {
namespace {

// kForceOperandBusy makes a memory leaf answer BUSY|operand without running, once per
// firing; leaves outside the memory set never consume it.
TEST_F(TdxModuleTest, ForcedOperandBusyAnswersTheMemoryLeafWithoutRunningIt) {
  init_sys();
  const Hpa tdr = initialized_td(nullptr);
  const Hpa sept_page = page();
  const uint64_t info = PageInfo::of(Gpa{0}, Level::k512G).raw();
  faults_.arm(EnvFaultKind::kForceOperandBusy, static_cast<uint64_t>(SeamcallLeaf::kMemSeptAdd),
              1, static_cast<uint64_t>(TdxOperand::kSeptTree));
  EXPECT_EQ(call(SeamcallLeaf::kMemSeptAdd, info, tdr.raw(), sept_page.raw()),
            with_operand(TdxStatus::kOperandBusy, TdxOperand::kSeptTree));
  // The leaf did not run: the page is still the host's.
  EXPECT_EQ(type_of(sept_page), PamtPageType::kNda);
  EXPECT_EQ(call(SeamcallLeaf::kMemSeptAdd, info, tdr.raw(), sept_page.raw()), 0u);
  EXPECT_EQ(type_of(sept_page), PamtPageType::kEpt);

  // Any key: only a memory leaf takes it.
  faults_.arm(EnvFaultKind::kForceOperandBusy, FaultInjection::kAnyKey, 1,
              static_cast<uint64_t>(TdxOperand::kTdEpoch));
  EXPECT_EQ(call(SeamcallLeaf::kMngKeyReclaimid, tdr.raw()), 0u);
  EXPECT_EQ(faults_.fired(EnvFaultKind::kForceOperandBusy), 1u);
  EXPECT_EQ(call(SeamcallLeaf::kMemTrack, tdr.raw()),
            with_operand(TdxStatus::kOperandBusy, TdxOperand::kTdEpoch));
  EXPECT_EQ(faults_.fired(EnvFaultKind::kForceOperandBusy), 2u);
}

}  // namespace
}  // namespace tdxsim
