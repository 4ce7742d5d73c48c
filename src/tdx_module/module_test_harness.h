// Test support: a platform with a TdxModule installed, SEAMCALLs issued the way KVM issues
// them (on a bound logical CPU through host_seamcall), and the SYS bring-up. The module's
// test fixtures derive from it instead of each carrying its own copy.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <thread>
#include <vector>

#include "base/fault_injection.h"
#include "platform/platform.h"
#include "tdx_module/seamcall_leaf.h"
#include "tdx_module/td_params.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim::test {

inline constexpr uint64_t kHarnessMemBytes = uint64_t{64} << 20;
inline constexpr uint64_t kHarnessTdmrChunk = uint64_t{16} << 20;
inline constexpr uint16_t kHarnessGlobalHkid = 32;

using tdxsim::TdParams;

class ModuleHarness : public ::testing::Test {
 protected:
  static PlatformConfig platform_config() {
    PlatformConfig c;
    c.packages = 2;
    c.cpus_per_package = 2;
    c.memory.bytes = kHarnessMemBytes;
    return c;
  }
  static TdxModuleConfig module_config() {
    TdxModuleConfig c;
    c.tdmr_init_chunk_bytes = kHarnessTdmrChunk;
    return c;
  }

  ModuleHarness() : platform_(platform_config(), faults_), module_(platform_, module_config()) {
    platform_.install_seam_module(&module_);
  }

  HostMemory& mem() { return platform_.memory(); }
  const PhysAddrLayout& layout() { return platform_.memory().layout(); }

  // One SEAMCALL on logical CPU `cpu`; the outputs are left in `regs`.
  uint64_t call(unsigned cpu, SeamcallLeaf leaf, SeamcallRegs& regs, uint8_t version = 0) {
    regs.rax = LeafAndVersion::of(leaf, version).raw();
    CpuBinding b = platform_.bind(cpu);
    return host_seamcall(b.cpu(), regs);
  }
  uint64_t call_on(unsigned cpu, SeamcallLeaf leaf, uint64_t rcx = 0, uint64_t rdx = 0) {
    SeamcallRegs regs;
    regs.rcx = rcx;
    regs.rdx = rdx;
    return call(cpu, leaf, regs);
  }

  // One CPU of each package (KEY.CONFIG and CACHE.WB run once per package).
  std::vector<unsigned> package_leaders() {
    std::vector<unsigned> cpus;
    for (unsigned p = 0; p < platform_.package_count(); ++p) {
      for (unsigned c = 0; c < platform_.cpu_count(); ++c) {
        if (platform_.cpu(c).package() == p) {
          cpus.push_back(c);
          break;
        }
      }
    }
    return cpus;
  }

  // SYS.INIT, LP.INIT on every CPU, CONFIG, SYS.KEY.CONFIG per package, TDMR.INIT to the end.
  void init_sys() {
    ASSERT_EQ(call_on(0, SeamcallLeaf::kSysInit), 0u);
    for (unsigned c = 0; c < platform_.cpu_count(); ++c) {
      ASSERT_EQ(call_on(c, SeamcallLeaf::kSysLpInit), 0u);
    }
    SeamcallRegs config;
    config.rdx = 1;
    config.r8 = kHarnessGlobalHkid;
    ASSERT_EQ(call(0, SeamcallLeaf::kSysConfig, config), 0u);
    for (unsigned c : package_leaders()) ASSERT_EQ(call_on(c, SeamcallLeaf::kSysKeyConfig), 0u);
    ASSERT_TRUE(module_.sys_ready());
    for (int i = 0; i < 8 && !module_.tdmr_initialized(); ++i) {
      ASSERT_EQ(call_on(0, SeamcallLeaf::kSysTdmrInit), 0u);
    }
    ASSERT_TRUE(module_.tdmr_initialized());
  }

  // A fresh host page.
  Hpa page() {
    std::optional<Pfn> p = platform_.memory().alloc_frame();
    EXPECT_TRUE(p.has_value());
    return p ? p->hpa() : Hpa{};
  }

  // A host page holding TD_PARAMS.
  Hpa td_params(const TdParams& p = {}) {
    const Hpa h = page();
    write_td_params(mem(), h, p);
    return h;
  }

  FaultInjection faults_;
  Platform platform_;
  TdxModule module_;
};

// A host thread already bound to a logical CPU, for the concurrency tests: SEAMCALLs on
// that CPU, and KVM's bounded retry on OPERAND_BUSY.
class BoundHost {
 public:
  static constexpr int kMaxTries = 1'000'000;

  explicit BoundHost(LogicalCpu& cpu) : cpu_(cpu) {}

  uint64_t call(SeamcallLeaf leaf, uint64_t rcx = 0, uint64_t rdx = 0, uint64_t r8 = 0,
                SeamcallRegs* out = nullptr) {
    SeamcallRegs regs;
    regs.rax = LeafAndVersion::of(leaf).raw();
    regs.rcx = rcx;
    regs.rdx = rdx;
    regs.r8 = r8;
    const uint64_t s = host_seamcall(cpu_, regs);
    if (out != nullptr) *out = regs;
    return s;
  }

  // Retries while the answer is BUSY on one of `busy_ok` (the operands this leaf may
  // contend on; any other BUSY fails the test), counting them in *busy. Returns: the first
  // other answer.
  uint64_t retry(SeamcallLeaf leaf, uint64_t rcx, uint64_t rdx, uint64_t r8,
                 std::initializer_list<TdxOperand> busy_ok, std::atomic<uint64_t>* busy,
                 SeamcallRegs* out = nullptr) {
    for (int i = 0; i < kMaxTries; ++i) {
      const uint64_t s = call(leaf, rcx, rdx, r8, out);
      if (!is_status(s, TdxStatus::kOperandBusy)) return s;
      bool expected = false;
      for (TdxOperand o : busy_ok) expected |= details_l2(s) == static_cast<uint32_t>(o);
      EXPECT_TRUE(expected) << to_string(leaf) << ": " << describe_status(s);
      busy->fetch_add(1, std::memory_order_relaxed);
      std::this_thread::yield();
    }
    ADD_FAILURE() << to_string(leaf) << " stayed busy";
    return ~uint64_t{0};
  }

 private:
  LogicalCpu& cpu_;
};

}  // namespace tdxsim::test
