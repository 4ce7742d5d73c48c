// Removing private pages from a running TD: BLOCK → TRACK → kick → REMOVE per page, with the
// vCPU in guest mode kicked out, and a BUSY answer retried exactly once with vCPU entry
// blocked (kvm-tdx-mmu.md §2.4, §2.5).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

#include "kvm/vmx/tdx_fixture_for_test.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {
namespace {

using L = SeamcallLeaf;

constexpr uint64_t kPages = 8;
constexpr uint64_t kFirst = 8;  // the accepted pages: private gfns kFirst..kFirst+kPages-1

class TdxRemoveTest : public TdxFixture {
 protected:
  Gfn gfn(uint64_t i) const { return kTdMemGpa.gfn() + kFirst + i; }

  // vCPU 0 on CPU 1 accepts kPages private pages, then spins in guest mode.
  void start_spinning_guest() {
    std::vector<GuestInsn> code;
    for (uint64_t i = 0; i < kPages; ++i) append(code, accept(gfn(i).gpa()));
    guest_ = std::make_unique<ThenSpin>(code);
    vt_->set_guest(*vcpus_[0], guest_.get(), /*instruction_budget=*/0);
    run_ = start_run(*vcpus_[0], 1);
    while (!guest_->spinning() || !platform_.cpu(1).in_guest_mode()) std::this_thread::yield();
    ASSERT_EQ(td().stats().count(L::kMemPageAug), kPages);
  }
  void stop_guest() {
    vcpus_[0]->signal();
    const KvmResult<> r = wait(run_);
    EXPECT_EQ(err(r), static_cast<int>(Errno::kEintr));
  }
  // Converts gfn(i) to shared; returns the SEAMCALLs that made, in order (the vCPU's
  // re-entries after each kick aside; their count goes to *entries).
  std::vector<L> convert_to_shared(uint64_t i, uint64_t* entries = nullptr) {
    std::vector<L> seq;
    std::mutex mu;
    uint64_t n = 0;
    auto sub = tdx_->seamcall_trace.attach([&](const TdxSeamcallEvent& e) {
      std::lock_guard l(mu);
      if (e.leaf == L::kVpEnter) {
        ++n;
      } else {
        seq.push_back(e.leaf);
      }
    });
    // The vCPU back in the guest after the last kick: this conversion must kick it again.
    while (!platform_.cpu(1).in_guest_mode()) std::this_thread::yield();
    EXPECT_TRUE(kvm().set_memory_attributes(gfn(i), gfn(i) + 1, 0));
    std::lock_guard l(mu);
    if (entries != nullptr) *entries = n;
    return seq;
  }
  bool frame_is_hosts(uint64_t i) {
    const std::optional<Pfn> p = gmem_->page_at(kFirst + i);
    return p && platform_.memory().key(*p) == kHostKey;
  }

  std::unique_ptr<ThenSpin> guest_;
  std::future<KvmResult<>> run_;
};

TEST_F(TdxRemoveTest, ConversionBlocksTracksKicksAndRemovesWhileTheVcpuRuns) {
  build_td(1, 0);
  start_spinning_guest();
  for (uint64_t i = 0; i < 4; ++i) {
    const uint64_t exits = vcpus_[0]->stats().exits.value();
    EXPECT_EQ(convert_to_shared(i), (std::vector<L>{L::kMemRangeBlock, L::kMemTrack,
                                                    L::kMemPageRemove, L::kPhymemPageWbinvd}));
    // TRACK's kick took the vCPU out of the guest (it went straight back in).
    EXPECT_GT(vcpus_[0]->stats().exits.value(), exits);
    EXPECT_TRUE(frame_is_hosts(i)) << "page " << i << " still keyed to the TD";
  }
  EXPECT_EQ(td().stats().busy_count(L::kMemRangeBlock), 0u);
  EXPECT_EQ(td().stats().sept_zap_waits.value(), 0u);
  EXPECT_FALSE(kvm().vm_bugged()) << kvm().bug_message();
  stop_guest();
  destroy_and_expect_everything_back();
}

TEST_F(TdxRemoveTest, EachBusyZapSeamcallIsRetriedOnceWithEntryBlocked) {
  build_td(1, 0);
  start_spinning_guest();
  struct Case {
    L leaf;
    TdxOperand operand;
  };
  const Case cases[] = {{L::kMemRangeBlock, TdxOperand::kSeptTree},
                        {L::kMemTrack, TdxOperand::kTdEpoch},
                        {L::kMemPageRemove, TdxOperand::kSeptTree}};
  const L removal[] = {L::kMemRangeBlock, L::kMemTrack, L::kMemPageRemove};
  const auto busy_total = [&] {
    uint64_t n = 0;
    for (L leaf : removal) n += td().stats().busy_count(leaf);
    return n;
  };
  uint64_t page = 0;
  uint64_t retried_total = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(to_string(c.leaf));
    const uint64_t busy_before = busy_total();
    const uint64_t forced_before = td().stats().busy_count(c.leaf);
    const uint64_t retries_before = td().stats().retries(c.leaf);
    const uint64_t waits_before = td().stats().sept_zap_waits.value();
    faults_.arm(EnvFaultKind::kForceOperandBusy, static_cast<uint64_t>(c.leaf), 1,
                static_cast<uint64_t>(c.operand));
    const std::vector<L> seq = convert_to_shared(page);
    // The busy SEAMCALL appears twice in a row: the try and the one retry. The vCPU goes back
    // into the guest as soon as a retry lets it, so a later SEAMCALL of the same removal can
    // meet its TDH.VP.ENTER and be BUSY for real: retried the same way, it shows twice too.
    std::vector<L> once = seq;
    once.erase(std::unique(once.begin(), once.end()), once.end());
    EXPECT_EQ(once, (std::vector<L>{L::kMemRangeBlock, L::kMemTrack, L::kMemPageRemove,
                                    L::kPhymemPageWbinvd}));
    EXPECT_EQ(std::count(seq.begin(), seq.end(), c.leaf), 2);
    const uint64_t retried = seq.size() - once.size();
    EXPECT_EQ(busy_total() - busy_before, retried);
    EXPECT_EQ(td().stats().busy_count(c.leaf) - forced_before, 1u);
    EXPECT_EQ(td().stats().retries(c.leaf) - retries_before, 1u);
    EXPECT_EQ(td().stats().sept_zap_waits.value() - waits_before, retried);
    retried_total += retried;
    EXPECT_FALSE(td().wait_for_sept_zap());
    EXPECT_TRUE(frame_is_hosts(page));
    EXPECT_FALSE(kvm().vm_bugged()) << kvm().bug_message();
    ++page;
  }
  EXPECT_EQ(td().stats().sept_zap_waits.value(), retried_total);
  EXPECT_EQ(faults_.fired(EnvFaultKind::kForceOperandBusy), 3u);
  // The vCPU still runs the TD.
  const uint64_t exits = vcpus_[0]->stats().exits.value();
  std::vector<L> last = convert_to_shared(page);
  last.erase(std::unique(last.begin(), last.end()), last.end());
  EXPECT_EQ(last.size(), 4u);
  EXPECT_GT(vcpus_[0]->stats().exits.value(), exits);
  stop_guest();
  destroy_and_expect_everything_back();
}

TEST_F(TdxRemoveTest, ABlockStillBusyAfterItsRetryIsAVmBug) {
  build_td(1, 0);
  start_spinning_guest();
  faults_.arm(EnvFaultKind::kForceOperandBusy, static_cast<uint64_t>(L::kMemRangeBlock), 2,
              static_cast<uint64_t>(TdxOperand::kSeptTree));
  const std::vector<L> seq = convert_to_shared(0);
  EXPECT_EQ(seq, (std::vector<L>{L::kMemRangeBlock, L::kMemRangeBlock}));
  EXPECT_TRUE(kvm().vm_bugged());
  EXPECT_FALSE(td().wait_for_sept_zap());
  // The dead VM's vCPU leaves KVM_RUN: with EIO (KVM_REQ_VM_DEAD), or, when it was already
  // past its request check, with the internal error of a non-recoverable entry.
  const KvmResult<> r = wait(run_);
  if (r) {
    EXPECT_EQ(vcpus_[0]->run_state().exit_reason, KvmExitReason::kInternalError);
    EXPECT_EQ(vcpus_[0]->run_state().internal.data[0], raw(TdxStatus::kNonRecoverableVcpu));
  } else {
    EXPECT_EQ(err(r), static_cast<int>(Errno::kEio));
  }
  EXPECT_EQ(err(run_on(*vcpus_[0], 1)), static_cast<int>(Errno::kEio));
}

}  // namespace
}  // namespace tdxsim
