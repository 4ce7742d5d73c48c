// The module's BUSY answers, provoked deterministically, and the removal protocol with a vCPU
// inside the TD. A test attaches to TdxModule::locks_held and, at the moment a leaf holds its
// locks, issues the conflicting SEAMCALL from another logical CPU (another thread), which
// must answer TDX_OPERAND_BUSY with the operand of the lock it met — never wait. Threads
// meet here, so these run under TSan and ASan too.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "tdx_module/vcpu_harness.h"

namespace tdxsim {
namespace {

using SG = ScriptedGuest;
using test::accept;
using test::kGpa;
using test::kJunk;
using test::kOk;
using test::pi;
using test::SpinGuest;
using test::tdcall;
using test::operator+;
using BusyPaths = test::VcpuHarness;

// Another CPU's SEAMCALL, issued and finished while the caller waits (the caller holds
// module locks: it must not be the one that would block).
uint64_t from_other_cpu(const std::function<uint64_t()>& seamcall) {
  uint64_t status = 0;
  std::thread other([&] { status = seamcall(); });
  other.join();
  return status;
}

TEST_F(BusyPaths, ATreeLockHeldExclusivelyMakesTheOtherSeptLeavesBusy) {
  runnable();
  aug(kGpa);
  std::vector<uint64_t> answers;
  auto sub = module_.locks_held.attach([&](const LocksHeld& e) {
    if (e.leaf != SeamcallLeaf::kMemRangeBlock) return;
    answers.push_back(from_other_cpu([&] {
      return call(SeamcallLeaf::kMemPageAug, pi(kGpa + kPageSize, 0), tdr_.raw(), page().raw(),
                  nullptr, /*cpu=*/1);
    }));
    answers.push_back(from_other_cpu([&] {
      return call(SeamcallLeaf::kMemSeptRd, pi(kGpa, 0), tdr_.raw(), 0, nullptr, /*cpu=*/2);
    }));
  });
  EXPECT_EQ(call(SeamcallLeaf::kMemRangeBlock, pi(kGpa, 0), tdr_.raw()), kOk);
  sub.reset();
  const uint64_t tree_busy = with_operand(TdxStatus::kOperandBusy, TdxOperand::kSeptTree);
  EXPECT_EQ(answers, (std::vector<uint64_t>{tree_busy, tree_busy}));
}

TEST_F(BusyPaths, ATdrHeldExclusivelyMakesTheTdsOtherLeavesBusy) {
  build();
  // PAGE.ADD (before FINALIZE) holds the TDR exclusively: the module serialises the
  // measurement that way, and every other leaf of the TD finds the TDR busy.
  const Hpa src = page();
  uint64_t answer = 0;
  auto sub = module_.locks_held.attach([&](const LocksHeld& e) {
    if (e.leaf != SeamcallLeaf::kMemPageAdd) return;
    answer = from_other_cpu([&] {
      return call(SeamcallLeaf::kMemPageAug, pi(kGpa + kPageSize, 0), tdr_.raw(), page().raw(),
                  nullptr, /*cpu=*/1);
    });
  });
  SeamcallRegs r;
  r.rcx = pi(kGpa, 0);
  r.rdx = tdr_.raw();
  r.r8 = page().raw();
  r.r9 = src.raw();
  EXPECT_EQ(call(0, SeamcallLeaf::kMemPageAdd, r), kOk);
  sub.reset();
  EXPECT_EQ(answer, with_operand(TdxStatus::kOperandBusy, TdxOperand::kRdx));
}

TEST_F(BusyPaths, ATrackHoldingTheEpochLockMakesEntryBusy) {
  runnable();
  SeamcallRegs before;
  before.r10 = kJunk;
  uint64_t entry = 0;
  auto sub = module_.locks_held.attach([&](const LocksHeld& e) {
    if (e.leaf != SeamcallLeaf::kMemTrack) return;
    entry = from_other_cpu([&] { return enter(before); });
  });
  EXPECT_EQ(call(SeamcallLeaf::kMemTrack, tdr_.raw(), 0, 0, nullptr, /*cpu=*/1), kOk);
  sub.reset();
  EXPECT_EQ(entry, with_operand(TdxStatus::kOperandBusy, TdxOperand::kTdEpoch));
  EXPECT_EQ(before.r10, kJunk) << "a refused entry leaves the registers alone";
  EXPECT_EQ(*module_.td_refcount(tdr_, 0) + *module_.td_refcount(tdr_, 1), 0u);
}

// The acceptance sequence of abi §5: BLOCK, REMOVE too early, TRACK, REMOVE still too early
// while a vCPU of the old epoch is inside, a second TRACK refused, the kick, REMOVE.
TEST_F(BusyPaths, RemovalProtocolWithAVcpuInside) {
  runnable();
  aug(kGpa);
  run(accept(kGpa));
  SeamcallRegs r;
  expect_hlt_exit(enter(r), r);

  SpinGuest spin;
  ASSERT_TRUE(module_.attach_guest(tdvprs_[0], &spin, /*instruction_budget=*/0));
  std::atomic<uint64_t> exit_status{~uint64_t{0}};
  std::thread vcpu([&] { exit_status = enter(); });
  while (module_.td_refcount(tdr_, 1).value_or(0) == 0) std::this_thread::yield();

  CpuBinding host = platform_.bind(1);
  test::BoundHost h(host.cpu());
  const uint64_t tdr = tdr_.raw();
  EXPECT_EQ(h.call(SeamcallLeaf::kMemRangeBlock, pi(kGpa, 0), tdr), kOk);
  EXPECT_EQ(h.call(SeamcallLeaf::kMemPageRemove, pi(kGpa, 0), tdr),
            with_operand(TdxStatus::kTlbTrackingNotDone, TdxOperand::kRcx));
  EXPECT_EQ(h.call(SeamcallLeaf::kMemTrack, tdr), kOk);
  EXPECT_EQ(h.call(SeamcallLeaf::kMemPageRemove, pi(kGpa, 0), tdr),
            with_operand(TdxStatus::kTlbTrackingNotDone, TdxOperand::kRcx));
  EXPECT_EQ(h.call(SeamcallLeaf::kMemTrack, tdr), raw(TdxStatus::kPreviousTlbEpochBusy));
  // The kick: an IPI makes the vCPU exit; KVM's kick waits for its handler.
  platform_.cpu(0).run_on([](LogicalCpu&) {}, &host.cpu());
  vcpu.join();
  EXPECT_EQ(exit_status.load(), static_cast<uint64_t>(VmxExitReason::kExternalInterrupt));
  EXPECT_EQ(h.call(SeamcallLeaf::kMemPageRemove, pi(kGpa, 0), tdr), kOk);
  EXPECT_EQ(h.call(SeamcallLeaf::kMemTrack, tdr), kOk) << "nobody inside";
  EXPECT_EQ(*module_.td_refcount(tdr_, 0), 0u);
  EXPECT_EQ(*module_.td_refcount(tdr_, 1), 0u);
}

TEST_F(BusyPaths, ZeroStepFilterHoldsTheGuestUntilTheHostMapsTheGpa) {
  runnable(/*attributes=*/0);
  const std::vector<GuestInsn> handler = tdcall(TdcallLeaf::kVpVeinfoGet) + accept(kGpa) +
                                         std::vector<GuestInsn>{SG::op(GuestInsnKind::kIret)};
  run({SG::load(kGpa)}, handler);
  // A host that never maps the GPA: six same-RIP EPT exits arm the filter.
  for (unsigned i = 0; i < ZeroStepDetector::kThreshold; ++i) {
    SeamcallRegs r;
    ASSERT_EQ(enter(r), static_cast<uint64_t>(VmxExitReason::kEptViolation)) << i;
    EXPECT_EQ(r.r8, kGpa.raw());
  }
  // While the entering vCPU holds the tree lock, S-EPT leaves get BUSY|SEPT_TREE.
  std::atomic<uint64_t> concurrent{0};
  auto sub = module_.locks_held.attach([&](const LocksHeld& e) {
    if (e.leaf != SeamcallLeaf::kVpEnter) return;
    std::thread other([&] {
      concurrent = call(SeamcallLeaf::kMemPageAug, pi(kGpa + kPageSize, 0), tdr_.raw(),
                        page().raw(), nullptr, /*cpu=*/1);
    });
    other.join();
  });
  const uint64_t retired = guest().retired;
  SeamcallRegs r;
  EXPECT_EQ(enter(r), static_cast<uint64_t>(VmxExitReason::kEptViolation));
  EXPECT_EQ(r.rcx, kEptQualDataWrite) << "the faked exit";
  EXPECT_EQ(r.r8, kGpa.raw());
  EXPECT_EQ(guest().retired, retired) << "the guest did not run";
  EXPECT_EQ(concurrent.load(), with_operand(TdxStatus::kOperandBusy, TdxOperand::kSeptTree));
  sub.reset();
  // The host AUGs: the guest runs, takes the #VE, accepts, and its load completes.
  aug(kGpa);
  expect_hlt_exit(enter(r), r);
  EXPECT_EQ(state(kGpa), SeptState::kMapped);
}

TEST_F(BusyPaths, ZeroStepTreeLockHeldByALeafMakesEntryBusy) {
  runnable(/*attributes=*/0);
  aug(kGpa);
  run({SG::load(kGpa)}, tdcall(TdcallLeaf::kVpVeinfoGet) + accept(kGpa) +
                            std::vector<GuestInsn>{SG::op(GuestInsnKind::kIret)});
  faults_.arm(EnvFaultKind::kArmZeroStep, /*vcpu index=*/0, 1, kGpa.raw());
  std::atomic<uint64_t> entry{0};
  SeamcallRegs before;
  before.r9 = kJunk;
  auto sub = module_.locks_held.attach([&](const LocksHeld& e) {
    if (e.leaf != SeamcallLeaf::kMemRangeBlock) return;
    std::thread vcpu([&] { entry = enter(before); });
    vcpu.join();
  });
  SeamcallRegs r;
  EXPECT_EQ(call(SeamcallLeaf::kMemRangeBlock, pi(kGpa + kPageSize, 0), tdr_.raw(), 0, &r, 1),
            with_details(TdxStatus::kEptEntryStateIncorrect, 0) | 1);
  sub.reset();
  EXPECT_EQ(entry.load(), with_operand(TdxStatus::kOperandBusy, TdxOperand::kSeptTree));
  EXPECT_EQ(before.r9, kJunk);
  EXPECT_EQ(*module_.td_refcount(tdr_, 1), 0u) << "the entry's count was reverted";
  SeamcallRegs out;
  expect_hlt_exit(enter(out), out);
}

}  // namespace
}  // namespace tdxsim
