// Guest programs on a plain VMX guest context: LogicalCpu::run_guest with EPT tables built by
// hand, and a host loop that answers exits as KVM would (MMIO by EPT violation, HLT).
#include <gtest/gtest.h>

#include <map>
#include <optional>

#include "base/fault_injection.h"
#include "guest/program.h"
#include "platform/platform.h"
#include "platform/table_builder.h"

namespace tdxsim::guest {
namespace {

constexpr Perms kRwx{true, true, true, true};
constexpr Gpa kBase{0x10'0000};
constexpr uint64_t kPages = 16;
constexpr uint64_t kBytes = kPages * kPageSize;

class VmxGuestTest : public ::testing::Test {
 protected:
  static PlatformConfig config() {
    PlatformConfig c;
    c.cpus_per_package = 1;
    c.memory.bytes = 16 << 20;
    return c;
  }

  VmxGuestTest() : platform_(config(), faults_), ept_(platform_.memory(), PagingFormat::kEpt, 4) {
    for (uint64_t i = 0; i < kPages; ++i) {
      const Pfn frame = *platform_.memory().alloc_frame();
      platform_.memory().fill(frame, kHostKey, 0);
      ept_.map(kBase + i * kPageSize, frame.hpa(), Level::k4K, kRwx);
      frames_[(kBase + i * kPageSize).raw()] = frame.hpa();
    }
    ctx_.mode = GuestMode::kVmx;
    ctx_.eptp = Eptp::make(ept_.root(), 4, true);
  }

  // The host's view of guest memory (a memslot's HVA, in KVM terms).
  Hpa hpa_of(Gpa gpa) { return frames_.at(gpa.align_down(Level::k4K).raw()) + gpa.page_offset(); }
  uint64_t host_read(Gpa gpa) { return platform_.memory().read(hpa_of(gpa), kHostKey).value; }
  void host_write(Gpa gpa, uint64_t v) { platform_.memory().write(hpa_of(gpa), kHostKey, v); }

  // Runs until the next ucall (skipping its MMIO write, as KVM completes an MMIO exit) or
  // until the guest halts (nullopt).
  std::optional<Ucall> run(Program& program) {
    CpuBinding b = platform_.bind(0);
    for (int entries = 0; entries < 100'000; ++entries) {
      const VmExit x = b.cpu().run_guest(ctx_, state_, program);
      if (x.is(VmxExitReason::kPreemptionTimer)) continue;
      if (x.is(VmxExitReason::kHlt)) return std::nullopt;
      EXPECT_TRUE(x.is(VmxExitReason::kEptViolation)) << "exit reason " << x.reason;
      EXPECT_EQ(x.insn.kind, GuestInsnKind::kStore);
      const std::optional<Ucall> u = decode_ucall(x.gpa, x.insn.value);
      EXPECT_TRUE(u.has_value()) << "an EPT violation at GPA " << x.gpa.raw();
      state_.rip += x.insn.length;
      return u;
    }
    ADD_FAILURE() << "the guest neither made a ucall nor halted";
    return std::nullopt;
  }

  FaultInjection faults_;
  Platform platform_;
  TableBuilder ept_;
  std::map<uint64_t, Hpa> frames_;
  GuestContext ctx_;
  GuestState state_;
};

GuestTask fill_then_verify(Guest& g) {
  co_await g.fill(kBase, kBytes, 1);
  co_await g.verify(kBase, kBytes, 1);
  co_await g.sync(1);
  // The host wrote round 2 meanwhile.
  co_await g.verify(kBase, kBytes, 2);
  co_await g.done();
}

TEST_F(VmxGuestTest, FillAndVerifyRoundTripThroughTheHost) {
  Program program(VmFlavour::vmx(), fill_then_verify);
  EXPECT_EQ(run(program), (Ucall{UcallCmd::kSync, 1}));
  uint64_t words = 0;
  for_each_sample(kBase, kBytes, [&](Gpa gpa) {
    EXPECT_EQ(host_read(gpa), pattern(gpa, 1)) << "GPA " << gpa.raw();
    host_write(gpa, pattern(gpa, 2));
    ++words;
  });
  EXPECT_EQ(words, 2 * kPages);
  EXPECT_EQ(run(program), (Ucall{UcallCmd::kDone, 0}));
  EXPECT_EQ(run(program), std::nullopt);
  EXPECT_TRUE(program.finished());
  EXPECT_TRUE(program.guest().failures().empty());
}

TEST_F(VmxGuestTest, AVerifyMismatchIsAnAssertUcallWithItsRecord) {
  Program program(VmFlavour::vmx(), fill_then_verify);
  EXPECT_EQ(run(program), (Ucall{UcallCmd::kSync, 1}));
  for_each_sample(kBase, kBytes, [&](Gpa gpa) { host_write(gpa, pattern(gpa, 2)); });
  const Gpa bad = kBase + 5 * kPageSize + (kPageSize - 8);
  host_write(bad, 0xBAD);
  const std::optional<Ucall> u = run(program);
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->cmd, UcallCmd::kAssert);
  const GuestFailure* f = program.failure(u->arg);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->what, "verify");
  EXPECT_EQ(f->gpa, bad);
  EXPECT_EQ(f->expected, pattern(bad, 2));
  EXPECT_EQ(f->actual, 0xBADu);
  // After an ASSERT the guest halts for good.
  EXPECT_EQ(run(program), std::nullopt);
  EXPECT_EQ(run(program), std::nullopt);
  EXPECT_FALSE(program.finished());
}

TEST_F(VmxGuestTest, UcallIsDecodedFromTheEptViolationExit) {
  Program program(VmFlavour::vmx(), [](Guest& g) -> GuestTask {
    co_await g.sync(7);
    co_await g.sync(uint64_t{1} << 55);
    co_await g.done();
  });
  CpuBinding b = platform_.bind(0);
  const VmExit x = b.cpu().run_guest(ctx_, state_, program);
  ASSERT_TRUE(x.is(VmxExitReason::kEptViolation));
  EXPECT_EQ(x.gpa, kDefaultUcallGpa);
  EXPECT_EQ(x.rip, 0u);
  EXPECT_EQ(decode_ucall(x.gpa, x.insn.value), (Ucall{UcallCmd::kSync, 7}));
  // Not skipped: the write runs again and exits again, at the same RIP.
  const VmExit again = b.cpu().run_guest(ctx_, state_, program);
  EXPECT_EQ(again.rip, 0u);
  EXPECT_EQ(decode_ucall(again.gpa, again.insn.value), (Ucall{UcallCmd::kSync, 7}));
  state_.rip += again.insn.length;
  const VmExit next = b.cpu().run_guest(ctx_, state_, program);
  EXPECT_EQ(next.rip, 4u);
  EXPECT_EQ(decode_ucall(next.gpa, next.insn.value), (Ucall{UcallCmd::kSync, uint64_t{1} << 55}));
}

TEST_F(VmxGuestTest, MapGpaIsKvmsHypercall) {
  Program program(VmFlavour::vmx(), [](Guest& g) -> GuestTask {
    co_await g.map_gpa(kBase, 3 * kPageSize, /*to_shared=*/false);
    co_await g.map_gpa(kBase, kPageSize, /*to_shared=*/true);
    co_await g.done();
  });
  {
    CpuBinding b = platform_.bind(0);
    VmExit x = b.cpu().run_guest(ctx_, state_, program);
    ASSERT_TRUE(x.is(VmxExitReason::kVmcall));
    EXPECT_EQ(state_.regs[Gpr::kRax], kKvmHcMapGpaRange);
    EXPECT_EQ(state_.regs[Gpr::kRbx], kBase.raw());
    EXPECT_EQ(state_.regs[Gpr::kRcx], 3u);
    EXPECT_EQ(state_.regs[Gpr::kRdx], kKvmMapGpaRangeEncrypted);
    state_.regs[Gpr::kRax] = 0;
    state_.rip += x.insn.length;
    x = b.cpu().run_guest(ctx_, state_, program);
    ASSERT_TRUE(x.is(VmxExitReason::kVmcall));
    EXPECT_EQ(state_.regs[Gpr::kRcx], 1u);
    EXPECT_EQ(state_.regs[Gpr::kRdx], kKvmMapGpaRangeDecrypted);
    state_.regs[Gpr::kRax] = uint64_t(-22);  // -EINVAL: the guest reports it
    state_.rip += x.insn.length;
  }
  const std::optional<Ucall> u = run(program);
  ASSERT_TRUE(u.has_value());
  ASSERT_EQ(u->cmd, UcallCmd::kAssert);
  EXPECT_EQ(program.failure(u->arg)->what, "KVM_HC_MAP_GPA_RANGE");
  EXPECT_EQ(program.failure(u->arg)->actual, uint64_t(-22));
}

}  // namespace
}  // namespace tdxsim::guest
