// The SEAMCALL wrappers against a SEAM module that records its inputs and answers with fixed
// registers: each wrapper sends the leaf and version in RAX and its operands in the
// registers abi §1.2 names (every other register zero), returns RAX, and hands back the
// output registers its declaration promises.
#include "tdxsim/seamcall.h"

#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "base/fault_injection.h"
#include "platform/platform.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {
namespace {

class Recorder : public SeamModule {
 public:
  void seamcall(LogicalCpu& /*cpu*/, SeamcallRegs& regs) override {
    calls++;
    in = regs;
    regs = reply;
  }
  int calls = 0;
  SeamcallRegs in;
  SeamcallRegs reply;
};

constexpr uint64_t kStatus = 0xC000'0B0D'0000'0001;  // any status: the wrappers pass it on
constexpr Hpa kTdr{0x1000};
constexpr Hpa kTdvpr{0x3000};
constexpr Hpa kPage{0x5000};
constexpr Hpa kSource{0x7000};
constexpr Gpa kGpa{0x40'3100};
constexpr PageInfo kPageInfo = PageInfo::of(Gpa{0x20'0000}, Level::k2M);
constexpr KeyId kHkid{33};

PlatformConfig small_platform() {
  PlatformConfig c;
  c.packages = 1;
  c.cpus_per_package = 1;
  c.memory.bytes = uint64_t{16} << 20;
  return c;
}

class SeamcallApiTest : public ::testing::Test {
 protected:
  SeamcallApiTest() : platform_(small_platform(), faults_) {
    platform_.install_seam_module(&module_);
    module_.reply = {.rax = kStatus, .rcx = 0x11, .rdx = 0x22, .r8 = 0x88, .r9 = 0x99,
                     .r10 = 0xAA, .r11 = 0xBB, .r12 = 0xCC, .r13 = 0xDD, .r14 = 0xEE,
                     .r15 = 0xFF, .rbx = 0xB0, .rdi = 0xD0, .rsi = 0x50, .rbp = 0xBB0};
  }

  LogicalCpu& cpu() { return binding_.cpu(); }

  FaultInjection faults_;
  Platform platform_;
  Recorder module_;
  CpuBinding binding_{platform_.bind(0)};
};

struct Case {
  const char* name;
  std::function<uint64_t(LogicalCpu&)> call;
  SeamcallLeaf leaf;
  uint8_t version;
  SeamcallRegs operands;  // RAX is the leaf's; only RCX, RDX, R8 and R9 are ever set
};

TEST_F(SeamcallApiTest, EveryWrapperSendsItsLeafAndOperands) {
  const uint64_t keyed_page = platform_.memory().layout().with_key(kPage, kHkid);
  using L = SeamcallLeaf;
  const std::vector<Case> cases = {
      {"sys_init", [](LogicalCpu& c) { return tdh_sys_init(c, 5); }, L::kSysInit, 0, {.rcx = 5}},
      {"sys_lp_init", [](LogicalCpu& c) { return tdh_sys_lp_init(c); }, L::kSysLpInit, 0, {}},
      {"sys_config", [](LogicalCpu& c) { return tdh_sys_config(c, kPage, 1, KeyId{32}); },
       L::kSysConfig, 0, {.rcx = kPage.raw(), .rdx = 1, .r8 = 32}},
      {"sys_key_config", [](LogicalCpu& c) { return tdh_sys_key_config(c); }, L::kSysKeyConfig,
       0, {}},
      {"sys_tdmr_init", [](LogicalCpu& c) { return tdh_sys_tdmr_init(c, Hpa{0x4000'0000}); },
       L::kSysTdmrInit, 0, {.rcx = 0x4000'0000}},
      {"mng_create", [](LogicalCpu& c) { return tdh_mng_create(c, kTdr, kHkid); }, L::kMngCreate,
       0, {.rcx = kTdr.raw(), .rdx = 33}},
      {"mng_key_config", [](LogicalCpu& c) { return tdh_mng_key_config(c, kTdr); },
       L::kMngKeyConfig, 0, {.rcx = kTdr.raw()}},
      {"mng_addcx", [](LogicalCpu& c) { return tdh_mng_addcx(c, kTdr, kPage); }, L::kMngAddcx, 0,
       {.rcx = kPage.raw(), .rdx = kTdr.raw()}},
      {"mng_init", [](LogicalCpu& c) { return tdh_mng_init(c, kTdr, kSource); }, L::kMngInit, 0,
       {.rcx = kTdr.raw(), .rdx = kSource.raw()}},
      {"mng_vpflushdone", [](LogicalCpu& c) { return tdh_mng_vpflushdone(c, kTdr); },
       L::kMngVpflushdone, 0, {.rcx = kTdr.raw()}},
      {"mng_key_freeid", [](LogicalCpu& c) { return tdh_mng_key_freeid(c, kTdr); },
       L::kMngKeyFreeid, 0, {.rcx = kTdr.raw()}},
      {"mng_key_reclaimid", [](LogicalCpu& c) { return tdh_mng_key_reclaimid(c, kTdr); },
       L::kMngKeyReclaimid, 0, {.rcx = kTdr.raw()}},
      {"mng_rd", [](LogicalCpu& c) { uint64_t d; return tdh_mng_rd(c, kTdr, 0x9100, &d); },
       L::kMngRd, 0, {.rcx = kTdr.raw(), .rdx = 0x9100}},
      {"mng_wr", [](LogicalCpu& c) { return tdh_mng_wr(c, kTdr, 0x9100, 7, 0xF); }, L::kMngWr, 0,
       {.rcx = kTdr.raw(), .rdx = 0x9100, .r8 = 7, .r9 = 0xF}},
      {"vp_create", [](LogicalCpu& c) { return tdh_vp_create(c, kTdr, kTdvpr); }, L::kVpCreate,
       0, {.rcx = kTdvpr.raw(), .rdx = kTdr.raw()}},
      {"vp_addcx", [](LogicalCpu& c) { return tdh_vp_addcx(c, kTdvpr, kPage); }, L::kVpAddcx, 0,
       {.rcx = kPage.raw(), .rdx = kTdvpr.raw()}},
      {"vp_init v0", [](LogicalCpu& c) { return tdh_vp_init(c, kTdvpr, 0x42); }, L::kVpInit, 0,
       {.rcx = kTdvpr.raw(), .rdx = 0x42}},
      {"vp_init v1", [](LogicalCpu& c) { return tdh_vp_init(c, kTdvpr, 0x42, 3); }, L::kVpInit, 1,
       {.rcx = kTdvpr.raw(), .rdx = 0x42, .r8 = 3}},
      {"vp_rd", [](LogicalCpu& c) { uint64_t d; return tdh_vp_rd(c, kTdvpr, 0x203C, &d); },
       L::kVpRd, 0, {.rcx = kTdvpr.raw(), .rdx = 0x203C}},
      {"vp_wr", [](LogicalCpu& c) { return tdh_vp_wr(c, kTdvpr, 0x203C, 0x9000, ~0ull); },
       L::kVpWr, 0, {.rcx = kTdvpr.raw(), .rdx = 0x203C, .r8 = 0x9000, .r9 = ~0ull}},
      {"vp_flush", [](LogicalCpu& c) { return tdh_vp_flush(c, kTdvpr); }, L::kVpFlush, 0,
       {.rcx = kTdvpr.raw()}},
      {"vp_enter",
       [](LogicalCpu& c) {
         SeamcallRegs r;
         return tdh_vp_enter(c, kTdvpr, r);
       },
       L::kVpEnter, 0, {.rcx = kTdvpr.raw()}},
      {"phymem_cache_wb", [](LogicalCpu& c) { return tdh_phymem_cache_wb(c, false); },
       L::kPhymemCacheWb, 0, {.rcx = 0}},
      {"phymem_cache_wb resume", [](LogicalCpu& c) { return tdh_phymem_cache_wb(c, true); },
       L::kPhymemCacheWb, 0, {.rcx = 1}},
      {"phymem_page_reclaim", [](LogicalCpu& c) { return tdh_phymem_page_reclaim(c, kPage); },
       L::kPhymemPageReclaim, 0, {.rcx = kPage.raw()}},
      {"phymem_page_wbinvd", [](LogicalCpu& c) { return tdh_phymem_page_wbinvd(c, kPage, kHkid); },
       L::kPhymemPageWbinvd, 0, {.rcx = keyed_page}},
      {"phymem_page_rdmd", [](LogicalCpu& c) { return tdh_phymem_page_rdmd(c, kPage); },
       L::kPhymemPageRdmd, 0, {.rcx = kPage.raw()}},
      {"mem_sept_add", [](LogicalCpu& c) { return tdh_mem_sept_add(c, kTdr, kPageInfo, kPage); },
       L::kMemSeptAdd, 0, {.rcx = kPageInfo.raw(), .rdx = kTdr.raw(), .r8 = kPage.raw()}},
      {"mem_page_aug", [](LogicalCpu& c) { return tdh_mem_page_aug(c, kTdr, kPageInfo, kPage); },
       L::kMemPageAug, 0, {.rcx = kPageInfo.raw(), .rdx = kTdr.raw(), .r8 = kPage.raw()}},
      {"mem_sept_rd",
       [](LogicalCpu& c) {
         uint64_t e, ls;
         return tdh_mem_sept_rd(c, kTdr, kPageInfo, &e, &ls);
       },
       L::kMemSeptRd, 0, {.rcx = kPageInfo.raw(), .rdx = kTdr.raw()}},
      {"mem_range_block", [](LogicalCpu& c) { return tdh_mem_range_block(c, kTdr, kPageInfo); },
       L::kMemRangeBlock, 0, {.rcx = kPageInfo.raw(), .rdx = kTdr.raw()}},
      {"mem_range_unblock",
       [](LogicalCpu& c) { return tdh_mem_range_unblock(c, kTdr, kPageInfo); },
       L::kMemRangeUnblock, 0, {.rcx = kPageInfo.raw(), .rdx = kTdr.raw()}},
      {"mem_track", [](LogicalCpu& c) { return tdh_mem_track(c, kTdr); }, L::kMemTrack, 0,
       {.rcx = kTdr.raw()}},
      {"mem_page_remove", [](LogicalCpu& c) { return tdh_mem_page_remove(c, kTdr, kPageInfo); },
       L::kMemPageRemove, 0, {.rcx = kPageInfo.raw(), .rdx = kTdr.raw()}},
      {"mem_sept_remove", [](LogicalCpu& c) { return tdh_mem_sept_remove(c, kTdr, kPageInfo); },
       L::kMemSeptRemove, 0, {.rcx = kPageInfo.raw(), .rdx = kTdr.raw()}},
      {"mem_page_add",
       [](LogicalCpu& c) { return tdh_mem_page_add(c, kTdr, kGpa, kPage, kSource); },
       L::kMemPageAdd, 0,
       {.rcx = kGpa.raw(), .rdx = kTdr.raw(), .r8 = kPage.raw(), .r9 = kSource.raw()}},
      {"mr_extend", [](LogicalCpu& c) { return tdh_mr_extend(c, kTdr, kGpa); }, L::kMrExtend, 0,
       {.rcx = kGpa.raw(), .rdx = kTdr.raw()}},
      {"mr_finalize", [](LogicalCpu& c) { return tdh_mr_finalize(c, kTdr); }, L::kMrFinalize, 0,
       {.rcx = kTdr.raw()}},
      {"mem_page_demote",
       [](LogicalCpu& c) { return tdh_mem_page_demote(c, kTdr, kPageInfo, kPage); },
       L::kMemPageDemote, 0, {.rcx = kPageInfo.raw(), .rdx = kTdr.raw(), .r8 = kPage.raw()}},
      {"mem_page_promote",
       [](LogicalCpu& c) { return tdh_mem_page_promote(c, kTdr, kPageInfo); },
       L::kMemPagePromote, 0, {.rcx = kPageInfo.raw(), .rdx = kTdr.raw()}},
      {"mem_page_relocate",
       [](LogicalCpu& c) { return tdh_mem_page_relocate(c, kTdr, kGpa, kPage); },
       L::kMemPageRelocate, 0, {.rcx = kGpa.raw(), .rdx = kTdr.raw(), .r8 = kPage.raw()}},
      {"mem_rd", [](LogicalCpu& c) { uint64_t d; return tdh_mem_rd(c, kTdr, kGpa, &d); },
       L::kMemRd, 0, {.rcx = kGpa.raw(), .rdx = kTdr.raw()}},
      {"mem_wr", [](LogicalCpu& c) { return tdh_mem_wr(c, kTdr, kGpa, 0x77); }, L::kMemWr, 0,
       {.rcx = kGpa.raw(), .rdx = kTdr.raw(), .r8 = 0x77}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const int before = module_.calls;
    EXPECT_EQ(c.call(cpu()), kStatus);
    ASSERT_EQ(module_.calls, before + 1);
    SeamcallRegs want = c.operands;
    want.rax = LeafAndVersion::of(c.leaf, c.version).raw();
    const SeamcallRegs& in = module_.in;
    EXPECT_EQ(in.rax, want.rax);
    EXPECT_EQ(in.rcx, want.rcx);
    EXPECT_EQ(in.rdx, want.rdx);
    EXPECT_EQ(in.r8, want.r8);
    EXPECT_EQ(in.r9, want.r9);
    for (uint64_t other : {in.r10, in.r11, in.r12, in.r13, in.r14, in.r15, in.rbx, in.rdi,
                           in.rsi, in.rbp}) {
      EXPECT_EQ(other, 0u);
    }
  }
}

TEST_F(SeamcallApiTest, OutParametersGetTheirRegisters) {
  const SeamcallRegs& r = module_.reply;
  uint64_t a = 0, b = 0, c = 0, d = 0;
  const auto reset = [&] { a = b = c = d = 0; };

  tdh_sys_tdmr_init(cpu(), Hpa{0}, &a);
  EXPECT_EQ(a, r.rdx);
  tdh_mng_init(cpu(), kTdr, kPage, &a);
  EXPECT_EQ(a, r.rcx);
  for (auto* rd : {&tdh_mng_rd, &tdh_vp_rd}) {
    reset();
    rd(cpu(), kTdr, 1, &a);
    EXPECT_EQ(a, r.r8);
  }
  for (auto* wr : {&tdh_mng_wr, &tdh_vp_wr}) {
    reset();
    wr(cpu(), kTdr, 1, 2, 3, &a);
    EXPECT_EQ(a, r.r8);
  }
  reset();
  tdh_mem_rd(cpu(), kTdr, kGpa, &a);
  tdh_mem_wr(cpu(), kTdr, kGpa, 1, &b);
  EXPECT_EQ(a, r.r8);
  EXPECT_EQ(b, r.r8);

  reset();
  tdh_phymem_page_reclaim(cpu(), kPage, &a, &b, &c);
  EXPECT_EQ(a, r.rcx);
  EXPECT_EQ(b, r.rdx);
  EXPECT_EQ(c, r.r8);
  reset();
  tdh_phymem_page_rdmd(cpu(), kPage, &a, &b, &c, &d);
  EXPECT_EQ(a, r.rcx);
  EXPECT_EQ(b, r.rdx);
  EXPECT_EQ(c, r.r8);
  EXPECT_EQ(d, r.r9);

  // The S-EPT leaves: RCX and RDX.
  const std::vector<std::function<void(uint64_t*, uint64_t*)>> sept = {
      [&](uint64_t* x, uint64_t* y) { tdh_mem_sept_add(cpu(), kTdr, kPageInfo, kPage, x, y); },
      [&](uint64_t* x, uint64_t* y) { tdh_mem_page_aug(cpu(), kTdr, kPageInfo, kPage, x, y); },
      [&](uint64_t* x, uint64_t* y) { tdh_mem_sept_rd(cpu(), kTdr, kPageInfo, x, y); },
      [&](uint64_t* x, uint64_t* y) { tdh_mem_range_block(cpu(), kTdr, kPageInfo, x, y); },
      [&](uint64_t* x, uint64_t* y) { tdh_mem_range_unblock(cpu(), kTdr, kPageInfo, x, y); },
      [&](uint64_t* x, uint64_t* y) { tdh_mem_page_remove(cpu(), kTdr, kPageInfo, x, y); },
      [&](uint64_t* x, uint64_t* y) { tdh_mem_sept_remove(cpu(), kTdr, kPageInfo, x, y); },
      [&](uint64_t* x, uint64_t* y) { tdh_mem_page_add(cpu(), kTdr, kGpa, kPage, kSource, x, y); },
      [&](uint64_t* x, uint64_t* y) { tdh_mr_extend(cpu(), kTdr, kGpa, x, y); },
      [&](uint64_t* x, uint64_t* y) { tdh_mem_page_demote(cpu(), kTdr, kPageInfo, kPage, x, y); },
      [&](uint64_t* x, uint64_t* y) { tdh_mem_page_promote(cpu(), kTdr, kPageInfo, x, y); },
      [&](uint64_t* x, uint64_t* y) { tdh_mem_page_relocate(cpu(), kTdr, kGpa, kPage, x, y); },
  };
  for (size_t i = 0; i < sept.size(); ++i) {
    SCOPED_TRACE(i);
    reset();
    sept[i](&a, &b);
    EXPECT_EQ(a, r.rcx);
    EXPECT_EQ(b, r.rdx);
  }
}

// TDH.VP.ENTER's registers go both ways: the caller's (a TDVMCALL's answer) go in beside the
// TDVPR, and the TD exit's come back whole.
TEST_F(SeamcallApiTest, VpEnterPassesEveryRegisterBothWays) {
  SeamcallRegs regs{.r10 = 1, .r11 = 0x1235000, .r12 = 3, .rbx = 4, .rbp = 5};
  EXPECT_EQ(tdh_vp_enter(cpu(), kTdvpr, regs), kStatus);
  const SeamcallRegs& in = module_.in;
  EXPECT_EQ(in.rax, 0u);
  EXPECT_EQ(in.rcx, kTdvpr.raw());
  EXPECT_EQ(in.r10, 1u);
  EXPECT_EQ(in.r11, 0x1235000u);
  EXPECT_EQ(in.r12, 3u);
  EXPECT_EQ(in.rbx, 4u);
  EXPECT_EQ(in.rbp, 5u);
  const SeamcallRegs& r = module_.reply;
  EXPECT_EQ(regs.rcx, r.rcx);
  EXPECT_EQ(regs.r15, r.r15);
  EXPECT_EQ(regs.rbp, r.rbp);
  EXPECT_EQ(td_exit_reason(0x0000'0000'0000'0030), 48);
  EXPECT_EQ(td_exit_reason(raw(TdxStatus::kNonRecoverableTd) | 2), 2);
}

TEST_F(SeamcallApiTest, RawEntryPointLeavesRaxAsGiven) {
  SeamcallRegs regs{.rax = 25, .rcx = kPageInfo.raw(), .rdx = kTdr.raw(), .r13 = 13};
  EXPECT_EQ(seamcall(cpu(), regs), kStatus);
  EXPECT_EQ(module_.in.rax, 25u);
  EXPECT_EQ(module_.in.r13, 13u);
  EXPECT_EQ(regs.r13, module_.reply.r13);
  SeamcallRegs v1{.rax = 0xDEAD};
  seamcall(cpu(), SeamcallLeaf::kMemSeptAdd, v1, 1);
  EXPECT_EQ(module_.in.rax, 0x1'0003u);
}

// A SEAMCALL that fails as an instruction never reaches a module: the wrappers return Linux's
// class-0xFF status and leave the out-parameters with the registers' inputs.
TEST_F(SeamcallApiTest, InstructionFailuresComeBackAsLinuxStatuses) {
  platform_.install_seam_module(nullptr);
  uint64_t entry = 7, level_state = 7;
  EXPECT_EQ(tdh_mem_sept_rd(cpu(), kTdr, kPageInfo, &entry, &level_state),
            linux_status::kSeamcallVmFailInvalid);
  EXPECT_EQ(entry, kPageInfo.raw());
  EXPECT_EQ(level_state, kTdr.raw());
  EXPECT_EQ(status_class(linux_status::kSeamcallVmFailInvalid), 0xFF);
  EXPECT_EQ(module_.calls, 0);
}

}  // namespace
}  // namespace tdxsim
