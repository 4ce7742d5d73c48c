// Test support: a platform with a TdxModule installed, SEAMCALLs issued the way KVM issues
// them (on a bound logical CPU through host_seamcall), the SYS bring-up and the build of a
// TD. The bring-up and the TD build are free functions, so that the stress tests, which own
// their platform and threads, share them with the unit tests' fixture; they report failure
// the gtest way (an AssertionResult, or an error message in a std::expected) instead of
// asserting, so that they work outside a fixture and each caller decides how fatal it is.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <expected>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/fault_injection.h"
#include "base/sched.h"
#include "platform/platform.h"
#include "tdx_module/seamcall_leaf.h"
#include "tdx_module/td_params.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim::test {

inline constexpr uint64_t kHarnessMemBytes = uint64_t{64} << 20;
inline constexpr uint64_t kHarnessTdmrChunk = uint64_t{16} << 20;
inline constexpr uint16_t kHarnessGlobalHkid = 32;
inline constexpr uint16_t kHarnessTdHkid = 33;

using tdxsim::TdParams;

// Issues one SEAMCALL on logical CPU `cpu` (RAX is set from `leaf`); the outputs are left in
// `regs`. Returns: RAX.
using SeamcallOn = std::function<uint64_t(unsigned cpu, SeamcallLeaf leaf, SeamcallRegs& regs)>;

// KVM's way: the calling thread binds to the CPU for the call.
inline SeamcallOn bound_seamcall(Platform& platform) {
  return [&platform](unsigned cpu, SeamcallLeaf leaf, SeamcallRegs& regs) {
    regs.rax = LeafAndVersion::of(leaf).raw();
    CpuBinding b = platform.bind(cpu);
    return host_seamcall(b.cpu(), regs);
  };
}

// Where a TD's pages (and its TD_PARAMS page) come from: nullopt when there are none.
using PageSource = std::function<std::optional<Hpa>()>;

// The host's allocator.
inline PageSource allocated_pages(HostMemory& mem) {
  return [&mem]() -> std::optional<Hpa> {
    const std::optional<Pfn> p = mem.alloc_frame();
    if (!p) return std::nullopt;
    return p->hpa();
  };
}

// One CPU of each package (KEY.CONFIG and CACHE.WB run once per package).
inline std::vector<unsigned> package_leaders(Platform& platform) {
  std::vector<unsigned> cpus;
  for (unsigned p = 0; p < platform.package_count(); ++p) {
    for (unsigned c = 0; c < platform.cpu_count(); ++c) {
      if (platform.cpu(c).package() == p) {
        cpus.push_back(c);
        break;
      }
    }
  }
  return cpus;
}

namespace internal {

inline std::string step_failed(std::string_view step, uint64_t status) {
  return fmt::format("{} answered {:#x} ({})", step, status, describe_status(status));
}

inline uint64_t seamcall(const SeamcallOn& call, unsigned cpu, SeamcallLeaf leaf, uint64_t rcx = 0,
                         uint64_t rdx = 0, uint64_t r8 = 0) {
  SeamcallRegs regs;
  regs.rcx = rcx;
  regs.rdx = rdx;
  regs.r8 = r8;
  return call(cpu, leaf, regs);
}

}  // namespace internal

// SYS.INIT, LP.INIT on every CPU, CONFIG (global HKID `global_hkid`), SYS.KEY.CONFIG per
// package, and TDMR.INIT until the whole TDMR is initialised.
inline ::testing::AssertionResult bring_up_sys(Platform& platform, TdxModule& module,
                                               const SeamcallOn& call,
                                               uint16_t global_hkid = kHarnessGlobalHkid) {
  using internal::seamcall;
  using internal::step_failed;
  if (const uint64_t s = seamcall(call, 0, SeamcallLeaf::kSysInit); s != 0) {
    return ::testing::AssertionFailure() << step_failed("SYS.INIT", s);
  }
  for (unsigned c = 0; c < platform.cpu_count(); ++c) {
    if (const uint64_t s = seamcall(call, c, SeamcallLeaf::kSysLpInit); s != 0) {
      return ::testing::AssertionFailure() << step_failed(fmt::format("LP.INIT on CPU {}", c), s);
    }
  }
  if (const uint64_t s = seamcall(call, 0, SeamcallLeaf::kSysConfig, 0, 1, global_hkid); s != 0) {
    return ::testing::AssertionFailure() << step_failed("SYS.CONFIG", s);
  }
  for (unsigned c : package_leaders(platform)) {
    if (const uint64_t s = seamcall(call, c, SeamcallLeaf::kSysKeyConfig); s != 0) {
      return ::testing::AssertionFailure()
             << step_failed(fmt::format("SYS.KEY.CONFIG on CPU {}", c), s);
    }
  }
  if (!module.sys_ready()) {
    return ::testing::AssertionFailure() << "not ready after SYS.KEY.CONFIG on every package";
  }
  // Each TDMR.INIT initialises one more chunk: at most one call a chunk, plus one.
  const uint64_t chunks =
      platform.memory().total_frames() * kPageSize / module.config().tdmr_init_chunk_bytes + 1;
  for (uint64_t i = 0; i < chunks && !module.tdmr_initialized(); ++i) {
    if (const uint64_t s = seamcall(call, 0, SeamcallLeaf::kSysTdmrInit); s != 0) {
      return ::testing::AssertionFailure() << step_failed("TDMR.INIT", s);
    }
  }
  if (!module.tdmr_initialized()) {
    return ::testing::AssertionFailure() << "TDMR.INIT did not reach the end of memory";
  }
  return ::testing::AssertionSuccess();
}

// VP.CREATE, then VP.ADDCX × (tdvps_pages - 1), then VP.INIT if `init`, all on CPU 0.
// Returns: the vCPU's pages, TDVPR first.
inline std::expected<std::vector<Hpa>, std::string> build_vcpu(TdxModule& module,
                                                               const SeamcallOn& call,
                                                               const PageSource& page, Hpa tdr,
                                                               bool init = true) {
  using internal::seamcall;
  using internal::step_failed;
  std::vector<Hpa> pages;
  for (unsigned i = 0; i < module.config().tdvps_pages; ++i) {
    const std::optional<Hpa> p = page();
    if (!p) return std::unexpected("out of pages for the vCPU");
    pages.push_back(*p);
    const uint64_t s =
        i == 0 ? seamcall(call, 0, SeamcallLeaf::kVpCreate, p->raw(), tdr.raw())
               : seamcall(call, 0, SeamcallLeaf::kVpAddcx, p->raw(), pages.front().raw());
    if (s != 0) {
      return std::unexpected(
          step_failed(fmt::format("{} of {}", i == 0 ? "VP.CREATE" : "VP.ADDCX", *p), s));
    }
  }
  if (init) {
    if (const uint64_t s = seamcall(call, 0, SeamcallLeaf::kVpInit, pages.front().raw(), 0);
        s != 0) {
      return std::unexpected(step_failed("VP.INIT", s));
    }
  }
  return pages;
}

// What build_td builds.
struct TdSpec {
  uint16_t hkid = kHarnessTdHkid;
  bool init = true;  // MNG.INIT with `params`; without it, stop after ADDCX
  TdParams params;
  unsigned vcpus = 0;  // each built with build_vcpu (needs `init`)
  PageSource page;     // empty: the platform's allocator
};

struct BuiltTd {
  Hpa tdr;
  std::vector<Hpa> tdcs;
  std::vector<std::vector<Hpa>> vcpus;  // each TDVPR first
};

// MNG.CREATE, MNG.KEY.CONFIG on each package, MNG.ADDCX × tdcs_pages, MNG.INIT, and the
// vCPUs, as `spec` asks.
inline std::expected<BuiltTd, std::string> build_td(Platform& platform, TdxModule& module,
                                                    const SeamcallOn& call,
                                                    const TdSpec& spec = {}) {
  using internal::seamcall;
  using internal::step_failed;
  const PageSource page = spec.page ? spec.page : allocated_pages(platform.memory());
  BuiltTd td;
  const auto next = [&page]() -> std::expected<Hpa, std::string> {
    const std::optional<Hpa> p = page();
    if (!p) return std::unexpected("out of pages for the TD");
    return *p;
  };
  const std::expected<Hpa, std::string> tdr = next();
  if (!tdr) return std::unexpected(tdr.error());
  td.tdr = *tdr;
  if (const uint64_t s = seamcall(call, 0, SeamcallLeaf::kMngCreate, td.tdr.raw(), spec.hkid);
      s != 0) {
    return std::unexpected(step_failed(fmt::format("MNG.CREATE of {}", td.tdr), s));
  }
  for (unsigned c : package_leaders(platform)) {
    if (const uint64_t s = seamcall(call, c, SeamcallLeaf::kMngKeyConfig, td.tdr.raw()); s != 0) {
      return std::unexpected(step_failed(fmt::format("MNG.KEY.CONFIG on CPU {}", c), s));
    }
  }
  for (unsigned i = 0; i < module.config().tdcs_pages; ++i) {
    const std::expected<Hpa, std::string> cx = next();
    if (!cx) return std::unexpected(cx.error());
    td.tdcs.push_back(*cx);
    if (const uint64_t s = seamcall(call, 0, SeamcallLeaf::kMngAddcx, cx->raw(), td.tdr.raw());
        s != 0) {
      return std::unexpected(step_failed(fmt::format("MNG.ADDCX of {}", *cx), s));
    }
  }
  if (!spec.init) {
    if (spec.vcpus != 0) return std::unexpected("vCPUs of a TD that MNG.INIT did not run on");
    return td;
  }
  const std::expected<Hpa, std::string> params = next();
  if (!params) return std::unexpected(params.error());
  write_td_params(platform.memory(), *params, spec.params);
  if (const uint64_t s = seamcall(call, 0, SeamcallLeaf::kMngInit, td.tdr.raw(), params->raw());
      s != 0) {
    return std::unexpected(step_failed("MNG.INIT", s));
  }
  for (unsigned v = 0; v < spec.vcpus; ++v) {
    std::expected<std::vector<Hpa>, std::string> pages = build_vcpu(module, call, page, td.tdr);
    if (!pages) return std::unexpected(fmt::format("vCPU {}: {}", v, pages.error()));
    td.vcpus.push_back(std::move(*pages));
  }
  return td;
}

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
  // call() for the free functions above.
  SeamcallOn seamcall_on() {
    return [this](unsigned cpu, SeamcallLeaf leaf, SeamcallRegs& regs) {
      return call(cpu, leaf, regs);
    };
  }

  std::vector<unsigned> package_leaders() { return test::package_leaders(platform_); }

  void init_sys() { ASSERT_TRUE(bring_up_sys(platform_, module_, seamcall_on())); }

  // build_td on CPU 0. A failure fails the test, not fatally: the caller gets an empty
  // BuiltTd and goes on, as with EXPECT.
  BuiltTd build_td(const TdSpec& spec = {}) {
    std::expected<BuiltTd, std::string> td =
        test::build_td(platform_, module_, seamcall_on(), spec);
    if (!td) {
      ADD_FAILURE() << td.error();
      return {};
    }
    return std::move(*td);
  }
  // build_vcpu on CPU 0 with pages from the allocator; the pages, TDVPR first.
  std::vector<Hpa> build_vcpu(Hpa tdr, bool init = true) {
    std::expected<std::vector<Hpa>, std::string> pages =
        test::build_vcpu(module_, seamcall_on(), allocated_pages(mem()), tdr, init);
    if (!pages) {
      ADD_FAILURE() << pages.error();
      return {};
    }
    return std::move(*pages);
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
      sched_pause();
    }
    ADD_FAILURE() << to_string(leaf) << " stayed busy";
    return ~uint64_t{0};
  }

 private:
  LogicalCpu& cpu_;
};

}  // namespace tdxsim::test
