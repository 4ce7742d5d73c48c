// Running vCPUs under concurrent SEAMCALLs (run under TSan and ASan too):
//   - vCPU threads accept their own pages, serving their ACCEPT exits with AUG as KVM's
//     fault path does, while a host thread AUGs other GPAs of the same S-EPT page;
//   - the removal protocol (BLOCK → TRACK → kick every vCPU → REMOVE) against vCPUs that
//     keep re-entering: after the kick, REMOVE always succeeds and no TRACK ever finds the
//     previous epoch busy;
//   - a guest's ACCEPT racing a host's BLOCK of the same entry: one of the two orders,
//     never a torn entry.
// Every answer is checked against the set the module may give; BUSY is retried as KVM does.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "tdx_module/vcpu_harness.h"

namespace tdxsim {
namespace {

using SG = ScriptedGuest;
using test::accept;
using test::kGpa;
using test::kOk;
using test::pi;
using test::operator+;

constexpr unsigned kVcpus = 2;
constexpr unsigned kPagesPerVcpu = 64;

class VpEnterStress : public test::VcpuHarness {
 protected:
  // AUG retried over the entry / tree BUSY answers; anything else is returned.
  uint64_t aug_retry(test::BoundHost& h, Gpa gpa, std::atomic<uint64_t>& busy) {
    return h.retry(SeamcallLeaf::kMemPageAug, pi(gpa, 0), tdr_.raw(), page().raw(),
                   {TdxOperand::kRcx, TdxOperand::kSeptTree}, &busy);
  }
  uint64_t enter_on(LogicalCpu& cpu, unsigned v, SeamcallRegs& regs) {
    regs = SeamcallRegs{};
    regs.rax = LeafAndVersion::of(SeamcallLeaf::kVpEnter).raw();
    regs.rcx = tdvprs_[v].raw();
    const uint64_t s = host_seamcall(cpu, regs);
    cpu.handle_interrupts();
    return s;
  }
  std::mutex page_mu_;
  Hpa page() {
    std::lock_guard<std::mutex> lock(page_mu_);
    return ModuleHarness::page();
  }
};

TEST_F(VpEnterStress, VcpusAcceptTheirPagesWhileTheHostAugsNeighbours) {
  runnable(kTdAttrSeptVeDisable, kVcpus);
  // vCPU v accepts GPAs kGpa + (v * kPagesPerVcpu + i) pages and leaves a marker in each;
  // the host AUGs the pages after them in the same 2M meanwhile.
  std::vector<std::unique_ptr<SG>> programs;
  for (unsigned v = 0; v < kVcpus; ++v) {
    std::vector<GuestInsn> code;
    for (unsigned i = 0; i < kPagesPerVcpu; ++i) {
      const Gpa gpa = kGpa + (v * kPagesPerVcpu + i) * kPageSize;
      code = code + accept(gpa) +
             std::vector<GuestInsn>{SG::store(gpa, 0x1000 + v), SG::load(gpa, Gpr::kRbx)};
    }
    programs.push_back(std::make_unique<SG>(code));
    ASSERT_TRUE(module_.attach_guest(tdvprs_[v], programs.back().get(), 0));
  }
  std::atomic<uint64_t> busy{0};
  std::vector<std::thread> threads;
  for (unsigned v = 0; v < kVcpus; ++v) {
    threads.emplace_back([&, v] {
      CpuBinding b = platform_.bind(v);
      test::BoundHost h(b.cpu());
      for (;;) {
        SeamcallRegs r;
        const uint64_t s = enter_on(b.cpu(), v, r);
        if (s == static_cast<uint64_t>(VmxExitReason::kTdcall)) break;  // HLT: done
        ASSERT_EQ(s, 0x30u) << describe_status(s);
        ASSERT_EQ(r.rdx & 0xF, static_cast<uint64_t>(ExtExitQualType::kAccept));
        ASSERT_EQ(aug_retry(h, Gpa{r.r8}, busy), kOk);
      }
    });
  }
  threads.emplace_back([&] {
    CpuBinding b = platform_.bind(kVcpus);
    test::BoundHost h(b.cpu());
    for (unsigned i = kVcpus * kPagesPerVcpu; i < 512; ++i) {
      ASSERT_EQ(aug_retry(h, kGpa + i * kPageSize, busy), kOk);
    }
  });
  for (std::thread& t : threads) t.join();
  for (unsigned i = 0; i < 512; ++i) {
    const SeptState want = i < kVcpus * kPagesPerVcpu ? SeptState::kMapped : SeptState::kPending;
    ASSERT_EQ(state(kGpa + i * kPageSize), want) << i;
  }
  for (unsigned v = 0; v < kVcpus; ++v) EXPECT_EQ(guest(v).regs[Gpr::kRbx], 0x1000u + v);
  std::printf("AUG busy answers retried: %llu\n", static_cast<unsigned long long>(busy.load()));
}

TEST_F(VpEnterStress, RemovalAfterTrackAndKickAlwaysSucceedsWhileVcpusReenter) {
  runnable(kTdAttrSeptVeDisable, kVcpus);
  constexpr unsigned kPages = 48;
  // The guests accept every page once, then spin: short entries, many re-entries.
  std::vector<GuestInsn> code;
  for (unsigned i = 0; i < kPages; ++i) code = code + accept(kGpa + i * kPageSize);
  test::SpinGuest spin;
  SG acceptor(code);
  for (unsigned i = 0; i < kPages; ++i) aug(kGpa + i * kPageSize);
  {
    ASSERT_TRUE(module_.attach_guest(tdvprs_[0], &acceptor));
    SeamcallRegs r;
    test::VcpuHarness::expect_hlt_exit(enter(r), r);
  }
  for (unsigned v = 0; v < kVcpus; ++v) ASSERT_TRUE(module_.attach_guest(tdvprs_[v], &spin, 50));

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> entries{0}, epoch_busy{0};
  std::vector<std::thread> vcpus;
  for (unsigned v = 0; v < kVcpus; ++v) {
    vcpus.emplace_back([&, v] {
      CpuBinding b = platform_.bind(v);
      while (!stop.load(std::memory_order_acquire)) {
        SeamcallRegs r;
        const uint64_t s = enter_on(b.cpu(), v, r);
        if (s == with_operand(TdxStatus::kOperandBusy, TdxOperand::kTdEpoch)) {
          epoch_busy.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        ASSERT_EQ(s, static_cast<uint64_t>(VmxExitReason::kExternalInterrupt))
            << describe_status(s);
        entries.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  {
    CpuBinding b = platform_.bind(kVcpus);
    test::BoundHost h(b.cpu());
    std::atomic<uint64_t> busy{0};
    const uint64_t tdr = tdr_.raw();
    for (unsigned i = 0; i < kPages; ++i) {
      const Gpa gpa = kGpa + i * kPageSize;
      // A vCPU inside, entered in the epoch the TRACK will close: the kick is needed.
      while (*module_.td_refcount(tdr_, 0) + *module_.td_refcount(tdr_, 1) == 0) {
        std::this_thread::yield();
      }
      ASSERT_EQ(h.retry(SeamcallLeaf::kMemRangeBlock, pi(gpa, 0), tdr, 0,
                        {TdxOperand::kRcx, TdxOperand::kSeptTree}, &busy),
                kOk);
      ASSERT_EQ(h.retry(SeamcallLeaf::kMemTrack, tdr, 0, 0, {TdxOperand::kTdEpoch}, &busy), kOk);
      for (unsigned v = 0; v < kVcpus; ++v) platform_.cpu(v).run_on([](LogicalCpu&) {}, &b.cpu());
      ASSERT_EQ(h.retry(SeamcallLeaf::kMemPageRemove, pi(gpa, 0), tdr, 0,
                        {TdxOperand::kRcx, TdxOperand::kSeptTree}, &busy),
                kOk)
          << "page " << i;
    }
    stop.store(true, std::memory_order_release);
  }
  for (std::thread& t : vcpus) t.join();
  EXPECT_EQ(*module_.td_refcount(tdr_, 0), 0u);
  EXPECT_EQ(*module_.td_refcount(tdr_, 1), 0u);
  std::printf("entries: %llu, entries refused BUSY|TD_EPOCH: %llu\n",
              static_cast<unsigned long long>(entries.load()),
              static_cast<unsigned long long>(epoch_busy.load()));
}

TEST_F(VpEnterStress, GuestAcceptRacesHostBlockOnOneEntry) {
  runnable(kTdAttrSeptVeDisable, 1);
  constexpr unsigned kRounds = 64;
  unsigned accepted_first = 0, blocked_first = 0, accept_busy = 0;
  std::atomic<uint64_t> busy{0};
  const uint64_t tdr = tdr_.raw();
  for (unsigned round = 0; round < kRounds; ++round) {
    const Gpa gpa = kGpa + round * kPageSize;
    aug(gpa);
    SG program(std::vector<GuestInsn>(guest().rip / 4, SG::op(GuestInsnKind::kNop)) + accept(gpa));
    ASSERT_TRUE(module_.attach_guest(tdvprs_[0], &program, 0));
    uint64_t exit_status = 0;
    uint64_t exit_rdx = 0;
    std::atomic<bool> done{false};
    std::thread vcpu([&] {
      SeamcallRegs r;
      exit_status = enter(r);
      exit_rdx = r.rdx;
      done.store(true, std::memory_order_release);
    });
    // Even rounds aim the BLOCK at the guest's run; odd ones send it while the vCPU thread
    // is still starting: both orders happen, and the race between them.
    while (round % 2 == 0 && !platform_.cpu(0).in_guest_mode() &&
           !done.load(std::memory_order_acquire)) {
      std::this_thread::yield();
    }
    {
      CpuBinding host = platform_.bind(1);
      test::BoundHost h(host.cpu());
      EXPECT_EQ(h.retry(SeamcallLeaf::kMemRangeBlock, pi(gpa, 0), tdr, 0,
                        {TdxOperand::kRcx, TdxOperand::kSeptTree}, &busy),
                kOk);
    }
    vcpu.join();
    const SeptState s = state(gpa);
    if (exit_status == static_cast<uint64_t>(VmxExitReason::kTdcall)) {
      // The guest's ACCEPT won: it may have seen BUSY first and retried nothing (the
      // program does not loop), so the answer is in RAX.
      const uint64_t accept_status = guest().regs[Gpr::kRax];
      if (accept_status == kOk) {
        EXPECT_EQ(s, SeptState::kBlocked);
        ++accepted_first;
      } else {
        EXPECT_TRUE(accept_status == with_operand(TdxStatus::kOperandBusy, TdxOperand::kRcx) ||
                    accept_status ==
                        with_operand(TdxStatus::kOperandBusyHostPriority, TdxOperand::kRcx))
            << describe_status(accept_status);
        EXPECT_EQ(s, SeptState::kPendingBlocked);
        ++accept_busy;
      }
    } else {
      // BLOCK won: the ACCEPT found PENDING_BLOCKED and became a TD exit for the host.
      ASSERT_EQ(exit_status, 0x30u) << describe_status(exit_status);
      EXPECT_EQ(exit_rdx & 0xF, static_cast<uint64_t>(ExtExitQualType::kAccept));
      EXPECT_EQ((exit_rdx >> (32 + 6)) & 0xFF, static_cast<uint64_t>(SeptState::kPendingBlocked));
      EXPECT_EQ(s, SeptState::kPendingBlocked);
      ++blocked_first;
      // Leave the vCPU past its TDCALL for the next round's program.
      SG skip(std::vector<GuestInsn>(guest().rip / 4 + 1, SG::op(GuestInsnKind::kNop)));
      ASSERT_TRUE(module_.attach_guest(tdvprs_[0], &skip));
      SeamcallRegs r;
      ASSERT_EQ(enter(r), static_cast<uint64_t>(VmxExitReason::kTdcall));
    }
  }
  std::printf("accept first: %u, block first: %u, accept answered busy: %u\n", accepted_first,
              blocked_first, accept_busy);
  EXPECT_EQ(accepted_first + blocked_first + accept_busy, kRounds);
}

}  // namespace
}  // namespace tdxsim
