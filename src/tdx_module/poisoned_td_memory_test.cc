// A host that writes a TD's S-EPT or private pages with its own key poisons them (TDX's
// integrity check). The module's next read of such a page is a machine check on hardware,
// and the TD dies: the leaf that read it answers TDX_TD_FATAL, every later leaf that would
// use the TD's memory or run it answers the same, a vCPU running when the CPU's walk or the
// module's consumes the poison exits with TDX_NON_RECOVERABLE_TD, and the TD can still be
// torn down. Found by the SEAMCALL fuzzer (src/fuzz/seamcall_fuzzer.cc), which made the
// module read garbage S-EPT entries and abort.
#include <gtest/gtest.h>

#include <vector>

#include "tdx_module/sept_walk.h"
#include "tdx_module/vcpu_harness.h"

namespace tdxsim {
namespace {

using SG = ScriptedGuest;
using test::accept;
using test::kGpa;
using test::kOk;
using test::kTdHkid;
using test::pi;
using test::operator+;

class PoisonedTdMemoryTest : public test::VcpuHarness {
 protected:
  // The S-EPT page holding the entry for `gpa` at `level` (the module's own walk).
  Hpa sept_page(Gpa gpa, Level level) {
    const SeptWalkResult w =
        sept_walk(mem(), layout(), *module_.td_sept_root(tdr_), 4, KeyId{kTdHkid}, gpa, level);
    EXPECT_TRUE(w.reached);
    return w.entry_hpa.align_down(Level::k4K);
  }
  // What a hostile host does: one word of the frame, written with its own key.
  void poison(Hpa page) {
    mem().write(page + 8 * 300, kHostKey, 0xbad);
    ASSERT_TRUE(mem().consumes_poison(page.pfn(), KeyId{kTdHkid}));
  }
  uint64_t fatal() { return raw(TdxStatus::kTdFatal); }
};

TEST_F(PoisonedTdMemoryTest, AHostLeafThatWalksThroughAPoisonedTableFindsTheTdFatal) {
  runnable();
  const Hpa augged = aug(kGpa);
  poison(sept_page(kGpa, Level::k4K));

  EXPECT_EQ(call(SeamcallLeaf::kMemRangeBlock, pi(kGpa, 0), tdr_.raw()), fatal());
  EXPECT_TRUE(*module_.td_fatal(tdr_));
  // From then on every leaf on the TD's memory or vCPUs, on any GPA, and its entry.
  EXPECT_EQ(call(SeamcallLeaf::kMemSeptRd, pi(kGpa + (uint64_t{4} << 21), 2), tdr_.raw()), fatal());
  EXPECT_EQ(call(SeamcallLeaf::kMemTrack, tdr_.raw()), fatal());
  EXPECT_EQ(enter(), fatal());

  // Teardown goes on: the host gets its pages back.
  EXPECT_EQ(call(SeamcallLeaf::kMngVpflushdone, tdr_.raw()), kOk);
  for (unsigned c : package_leaders()) EXPECT_EQ(call_on(c, SeamcallLeaf::kPhymemCacheWb), kOk);
  EXPECT_EQ(call(SeamcallLeaf::kMngKeyFreeid, tdr_.raw()), kOk);
  EXPECT_EQ(call(SeamcallLeaf::kPhymemPageReclaim, augged.raw()), kOk);
}

TEST_F(PoisonedTdMemoryTest, SeptRemoveAndPromoteReadingAPoisonedTableFindTheTdFatal) {
  runnable();
  // The 4K table under kGpa's 2M entry, blocked and tracked: SEPT.REMOVE reads its entries.
  const Hpa table = sept_page(kGpa, Level::k4K);
  EXPECT_EQ(call(SeamcallLeaf::kMemRangeBlock, pi(kGpa, 1), tdr_.raw()), kOk);
  EXPECT_EQ(call(SeamcallLeaf::kMemTrack, tdr_.raw()), kOk);
  poison(table);
  EXPECT_EQ(call(SeamcallLeaf::kMemSeptRemove, pi(kGpa, 1), tdr_.raw()), fatal());
  EXPECT_TRUE(*module_.td_fatal(tdr_));
}

TEST_F(PoisonedTdMemoryTest, RelocateOfAPoisonedPageFindsTheTdFatal) {
  runnable();
  const Hpa data = aug(kGpa);
  run(accept(kGpa));
  SeamcallRegs r;
  expect_hlt_exit(enter(r), r);
  EXPECT_EQ(call(SeamcallLeaf::kMemRangeBlock, pi(kGpa, 0), tdr_.raw()), kOk);
  EXPECT_EQ(call(SeamcallLeaf::kMemTrack, tdr_.raw()), kOk);
  poison(data);
  EXPECT_EQ(call(SeamcallLeaf::kMemPageRelocate, kGpa.raw(), tdr_.raw(), page().raw()), fatal());
}

TEST_F(PoisonedTdMemoryTest, MrExtendOfAPoisonedPageFindsTheTdFatal) {
  build();
  const Hpa source = page();
  const Hpa added = page();
  SeamcallRegs r;
  r.rcx = pi(kGpa, 0);
  r.rdx = tdr_.raw();
  r.r8 = added.raw();
  r.r9 = source.raw();
  ASSERT_EQ(ModuleHarness::call(0, SeamcallLeaf::kMemPageAdd, r), kOk);
  poison(added);
  EXPECT_EQ(call(SeamcallLeaf::kMrExtend, kGpa.raw(), tdr_.raw()), fatal());
}

TEST_F(PoisonedTdMemoryTest, TheCpuWalkingAPoisonedTableEndsTheEntryAndTheTd) {
  runnable();
  aug(kGpa);
  aug(kGpa + kPageSize);
  // Both accepted (the module's walk, no CPU walk yet), then the host poisons their table.
  run(accept(kGpa) + accept(kGpa + kPageSize));
  SeamcallRegs r;
  expect_hlt_exit(enter(r), r);
  poison(sept_page(kGpa, Level::k4K));
  // The load misses the TLB: the CPU walks the S-EPT and consumes the poison.
  run_from_here({SG::load(kGpa + kPageSize, Gpr::kRbx)});
  EXPECT_EQ(enter(r), raw(TdxStatus::kNonRecoverableTd));
  EXPECT_TRUE(*module_.td_fatal(tdr_));
  EXPECT_EQ(enter(), fatal());
}

TEST_F(PoisonedTdMemoryTest, AnAcceptThroughAPoisonedTableEndsTheEntryAndTheTd) {
  runnable();
  aug(kGpa);
  poison(sept_page(kGpa, Level::k4K));
  run(accept(kGpa));
  EXPECT_EQ(enter(), raw(TdxStatus::kNonRecoverableTd));
  EXPECT_TRUE(*module_.td_fatal(tdr_));
}

}  // namespace
}  // namespace tdxsim
