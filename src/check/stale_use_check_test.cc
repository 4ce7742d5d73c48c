// The stale-use check against real CPU translations: the CPU serves stale entries (tables
// edited behind its TLB); the check turns a stale use into a violation only when a point
// that required the entry gone came after the mapping changed and before the use.
#include "check/stale_use_check.h"

#include <gtest/gtest.h>

#include "base/fault_injection.h"
#include "kvm/host_mm.h"
#include "kvm/kvm.h"
#include "platform/platform.h"
#include "platform/scripted_guest.h"
#include "platform/table_builder.h"

namespace tdxsim {
namespace {

constexpr Perms kRwx{true, true, true, true};
constexpr Gpa kGpa{0x5000};
using SG = ScriptedGuest;

class StaleUseCheckTest : public ::testing::Test {
 protected:
  static PlatformConfig config() {
    PlatformConfig c;
    c.cpus_per_package = 2;
    c.memory.bytes = 64 << 20;
    return c;
  }

  StaleUseCheckTest() {
    old_page = frame(0x1111);
    new_page = frame(0x2222);
    ept.map(kGpa, old_page.hpa(), Level::k4K, kRwx);
    ctx.mode = GuestMode::kVmx;
    ctx.eptp = Eptp::make(ept.root(), ept.levels(), true);
    check.watch(kvm);
    // The vCPU loaded this root on CPU 0 before anything below: attributes uses to the VM.
    load_root();
  }
  ~StaleUseCheckTest() override { check.unwatch(kvm); }

  Pfn frame(uint64_t fill) {
    Pfn pfn = *platform.memory().alloc_frame();
    platform.memory().fill(pfn, kHostKey, fill);
    return pfn;
  }
  uint64_t read_once() {
    SG guest({SG::load(kGpa)});
    GuestState state;
    auto binding = platform.bind(0);
    EXPECT_TRUE(binding.cpu().run_guest(ctx, state, guest).is(VmxExitReason::kHlt));
    return state.regs[Gpr::kRax];
  }
  // KVM's side of the story, as its tracepoints tell it.
  void remap_without_flush() {
    const Spte old_spte = Spte::make_leaf(SpteFormat::kEpt, old_page, Level::k4K, {});
    kvm.events().spte_changed.emit(SpteChangeEvent{EventPhase::kBegin, kGpa.gfn(), Level::k4K,
                                                   old_spte, Spte::nonpresent(), false});
    ept.map(kGpa, new_page.hpa(), Level::k4K, kRwx);
    kvm.events().spte_changed.emit(SpteChangeEvent{EventPhase::kEnd, kGpa.gfn(), Level::k4K,
                                                   old_spte, Spte::nonpresent(), false});
  }
  void flush_event(EventPhase phase, Gfn start = Gfn{0}, uint64_t pages = 0, bool done = true) {
    kvm.events().remote_flush.emit(RemoteFlushEvent{phase, start, pages, done});
  }
  void load_root() {
    kvm.events().root_loaded.emit(RootLoadEvent{EventPhase::kBegin, 0, 0, Hpa{0}});
    kvm.events().root_loaded.emit(RootLoadEvent{EventPhase::kEnd, 0, 0, ept.root()});
  }

  FaultInjection faults;
  Platform platform{config(), faults};
  HostMm mm{platform.memory()};
  Kvm kvm{platform.memory(), mm, KvmConfig{}};
  TableBuilder ept{platform.memory(), PagingFormat::kEpt, 4};
  Pfn old_page, new_page;
  GuestContext ctx;
  StaleUseCheck check{platform};
};

TEST_F(StaleUseCheckTest, StaleUseInsideTheProtocolWindowIsNoViolation) {
  EXPECT_EQ(read_once(), 0x1111u);
  remap_without_flush();
  // Zapped, flush not yet started: the vCPU may still use what it cached.
  EXPECT_EQ(read_once(), 0x1111u);
  EXPECT_EQ(check.counts().stale_uses, 1u);
  EXPECT_TRUE(check.ok());
}

TEST_F(StaleUseCheckTest, StaleUseAfterAFlushReturnedIsAViolation) {
  EXPECT_EQ(read_once(), 0x1111u);
  remap_without_flush();
  // A flush that says it is done but left the CPU's TLB alone.
  flush_event(EventPhase::kBegin);
  flush_event(EventPhase::kEnd);
  EXPECT_EQ(read_once(), 0x1111u);
  ASSERT_FALSE(check.ok());
  const auto v = check.violations();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].point, StalePoint::kRemoteFlushReturned);
  EXPECT_EQ(v[0].use.gpa, kGpa);
  EXPECT_EQ(v[0].use.served.hpa, old_page.hpa());
  EXPECT_NE(v[0].describe().find("after a remote TLB flush returned"), std::string::npos)
      << v[0].describe();
}

TEST_F(StaleUseCheckTest, AFlushThatBeganBeforeTheChangeDoesNotCoverIt) {
  EXPECT_EQ(read_once(), 0x1111u);
  flush_event(EventPhase::kBegin);
  remap_without_flush();  // a concurrent zap: its own flush is still to come
  flush_event(EventPhase::kEnd);
  EXPECT_EQ(read_once(), 0x1111u);
  EXPECT_EQ(check.counts().stale_uses, 1u);
  EXPECT_TRUE(check.ok());
}

TEST_F(StaleUseCheckTest, ARangedFlushCoversOnlyItsRange) {
  EXPECT_EQ(read_once(), 0x1111u);
  remap_without_flush();
  flush_event(EventPhase::kBegin, kGpa.gfn() + 1, 8);
  flush_event(EventPhase::kEnd, kGpa.gfn() + 1, 8);
  EXPECT_EQ(read_once(), 0x1111u);
  EXPECT_TRUE(check.ok()) << "the range missed the GFN: no promise was broken";
  flush_event(EventPhase::kBegin, kGpa.gfn(), 1);
  flush_event(EventPhase::kEnd, kGpa.gfn(), 1);
  EXPECT_EQ(read_once(), 0x1111u);
  EXPECT_EQ(check.counts().violations, 1u);
}

TEST_F(StaleUseCheckTest, ARangedFlushTheVendorCouldNotDoIsNoPoint) {
  EXPECT_EQ(read_once(), 0x1111u);
  remap_without_flush();
  flush_event(EventPhase::kBegin, kGpa.gfn(), 1);
  flush_event(EventPhase::kEnd, kGpa.gfn(), 1, /*done=*/false);
  EXPECT_EQ(read_once(), 0x1111u);
  EXPECT_TRUE(check.ok()) << "the full flush that follows has not happened yet";
}

TEST_F(StaleUseCheckTest, StaleUseAfterARootLoadOnThatCpuIsAViolation) {
  EXPECT_EQ(read_once(), 0x1111u);
  remap_without_flush();
  load_root();  // a load whose flush of the new root did not happen
  EXPECT_EQ(read_once(), 0x1111u);
  const auto v = check.violations();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].point, StalePoint::kRootLoaded);
}

TEST_F(StaleUseCheckTest, StaleUseOfAFreedFrameIsAViolation) {
  EXPECT_EQ(read_once(), 0x1111u);
  remap_without_flush();
  platform.memory().free_frame(old_page);
  EXPECT_EQ(read_once(), 0x1111u);
  const auto v = check.violations();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].point, StalePoint::kFrameFreed);
}

TEST_F(StaleUseCheckTest, AChangeUnderWayIsNotJudged) {
  EXPECT_EQ(read_once(), 0x1111u);
  const Spte old_spte = Spte::make_leaf(SpteFormat::kEpt, old_page, Level::k4K, {});
  kvm.events().spte_changed.emit(SpteChangeEvent{EventPhase::kBegin, kGpa.gfn(), Level::k4K,
                                                 old_spte, Spte::nonpresent(), false});
  ept.map(kGpa, new_page.hpa(), Level::k4K, kRwx);
  // The walk sees the new value before the change is stamped: an older flush must not count.
  flush_event(EventPhase::kBegin);
  flush_event(EventPhase::kEnd);
  EXPECT_EQ(read_once(), 0x1111u);
  EXPECT_EQ(check.counts().in_flight, 1u);
  EXPECT_TRUE(check.ok());
  kvm.events().spte_changed.emit(SpteChangeEvent{EventPhase::kEnd, kGpa.gfn(), Level::k4K, old_spte,
                                                 Spte::nonpresent(), false});
  flush_event(EventPhase::kBegin);
  flush_event(EventPhase::kEnd);
  EXPECT_EQ(read_once(), 0x1111u);
  EXPECT_EQ(check.counts().violations, 1u);
}

TEST_F(StaleUseCheckTest, AProperFlushLeavesNothingToReport) {
  EXPECT_EQ(read_once(), 0x1111u);
  remap_without_flush();
  flush_event(EventPhase::kBegin);
  {
    auto binding = platform.bind(0);
    binding.cpu().invept(InveptType::kSingleContext, ctx.eptp);
  }
  flush_event(EventPhase::kEnd);
  EXPECT_EQ(read_once(), 0x2222u);
  EXPECT_EQ(check.counts().stale_uses, 0u);
  EXPECT_TRUE(check.ok());
}

TEST_F(StaleUseCheckTest, UsesThroughAnUnknownRootAreCountedNotJudged) {
  check.unwatch(kvm);
  EXPECT_EQ(read_once(), 0x1111u);
  remap_without_flush();
  EXPECT_EQ(read_once(), 0x1111u);
  EXPECT_EQ(check.counts().unattributed, 1u);
  EXPECT_TRUE(check.ok());
  check.watch(kvm);
}

}  // namespace
}  // namespace tdxsim
