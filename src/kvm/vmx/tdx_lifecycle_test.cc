// A TD's whole life through KVM's TDX code: created, measured, run by a guest that accepts
// and uses private pages the host AUGs on demand, halted, destroyed — after which no frame,
// PAMT entry or HKID of it remains.
#include <gtest/gtest.h>

#include <mutex>

#include "kvm/vmx/tdx_fixture_for_test.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {
namespace {

using L = SeamcallLeaf;

class TdxLifecycleTest : public TdxFixture {};

TEST_F(TdxLifecycleTest, BringUpGivesEveryTdAnHkidButTheGlobalOne) {
  EXPECT_TRUE(module_.sys_ready());
  EXPECT_TRUE(module_.tdmr_initialized());
  EXPECT_EQ(host_->global_hkid(), KeyId{module_.config().first_private_hkid});
  EXPECT_EQ(host_->package_leaders(), (std::vector<unsigned>{0, 4}));
  std::vector<KeyId> got;
  while (std::optional<KeyId> k = host_->keyid_alloc()) got.push_back(*k);
  EXPECT_EQ(got.size(),
            size_t{module_.config().last_private_hkid} - module_.config().first_private_hkid);
  EXPECT_EQ(got.front(), KeyId{static_cast<uint16_t>(host_->global_hkid().raw() + 1)});
  for (KeyId k : got) host_->keyid_free(k);
  EXPECT_EQ(host_->keyids_in_use(), 0u);
}

TEST_F(TdxLifecycleTest, TdRefusesVcpusAndEntryUntilItsStepsRan) {
  create_td();
  // No vCPU before KVM_TDX_INIT_VM; no run before KVM_TDX_FINALIZE_VM.
  EXPECT_FALSE(vm_->create_vcpu(0));
  ASSERT_TRUE(tdx_->init_vm(*vm_, TdParams{.max_vcpus = 1}));
  EXPECT_EQ(td().state(), TdState::kInitialized);
  EXPECT_TRUE(td().hkid_assigned());
  EXPECT_EQ(td().stats().count(L::kMngKeyConfig), platform_.package_count());
  EXPECT_EQ(td().stats().count(L::kMngAddcx), module_.config().tdcs_pages);
  EXPECT_FALSE(tdx_->init_vm(*vm_, TdParams{.max_vcpus = 1}));
  KvmVcpu* v = *vm_->create_vcpu(0);
  vcpus_.push_back(v);
  EXPECT_EQ(err(run_on(*v, 1)), static_cast<int>(Errno::kEinval)) << "vCPU not initialised";
  ASSERT_TRUE(tdx_->init_vcpu(*v));
  EXPECT_EQ(err(run_on(*v, 1)), static_cast<int>(Errno::kEinval)) << "TD not finalized";
  // A private page mapped in the mirror but never added: FINALIZE refuses.
  ASSERT_TRUE(vm_->mmu().load(v->mmu()));
  const FaultResult f = vm_->mmu().page_fault(v->mmu(), kTdMemGpa + 16 * kPageSize, kPferrWrite);
  ASSERT_EQ(f.ret, RetPf::kFixed);
  EXPECT_EQ(td().nr_premapped(), 1);
  EXPECT_EQ(err(tdx_->finalize_vm(*vm_)), static_cast<int>(Errno::kEinval));
  // Zapping it takes the pre-finalize path: BLOCK finds no leaf, nr_premapped drops.
  ASSERT_TRUE(kvm().set_memory_attributes(kTdMemGpa.gfn() + 16, kTdMemGpa.gfn() + 17, 0));
  EXPECT_EQ(td().nr_premapped(), 0);
  EXPECT_EQ(td().stats().count(L::kMemRangeBlock), 1u);
  EXPECT_EQ(td().stats().count(L::kMemPageRemove), 0u);
  EXPECT_FALSE(kvm().vm_bugged()) << kvm().bug_message();
  ASSERT_TRUE(tdx_->finalize_vm(*vm_));
  EXPECT_EQ(td().state(), TdState::kRunnable);
  destroy_and_expect_everything_back();
}

TEST_F(TdxLifecycleTest, GuestAcceptsAugmentedPagesHaltsAndTheTdGoesAwayWithoutATrace) {
  build_td(2, /*initial_pages=*/4);
  EXPECT_EQ(td().state(), TdState::kRunnable);
  EXPECT_EQ(td().nr_premapped(), 0);
  EXPECT_TRUE(module_.td_mrtd(td().tdr()));
  EXPECT_EQ(td().stats().count(L::kMemPageAdd), 4u);
  EXPECT_EQ(td().stats().count(L::kMrExtend), 4u * kPageSize / 256);
  EXPECT_EQ(td().stats().count(L::kVpCreate), 2u);
  EXPECT_EQ(td().stats().count(L::kVpInit), 2u);

  // The guest reads an initial page, accepts two new ones (each an EPT violation KVM
  // answers with PAGE.AUG through the real fault path), writes and reads them, halts.
  const Gpa a = kTdMemGpa + 8 * kPageSize, b = kTdMemGpa + 9 * kPageSize;
  std::vector<GuestInsn> code = {ScriptedGuest::load(kTdMemGpa, Gpr::kR8)};
  append(code, accept(a));
  append(code, accept(b));
  code.push_back(ScriptedGuest::store(a, 0xA));
  code.push_back(ScriptedGuest::store(b, 0xB));
  code.push_back(ScriptedGuest::load(a, Gpr::kR12));
  code.push_back(ScriptedGuest::load(b, Gpr::kR13));
  ScriptedGuest guest(code);
  vt_->set_guest(*vcpus_[0], &guest, 4096);
  ASSERT_TRUE(run_on(*vcpus_[0], 1));
  EXPECT_EQ(vcpus_[0]->run_state().exit_reason, KvmExitReason::kHlt);
  const GuestState gs = *module_.vcpu_guest_state(tdx_vcpu(0).tdvpr());
  EXPECT_EQ(gs.regs[Gpr::kRax], 0u) << describe_status(gs.regs[Gpr::kRax]);
  EXPECT_EQ(gs.regs[Gpr::kR8], 0x1111'0000u) << "the measured initial page";
  EXPECT_EQ(gs.regs[Gpr::kR12], 0xAu);
  EXPECT_EQ(gs.regs[Gpr::kR13], 0xBu);
  EXPECT_EQ(td().stats().count(L::kMemPageAug), 2u);
  EXPECT_EQ(tdx_vcpu(0).associated_cpu(), &platform_.cpu(1));
  EXPECT_EQ(module_.vcpu_assoc_lp(tdx_vcpu(0).tdvpr()), 1u);

  // HLT again: the guest resumes after its halt and halts once more.
  ASSERT_TRUE(run_on(*vcpus_[0], 1));
  EXPECT_EQ(vcpus_[0]->run_state().exit_reason, KvmExitReason::kHlt);
  // vCPU 1 has no program: it halts at once, on the other package.
  ASSERT_TRUE(run_on(*vcpus_[1], 5));
  EXPECT_EQ(vcpus_[1]->run_state().exit_reason, KvmExitReason::kHlt);
  EXPECT_FALSE(kvm().vm_bugged()) << kvm().bug_message();

  // Teardown: the 6 private pages removed while the HKID is assigned, then the HKID
  // released, then the rest reclaimed.
  std::vector<L> order;
  std::mutex mu;
  auto sub = tdx_->seamcall_trace.attach([&](const TdxSeamcallEvent& e) {
    std::lock_guard l(mu);
    if (order.empty() || order.back() != e.leaf) order.push_back(e.leaf);
  });
  destroy_and_expect_everything_back();
  const std::vector<L> want = {
      // per page, 6 times
      L::kMemRangeBlock, L::kMemTrack, L::kMemPageRemove, L::kPhymemPageWbinvd, L::kMemRangeBlock,
      L::kMemTrack, L::kMemPageRemove, L::kPhymemPageWbinvd, L::kMemRangeBlock, L::kMemTrack,
      L::kMemPageRemove, L::kPhymemPageWbinvd, L::kMemRangeBlock, L::kMemTrack, L::kMemPageRemove,
      L::kPhymemPageWbinvd, L::kMemRangeBlock, L::kMemTrack, L::kMemPageRemove,
      L::kPhymemPageWbinvd, L::kMemRangeBlock, L::kMemTrack, L::kMemPageRemove,
      L::kPhymemPageWbinvd,
      // HKID release
      L::kVpFlush, L::kMngVpflushdone, L::kPhymemCacheWb, L::kMngKeyFreeid,
      // vCPUs (TDCX, TDVPR), S-EPT pages, TDCS, TDR
      L::kPhymemPageReclaim, L::kPhymemPageWbinvd};
  EXPECT_EQ(order, want);
}

}  // namespace
}  // namespace tdxsim
