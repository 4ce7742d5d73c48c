// Guest mode, translation through the TLB, staleness, #VE, exits, IPIs, NMIs and SEAMCALL
// on the simulated logical CPUs.
#include "platform/logical_cpu.h"

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "base/fault_injection.h"
#include "platform/ept_entry.h"
#include "platform/platform.h"
#include "platform/scripted_guest.h"
#include "platform/table_builder.h"

namespace tdxsim {
namespace {

constexpr Perms kRwx{true, true, true, true};
constexpr Perms kRo{true, false, false, false};
using SG = ScriptedGuest;

class CpuTest : public ::testing::Test {
 protected:
  explicit CpuTest(CpuVendor vendor = CpuVendor::kIntel,
                   std::optional<HyperVConfig> hv = std::nullopt)
      : platform_(make_config(vendor, hv), faults_) {}

  static PlatformConfig make_config(CpuVendor vendor, std::optional<HyperVConfig> hv) {
    PlatformConfig c;
    c.vendor = vendor;
    c.cpus_per_package = 2;
    c.memory.bytes = 64 << 20;
    c.hyperv = hv;
    return c;
  }

  Pfn frame(uint64_t fill) {
    Pfn pfn = *platform_.memory().alloc_frame();
    platform_.memory().fill(pfn, kHostKey, fill);
    return pfn;
  }

  GuestContext vmx_context(const TableBuilder& ept) {
    GuestContext ctx;
    ctx.mode = GuestMode::kVmx;
    ctx.eptp = Eptp::make(ept.root(), ept.levels(), true);
    return ctx;
  }

  FaultInjection faults_;
  Platform platform_;
};

TEST_F(CpuTest, GuestAccessFillsTheTlbAndHitsIt) {
  TableBuilder ept(platform_.memory(), PagingFormat::kEpt, 4);
  const Pfn page = frame(0);
  ept.map(Gpa{0x1000}, page.hpa(), Level::k4K, kRwx);
  GuestContext ctx = vmx_context(ept);
  SG guest({SG::store(Gpa{0x1008}, 0xabcd), SG::load(Gpa{0x1008}, Gpr::kRbx)});
  GuestState state;
  auto binding = platform_.bind(0);
  const VmExit exit = binding.cpu().run_guest(ctx, state, guest);
  EXPECT_TRUE(exit.is(VmxExitReason::kHlt));
  EXPECT_EQ(exit.rip, 8u);
  EXPECT_EQ(state.regs[Gpr::kRbx], 0xabcdu);
  EXPECT_EQ(platform_.memory().read(page.hpa() + 8, kHostKey).value, 0xabcdu);
  EXPECT_EQ(binding.cpu().tlb().stats().misses.value(), 1u);
  EXPECT_EQ(binding.cpu().tlb().stats().hits.value(), 1u);
  // The walk set A in every level and D in the leaf (EPTP A/D enabled).
  const EptEntry leaf{ept.read_entry(Gpa{0x1000}, Level::k4K)};
  EXPECT_TRUE(leaf.is_accessed());
  EXPECT_TRUE(leaf.is_dirty());
}

// Page-modification logging: a write that sets D in an EPT leaf logs its 4K GPA at the PML
// index, which moves down; a write through a translation the TLB holds dirty logs nothing;
// once D is cleared in memory and the TLB flushed, the next write logs again.
TEST_F(CpuTest, PmlLogsEachDirtyFlagTheWalkSets) {
  TableBuilder ept(platform_.memory(), PagingFormat::kEpt, 4);
  const Pfn a = frame(0), b = frame(0);
  ept.map(Gpa{0x1000}, a.hpa(), Level::k4K, kRwx);
  ept.map(Gpa{0x2000}, b.hpa(), Level::k4K, kRwx);
  GuestContext ctx = vmx_context(ept);
  PmlLog log;
  ctx.enable_pml = true;
  ctx.pml_address = &log;
  auto binding = platform_.bind(0);
  LogicalCpu& cpu = binding.cpu();
  auto run = [&](std::vector<GuestInsn> insns) {
    SG guest(std::move(insns));
    GuestState state;
    return cpu.run_guest(ctx, state, guest);
  };
  // A read sets A only: nothing logged, and the TLB caches the page clean.
  EXPECT_TRUE(run({SG::load(Gpa{0x1010})}).is(VmxExitReason::kHlt));
  EXPECT_EQ(ctx.pml_index, kPmlEntries - 1);
  EXPECT_FALSE(EptEntry{ept.read_entry(Gpa{0x1000}, Level::k4K)}.is_dirty());
  // The first write walks again (the cached translation is clean), sets D and logs.
  EXPECT_TRUE(run({SG::store(Gpa{0x1018}, 1), SG::store(Gpa{0x1020}, 2), SG::store(Gpa{0x2008}, 3)})
                  .is(VmxExitReason::kHlt));
  EXPECT_TRUE(EptEntry{ept.read_entry(Gpa{0x1000}, Level::k4K)}.is_dirty());
  ASSERT_EQ(ctx.pml_index, kPmlEntries - 3);
  EXPECT_EQ(log.gpa[kPmlEntries - 1], 0x1000u);
  EXPECT_EQ(log.gpa[kPmlEntries - 2], 0x2000u);
  // D cleared in memory but the TLB still holds the page dirty: no walk, no log.
  ept.write_entry(Gpa{0x1000}, Level::k4K,
                  EptEntry{ept.read_entry(Gpa{0x1000}, Level::k4K)}.with_dirty(false).raw());
  EXPECT_TRUE(run({SG::store(Gpa{0x1000}, 4)}).is(VmxExitReason::kHlt));
  EXPECT_EQ(ctx.pml_index, kPmlEntries - 3);
  EXPECT_FALSE(EptEntry{ept.read_entry(Gpa{0x1000}, Level::k4K)}.is_dirty());
  // After the flush the write walks, sets D again and logs again.
  cpu.invept(InveptType::kSingleContext, ctx.eptp);
  EXPECT_TRUE(run({SG::store(Gpa{0x1000}, 5)}).is(VmxExitReason::kHlt));
  EXPECT_EQ(ctx.pml_index, kPmlEntries - 4);
  EXPECT_EQ(log.gpa[kPmlEntries - 3], 0x1000u);
}

// The log's last entry is index 0; with the index wrapped past it, the next write that would
// set D is a PML-full exit before anything changes, and it retires once the host emptied the
// log. A write that sets no D (already dirty) goes through with the log full.
TEST_F(CpuTest, PmlFullExitsBeforeTheAccess) {
  TableBuilder ept(platform_.memory(), PagingFormat::kEpt, 4);
  const Pfn a = frame(0), b = frame(0);
  ept.map(Gpa{0x1000}, a.hpa(), Level::k4K, kRwx);
  ept.map(Gpa{0x2000}, b.hpa(), Level::k4K, kRwx, kHostKey, EptEntry::Dirty::kMask);
  GuestContext ctx = vmx_context(ept);
  PmlLog log;
  ctx.enable_pml = true;
  ctx.pml_address = &log;
  ctx.pml_index = 0xFFFF;  // decremented past entry 0
  auto binding = platform_.bind(0);
  LogicalCpu& cpu = binding.cpu();
  SG guest({SG::store(Gpa{0x2000}, 7), SG::store(Gpa{0x1008}, 9)});
  GuestState state;
  const VmExit full = cpu.run_guest(ctx, state, guest);
  ASSERT_TRUE(full.is(VmxExitReason::kPmlFull));
  EXPECT_EQ(full.rip, 4u);  // the first store retired, the second did not
  EXPECT_EQ(platform_.memory().read(b.hpa(), kHostKey).value, 7u);
  EXPECT_EQ(platform_.memory().read(a.hpa() + 8, kHostKey).value, 0u);
  EXPECT_FALSE(EptEntry{ept.read_entry(Gpa{0x1000}, Level::k4K)}.is_dirty());
  ctx.pml_index = kPmlEntries - 1;
  EXPECT_TRUE(cpu.run_guest(ctx, state, guest).is(VmxExitReason::kHlt));
  EXPECT_EQ(platform_.memory().read(a.hpa() + 8, kHostKey).value, 9u);
  EXPECT_EQ(ctx.pml_index, kPmlEntries - 2);
  EXPECT_EQ(log.gpa[kPmlEntries - 1], 0x1000u);
}

TEST_F(CpuTest, StaleTlbEntryServesUntilInvept) {
  TableBuilder ept(platform_.memory(), PagingFormat::kEpt, 4);
  const Pfn old_page = frame(0x1111), new_page = frame(0x2222);
  ept.map(Gpa{0x1000}, old_page.hpa(), Level::k4K, kRwx);
  GuestContext ctx = vmx_context(ept);
  std::vector<StaleUse> stale;
  auto binding = platform_.bind(0);
  LogicalCpu& cpu = binding.cpu();
  auto sub = cpu.stale_use.attach([&](const StaleUse& s) { stale.push_back(s); });

  auto read_once = [&] {
    SG guest({SG::load(Gpa{0x1000})});
    GuestState state;
    EXPECT_TRUE(cpu.run_guest(ctx, state, guest).is(VmxExitReason::kHlt));
    return state.regs[Gpr::kRax];
  };
  EXPECT_EQ(read_once(), 0x1111u);
  // Remap without a flush: the TLB keeps serving the old frame, and says so.
  ept.map(Gpa{0x1000}, new_page.hpa(), Level::k4K, kRwx);
  EXPECT_EQ(read_once(), 0x1111u);
  ASSERT_EQ(stale.size(), 1u);
  EXPECT_EQ(stale[0].served.staleness, Staleness::kDifferentFrame);
  EXPECT_EQ(stale[0].served.hpa, old_page.hpa());
  ASSERT_TRUE(stale[0].fresh);
  EXPECT_EQ(stale[0].fresh->hpa, new_page.hpa());
  cpu.invept(InveptType::kSingleContext, ctx.eptp);
  EXPECT_EQ(read_once(), 0x2222u);
  EXPECT_EQ(stale.size(), 1u);
  EXPECT_EQ(cpu.stats().stale_uses.value(), 1u);
}

TEST_F(CpuTest, ZappedEntryIsStaleNotMappedAndLessPermissiveIsOnlySpurious) {
  TableBuilder ept(platform_.memory(), PagingFormat::kEpt, 4);
  const Pfn page = frame(7);
  ept.map(Gpa{0x3000}, page.hpa(), Level::k4K, kRo);
  GuestContext ctx = vmx_context(ept);
  auto binding = platform_.bind(0);
  LogicalCpu& cpu = binding.cpu();
  std::vector<StaleUse> stale;
  auto sub = cpu.stale_use.attach([&](const StaleUse& s) { stale.push_back(s); });
  {
    SG guest({SG::load(Gpa{0x3000})});
    GuestState state;
    cpu.run_guest(ctx, state, guest);
  }
  // Make the entry writable without flushing: the cached read-only translation faults on a
  // write — a spurious EPT violation — which drops it; re-execution then succeeds.
  ept.map(Gpa{0x3000}, page.hpa(), Level::k4K, kRwx);
  SG writer({SG::store(Gpa{0x3000}, 9)});
  GuestState ws;
  VmExit exit = cpu.run_guest(ctx, ws, writer);
  ASSERT_TRUE(exit.is(VmxExitReason::kEptViolation));
  EXPECT_EQ(exit.rip, 0u) << "a faulting instruction leaves RIP unchanged";
  EXPECT_EQ(exit.qualification & 0x3f, 0x2u | 0x8u) << "write access; cached perms R only";
  EXPECT_EQ(cpu.stats().spurious_faults.value(), 1u);
  EXPECT_TRUE(stale.empty()) << "less permissive is not stale";
  exit = cpu.run_guest(ctx, ws, writer);
  EXPECT_TRUE(exit.is(VmxExitReason::kHlt));
  EXPECT_EQ(platform_.memory().read(page.hpa(), kHostKey).value, 9u);
  // Zap it: the writable TLB entry is now stale (not mapped).
  ept.write_entry(Gpa{0x3000}, Level::k4K, EptEntry{}.with_suppress_ve(true).raw());
  SG reader({SG::load(Gpa{0x3000})});
  GuestState rs;
  EXPECT_TRUE(cpu.run_guest(ctx, rs, reader).is(VmxExitReason::kHlt));
  ASSERT_EQ(stale.size(), 1u);
  EXPECT_EQ(stale[0].served.staleness, Staleness::kNotMapped);
}

TEST_F(CpuTest, EptViolationExitAndReexecution) {
  TableBuilder ept(platform_.memory(), PagingFormat::kEpt, 4);
  GuestContext ctx = vmx_context(ept);
  SG guest({SG::op(GuestInsnKind::kNop), SG::store(Gpa{0x5000}, 42)});
  GuestState state;
  auto binding = platform_.bind(0);
  VmExit exit = binding.cpu().run_guest(ctx, state, guest);
  ASSERT_TRUE(exit.is(VmxExitReason::kEptViolation));
  EXPECT_EQ(exit.gpa, Gpa{0x5000});
  EXPECT_EQ(exit.rip, 4u);
  // Write access, nothing readable/writable/executable, GLA valid, final translation.
  EXPECT_EQ(exit.qualification, 0x2u | 0x80u | 0x100u);
  EXPECT_EQ(exit.insn.kind, GuestInsnKind::kStore);
  const Pfn page = frame(0);
  ept.map(Gpa{0x5000}, page.hpa(), Level::k4K, kRwx);
  exit = binding.cpu().run_guest(ctx, state, guest);
  EXPECT_TRUE(exit.is(VmxExitReason::kHlt));
  EXPECT_EQ(platform_.memory().read(page.hpa(), kHostKey).value, 42u);
}

TEST_F(CpuTest, EptMisconfigReportsOnlyTheGpa) {
  TableBuilder ept(platform_.memory(), PagingFormat::kEpt, 4);
  const Pfn page = frame(0);
  ept.map(Gpa{0x6000}, page.hpa(), Level::k4K, kRwx);
  // W without R: a misconfiguration (KVM's MMIO SPTEs are exactly this).
  ept.write_entry(Gpa{0x6000}, Level::k4K,
                  EptEntry{ept.read_entry(Gpa{0x6000}, Level::k4K)}.with_read(false).raw());
  GuestContext ctx = vmx_context(ept);
  SG guest({SG::load(Gpa{0x6008})});
  GuestState state;
  auto binding = platform_.bind(0);
  const VmExit exit = binding.cpu().run_guest(ctx, state, guest);
  ASSERT_TRUE(exit.is(VmxExitReason::kEptMisconfig));
  EXPECT_EQ(exit.gpa, Gpa{0x6008});
  EXPECT_EQ(exit.qualification, 0u);
}

TEST_F(CpuTest, VirtualizationExceptionWhenSuppressVeIsClear) {
  TableBuilder ept(platform_.memory(), PagingFormat::kEpt, 4);
  const Pfn page = frame(0x77);
  ept.map(Gpa{0x7000}, page.hpa(), Level::k4K, kRwx);
  ept.write_entry(Gpa{0x7000}, Level::k4K, 0);  // not present, suppress-#VE clear
  GuestContext ctx = vmx_context(ept);
  VeInfoArea ve;
  ctx.ve_enabled = true;
  ctx.ve_info = &ve;
  // The handler "fixes" nothing itself; it records and returns, and the host maps the page
  // after the second attempt exits (VE info still busy → a real EPT violation exit).
  SG guest({SG::load(Gpa{0x7000})}, {SG::store(Gpa{0x7000}, 1), SG::op(GuestInsnKind::kIret)});
  GuestState state;
  auto binding = platform_.bind(0);
  LogicalCpu& cpu = binding.cpu();
  VmExit exit = cpu.run_guest(ctx, state, guest);
  // The #VE ran the handler, whose own store faulted while the VE area was busy → exit.
  ASSERT_TRUE(exit.is(VmxExitReason::kEptViolation));
  EXPECT_EQ(exit.rip, SG::kVeHandlerRip);
  EXPECT_EQ(cpu.stats().ve_delivered.value(), 1u);
  EXPECT_EQ(ve.busy, VeInfoArea::kBusy);
  EXPECT_EQ(ve.exit_reason, 48u);
  EXPECT_EQ(ve.gpa, 0x7000u);
  EXPECT_EQ(ve.qualification & 7, 1u) << "a read";
  ASSERT_EQ(state.exception_stack.size(), 1u);
  EXPECT_EQ(state.exception_stack[0], 0u) << "the faulting RIP is what IRET returns to";
  ept.map(Gpa{0x7000}, page.hpa(), Level::k4K, kRwx);
  exit = cpu.run_guest(ctx, state, guest);
  EXPECT_TRUE(exit.is(VmxExitReason::kHlt));
  EXPECT_EQ(state.regs[Gpr::kRax], 1u) << "the load re-executed after IRET";
  // With suppress-#VE set the same fault is a VM exit even with #VE enabled.
  ve.busy = 0;
  ept.write_entry(Gpa{0x7000}, Level::k4K, EptEntry{}.with_suppress_ve(true).raw());
  cpu.invept(InveptType::kAllContext, ctx.eptp);
  GuestState s2;
  SG g2({SG::load(Gpa{0x7000})});
  EXPECT_TRUE(cpu.run_guest(ctx, s2, g2).is(VmxExitReason::kEptViolation));
  EXPECT_EQ(cpu.stats().ve_delivered.value(), 1u);
}

TEST_F(CpuTest, PreemptionTimerBoundsAGuestThatNeverExits) {
  TableBuilder ept(platform_.memory(), PagingFormat::kEpt, 4);
  GuestContext ctx = vmx_context(ept);
  ctx.instruction_budget = 100;
  std::vector<GuestInsn> spin(1000, SG::op(GuestInsnKind::kPause));
  SG guest(spin);
  GuestState state;
  auto binding = platform_.bind(0);
  const VmExit exit = binding.cpu().run_guest(ctx, state, guest);
  EXPECT_TRUE(exit.is(VmxExitReason::kPreemptionTimer));
  EXPECT_EQ(state.retired, 100u);
}

TEST_F(CpuTest, TdSharedBitSelectsTheSharedEptAndKeysComeFromTheLeaf) {
  HostMemory& mem = platform_.memory();
  const KeyId hkid{5};
  TableBuilder sept(mem, PagingFormat::kEpt, 4, hkid);
  TableBuilder shared(mem, PagingFormat::kEpt, 4);
  const Pfn priv = *mem.alloc_frame();
  mem.set_key(priv, hkid);
  mem.fill(priv, hkid, 0x5ec2e7);
  const Pfn shpage = frame(0x5a4ed);
  sept.map(Gpa{0x8000}, priv.hpa(), Level::k4K, kRwx, hkid);
  const Gpa shared_gpa{(uint64_t{1} << 47) | 0x8000};
  shared.map(shared_gpa, shpage.hpa(), Level::k4K, kRwx);
  GuestContext ctx;
  ctx.mode = GuestMode::kTd;
  ctx.secure_eptp = Eptp::make(sept.root(), 4, true);
  ctx.sept_key = hkid;
  ctx.eptp = Eptp::make(shared.root(), 4, true);
  ctx.shared_bit = 47;
  SG guest({SG::load(Gpa{0x8000}, Gpr::kRbx), SG::load(shared_gpa, Gpr::kRcx),
            SG::store(Gpa{0x8008}, 0x7d)});
  GuestState state;
  auto binding = platform_.bind(1);
  LogicalCpu& cpu = binding.cpu();
  EXPECT_TRUE(cpu.run_guest(ctx, state, guest).is(VmxExitReason::kHlt));
  EXPECT_EQ(state.regs[Gpr::kRbx], 0x5ec2e7u);
  EXPECT_EQ(state.regs[Gpr::kRcx], 0x5a4edu);
  EXPECT_EQ(mem.read(priv.hpa() + 8, hkid).value, 0x7du);
  EXPECT_NE(mem.read(priv.hpa() + 8, kHostKey).value, 0x7du) << "the host reads ciphertext";
  // Both halves are tagged by the secure EPTP: flushing the shared EPTP's context does not
  // reach them; flushing the secure one does.
  EXPECT_EQ(cpu.tlb().size(), 2u);
  cpu.invept(InveptType::kSingleContext, ctx.eptp);
  EXPECT_EQ(cpu.tlb().size(), 2u);
  cpu.invept(InveptType::kSingleContext, ctx.secure_eptp);
  EXPECT_EQ(cpu.tlb().size(), 0u);
}

class SvmTest : public CpuTest {
 protected:
  SvmTest() : CpuTest(CpuVendor::kAmd) {}
};

TEST_F(SvmTest, NestedPageFaultAndAsidOnlyTagging) {
  HostMemory& mem = platform_.memory();
  TableBuilder npt_a(mem, PagingFormat::kNpt, 4), npt_b(mem, PagingFormat::kNpt, 4);
  const Pfn pa = frame(0xa), pb = frame(0xb);
  npt_a.map(Gpa{0x1000}, pa.hpa(), Level::k4K, kRwx);
  npt_b.map(Gpa{0x1000}, pb.hpa(), Level::k4K, kRwx);
  GuestContext ctx;
  ctx.mode = GuestMode::kSvm;
  ctx.ncr3 = npt_a.root();
  ctx.asid = 1;
  auto binding = platform_.bind(0);
  LogicalCpu& cpu = binding.cpu();
  auto read_once = [&] {
    SG guest({SG::load(Gpa{0x1000})});
    GuestState state;
    EXPECT_TRUE(cpu.run_guest(ctx, state, guest).is(SvmExitCode::kHlt));
    return state.regs[Gpr::kRax];
  };
  EXPECT_EQ(read_once(), 0xau);
  // A new nCR3 with the same ASID and no flush: the ASID-tagged entry still serves.
  ctx.ncr3 = npt_b.root();
  EXPECT_EQ(read_once(), 0xau);
  EXPECT_EQ(cpu.stats().stale_uses.value(), 1u);
  ctx.tlb_control = SvmTlbControl::kFlushAsid;
  EXPECT_EQ(read_once(), 0xbu);
  EXPECT_EQ(ctx.tlb_control, SvmTlbControl::kNothing) << "VMRUN consumed TLB_CONTROL";
  // #NPF: not present, write, user, final translation.
  SG w({SG::store(Gpa{0x9000}, 1)});
  GuestState ws;
  const VmExit exit = cpu.run_guest(ctx, ws, w);
  ASSERT_TRUE(exit.is(SvmExitCode::kNpf));
  EXPECT_EQ(exit.qualification, 0x2u | 0x4u | (uint64_t{1} << 32));
  EXPECT_EQ(exit.gpa, Gpa{0x9000});
}

class HyperVAmdTest : public CpuTest {
 protected:
  HyperVAmdTest() : CpuTest(CpuVendor::kAmd, HyperVConfig{true}) {}
};

TEST_F(HyperVAmdTest, EnlightenedTlbKeepsGpaTranslationsAcrossAsidFlush) {
  HostMemory& mem = platform_.memory();
  TableBuilder npt(mem, PagingFormat::kNpt, 4);
  const Pfn old_page = frame(1), new_page = frame(2);
  npt.map(Gpa{0x1000}, old_page.hpa(), Level::k4K, kRwx);
  GuestContext ctx;
  ctx.mode = GuestMode::kSvm;
  ctx.ncr3 = npt.root();
  auto binding = platform_.bind(0);
  LogicalCpu& cpu = binding.cpu();
  auto read_once = [&] {
    SG guest({SG::load(Gpa{0x1000})});
    GuestState state;
    cpu.run_guest(ctx, state, guest);
    return state.regs[Gpr::kRax];
  };
  EXPECT_EQ(read_once(), 1u);
  npt.map(Gpa{0x1000}, new_page.hpa(), Level::k4K, kRwx);
  ctx.tlb_control = SvmTlbControl::kFlushAsid;
  // The ASID flush emptied the CPU's TLB, but the L0 still holds the GPA translation.
  EXPECT_EQ(read_once(), 1u);
  EXPECT_EQ(cpu.stats().stale_uses.value(), 1u);
  EXPECT_EQ(platform_.hyperv()->flush_guest_physical_address_space(npt.root()),
            HvStatus::kSuccess);
  EXPECT_EQ(read_once(), 2u);
  EXPECT_EQ(cpu.stats().stale_uses.value(), 1u);
}

class HyperVIntelTest : public CpuTest {
 protected:
  HyperVIntelTest() : CpuTest(CpuVendor::kIntel, HyperVConfig{false}) {}
};

TEST_F(HyperVIntelTest, InveptTrapsToTheL0) {
  HostMemory& mem = platform_.memory();
  TableBuilder ept(mem, PagingFormat::kEpt, 4);
  const Pfn old_page = frame(1), new_page = frame(2);
  ept.map(Gpa{0x1000}, old_page.hpa(), Level::k4K, kRwx);
  GuestContext ctx = vmx_context(ept);
  auto binding = platform_.bind(0);
  LogicalCpu& cpu = binding.cpu();
  auto read_once = [&] {
    SG guest({SG::load(Gpa{0x1000})});
    GuestState state;
    cpu.run_guest(ctx, state, guest);
    return state.regs[Gpr::kRax];
  };
  EXPECT_EQ(read_once(), 1u);
  EXPECT_EQ(platform_.hyperv()->cached(), 1u);
  ept.map(Gpa{0x1000}, new_page.hpa(), Level::k4K, kRwx);
  cpu.invept(InveptType::kSingleContext, ctx.eptp);
  EXPECT_EQ(platform_.hyperv()->cached(), 0u);
  EXPECT_EQ(read_once(), 2u);
  EXPECT_EQ(cpu.stats().stale_uses.value(), 0u);
}

// --- Interrupts ----------------------------------------------------------------------------

// PAUSE forever: only an interrupt ends it.
class SpinGuest : public GuestProgram {
 public:
  GuestInsn fetch(GuestState&) override { return SG::op(GuestInsnKind::kPause); }
  uint64_t ve_handler_rip() const override { return 0; }
};

TEST_F(CpuTest, IpiKicksAGuestOutAndRunsOnItsCpu) {
  TableBuilder ept(platform_.memory(), PagingFormat::kEpt, 4);
  GuestContext ctx = vmx_context(ept);
  ctx.instruction_budget = 0;  // only the IPI can end this guest's spin
  std::atomic<bool> in_guest{false};
  std::atomic<int> ran_on{-1};
  VmExit exit;
  std::thread vcpu([&] {
    auto binding = platform_.bind(1);
    SpinGuest guest;
    GuestState state;
    in_guest = true;
    exit = binding.cpu().run_guest(ctx, state, guest);
    binding.cpu().handle_interrupts();  // KVM's local_irq_enable after the exit
  });
  while (!in_guest || !platform_.cpu(1).in_guest_mode()) std::this_thread::yield();
  platform_.cpu(1).run_on([&](LogicalCpu& c) { ran_on = static_cast<int>(c.id()); }, nullptr);
  EXPECT_EQ(ran_on.load(), 1);
  vcpu.join();
  EXPECT_TRUE(exit.is(VmxExitReason::kExternalInterrupt));
}

TEST_F(CpuTest, IpiToAnIdleCpuRunsAtOnce) {
  int ran = 0;
  platform_.cpu(0).run_on([&](LogicalCpu& c) { ran = 10 + static_cast<int>(c.id()); }, nullptr);
  EXPECT_EQ(ran, 10);
  EXPECT_EQ(platform_.cpu(0).stats().ipis_handled_idle.value(), 1u);
}

TEST_F(CpuTest, CrossIpisDoNotDeadlock) {
  // Two bound threads IPI each other at the same time; each keeps handling its own
  // interrupts while it waits.
  std::atomic<int> done{0};
  auto worker = [&](unsigned me, unsigned other) {
    auto binding = platform_.bind(me);
    for (int i = 0; i < 200; ++i)
      platform_.cpu(other).run_on([&](LogicalCpu&) { done.fetch_add(1); }, &binding.cpu());
  };
  std::thread a(worker, 0, 1), b(worker, 1, 0);
  a.join();
  b.join();
  EXPECT_EQ(done.load(), 400);
}

TEST_F(CpuTest, NmiExitsGuestAndSpuriousNmiIsCounted) {
  TableBuilder ept(platform_.memory(), PagingFormat::kEpt, 4);
  GuestContext ctx = vmx_context(ept);
  auto binding = platform_.bind(0);
  LogicalCpu& cpu = binding.cpu();
  cpu.send_nmi();
  SG guest({SG::op(GuestInsnKind::kNop)});
  GuestState state;
  const VmExit exit = cpu.run_guest(ctx, state, guest);
  ASSERT_TRUE(exit.is(VmxExitReason::kExceptionNmi));
  EXPECT_EQ(exit.intr_info, kIntrInfoNmi);
  EXPECT_TRUE(cpu.handle_host_nmi());
  EXPECT_FALSE(cpu.handle_host_nmi()) << "no NMI latched: spurious";
  EXPECT_EQ(cpu.stats().spurious_nmis.value(), 1u);
}

TEST_F(CpuTest, ThreadsMigrateBetweenCpus) {
  std::thread t([&] {
    { auto b = platform_.bind(0); b.cpu().assert_current(); }
    { auto b = platform_.bind(1); b.cpu().assert_current(); }
  });
  t.join();
  EXPECT_DEATH(platform_.cpu(0).assert_current(), "not running on it");
}

// --- SEAMCALL ------------------------------------------------------------------------------

class EchoModule : public SeamModule {
 public:
  void seamcall(LogicalCpu& cpu, SeamcallRegs& regs) override {
    last_cpu = cpu.id();
    regs.rcx = regs.rax + 1;
    regs.rax = 0;  // TDX_SUCCESS
  }
  unsigned last_cpu = 99;
};

TEST_F(CpuTest, SeamcallInstructionFailuresBecomeClass0xFF) {
  auto binding = platform_.bind(1);
  SeamcallRegs regs;
  regs.rax = 21;
  EXPECT_EQ(host_seamcall(binding.cpu(), regs), 0x8000FF00FFFF0000u) << "no module loaded";
  EchoModule module;
  platform_.install_seam_module(&module);
  regs.rax = 21;
  EXPECT_EQ(host_seamcall(binding.cpu(), regs), 0u);
  EXPECT_EQ(regs.rcx, 22u);
  EXPECT_EQ(module.last_cpu, 1u);
  faults_.arm(EnvFaultKind::kFailSeamcallInsn, 21, 1,
              static_cast<uint64_t>(SeamcallInsnFault::kUd));
  faults_.arm(EnvFaultKind::kFailSeamcallInsn, FaultInjection::kAnyKey, 1,
              static_cast<uint64_t>(SeamcallInsnFault::kGp));
  regs.rax = 21;
  EXPECT_EQ(host_seamcall(binding.cpu(), regs), 0x8000FF0000000006u);
  regs.rax = 2;
  EXPECT_EQ(host_seamcall(binding.cpu(), regs), 0x8000FF000000000Du);
  faults_.arm(EnvFaultKind::kFailSeamcallInsn, 2, 1,
              static_cast<uint64_t>(SeamcallInsnFault::kVmFailInvalid));
  regs.rax = 2;
  const uint64_t status = host_seamcall(binding.cpu(), regs);
  EXPECT_EQ(status, 0x8000FF00FFFF0000u);
  EXPECT_EQ(status & 0xFFFF, 0u) << "VMfailInvalid's low 16 bits read as exit reason 0 (NMI)";
  regs.rax = 2;
  EXPECT_EQ(host_seamcall(binding.cpu(), regs), 0u) << "faults fire only as often as armed";
}

// A full walk to a 4K leaf caches its page table (the PDE level); a TLB miss in the same
// 2M region walks from that table.
TEST_F(CpuTest, WalkFillsThePscAndAMissUsesIt) {
  TableBuilder ept(platform_.memory(), PagingFormat::kEpt, 4);
  const Pfn a = frame(1), b = frame(2);
  ept.map(Gpa{0x1000}, a.hpa(), Level::k4K, kRwx);
  ept.map(Gpa{0x2000}, b.hpa(), Level::k4K, kRwx);
  GuestContext ctx = vmx_context(ept);
  auto binding = platform_.bind(0);
  LogicalCpu& cpu = binding.cpu();
  ASSERT_TRUE(cpu.translate(ctx, Gpa{0x1000}, AccessRequest{}));
  const std::vector<PscEntry> psc = cpu.tlb().psc_entries();
  ASSERT_EQ(psc.size(), 1u);
  EXPECT_EQ(psc[0].region, 0u);
  EXPECT_EQ(psc[0].table, ept.entry_hpa(Gpa{0x1000}, Level::k4K).align_down(Level::k4K));
  EXPECT_EQ(psc[0].source_root, ept.root());
  auto t = cpu.translate(ctx, Gpa{0x2000}, AccessRequest{});
  ASSERT_TRUE(t);
  EXPECT_EQ(t->source, TranslationSource::kPsc);
  EXPECT_EQ(t->staleness, Staleness::kFresh);
  EXPECT_EQ(t->hpa, b.hpa());
  EXPECT_EQ(cpu.tlb().stats().psc_hits.value(), 1u);
  // The permissions of the cached upper entries still apply.
  ept.write_entry(Gpa{0x3000}, Level::k4K,
                  ept.leaf_value(frame(3).hpa(), Level::k4K, kRwx, kHostKey, 0));
  auto w = cpu.translate(ctx, Gpa{0x3000}, AccessRequest{AccessType::kWrite});
  ASSERT_TRUE(w);
  EXPECT_TRUE(w->perms.write);
}

// KVM replaced the page table behind a 2M region without flushing: a walk from the cached
// table is served the old table's frame, and the probe (a walk from the root) calls it stale.
// A flush that reaches the PSC ends it.
TEST_F(CpuTest, StalePscEntryYieldsAStaleProbedTranslation) {
  TableBuilder ept(platform_.memory(), PagingFormat::kEpt, 4);
  const Pfn old_a = frame(1), old_b = frame(2), new_b = frame(3);
  ept.map(Gpa{0x1000}, old_a.hpa(), Level::k4K, kRwx);
  ept.map(Gpa{0x2000}, old_b.hpa(), Level::k4K, kRwx);
  TableBuilder other(platform_.memory(), PagingFormat::kEpt, 4);
  other.map(Gpa{0x2000}, new_b.hpa(), Level::k4K, kRwx);
  GuestContext ctx = vmx_context(ept);
  auto binding = platform_.bind(0);
  LogicalCpu& cpu = binding.cpu();
  std::vector<StaleUse> uses;
  auto sub = cpu.stale_use.attach([&](const StaleUse& u) { uses.push_back(u); });
  ASSERT_TRUE(cpu.translate(ctx, Gpa{0x1000}, AccessRequest{}));
  // The region's PDE now names another page table.
  ept.write_entry(Gpa{0x2000}, Level::k2M, other.read_entry(Gpa{0x2000}, Level::k2M));
  auto stale = cpu.translate(ctx, Gpa{0x2000}, AccessRequest{});
  ASSERT_TRUE(stale);
  EXPECT_EQ(stale->source, TranslationSource::kPsc);
  EXPECT_EQ(stale->hpa, old_b.hpa());
  EXPECT_EQ(stale->staleness, Staleness::kDifferentFrame);
  ASSERT_EQ(uses.size(), 1u);
  EXPECT_EQ(uses[0].gpa, Gpa{0x2000});
  // The TLB entry it filled is stale too, and a hit on it is probed as such.
  auto hit = cpu.translate(ctx, Gpa{0x2000}, AccessRequest{});
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->source, TranslationSource::kTlb);
  EXPECT_EQ(hit->staleness, Staleness::kDifferentFrame);
  cpu.invept(InveptType::kSingleContext, ctx.eptp);
  EXPECT_TRUE(cpu.tlb().psc_entries().empty());
  auto fresh = cpu.translate(ctx, Gpa{0x2000}, AccessRequest{});
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->source, TranslationSource::kWalk);
  EXPECT_EQ(fresh->hpa, new_b.hpa());
}

// A walk from the cached table that faults drops the PSC entry (SDM §28.4.3.3): the retry
// walks from the root.
TEST_F(CpuTest, FaultFromThePscDropsIt) {
  TableBuilder ept(platform_.memory(), PagingFormat::kEpt, 4);
  ept.map(Gpa{0x1000}, frame(1).hpa(), Level::k4K, kRwx);
  GuestContext ctx = vmx_context(ept);
  auto binding = platform_.bind(0);
  LogicalCpu& cpu = binding.cpu();
  ASSERT_TRUE(cpu.translate(ctx, Gpa{0x1000}, AccessRequest{}));
  ASSERT_EQ(cpu.tlb().psc_entries().size(), 1u);
  auto f = cpu.translate(ctx, Gpa{0x5000}, AccessRequest{});
  ASSERT_FALSE(f);
  EXPECT_TRUE(std::holds_alternative<EptViolation>(f.error()));
  EXPECT_TRUE(cpu.tlb().psc_entries().empty());
}

}  // namespace
}  // namespace tdxsim
