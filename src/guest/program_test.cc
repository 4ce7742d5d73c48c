// The coroutine adapter driven by hand, as the CPU would: fetch at RIP, move RIP, fetch again.
#include "guest/program.h"

#include <gtest/gtest.h>

#include <memory>

namespace tdxsim::guest {
namespace {

constexpr Gpa kA{0x1000}, kB{0x2000};

// Executes MOVs and NOPs itself (as the CPU would, retiring them) and returns the first other
// instruction, RIP left on it.
GuestInsn next_effect(Program& p, GuestState& s) {
  for (;;) {
    const GuestInsn i = p.fetch(s);
    if (i.kind != GuestInsnKind::kMov && i.kind != GuestInsnKind::kNop) return i;
    if (i.kind == GuestInsnKind::kMov) s.regs[i.dest] = i.value;
    s.rip += i.length;
    s.retired++;
  }
}

TEST(ProgramTest, RefetchAtTheSameRipReturnsTheSameInstructionWithoutResuming) {
  int resumed = 0;
  Program p(VmFlavour::vmx(), [&](Guest& g) -> GuestTask {
    ++resumed;
    co_await g.write(kA, 1);
    ++resumed;
    co_await g.write(kB, 2);
    ++resumed;
  });
  EXPECT_EQ(resumed, 0) << "the code runs only when the CPU asks for an instruction";
  GuestState s;
  const GuestInsn first = p.fetch(s);
  EXPECT_EQ(first.kind, GuestInsnKind::kStore);
  EXPECT_EQ(first.gpa, kA);
  for (int i = 0; i < 3; ++i) {
    const GuestInsn again = p.fetch(s);
    EXPECT_EQ(again.kind, GuestInsnKind::kStore);
    EXPECT_EQ(again.gpa, kA);
    EXPECT_EQ(again.value, 1u);
  }
  EXPECT_EQ(resumed, 1);
  s.rip += first.length;
  const GuestInsn second = p.fetch(s);
  EXPECT_EQ(second.gpa, kB);
  EXPECT_EQ(resumed, 2);
  EXPECT_EQ(s.rip, 4u);
}

TEST(ProgramTest, RetirementAndHostSkipBothAdvance) {
  Program p(VmFlavour::vmx(), [](Guest& g) -> GuestTask {
    co_await g.pause();
    co_await g.hlt();  // the host emulates it and skips it
    co_await g.write(kA, 3);
  });
  GuestState s;
  EXPECT_EQ(p.fetch(s).kind, GuestInsnKind::kPause);
  s.rip += 4;  // retired in guest mode
  s.retired++;
  const GuestInsn hlt = p.fetch(s);
  EXPECT_EQ(hlt.kind, GuestInsnKind::kHlt);
  EXPECT_EQ(s.rip, 4u);
  s.rip += hlt.length;  // skip_emulated_instruction: RIP moves, nothing retired
  EXPECT_EQ(p.fetch(s).kind, GuestInsnKind::kStore);
  EXPECT_FALSE(p.finished());
  s.rip += 4;
  EXPECT_EQ(p.fetch(s).kind, GuestInsnKind::kHlt);
  EXPECT_TRUE(p.finished());
  s.rip += 4;
  EXPECT_EQ(p.fetch(s).kind, GuestInsnKind::kHlt) << "a finished program halts for good";
}

TEST(ProgramTest, LoadResultsReachTheCoroutine) {
  Program p(VmFlavour::vmx(), [](Guest& g) -> GuestTask {
    const uint64_t v = co_await g.read(kA, Gpr::kRbx);
    co_await g.write(kB, v + 1);
  });
  GuestState s;
  const GuestInsn load = p.fetch(s);
  ASSERT_EQ(load.kind, GuestInsnKind::kLoad);
  EXPECT_EQ(load.dest, Gpr::kRbx);
  s.regs[Gpr::kRbx] = 41;  // what the CPU loaded
  s.rip += 4;
  const GuestInsn store = p.fetch(s);
  EXPECT_EQ(store.kind, GuestInsnKind::kStore);
  EXPECT_EQ(store.value, 42u);
}

TEST(ProgramTest, CallResultsReachTheCoroutine) {
  uint64_t got = 0;
  Program p(VmFlavour::vmx(), [&](Guest& g) -> GuestTask {
    const Operands ops{{Gpr::kRbx, 7}};
    const GuestRegs r = co_await g.vmcall(99, ops);
    got = r[Gpr::kRax];
  });
  GuestState s;
  const GuestInsn call = next_effect(p, s);
  ASSERT_EQ(call.kind, GuestInsnKind::kVmcall);
  EXPECT_EQ(s.regs[Gpr::kRax], 99u);
  EXPECT_EQ(s.regs[Gpr::kRbx], 7u);
  s.regs[Gpr::kRax] = 0x5EED;  // the host's answer
  s.rip += call.length;
  EXPECT_EQ(p.fetch(s).kind, GuestInsnKind::kHlt);
  EXPECT_EQ(got, 0x5EEDu);
}

struct Sentinel {
  bool* destroyed;
  ~Sentinel() { *destroyed = true; }
};

TEST(ProgramTest, CoroutineFramesAreDestroyedWithTheProgram) {
  bool destroyed = false;
  auto p = std::make_unique<Program>(VmFlavour::vmx(), [&](Guest& g) -> GuestTask {
    Sentinel s{&destroyed};
    co_await g.map_gpa(kA, kPageSize, true);  // suspended two tasks deep
  });
  GuestState s;
  EXPECT_EQ(next_effect(*p, s).kind, GuestInsnKind::kVmcall);
  // vmcall is no coroutine of its own: the task it returns is call's.
  EXPECT_EQ(p->guest().frames().live_frames(), 3u) << "the code, map_gpa, call";
  EXPECT_FALSE(destroyed);
  p.reset();  // the pool checks that no frame outlives it
  EXPECT_TRUE(destroyed);
}

TEST(ProgramTest, SteadyStateAllocatesNoFrames) {
  Program p(VmFlavour::vmx(), [](Guest& g) -> GuestTask {
    for (uint64_t i = 0;; ++i) {
      co_await g.map_gpa(kA + (i % 16) * kPageSize, kPageSize, (i & 1) != 0);
      co_await g.fill(kB, 2 * kPageSize, i);
      co_await g.write(kA, i);
    }
  });
  GuestState s;
  auto run = [&](int insns) {
    for (int i = 0; i < insns; ++i) {
      const GuestInsn insn = p.fetch(s);
      if (insn.kind == GuestInsnKind::kMov) s.regs[insn.dest] = insn.value;
      if (insn.kind == GuestInsnKind::kVmcall) s.regs[Gpr::kRax] = 0;
      s.rip += insn.length;
    }
  };
  run(100);
  const uint64_t warm = p.guest().frames().heap_allocations();
  EXPECT_GT(warm, 0u);
  EXPECT_LE(warm, 5u) << "at most one block per frame alive at once: code, map_gpa, vmcall, "
                         "call, fill";
  run(10'000);
  EXPECT_EQ(p.guest().frames().heap_allocations(), warm);
}

// The #VE handler by hand: the CPU's part (delivery, TDCALL results, IRET) played here.
TEST(ProgramTest, VeHandlerTurnsASharedStoreIntoAnMmioTdvmcall) {
  const VmFlavour td = VmFlavour::tdx();
  Program p(td, [](Guest& g) -> GuestTask {
    co_await g.sync(5);
    co_await g.write(kA, 6);
  });
  GuestState s;
  const GuestInsn store = p.fetch(s);
  ASSERT_EQ(store.kind, GuestInsnKind::kStore);
  EXPECT_EQ(store.gpa, td.to_shared(kDefaultUcallGpa));
  // #VE delivery: the interrupted RIP pushed, RIP at the handler.
  s.exception_stack.push_back(s.rip);
  s.rip = p.ve_handler_rip();
  GuestInsn i = next_effect(p, s);
  ASSERT_EQ(i.kind, GuestInsnKind::kTdcall);
  EXPECT_EQ(s.regs[Gpr::kRax], LeafAndVersion::of(TdcallLeaf::kVpVeinfoGet).raw());
  s.regs[Gpr::kRax] = 0;
  s.regs[Gpr::kRcx] = 48;
  s.regs[Gpr::kR9] = store.gpa.raw();
  s.rip += 4;
  i = next_effect(p, s);
  ASSERT_EQ(i.kind, GuestInsnKind::kTdcall);
  EXPECT_EQ(s.regs[Gpr::kRax], 0u);  // TDG.VP.VMCALL
  EXPECT_EQ(s.regs[Gpr::kRcx], kMmioGprMask);
  EXPECT_EQ(s.regs[Gpr::kR11], 48u);
  EXPECT_EQ(s.regs[Gpr::kR12], 8u);
  EXPECT_EQ(s.regs[Gpr::kR13], 1u);
  EXPECT_EQ(decode_ucall(Gpa{s.regs[Gpr::kR14]}, s.regs[Gpr::kR15]), (Ucall{UcallCmd::kSync, 5}));
  s.regs[Gpr::kR10] = 0;
  s.rip += 4;
  i = p.fetch(s);
  ASSERT_EQ(i.kind, GuestInsnKind::kIret);
  EXPECT_EQ(s.exception_stack.back(), 4u) << "the saved RIP moved past the emulated store";
  s.rip = s.exception_stack.back();
  s.exception_stack.pop_back();
  i = p.fetch(s);
  EXPECT_EQ(i.kind, GuestInsnKind::kStore);
  EXPECT_EQ(i.gpa, kA);
  EXPECT_EQ(p.ves_handled(), 1u);
}

}  // namespace
}  // namespace tdxsim::guest
