// A hostile host names frames its own allocator holds free, never allocated or freed while
// the TD still uses them. The module knows nothing of the host's allocator, as hardware
// does not: every leaf answers as it would for any other frame of the TDMR, and what the
// host then does to those frames is judged by HostMemory's key rules.
#include <gtest/gtest.h>

#include <expected>
#include <optional>
#include <string>
#include <vector>

#include "platform/platform.h"
#include "tdx_module/module_test_harness.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {
namespace {

constexpr uint16_t kTdHkid = 33;
constexpr uint64_t kOk = 0;
constexpr Gpa kGpa{0x20'0000};

constexpr uint64_t op(TdxStatus s, TdxOperand o) { return with_operand(s, o); }
// Page info for the entry at `tdx_level` that maps `gpa`, the GPA aligned to that level.
uint64_t pi(Gpa gpa, unsigned tdx_level) {
  return PageInfo::of(gpa.align_down(PageInfo::from_tdx_level(tdx_level)), tdx_level).raw();
}

class HostileOperandsTest : public test::ModuleHarness {
 protected:
  using ModuleHarness::call;

  void SetUp() override {
    init_sys();
    free_at_start_ = mem().free_frame_count();
  }

  uint64_t call(SeamcallLeaf leaf, uint64_t rcx, uint64_t rdx = 0, uint64_t r8 = 0, uint64_t r9 = 0,
                SeamcallRegs* out = nullptr) {
    SeamcallRegs regs;
    regs.rcx = rcx;
    regs.rdx = rdx;
    regs.r8 = r8;
    regs.r9 = r9;
    const uint64_t s = call(0, leaf, regs);
    if (out != nullptr) *out = regs;
    return s;
  }

  // A frame the host's allocator has never handed out: counted down from the top of
  // memory, where the ascending allocator does not reach in these tests.
  Hpa unallocated() {
    const Pfn p{mem().total_frames() - 1 - taken_++};
    EXPECT_FALSE(mem().is_allocated(p));
    return p.hpa();
  }

  // TD_PARAMS written by the host into a frame it never allocated.
  Hpa unallocated_td_params() {
    const Hpa h = unallocated();
    write_td_params(mem(), h, {});
    return h;
  }

  // MNG.CREATE, KEY.CONFIG, ADDCX and (if `init`) MNG.INIT, every page, TD_PARAMS's
  // included, a never-allocated frame. The TDCS pages are appended to *children.
  Hpa unallocated_td(std::vector<Hpa>* children, bool init = true) {
    test::TdSpec spec;
    spec.hkid = kTdHkid;
    spec.init = init;
    spec.page = unallocated_pages();
    const test::BuiltTd td = build_td(spec);
    children->insert(children->end(), td.tdcs.begin(), td.tdcs.end());
    return td.tdr;
  }

  // An initialised vCPU on never-allocated frames, appended to *children, TDVPR first.
  Hpa unallocated_vcpu(Hpa tdr, std::vector<Hpa>* children) {
    const std::expected<std::vector<Hpa>, std::string> pages =
        test::build_vcpu(module_, seamcall_on(), unallocated_pages(), tdr);
    if (!pages) {
      ADD_FAILURE() << pages.error();
      return Hpa{};
    }
    children->insert(children->end(), pages->begin(), pages->end());
    return pages->front();
  }

  test::PageSource unallocated_pages() {
    return [this]() -> std::optional<Hpa> { return unallocated(); };
  }

  PamtPageType type_of(Hpa h) const { return module_.pamt().peek_type(h.pfn(), Level::k4K); }

  uint64_t taken_ = 0;
  uint64_t free_at_start_ = 0;
};

TEST_F(HostileOperandsTest, TdBuiltAndTornDownOnNeverAllocatedFrames) {
  std::vector<Hpa> children;
  const Hpa tdr = unallocated_td(&children);
  EXPECT_EQ(module_.td_op_state(tdr), TdOpState::kInitialized);

  // S-EPT pages down to the 4K level, then PAGE.ADD with both target and source frames the
  // host never allocated. The source holds what the host wrote into it.
  for (unsigned level = 3; level >= 1; --level) {
    children.push_back(unallocated());
    EXPECT_EQ(call(SeamcallLeaf::kMemSeptAdd, pi(kGpa, level), tdr.raw(), children.back().raw()),
              kOk)
        << level;
  }
  const Hpa src = unallocated();
  mem().fill(src.pfn(), kHostKey, 0xadd);
  mem().write(src + 8 * 17, kHostKey, 0x17);
  const Hpa added = unallocated();
  children.push_back(added);
  EXPECT_EQ(call(SeamcallLeaf::kMemPageAdd, pi(kGpa, 0), tdr.raw(), added.raw(), src.raw()), kOk);
  EXPECT_EQ(mem().page_hash(added.pfn(), KeyId{kTdHkid}), mem().page_hash(src.pfn(), kHostKey));
  // A source the host never wrote at all reads as zeros.
  const Hpa zero_src = unallocated();
  const Hpa added_zero = unallocated();
  children.push_back(added_zero);
  EXPECT_EQ(call(SeamcallLeaf::kMemPageAdd, pi(kGpa + 0x1000, 0), tdr.raw(), added_zero.raw(),
                 zero_src.raw()),
            kOk);
  EXPECT_EQ(mem().read(added_zero + 8, KeyId{kTdHkid}), (MemWord{0, KeyId{kTdHkid}}));

  // A vCPU, then FINALIZE and AUG.
  unallocated_vcpu(tdr, &children);
  EXPECT_EQ(call(SeamcallLeaf::kMrFinalize, tdr.raw()), kOk);
  const Hpa augged = unallocated();
  children.push_back(augged);
  EXPECT_EQ(call(SeamcallLeaf::kMemPageAug, pi(kGpa + 0x2000, 0), tdr.raw(), augged.raw()), kOk);
  SeamcallRegs r;
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageRdmd, augged.raw(), 0, 0, 0, &r), kOk);
  EXPECT_EQ(r.rcx, static_cast<uint64_t>(PamtPageType::kReg));
  EXPECT_EQ(r.rdx, tdr.raw());
  EXPECT_EQ(mem().key(augged.pfn()), KeyId{kTdHkid});

  // Teardown and reclaim of every page; the host writes back the TDR's lines.
  EXPECT_EQ(call(SeamcallLeaf::kMngVpflushdone, tdr.raw()), kOk);
  for (unsigned c : package_leaders()) EXPECT_EQ(call_on(c, SeamcallLeaf::kPhymemCacheWb), kOk);
  EXPECT_EQ(call(SeamcallLeaf::kMngKeyFreeid, tdr.raw()), kOk);
  for (const Hpa& h : children) {
    EXPECT_EQ(call(SeamcallLeaf::kPhymemPageReclaim, h.raw(), 0, 0, 0, &r), kOk);
    EXPECT_EQ(r.rdx, tdr.raw());
    EXPECT_EQ(type_of(h), PamtPageType::kNda);
    EXPECT_FALSE(mem().has_dirty_lines(h.pfn()));  // CACHE.WB reached them
  }
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageReclaim, tdr.raw()), kOk);
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageWbinvd,
                 layout().with_key(tdr, KeyId{test::kHarnessGlobalHkid})),
            kOk);
  EXPECT_FALSE(mem().has_dirty_lines(tdr.pfn()));
  EXPECT_EQ(module_.td_count(), 0u);

  // None of it touched the host's allocator, and nothing broke a key rule.
  EXPECT_EQ(mem().free_frame_count(), free_at_start_);
  EXPECT_FALSE(mem().is_allocated(tdr.pfn()));
  EXPECT_EQ(mem().violation_count(), 0u);
}

TEST_F(HostileOperandsTest, PhymemLeavesOnFramesTheModuleNeverSaw) {
  const Hpa never = unallocated();
  // RDMD: an NDA page with no owner.
  SeamcallRegs r;
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageRdmd, never.raw(), 0, 0, 0, &r), kOk);
  EXPECT_EQ(r.rcx, static_cast<uint64_t>(PamtPageType::kNda));
  EXPECT_EQ(r.rdx, 0u);
  // RECLAIM: nothing to reclaim.
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageReclaim, never.raw()),
            op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRcx));
  // WBINVD with any key: there is nothing to write back, and nothing fails.
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageWbinvd, layout().with_key(never, KeyId{kTdHkid})), kOk);
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageWbinvd, never.raw()), kOk);
  // Past the end of memory is still refused before any memory is touched.
  const uint64_t past = mem().total_frames() * kPageSize;
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageRdmd, past),
            op(TdxStatus::kOperandAddrRangeError, TdxOperand::kRcx));
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageReclaim, past),
            op(TdxStatus::kOperandAddrRangeError, TdxOperand::kRcx));
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageWbinvd, past),
            op(TdxStatus::kOperandAddrRangeError, TdxOperand::kRcx));
  EXPECT_EQ(call(SeamcallLeaf::kMngCreate, past, kTdHkid),
            op(TdxStatus::kOperandAddrRangeError, TdxOperand::kRcx));
  EXPECT_EQ(mem().violation_count(), 0u);
}

TEST_F(HostileOperandsTest, OperandsInNeverWrittenFramesReadAsZeros) {
  std::vector<Hpa> tdcs;
  const Hpa tdr = unallocated_td(&tdcs, /*init=*/false);
  ASSERT_EQ(tdcs.size(), module_.config().tdcs_pages);
  // TD_PARAMS of all zeros: MAX_VCPUS is the first field the module refuses.
  EXPECT_EQ(call(SeamcallLeaf::kMngInit, tdr.raw(), unallocated().raw()),
            op(TdxStatus::kOperandInvalid, TdxOperand::kMaxVcpus));
  EXPECT_EQ(module_.td_op_state(tdr), TdOpState::kUninitialized);
  // Past the end of memory, TD_PARAMS and PAGE.ADD's source are refused as before.
  const uint64_t past = mem().total_frames() * kPageSize;
  EXPECT_EQ(call(SeamcallLeaf::kMngInit, tdr.raw(), past),
            op(TdxStatus::kOperandInvalid, TdxOperand::kRdx));
  ASSERT_EQ(call(SeamcallLeaf::kMngInit, tdr.raw(), unallocated_td_params().raw()), kOk);
  for (unsigned level = 3; level >= 1; --level) {
    ASSERT_EQ(call(SeamcallLeaf::kMemSeptAdd, pi(kGpa, level), tdr.raw(), unallocated().raw()),
              kOk);
  }
  EXPECT_EQ(call(SeamcallLeaf::kMemPageAdd, pi(kGpa, 0), tdr.raw(), unallocated().raw(), past),
            op(TdxStatus::kOperandInvalid, TdxOperand::kR9));
  EXPECT_EQ(mem().violation_count(), 0u);
}

// The host's allocator hands out a page the TD owns (the host AUGed it while free), and the
// host writes it as its own: the TD's page is poisoned and recorded, and the module goes
// on answering for it.
TEST_F(HostileOperandsTest, HostReallocatingATdPageIsRecordedNotFatal) {
  std::vector<Hpa> children;
  const Hpa tdr = unallocated_td(&children);
  for (unsigned level = 3; level >= 1; --level) {
    ASSERT_EQ(call(SeamcallLeaf::kMemSeptAdd, pi(kGpa, level), tdr.raw(), unallocated().raw()),
              kOk);
  }
  unallocated_vcpu(tdr, &children);
  ASSERT_EQ(call(SeamcallLeaf::kMrFinalize, tdr.raw()), kOk);

  // The frame at the head of the allocator's free list goes to the TD.
  const Hpa p = page();
  mem().free_frame(p.pfn());
  ASSERT_EQ(call(SeamcallLeaf::kMemPageAug, pi(kGpa, 0), tdr.raw(), p.raw()), kOk);
  ASSERT_EQ(mem().violation_count(), 0u);

  // The host allocates it again and writes it with its own key.
  ASSERT_EQ(page(), p);
  EXPECT_EQ(mem().key(p.pfn()), KeyId{kTdHkid});
  mem().write(p + 8, kHostKey, 0xbad);
  ASSERT_EQ(mem().violation_count(), 1u);
  const MemViolation v = mem().violations()[0];
  EXPECT_EQ(v.kind, MemViolationKind::kIntegrityPoison);
  EXPECT_EQ(v.hpa, p + 8);
  EXPECT_EQ(v.accessor, kHostKey);
  EXPECT_EQ(v.owner, KeyId{kTdHkid});

  // The module still answers for the page: RDMD, SEPT.RD, and AUG elsewhere.
  SeamcallRegs r;
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageRdmd, p.raw(), 0, 0, 0, &r), kOk);
  EXPECT_EQ(r.rcx, static_cast<uint64_t>(PamtPageType::kReg));
  EXPECT_EQ(r.rdx, tdr.raw());
  EXPECT_EQ(call(SeamcallLeaf::kMemSeptRd, pi(kGpa, 0), tdr.raw(), 0, 0, &r), kOk);
  EXPECT_EQ((r.rdx >> 8) & 0xFF, static_cast<uint64_t>(SeptState::kPending));
  EXPECT_EQ(call(SeamcallLeaf::kMemPageAug, pi(kGpa + 0x1000, 0), tdr.raw(), unallocated().raw()),
            kOk);
  // A second AUG of the same frame is the PAMT's answer, as for any frame in use.
  EXPECT_EQ(call(SeamcallLeaf::kMemPageAug, pi(kGpa + 0x3000, 0), tdr.raw(), p.raw()),
            op(TdxStatus::kPageMetadataIncorrect, TdxOperand::kR8));
}

}  // namespace
}  // namespace tdxsim
