// HostWorld: the machine a hostile host owns for one fuzz input, and what the host knows of
// it.
//
// The machine: two packages of one logical CPU each (so the per-package leaves matter), 8 MiB
// of host memory, and the TDX module brought up through the SYS leaves. It is built afresh for
// every input (small enough to cost less than the checks after it), so that an input
// replays alone, whatever ran before it in the process.
//
// What the host knows is what a real host learns from the module's answers: every SEAMCALL
// goes through call(), which, when a leaf succeeds, records what it created or took (TDs and
// their control pages, vCPUs, pages given to the module, pages PAGE.ADD measured) and what it
// handed back. Nothing is read from the module's insides here; the checks that do that are
// module_invariants.h's.
//
// Host memory layout: the first 2M holds the host's own 4K pages (frame 0 stays unused, so
// that 0 is never a page the host meant), the next three 2M are the runs it gives as 2M
// pages, and the last 2M is memory it never names on purpose (only an arbitrary frame number
// reaches it).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/fault_injection.h"
#include "base/trace.h"
#include "fuzz/fuzz_guest.h"
#include "platform/key_id.h"
#include "platform/platform.h"
#include "platform/seamcall.h"
#include "tdx_module/seamcall_leaf.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim::fuzz {

inline constexpr unsigned kWorldCpus = 2;
inline constexpr uint64_t kWorldMemoryBytes = uint64_t{8} << 20;
inline constexpr uint16_t kWorldGlobalHkid = 32;
inline constexpr uint16_t kWorldFirstTdHkid = 33;
inline constexpr uint16_t kWorldLastHkid = 63;
inline constexpr uint64_t kHostPages = 511;  // frames 1..511
inline constexpr uint64_t kHostRuns2m = 3;   // 2M runs at 2M, 4M, 6M

// A page PAGE.ADD put into a TD, with its content as the TD's key read it then.
struct MeasuredPage {
  Gpa gpa;
  uint64_t hash = 0;
  // A successful leaf or guest store that may change it legitimately (PAGE.REMOVE, MEM.WR,
  // a guest's store) ran since: its content is no longer the measured one.
  bool disturbed = false;
};

struct VcpuRecord {
  Hpa tdvpr;
  std::vector<Hpa> tdcx;
};

struct TdRecord {
  Hpa tdr;
  KeyId hkid;
  std::vector<Hpa> tdcs;
  std::vector<VcpuRecord> vcpus;
  bool initialized = false;  // TDH.MNG.INIT succeeded: the fields below are its TD_PARAMS'
  unsigned ept_levels = 4;
  unsigned gpaw = 48;
  bool debug = false;
  std::vector<MeasuredPage> measured;
  // The page infos (GPA | level) of successful SEPT.ADD, AUG and PAGE.ADD: where the host
  // knows the S-EPT has something (KVM's mirror, in short), most recent last.
  std::vector<uint64_t> mapped;

  Gpa shared_bit() const { return Gpa{uint64_t{1} << (gpaw - 1)}; }
};

class HostWorld {
 public:
  // Builds the machine and brings the module up (TDXSIM_CHECK: a failure is the harness's).
  HostWorld();
  ~HostWorld();
  HostWorld(const HostWorld&) = delete;
  HostWorld& operator=(const HostWorld&) = delete;

  Platform& platform() { return platform_; }
  HostMemory& mem() { return platform_.memory(); }
  const PhysAddrLayout& layout() { return platform_.memory().layout(); }
  TdxModule& module() { return module_; }

  // One SEAMCALL on logical CPU `cpu` with RAX and the operands as `regs` holds them (the
  // outputs are left there), then the interrupt window KVM opens after it. Returns: RAX.
  uint64_t call(unsigned cpu, SeamcallRegs& regs);
  uint64_t call(SeamcallLeaf leaf, uint64_t rcx = 0, uint64_t rdx = 0, uint64_t r8 = 0,
                uint64_t r9 = 0, unsigned cpu = 0, SeamcallRegs* out = nullptr);

  // A host page not named before in this world, while there are any; then the pool again
  // from its start (a host that reuses pages it gave away).
  Hpa fresh_page();
  Hpa host_page(size_t i) const { return Pfn{1 + i % kHostPages}.hpa(); }
  Hpa run_2m(size_t i) const { return Pfn{512 * (1 + i % kHostRuns2m)}.hpa(); }

  std::vector<TdRecord>& tds() { return tds_; }
  TdRecord* td_by_tdr(uint64_t tdr);
  // Every page a successful leaf gave the module (TDR, TDCS, TDVPR, TDCX, S-EPT and data
  // pages), most recent last; pages the module handed back stay listed.
  const std::vector<Hpa>& module_pages() const { return module_pages_; }

  // A program for the vCPU that starts where the vCPU stands: at its RIP, or past the
  // interrupted RIP a #VE handler would return to.
  std::unique_ptr<FuzzGuest> new_guest(Hpa tdr, Hpa tdvpr) const;
  // Runs `program` on the vCPU from its next TDH.VP.ENTER; the world keeps it alive.
  // Returns: false when the module knows no such vCPU.
  bool attach(Hpa tdvpr, std::unique_ptr<FuzzGuest> program);
  // The guests attached so far (their suspects are checked after each entry).
  const std::vector<std::unique_ptr<FuzzGuest>>& guests() const { return guests_; }

  // Marks the measured pages of `td` in [gpa, gpa + bytes) disturbed.
  void disturb(TdRecord& td, Gpa gpa, uint64_t bytes);

  // Each use of a stale private translation (the CPU's staleness probe) that reached a frame
  // the TD no longer holds: not PT_REG, or under another key. A TLB entry of a blocked page
  // may be used until the next entry after TRACK flushes it; the frame must still be the
  // TD's then, which is what BLOCK, TRACK and the removal leaves' tracking check guarantee.
  const std::vector<std::string>& stale_private_uses() const { return stale_private_; }

 private:
  // What a successful leaf tells the host (see the file comment).
  void observe(SeamcallLeaf leaf, const SeamcallRegs& in);
  void given(uint64_t page);
  void on_stale_use(const StaleUse& use);
  void remember_mapped(TdRecord& td, uint64_t page_info);
  void bring_up();

  FaultInjection faults_;
  Platform platform_;
  std::vector<Tracepoint<StaleUse>::Subscription> stale_subscriptions_;
  std::vector<std::string> stale_private_;
  // Before the module: a vCPU's program must outlive the module that runs it.
  std::vector<std::unique_ptr<FuzzGuest>> guests_;
  TdxModule module_;
  std::vector<TdRecord> tds_;
  std::vector<Hpa> module_pages_;
  uint64_t next_fresh_ = 0;
};

}  // namespace tdxsim::fuzz
