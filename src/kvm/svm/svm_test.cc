// The SVM vendor on plain and software-protected VMs: guest programs through NPT-format
// SPTEs, MMIO by #NPF (reserved bits in KVM's MMIO SPTEs), MapGPA, HLT, ASIDs, and TLB
// flushes checked by the platform's staleness probe.
#include "kvm/svm/svm.h"

#include <gtest/gtest.h>

#include <array>

#include "guest/pattern.h"
#include "guest/program.h"
#include "kvm/svm/svm_fixture_for_test.h"
#include "platform/page_walk.h"
#include "platform/scripted_guest.h"

namespace tdxsim {
namespace {

using G = ScriptedGuest;
using guest::Guest;
using guest::GuestTask;
using guest::Program;
using guest::Ucall;
using guest::UcallCmd;
using guest::VmFlavour;

constexpr Gpa kBase{0x10'0000};
constexpr uint64_t kBytes = 64 * kPageSize;

class SvmTest : public SvmFixture {};

TEST_F(SvmTest, RefusesTds) {
  svm();
  KvmVmConfig c;
  c.type = VmType::kTdx;
  auto r = KvmVm::create(*host, mm, c);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Errno::kEinval);
  EXPECT_EQ(svm().spte_format(), SpteFormat::kNpt);
}

GuestTask fill_then_verify(Guest& g) {
  co_await g.fill(kBase, kBytes, 1);
  co_await g.verify(kBase, kBytes, 1);
  co_await g.sync(1);
  co_await g.verify(kBase, kBytes, 2);  // the host wrote round 2 meanwhile
  co_await g.done();
}

TEST_F(SvmTest, GuestFillsMemoryTheHostVerifiesAndTheOtherWayRound) {
  make_vm();
  const uint64_t hva = add_ram(0, 0, 4 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  Program program(VmFlavour::vmx(), fill_then_verify);
  svm().set_guest(*vcpu, &program, 4096);
  EXPECT_EQ(run_to_ucall(*vcpu, 1), (Ucall{UcallCmd::kSync, 1}));
  guest::for_each_sample(kBase, kBytes, [&](Gpa gpa) {
    EXPECT_EQ(*mm.read(hva + gpa.raw()), guest::pattern(gpa, 1)) << gpa.raw();
    ASSERT_TRUE(mm.write(hva + gpa.raw(), guest::pattern(gpa, 2)).has_value());
  });
  EXPECT_EQ(run_to_ucall(*vcpu, 1), (Ucall{UcallCmd::kDone, 0}));
  EXPECT_EQ(run_to_ucall(*vcpu, 1), std::nullopt);  // the program ends in HLT
  EXPECT_TRUE(program.finished());
  EXPECT_TRUE(program.guest().failures().empty());
  EXPECT_GE(svm().stats().npf_exits.value(), 1u);
  EXPECT_EQ(svm().stats().unhandled_exits.value(), 0u);
  EXPECT_EQ(stale_uses(), 0u);
}

TEST_F(SvmTest, TheRootHoldsNptEntriesTheHardwareWalks) {
  make_vm();
  const uint64_t hva = add_ram(0, 0, 1 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  G guest({G::store(Gpa{0x5008}, 0x5555), G::op(GuestInsnKind::kHlt)});
  svm().set_guest(*vcpu, &guest, 4096);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  ASSERT_EQ(vcpu->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(*mm.read(hva + 0x5008), 0x5555u);

  const MmuPage* root = vcpu->mmu().root;
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(svm_vcpu(*vcpu).vmcb.ncr3, root->spt());  // nested_cr3 from load_mmu_pgd
  EXPECT_EQ(svm_vcpu(*vcpu).vmcb.npt_levels, 4u);
  std::optional<Spte> leaf;
  {
    ReadLock l(vm->kvm().mmu_lock());
    leaf = vm->mmu().tdp_mmu().leaf_for(root, Gfn{5});
  }
  ASSERT_TRUE(leaf.has_value());
  const NptEntry e = leaf->npt();
  // Read back as an NPT entry: P|W|U, A and D (a write), no NX, KVM's bits in AVL.
  EXPECT_TRUE(e.is_present() && e.is_writable() && e.is_user() && e.is_accessed() && e.is_dirty());
  EXPECT_FALSE(e.is_nx() || e.is_pwt() || e.is_pcd());
  EXPECT_EQ(e.avail_low(), 0x7u);  // HOSTW 9, MMUW 10, PRESENT 11
  EXPECT_EQ(e.avail_high(), 0u);   // nothing at EPT's 57/58
  EXPECT_TRUE(leaf->is_mmu_writable(SpteFormat::kNpt) && leaf->is_host_writable(SpteFormat::kNpt));
  EXPECT_EQ(leaf->raw() >> 52, 0u);  // nothing in 63:52: no EPT SVE or write-protect bits
  // The platform's NPT walk of the VM's root reaches the page userspace reads.
  const KvmResult<Pfn> page = mm.get_user_page(hva + 0x5000, false, nullptr);
  ASSERT_TRUE(page.has_value());
  WalkContext wc;
  wc.format = PagingFormat::kNpt;
  wc.root = root->spt();
  wc.levels = 4;
  AccessRequest a;
  a.type = AccessType::kWrite;
  const WalkResult w = walk(platform.memory(), platform.memory().layout(), wc, Gpa{0x5008}, a,
                            WalkMode::kProbe);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->hpa, page->hpa());
}

TEST_F(SvmTest, MmioWriteAndReadsGoToUserspaceAndTheSecondReadIsAReservedBitNpf) {
  make_vm();
  add_ram(0, 0, 1 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  const Gpa mmio{0xFEE0'0000};
  G guest({G::store(mmio, 0xABCD), G::load(mmio + 8, Gpr::kRcx), G::load(mmio + 8, Gpr::kRdx),
           G::op(GuestInsnKind::kHlt)});
  svm().set_guest(*vcpu, &guest, 4096);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  KvmRun& run = vcpu->run_state();
  ASSERT_EQ(run.exit_reason, KvmExitReason::kMmio);
  EXPECT_TRUE(run.mmio.is_write);
  EXPECT_EQ(run.mmio.phys_addr, mmio);
  EXPECT_EQ(run.mmio.data, 0xABCDu);
  // The first access built an MMIO SPTE: present with reserved bits 51:48.
  {
    ReadLock l(vm->kvm().mmu_lock());
    std::array<Spte, 5> sptes{};
    ASSERT_EQ(vm->mmu().tdp_mmu().get_walk(vcpu->mmu().root, mmio, sptes), Level::k4K);
    const MmioSpteMasks m = MmioSpteMasks::npt(48);
    EXPECT_TRUE(sptes[0].is_mmio(m));
    EXPECT_EQ(sptes[0].mmio_gfn(m), mmio.gfn());
    EXPECT_EQ(sptes[0].raw() & 0x000F'0000'0000'0001ull, 0x000F'0000'0000'0001ull);
  }
  const uint64_t rsvd_before = svm().stats().npf_rsvd.value();
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  ASSERT_EQ(run.exit_reason, KvmExitReason::kMmio);
  EXPECT_FALSE(run.mmio.is_write);
  EXPECT_EQ(run.mmio.phys_addr, mmio + 8);
  EXPECT_EQ(svm().stats().npf_rsvd.value(), rsvd_before + 1);  // the MMIO SPTE faulted
  run.mmio.data = 0x77;
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  ASSERT_EQ(run.exit_reason, KvmExitReason::kMmio);
  run.mmio.data = 0x88;
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  EXPECT_EQ(run.exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(svm_vcpu(*vcpu).regs.regs[Gpr::kRcx], 0x77u);
  EXPECT_EQ(svm_vcpu(*vcpu).regs.regs[Gpr::kRdx], 0x88u);
  EXPECT_EQ(svm().stats().mmio_exits.value(), 3u);
}

TEST_F(SvmTest, AnMmioSpteOfAnOlderMemslotGenerationIsRebuilt) {
  make_vm();
  add_ram(0, 0, 1 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  const Gpa mmio{0xFEE0'0000};
  G guest({G::load(mmio), G::load(mmio), G::op(GuestInsnKind::kHlt)});
  svm().set_guest(*vcpu, &guest, 4096);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  ASSERT_EQ(vcpu->run_state().exit_reason, KvmExitReason::kMmio);
  add_ram(1, 0x20'0000, 1 << 20);  // a memslot update: every MMIO SPTE is now stale
  const uint64_t emulated = vm->mmu().stats().faults[static_cast<size_t>(RetPf::kEmulate)].value();
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  ASSERT_EQ(vcpu->run_state().exit_reason, KvmExitReason::kMmio);
  // The reserved-bit fault found a stale generation and took the full path, which rebuilt it.
  EXPECT_EQ(vm->mmu().stats().faults[static_cast<size_t>(RetPf::kEmulate)].value(), emulated + 1);
  ReadLock l(vm->kvm().mmu_lock());
  std::array<Spte, 5> sptes{};
  vm->mmu().tdp_mmu().get_walk(vcpu->mmu().root, mmio, sptes);
  EXPECT_EQ(sptes[0].mmio_generation(), vm->kvm().memslots_generation() & Spte::kMmioGenMax);
}

TEST_F(SvmTest, MapGpaHypercallExitsOnASoftwareProtectedVm) {
  for (VmType type : {VmType::kDefault, VmType::kSwProtected}) {
    make_vm(type);
    add_ram(0, 0, 1 << 20);
    KvmVcpu* vcpu = add_vcpu(0);
    Program program(VmFlavour::vmx(), [](Guest& g) -> GuestTask {
      co_await g.map_gpa(Gpa{0x4000}, 3 * kPageSize, /*to_shared=*/false);
      co_await g.done();
    });
    svm().set_guest(*vcpu, &program, 4096);
    ASSERT_TRUE(run_on(*vcpu, 2).has_value());
    KvmRun& run = vcpu->run_state();
    if (type == VmType::kDefault) {
      // -KVM_ENOSYS: the guest's GUEST_ASSERT fires.
      ASSERT_EQ(run.exit_reason, KvmExitReason::kMmio);
      const auto u = guest::decode_ucall(run.mmio.phys_addr, run.mmio.data);
      ASSERT_TRUE(u.has_value());
      EXPECT_EQ(u->cmd, UcallCmd::kAssert);
    } else {
      ASSERT_EQ(run.exit_reason, KvmExitReason::kHypercall);
      EXPECT_EQ(run.hypercall.nr, kKvmHcMapGpaRange);
      EXPECT_EQ(run.hypercall.args[0], 0x4000u);
      EXPECT_EQ(run.hypercall.args[1], 3u);
      EXPECT_NE(run.hypercall.args[2] & kKvmMapGpaRangeEncrypted, 0u);
      EXPECT_EQ(run_to_ucall(*vcpu, 2, /*map_gpa_ret=*/0), (Ucall{UcallCmd::kDone, 0}));
      EXPECT_EQ(run_to_ucall(*vcpu, 2), std::nullopt);
      EXPECT_TRUE(program.finished());
      EXPECT_TRUE(program.guest().failures().empty());
    }
    EXPECT_GE(svm().stats().hypercalls.value(), 1u);
    vm.reset();
  }
}

TEST_F(SvmTest, HltExitsToUserspacePastTheInstruction) {
  make_vm();
  add_ram(0, 0, 1 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  G guest({G::op(GuestInsnKind::kHlt), G::mov(Gpr::kRbx, 9), G::op(GuestInsnKind::kHlt)});
  svm().set_guest(*vcpu, &guest, 4096);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  EXPECT_EQ(vcpu->run_state().exit_reason, KvmExitReason::kHlt);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  EXPECT_EQ(vcpu->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(svm_vcpu(*vcpu).regs.regs[Gpr::kRbx], 9u);
  EXPECT_EQ(svm().stats().hlt_exits.value(), 2u);
}

// Zaps the leaves of [gfn, gfn + 1) in the VM's direct roots under the write lock, as a
// notifier or memslot zap would, without the TLB flush that must follow.
void zap_without_flush(KvmVm& vm, Gfn gfn) {
  WriteLock l(vm.kvm().mmu_lock());
  vm.mmu().tdp_mmu().zap_direct_leafs(gfn, gfn + 1, ZapReason::kNotifier, false, false);
}

// A guest that reads 0x3000 twice per halt: the second read of each pair is a TLB hit.
G reread_guest() {
  return G({G::load(Gpa{0x3000}), G::load(Gpa{0x3000}), G::op(GuestInsnKind::kHlt),
            G::load(Gpa{0x3000}), G::op(GuestInsnKind::kHlt)});
}

TEST_F(SvmTest, AZapFollowedByTheRemoteFlushLeavesNoStaleTranslation) {
  make_vm();
  add_ram(0, 0, 1 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  G guest = reread_guest();
  svm().set_guest(*vcpu, &guest, 4096);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  ASSERT_GE(platform.cpu(1).tlb().stats().hits.value(), 1u);
  zap_without_flush(*vm, Gfn{3});
  // kvm_flush_remote_tlbs: no vendor hook, so KVM_REQ_TLB_FLUSH → svm_flush_tlb_all →
  // TLB_CONTROL flushes the ASID at the next VMRUN.
  vm->mmu().flush_remote_tlbs();
  const uint64_t asid_flushes = platform.cpu(1).stats().asid_flushes.value();
  const uint64_t npfs = svm().stats().npf_exits.value();
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  EXPECT_EQ(vcpu->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(platform.cpu(1).stats().asid_flushes.value(), asid_flushes + 1);
  EXPECT_EQ(svm().stats().npf_exits.value(), npfs + 1);  // the read faulted the page back in
  EXPECT_EQ(stale_uses(), 0u);
}

TEST_F(SvmTest, AZapWithoutTheFlushIsSeenAsAStaleTranslation) {
  make_vm();
  add_ram(0, 0, 1 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  G guest = reread_guest();
  svm().set_guest(*vcpu, &guest, 4096);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  zap_without_flush(*vm, Gfn{3});
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  // The CPU served the read from the ASID's cached translation of a zapped page: the probe
  // is what a missing flush looks like, so the check above can fail.
  EXPECT_GE(stale_uses(), 1u);
}

class SvmAsidTest : public SvmFixture {
 protected:
  // max_asid 3: ASIDs 1..3 per generation.
  SvmConfig svm_config() const override { return SvmConfig{.nr_asids = 4}; }
};

TEST_F(SvmAsidTest, AsidsRunOutAndTheGenerationRollsOverWithAFullFlush) {
  make_vm();
  add_ram(0, 0, 1 << 20);
  std::array<KvmVcpu*, 4> vcpus{};
  std::array<G, 4> guests{reread_guest(), reread_guest(), reread_guest(), reread_guest()};
  for (int i = 0; i < 4; ++i) {
    vcpus[i] = add_vcpu(i);
    svm().set_guest(*vcpus[i], &guests[i], 4096);
  }
  EXPECT_EQ(svm().cpu_data(1).max_asid, 3u);
  const uint64_t flushes = platform.cpu(1).stats().asid_flushes.value();
  std::array<uint16_t, 4> asid{};
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(run_on(*vcpus[i], 1).has_value());
    asid[i] = svm_vcpu(*vcpus[i]).vmcb.asid;
  }
  // The first new_asid rolls generation 1 over (with a full flush), the fourth runs out.
  EXPECT_EQ(asid, (std::array<uint16_t, 4>{1, 2, 3, 1}));
  EXPECT_EQ(svm().cpu_data(1).asid_generation, 3u);
  EXPECT_EQ(svm().stats().asid_rollovers.value(), 2u);
  EXPECT_GE(platform.cpu(1).stats().asid_flushes.value(), flushes + 2);
  // vCPU 3 is current: it keeps its ASID. vCPU 0's is from generation 2: it gets a new one.
  ASSERT_TRUE(run_on(*vcpus[3], 1).has_value());
  EXPECT_EQ(svm_vcpu(*vcpus[3]).vmcb.asid, 1u);
  ASSERT_TRUE(run_on(*vcpus[0], 1).has_value());
  EXPECT_EQ(svm_vcpu(*vcpus[0]).vmcb.asid, 2u);
  EXPECT_EQ(svm_vcpu(*vcpus[0]).asid_generation, 3u);
  EXPECT_EQ(stale_uses(), 0u);
}

TEST_F(SvmTest, AVcpuMovedToAnotherCpuGetsAFreshAsidThere) {
  make_vm();
  add_ram(0, 0, 1 << 20);
  KvmVcpu* vcpu = add_vcpu(0);
  G guest({G::load(Gpa{0x1000}), G::op(GuestInsnKind::kHlt), G::load(Gpa{0x1000}),
           G::op(GuestInsnKind::kHlt), G::load(Gpa{0x1000}), G::op(GuestInsnKind::kHlt)});
  svm().set_guest(*vcpu, &guest, 4096);
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  EXPECT_EQ(svm_vcpu(*vcpu).vmcb.asid, 1u);
  EXPECT_EQ(svm_vcpu(*vcpu).vmcb_cpu, 1);
  ASSERT_TRUE(run_on(*vcpu, 3).has_value());
  EXPECT_EQ(vcpu->stats().migrations.value(), 1u);
  EXPECT_EQ(svm_vcpu(*vcpu).vmcb.asid, 1u);  // CPU 3's first ASID
  EXPECT_EQ(svm_vcpu(*vcpu).vmcb_cpu, 3);
  // Back on CPU 1: not its old ASID 1, whose entries may still sit in CPU 1's TLB.
  ASSERT_TRUE(run_on(*vcpu, 1).has_value());
  EXPECT_EQ(svm_vcpu(*vcpu).vmcb.asid, 2u);
  EXPECT_EQ(svm().stats().new_asids.value(), 3u);
  EXPECT_EQ(vcpu->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_EQ(stale_uses(), 0u);
}

}  // namespace
}  // namespace tdxsim
