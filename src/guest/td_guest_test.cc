// Guest programs in a real TD: the TdxModule runs them under TDH.VP.ENTER, and a host loop
// answers the TD exits as KVM would — AUG for an ACCEPT or a fault on a private GPA, the
// TDVMCALLs (MapGPA, #VE.RequestMMIO, HLT) by writing the exposed registers and re-entering.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "guest/program.h"
#include "platform/table_builder.h"
#include "tdx_module/vcpu_harness.h"

namespace tdxsim::guest {
namespace {

using test::kGpa;
using test::kOk;

constexpr uint64_t kTdcallExit = static_cast<uint64_t>(VmxExitReason::kTdcall);
constexpr uint64_t kEptExit = static_cast<uint64_t>(VmxExitReason::kEptViolation);
constexpr uint64_t kIrqExit = static_cast<uint64_t>(VmxExitReason::kExternalInterrupt);
constexpr uint64_t kSharedBit = uint64_t{1} << 47;
// An MMIO GPA (no memslot) other than the ucall's.
constexpr Gpa kMmio{0xFEC0'0000 | kSharedBit};

class TdGuestTest : public test::VcpuHarness {
 protected:
  // A runnable TD with one vCPU running `code`, and a shared EPT with nothing mapped: every
  // shared access is an EPT violation with suppress-#VE clear, i.e. MMIO by #VE.
  void start(uint64_t attributes, Program::Code code) {
    runnable(attributes);
    shared_ept_ = std::make_unique<TableBuilder>(mem(), PagingFormat::kEpt, 4);
    SeamcallRegs r;
    r.rcx = tdvprs_[0].raw();
    r.rdx = vp_field::kSharedEptp;
    r.r8 = shared_ept_->root().raw();
    r.r9 = ~uint64_t{0};
    ASSERT_EQ(call(0, SeamcallLeaf::kVpWr, r), kOk);
    program_ = std::make_unique<Program>(VmFlavour::tdx(47), std::move(code));
    ASSERT_TRUE(module_.attach_guest(tdvprs_[0], program_.get()));
  }

  // Enters until the next ucall or until the guest halts (nullopt), answering everything
  // else. The ucall's TDVMCALL is answered (R10 = success) at the next entry.
  std::optional<Ucall> run() {
    for (int entries = 0; entries < 10'000; ++entries) {
      const uint64_t s = enter(regs_);
      if (s == kIrqExit) continue;
      if (s == kEptExit) {
        // An ACCEPT of, or a fault on, a private page the host has not added: add it.
        EXPECT_FALSE(regs_.r8 & kSharedBit);
        aug(Gpa{regs_.r8}.align_down(Level::k4K));
        ++augs_;
        continue;
      }
      if (s != kTdcallExit) {
        ADD_FAILURE() << "TD exit " << std::hex << s;
        return std::nullopt;
      }
      const auto sub = static_cast<TdVmCall>(regs_.r11);
      if (sub == TdVmCall::kHlt) return std::nullopt;
      if (sub == TdVmCall::kMapGpa) {
        map_gpa_calls_.push_back(regs_);
        regs_.r10 = static_cast<uint64_t>(TdVmCallStatus::kSuccess);
        if (on_map_gpa_) on_map_gpa_(regs_);
        continue;
      }
      EXPECT_EQ(sub, TdVmCall::kEptViolation);
      mmio_calls_.push_back(regs_);
      regs_.r10 = 0;
      const bool write = regs_.r13 == 1;
      if (write) {
        if (std::optional<Ucall> u = decode_ucall(Gpa{regs_.r14}, regs_.r15)) return u;
      } else {
        regs_.r11 = mmio_value_;
      }
    }
    ADD_FAILURE() << "the guest neither made a ucall nor halted";
    return std::nullopt;
  }

  std::unique_ptr<TableBuilder> shared_ept_;
  std::unique_ptr<Program> program_;
  SeamcallRegs regs_;  // the last exit's registers; the answer to a TDVMCALL goes back in them
  unsigned augs_ = 0;
  std::vector<SeamcallRegs> map_gpa_calls_, mmio_calls_;
  std::function<void(SeamcallRegs&)> on_map_gpa_;
  uint64_t mmio_value_ = 0;
};

GuestTask accept_fill_verify(Guest& g) {
  const uint64_t bytes = 4 * kPageSize;
  for (Gpa gpa = kGpa; gpa < kGpa + bytes; gpa += kPageSize) co_await g.accept(gpa, Level::k4K);
  // The host filled the pages with junk before AUG: ACCEPT must have zeroed them.
  const uint64_t v = co_await g.read(kGpa + kPageSize);
  if (v != 0) co_await g.fail("accepted page not zero", kGpa + kPageSize, 0, v);
  co_await g.fill(kGpa, bytes, 1);
  co_await g.verify(kGpa, bytes, 1);
  co_await g.accept(kGpa, Level::k4K);  // TDX_PAGE_ALREADY_ACCEPTED: fine
  co_await g.done();
}

TEST_F(TdGuestTest, AcceptsPagesExplicitly) {
  start(kTdAttrSeptVeDisable, accept_fill_verify);
  EXPECT_EQ(run(), (Ucall{UcallCmd::kDone, 0}));
  EXPECT_TRUE(program_->guest().failures().empty());
  EXPECT_EQ(augs_, 4u) << "one ACCEPT exit per page";
  for (uint64_t i = 0; i < 4; ++i) EXPECT_EQ(state(kGpa + i * kPageSize), SeptState::kMapped);
  EXPECT_EQ(run(), std::nullopt);
  EXPECT_TRUE(program_->finished());
}

TEST_F(TdGuestTest, A2MAcceptOverSmallPagesFallsBackTo4K) {
  start(kTdAttrSeptVeDisable, [](Guest& g) -> GuestTask {
    co_await g.accept(kGpa, Level::k2M);
    co_await g.fill(kGpa, level_bytes(Level::k2M), 3);
    co_await g.verify(kGpa, level_bytes(Level::k2M), 3);
    co_await g.done();
  });
  EXPECT_EQ(run(), (Ucall{UcallCmd::kDone, 0}));
  EXPECT_TRUE(program_->guest().failures().empty());
  EXPECT_EQ(augs_, 512u);
  EXPECT_EQ(state(kGpa + 511 * kPageSize), SeptState::kMapped);
}

TEST_F(TdGuestTest, TouchingAPendingPageAcceptsItLazilyFromTheVeHandler) {
  const Gpa added = kGpa + kPageSize, faulted = kGpa + 2 * kPageSize;
  start(/*attributes=*/0, [=](Guest& g) -> GuestTask {
    for (const Gpa gpa : {added, faulted}) {
      const uint64_t v = co_await g.read(gpa);  // #VE, ACCEPT, IRET, the load again
      if (v != 0) co_await g.fail("lazily accepted page not zero", gpa, 0, v);
      co_await g.write(gpa, 0x600D);
      const uint64_t back = co_await g.read(gpa);
      if (back != 0x600D) co_await g.fail("read back", gpa, 0x600D, back);
    }
    co_await g.done();
  });
  aug(added);  // PENDING before the guest runs: the first touch is a #VE
  EXPECT_EQ(state(added), SeptState::kPending);
  EXPECT_EQ(run(), (Ucall{UcallCmd::kDone, 0}));
  EXPECT_TRUE(program_->guest().failures().empty())
      << to_string(program_->guest().failures().front());
  EXPECT_EQ(augs_, 1u) << "only the page the host had not added exits";
  EXPECT_EQ(state(added), SeptState::kMapped);
  EXPECT_EQ(state(faulted), SeptState::kMapped);
  EXPECT_EQ(program_->ves_handled(), 2u) << "the two pages (the DONE ucall's #VE is in flight)";
}

TEST_F(TdGuestTest, MapGpaReachesTheHostAndResumesFromTheRetryGpa) {
  start(kTdAttrSeptVeDisable, [](Guest& g) -> GuestTask {
    co_await g.map_gpa(kGpa, 3 * kPageSize, /*to_shared=*/true);
    co_await g.map_gpa(kGpa, kPageSize, /*to_shared=*/false);
    co_await g.done();
  });
  on_map_gpa_ = [this](SeamcallRegs& r) {
    if (map_gpa_calls_.size() != 1) return;
    r.r10 = static_cast<uint64_t>(TdVmCallStatus::kRetry);
    r.r11 = r.r12 + kPageSize;  // converted one page, the guest goes on from the next
  };
  EXPECT_EQ(run(), (Ucall{UcallCmd::kDone, 0}));
  EXPECT_TRUE(program_->guest().failures().empty());
  ASSERT_EQ(map_gpa_calls_.size(), 3u);
  for (const SeamcallRegs& r : map_gpa_calls_) {
    EXPECT_EQ(r.rcx, kMapGpaGprMask);
    EXPECT_EQ(r.r10, 0u);
    EXPECT_EQ(r.r11, static_cast<uint64_t>(TdVmCall::kMapGpa));
  }
  EXPECT_EQ(map_gpa_calls_[0].r12, kGpa.raw() | kSharedBit);
  EXPECT_EQ(map_gpa_calls_[0].r13, 3 * kPageSize);
  EXPECT_EQ(map_gpa_calls_[1].r12, (kGpa + kPageSize).raw() | kSharedBit);
  EXPECT_EQ(map_gpa_calls_[1].r13, 2 * kPageSize);
  EXPECT_EQ(map_gpa_calls_[2].r12, kGpa.raw());
  EXPECT_EQ(map_gpa_calls_[2].r13, kPageSize);
}

TEST_F(TdGuestTest, MapGpaRetryOutsideTheRangeFailsTheGuest) {
  start(kTdAttrSeptVeDisable, [](Guest& g) -> GuestTask {
    co_await g.map_gpa(kGpa, 2 * kPageSize, /*to_shared=*/true);
    co_await g.done();
  });
  on_map_gpa_ = [](SeamcallRegs& r) {
    r.r10 = static_cast<uint64_t>(TdVmCallStatus::kRetry);
    r.r11 = r.r12;  // no progress
  };
  const std::optional<Ucall> u = run();
  ASSERT_TRUE(u.has_value());
  ASSERT_EQ(u->cmd, UcallCmd::kAssert);
  EXPECT_EQ(program_->failure(u->arg)->what, "MapGPA retry GPA");
}

TEST_F(TdGuestTest, UcallsAndMmioGoThroughTheVeHandler) {
  start(kTdAttrSeptVeDisable, [](Guest& g) -> GuestTask {
    co_await g.sync(3);
    const uint64_t v = co_await g.read(kMmio, Gpr::kRbx);
    co_await g.sync(v);
    co_await g.done();
  });
  mmio_value_ = 0xABCD;
  EXPECT_EQ(run(), (Ucall{UcallCmd::kSync, 3}));
  ASSERT_EQ(mmio_calls_.size(), 1u);
  const SeamcallRegs& w = mmio_calls_[0];
  EXPECT_EQ(w.rcx, kMmioGprMask);
  EXPECT_EQ(w.r10, 0u);
  EXPECT_EQ(w.r12, 8u);
  EXPECT_EQ(w.r13, 1u);
  EXPECT_EQ(w.r14, kDefaultUcallGpa.raw() | kSharedBit);
  EXPECT_EQ(w.r15, encode_ucall(UcallCmd::kSync, 3));
  EXPECT_EQ(run(), (Ucall{UcallCmd::kSync, 0xABCD})) << "the MMIO read's value reached RBX";
  ASSERT_EQ(mmio_calls_.size(), 3u);
  const SeamcallRegs& r = mmio_calls_[1];
  EXPECT_EQ(r.r13, 0u);
  EXPECT_EQ(r.r14, kMmio.raw());
  EXPECT_EQ(run(), (Ucall{UcallCmd::kDone, 0}));
  EXPECT_EQ(program_->ves_handled(), 3u);
}

TEST_F(TdGuestTest, AFailedVerifyIsAnAssertThroughTheVeHandler) {
  start(kTdAttrSeptVeDisable, [](Guest& g) -> GuestTask {
    co_await g.accept(kGpa, Level::k4K);
    co_await g.verify(kGpa, kPageSize, 9);  // the page is zeros
    co_await g.done();
  });
  const std::optional<Ucall> u = run();
  ASSERT_TRUE(u.has_value());
  ASSERT_EQ(u->cmd, UcallCmd::kAssert);
  const GuestFailure* f = program_->failure(u->arg);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->what, "verify");
  EXPECT_EQ(f->gpa, kGpa);
  EXPECT_EQ(f->expected, pattern(kGpa, 9));
  EXPECT_EQ(f->actual, 0u);
  EXPECT_EQ(run(), std::nullopt) << "the guest halts after an ASSERT";
}

TEST_F(TdGuestTest, AVeTheHandlerCannotServeIsAnAssertMadeFromTheHandler) {
  start(kTdAttrSeptVeDisable, [](Guest& g) -> GuestTask {
    co_await g.fetch(kMmio);  // an instruction fetch from MMIO: nothing to emulate
    co_await g.done();
  });
  const std::optional<Ucall> u = run();
  ASSERT_TRUE(u.has_value());
  ASSERT_EQ(u->cmd, UcallCmd::kAssert);
  EXPECT_EQ(program_->failure(u->arg)->gpa, kMmio);
  EXPECT_EQ(guest().rip & Program::kVeHandlerRip, Program::kVeHandlerRip)
      << "the ASSERT was made by the handler itself";
  EXPECT_EQ(run(), std::nullopt);
  EXPECT_EQ(run(), std::nullopt);
}

}  // namespace
}  // namespace tdxsim::guest
