// The S-EPT leaves under concurrent SEAMCALLs from every logical CPU: AUG and REMOVE of
// neighbouring entries of one S-EPT page (tree shared, entry locks and CAS on the same
// table) race BLOCK/UNBLOCK (tree exclusive) and SEPT.RD. Contention answers BUSY with the
// tree or the entry operand and is retried, as KVM retries; the end state is exact.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "base/fault_injection.h"
#include "platform/platform.h"
#include "tdx_module/module_test_harness.h"
#include "tdx_module/sept_walk.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {
namespace {

constexpr uint64_t kOk = 0;
constexpr uint16_t kTdHkid = 33;
constexpr unsigned kPagesPerThread = 48;
constexpr unsigned kRounds = 16;
constexpr Gpa kGpa{0x20'0000};     // the shared 4K table's range
constexpr Gpa kBigGpa{0x40'0000};  // a 2M PENDING page blocked and unblocked meanwhile
// What AUG/REMOVE/BLOCK/UNBLOCK/SEPT.RD may contend on: the S-EPT tree or the entry.
const std::initializer_list<TdxOperand> kTreeOrEntry = {TdxOperand::kSeptTree, TdxOperand::kRcx};

TEST(MemLeavesStress, AugRemoveOnOneTableRaceBlockUnblockAndSeptRd) {
  FaultInjection faults;
  PlatformConfig pc;
  pc.packages = 2;
  pc.cpus_per_package = 2;
  pc.memory.bytes = uint64_t{32} << 20;
  Platform platform(pc, faults);
  TdxModule module(platform);
  platform.install_seam_module(&module);
  HostMemory& mem = platform.memory();
  const auto page = [&] { return mem.alloc_frame().value().hpa(); };
  const auto pi = [](Gpa g, unsigned l) { return PageInfo::of(g, l).raw(); };

  // SYS bring-up, one initialised TD, and S-EPT tables for the shared 4K table's range.
  const test::SeamcallOn seamcall = test::bound_seamcall(platform);
  ASSERT_TRUE(test::bring_up_sys(platform, module, seamcall));
  test::TdSpec spec;
  spec.hkid = kTdHkid;
  const std::expected<test::BuiltTd, std::string> td =
      test::build_td(platform, module, seamcall, spec);
  ASSERT_TRUE(td.has_value()) << td.error();
  const Hpa tdr = td->tdr;
  Hpa big;
  {
    CpuBinding b0 = platform.bind(0);
    test::BoundHost h0(b0.cpu());
    ASSERT_EQ(h0.call(SeamcallLeaf::kMemSeptAdd, pi(Gpa{0}, 3), tdr.raw(), page().raw()), kOk);
    ASSERT_EQ(h0.call(SeamcallLeaf::kMemSeptAdd, pi(Gpa{0}, 2), tdr.raw(), page().raw()), kOk);
    ASSERT_EQ(h0.call(SeamcallLeaf::kMemSeptAdd, pi(kGpa, 1), tdr.raw(), page().raw()), kOk);
    big = page();
    while (!big.is_aligned(Level::k2M)) big = page();
    for (uint64_t i = 1; i < 512; ++i) ASSERT_EQ(page(), big + i * kPageSize);
    ASSERT_EQ(h0.call(SeamcallLeaf::kMemPageAug, pi(kBigGpa, 1), tdr.raw(), big.raw()), kOk);
  }
  const uint64_t base_children = *module.td_child_count(tdr);

  const unsigned n = platform.cpu_count();
  std::atomic<uint64_t> busy{0};
  std::atomic<uint64_t> blocks{0};
  std::atomic<unsigned> workers_left{n - 1};
  std::atomic<unsigned> started{0};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      CpuBinding b = platform.bind(t);
      test::BoundHost h(b.cpu());
      started.fetch_add(1, std::memory_order_acq_rel);
      while (started.load(std::memory_order_acquire) != n) std::this_thread::yield();
      if (t == n - 1) {
        // Tree-exclusive leaves on the 2M page, and reads of the shared table.
        for (int i = 0; i < 200 || workers_left.load(std::memory_order_acquire) != 0; ++i) {
          EXPECT_EQ(h.retry(SeamcallLeaf::kMemRangeBlock, pi(kBigGpa, 1), tdr.raw(), 0,
                            kTreeOrEntry, &busy),
                    kOk);
          EXPECT_EQ(h.retry(SeamcallLeaf::kMemRangeUnblock, pi(kBigGpa, 1), tdr.raw(), 0,
                            kTreeOrEntry, &busy),
                    kOk);
          blocks.fetch_add(1, std::memory_order_relaxed);
          SeamcallRegs r;
          const Gpa g = kGpa + (static_cast<uint64_t>(i) % 512) * kPageSize;
          EXPECT_EQ(
              h.retry(SeamcallLeaf::kMemSeptRd, pi(g, 0), tdr.raw(), 0, kTreeOrEntry, &busy, &r),
              kOk);
          const uint64_t state = (r.rdx >> 8) & 0xFF;
          EXPECT_TRUE(state == static_cast<uint8_t>(SeptState::kFree) ||
                      state == static_cast<uint8_t>(SeptState::kPending))
              << std::hex << r.rdx;
        }
        return;
      }
      std::vector<Hpa> pages;
      for (unsigned i = 0; i < kPagesPerThread; ++i) pages.push_back(page());
      for (unsigned round = 0; round < kRounds; ++round) {
        for (unsigned i = 0; i < kPagesPerThread; ++i) {
          const Gpa g = kGpa + (uint64_t{t} * kPagesPerThread + i) * kPageSize;
          EXPECT_EQ(h.retry(SeamcallLeaf::kMemPageAug, pi(g, 0), tdr.raw(), pages[i].raw(),
                            kTreeOrEntry, &busy),
                    kOk);
        }
        for (unsigned i = 0; i < kPagesPerThread; ++i) {
          const Gpa g = kGpa + (uint64_t{t} * kPagesPerThread + i) * kPageSize;
          SeamcallRegs r;
          EXPECT_EQ(h.retry(SeamcallLeaf::kMemPageRemove, pi(g, 0), tdr.raw(), 0, kTreeOrEntry,
                            &busy, &r),
                    kOk);
          EXPECT_EQ(r.rcx, pages[i].raw());
          // Same frame again next round: write back the TD's lines first, as KVM does.
          EXPECT_EQ(h.call(SeamcallLeaf::kPhymemPageWbinvd,
                           mem.layout().with_key(pages[i], KeyId{kTdHkid})),
                    kOk);
        }
      }
      workers_left.fetch_sub(1, std::memory_order_release);
    });
  }
  for (std::thread& th : threads) th.join();

  EXPECT_EQ(module.td_child_count(tdr), base_children);
  EXPECT_EQ(module.pamt().count(PamtPageType::kReg, Level::k4K), 0u);
  EXPECT_EQ(module.pamt().count(PamtPageType::kReg, Level::k2M), 1u);
  // Every entry of the shared table FREE again, with no lock bit left behind.
  const Hpa root = td->tdcs[kTdcsSeptRootPageIndex];
  for (uint64_t i = 0; i < 512; ++i) {
    const SeptWalkResult w =
        sept_walk(mem, mem.layout(), root, 4, KeyId{kTdHkid}, kGpa + i * kPageSize, Level::k4K);
    ASSERT_TRUE(w.reached);
    EXPECT_EQ(w.entry.state(), SeptState::kFree) << i;
    EXPECT_FALSE(w.entry.is_locked()) << i;
  }
  const SeptWalkResult bw =
      sept_walk(mem, mem.layout(), root, 4, KeyId{kTdHkid}, kBigGpa, Level::k2M);
  EXPECT_EQ(bw.entry.state(), SeptState::kPending);
  EXPECT_FALSE(bw.entry.is_locked());
  std::printf("AUG+REMOVE: %u, BLOCK/UNBLOCK cycles: %llu, busy answers: %llu\n",
              (n - 1) * kPagesPerThread * kRounds, static_cast<unsigned long long>(blocks.load()),
              static_cast<unsigned long long>(busy.load()));
}

}  // namespace
}  // namespace tdxsim
