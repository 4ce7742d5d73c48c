// TdxModule under concurrent SEAMCALLs from every logical CPU: the module never blocks, a
// contended lock answers BUSY with its operand, and the TD's counters come out exact.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "base/fault_injection.h"
#include "platform/platform.h"
#include "tdx_module/module_test_harness.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {
namespace {

constexpr uint64_t kOk = 0;
constexpr uint16_t kGlobalHkid = 32;
constexpr uint16_t kTdHkid = 33;
constexpr unsigned kVcpusPerThread = 8;
constexpr uint16_t kMaxVcpus = 20;  // fewer than the vCPUs created: VP.INIT's bound is raced

TEST(TdxModuleStress, ConcurrentVcpuBuildAgainstExclusiveTdrLeaves) {
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

  // SYS bring-up and one initialised TD.
  Hpa tdr;
  {
    CpuBinding b0 = platform.bind(0);
    test::BoundHost h0(b0.cpu());
    ASSERT_EQ(h0.call(SeamcallLeaf::kSysInit), kOk);
  }
  for (unsigned c = 0; c < platform.cpu_count(); ++c) {
    CpuBinding b = platform.bind(c);
    ASSERT_EQ(test::BoundHost(b.cpu()).call(SeamcallLeaf::kSysLpInit), kOk);
  }
  {
    CpuBinding b0 = platform.bind(0);
    ASSERT_EQ(test::BoundHost(b0.cpu()).call(SeamcallLeaf::kSysConfig, 0, 1, kGlobalHkid), kOk);
  }
  for (unsigned c = 0; c < platform.cpu_count(); ++c) {
    CpuBinding b = platform.bind(c);
    test::BoundHost h(b.cpu());
    if (module.sys_ready()) break;  // after the last package it is no longer pending
    const uint64_t s = h.call(SeamcallLeaf::kSysKeyConfig);
    ASSERT_TRUE(s == kOk || s == raw(TdxStatus::kKeyConfigured)) << describe_status(s);
  }
  ASSERT_TRUE(module.sys_ready());
  {
    CpuBinding b0 = platform.bind(0);
    test::BoundHost h0(b0.cpu());
    while (!module.tdmr_initialized()) ASSERT_EQ(h0.call(SeamcallLeaf::kSysTdmrInit), kOk);
    tdr = page();
    ASSERT_EQ(h0.call(SeamcallLeaf::kMngCreate, tdr.raw(), kTdHkid), kOk);
  }
  for (unsigned c = 0; c < platform.cpu_count(); ++c) {
    CpuBinding b = platform.bind(c);
    // After the last package the lifecycle has moved on: KEY.CONFIG is refused from then.
    if (module.td_lifecycle(tdr) == TdLifecycle::kKeysConfigured) break;
    const uint64_t s = test::BoundHost(b.cpu()).call(SeamcallLeaf::kMngKeyConfig, tdr.raw());
    ASSERT_TRUE(s == kOk || s == raw(TdxStatus::kKeyConfigured)) << describe_status(s);
  }
  {
    CpuBinding b0 = platform.bind(0);
    test::BoundHost h0(b0.cpu());
    for (unsigned i = 0; i < module.config().tdcs_pages; ++i) {
      ASSERT_EQ(h0.call(SeamcallLeaf::kMngAddcx, page().raw(), tdr.raw()), kOk);
    }
    const Hpa params = page();
    mem.write(params + 0, kHostKey, kTdAttrSeptVeDisable);
    mem.write(params + 16, kHostKey, kMaxVcpus);
    mem.write(params + 24, kHostKey, 6 | (3 << 3));
    ASSERT_EQ(h0.call(SeamcallLeaf::kMngInit, tdr.raw(), params.raw()), kOk);
  }

  // Threads 0..n-2 build vCPUs (TDR shared); the last thread hammers the TDR exclusively
  // (KEY.CONFIG, refused by lifecycle once it gets the lock) until the builders finish.
  const unsigned n = platform.cpu_count();
  std::atomic<uint64_t> busy{0};
  std::atomic<unsigned> builders_left{n - 1};
  std::atomic<uint64_t> inits_ok{0};
  std::atomic<uint64_t> inits_over{0};
  std::atomic<uint64_t> exclusive_refusals{0};
  std::atomic<unsigned> started{0};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      CpuBinding b = platform.bind(t);
      test::BoundHost h(b.cpu());
      // Start together, so the builders really race the exclusive TDR holder.
      started.fetch_add(1, std::memory_order_acq_rel);
      while (started.load(std::memory_order_acquire) != n) std::this_thread::yield();
      if (t == n - 1) {
        for (int i = 0; i < 200 || builders_left.load(std::memory_order_acquire) != 0; ++i) {
          const uint64_t s = h.call(SeamcallLeaf::kMngKeyConfig, tdr.raw());
          if (s == with_operand(TdxStatus::kOperandBusy, TdxOperand::kRcx)) {
            busy.fetch_add(1, std::memory_order_relaxed);
          } else {
            EXPECT_EQ(s, raw(TdxStatus::kLifecycleStateIncorrect));
            exclusive_refusals.fetch_add(1, std::memory_order_relaxed);
          }
        }
        return;
      }
      for (unsigned v = 0; v < kVcpusPerThread; ++v) {
        const Hpa tdvpr = page();
        EXPECT_EQ(
            h.retry(SeamcallLeaf::kVpCreate, tdvpr.raw(), tdr.raw(), 0, {TdxOperand::kRdx}, &busy),
            kOk);
        for (unsigned i = 1; i < module.config().tdvps_pages; ++i) {
          EXPECT_EQ(h.retry(SeamcallLeaf::kVpAddcx, page().raw(), tdvpr.raw(), 0,
                            {TdxOperand::kTdr}, &busy),
                    kOk);
        }
        const uint64_t s =
            h.retry(SeamcallLeaf::kVpInit, tdvpr.raw(), v, 0, {TdxOperand::kTdr}, &busy);
        if (s == kOk) {
          inits_ok.fetch_add(1, std::memory_order_relaxed);
        } else {
          EXPECT_EQ(s, raw(TdxStatus::kMaxVcpusExceeded));
          inits_over.fetch_add(1, std::memory_order_relaxed);
        }
      }
      builders_left.fetch_sub(1, std::memory_order_release);
    });
  }
  for (std::thread& th : threads) th.join();

  const uint64_t vcpus = uint64_t{n - 1} * kVcpusPerThread;
  EXPECT_EQ(module.vcpu_count(), vcpus);
  EXPECT_EQ(inits_ok.load(), kMaxVcpus);
  EXPECT_EQ(inits_over.load(), vcpus - kMaxVcpus);
  EXPECT_EQ(module.td_child_count(tdr),
            module.config().tdcs_pages + vcpus * module.config().tdvps_pages);
  EXPECT_EQ(module.pamt().count(PamtPageType::kTdvpr), vcpus);
  EXPECT_EQ(module.pamt().count(PamtPageType::kTdcx),
            module.config().tdcs_pages + vcpus * (module.config().tdvps_pages - 1));
  EXPECT_GT(exclusive_refusals.load(), 0u);
  std::printf("busy answers: %llu, exclusive refusals: %llu\n",
              static_cast<unsigned long long>(busy.load()),
              static_cast<unsigned long long>(exclusive_refusals.load()));
}

}  // namespace
}  // namespace tdxsim
