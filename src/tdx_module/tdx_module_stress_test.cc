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
  const test::SeamcallOn seamcall = test::bound_seamcall(platform);
  ASSERT_TRUE(test::bring_up_sys(platform, module, seamcall));
  test::TdSpec spec;
  spec.hkid = kTdHkid;
  spec.params.max_vcpus = kMaxVcpus;
  const std::expected<test::BuiltTd, std::string> td =
      test::build_td(platform, module, seamcall, spec);
  ASSERT_TRUE(td.has_value()) << td.error();
  const Hpa tdr = td->tdr;

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
        const auto attempt = [&] {
          const uint64_t s = h.call(SeamcallLeaf::kMngKeyConfig, tdr.raw());
          if (s == with_operand(TdxStatus::kOperandBusy, TdxOperand::kRcx)) {
            busy.fetch_add(1, std::memory_order_relaxed);
          } else {
            EXPECT_EQ(s, raw(TdxStatus::kLifecycleStateIncorrect));
            exclusive_refusals.fetch_add(1, std::memory_order_relaxed);
          }
        };
        for (int i = 0; i < 200 || builders_left.load(std::memory_order_acquire) != 0; ++i) {
          attempt();
        }
        // With the builders gone the TDR is free: the exclusive leaf must get it now and be
        // refused by the lifecycle, however the race above went (under a sanitizer every
        // try may have met a builder holding the TDR shared).
        attempt();
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
