// StaleUseCheck: a vCPU must never use a stale translation — one more permissive than the
// tables, or naming another frame — after a point where the architecture required it gone:
//
//   remote flush   once kvm_flush_remote_tlbs (or a ranged flush covering the GFN) has
//                  returned, nothing cached before it started may be used;
//   root load      once a vCPU loaded a root on a CPU (kvm_mmu_load flushes every new root),
//                  nothing that CPU cached for that root before the load may be used at its
//                  next entries;
//   frame freed    once a frame went back to the allocator, no translation to it that
//                  predates the free may be used.
//
// How it decides. The CPUs classify every translation they serve against a fresh walk (the
// platform's probe) and report the stale ones with the check clock read before the lookup.
// The check stamps, on the same clock, when each GFN's mapping last changed from present
// (any SPTE change of a present leaf), when each flush began and returned, when each root
// load began, when each frame was freed. A stale translation was cached before the last
// change of its GFN (a fill reads the tables of its time); so if a required point came after
// that change and before the use, the translation outlived the point — a violation. Stale
// uses inside the windows the protocol allows (between a zap and its flush) are counted but
// are not violations. A change is bracketed by a begin and an end event: while one covering
// the GFN is under way, a walk may already see it unstamped, so such uses are not judged. Every
// comparison is conservative: an event is stamped after it (a change, a flush's return) or before
// it (a flush's start, a load's start) as the direction of the comparison needs, so a race can hide
// a violation but never invent one.
//
// What it cannot see: translations of a TD's private memory come from the TDX module's
// Secure EPT, whose roots KVM never loads; their uses are counted, not judged (the module's
// own TLB tracking, BLOCK → TRACK → kick, covers them).
//
// Thread safety: listeners run on the emitting threads (vCPUs inside translation, zappers
// under mmu_lock) and take the check's own mutex, a leaf lock. Queries from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/addr.h"
#include "base/atomic.h"
#include "base/lock.h"
#include "base/thread_annotations.h"
#include "base/trace.h"
#include "kvm/kvm_events.h"
#include "platform/logical_cpu.h"

namespace tdxsim {

class Kvm;
class Platform;
class CheckClock;

enum class StalePoint : uint8_t { kRemoteFlushReturned, kRootLoaded, kFrameFreed };
const char* to_string(StalePoint p);

struct StaleUseViolation {
  StalePoint point = StalePoint::kRemoteFlushReturned;
  StaleUse use;
  uint64_t changed_at = 0;  // the GFN's last change (0: none seen)
  uint64_t point_at = 0;    // the flush's start, the load's start, the free
  // A sentence with the evidence: CPU, GPA, what was served, what the tables say, the point.
  std::string describe() const;
};

struct StaleUseCounts {
  uint64_t stale_uses = 0;    // every stale use the CPUs reported
  uint64_t unattributed = 0;  // uses through a root no watched VM loaded (a TD's S-EPT)
  uint64_t in_flight = 0;     // uses while their GFN's mapping was being changed (not judged)
  uint64_t violations = 0;
};

class StaleUseCheck {
 public:
  // Attaches to every CPU's stale-use reports and to the allocator's frees. REQUIRES: the
  // platform probes TLB hits (PlatformConfig::probe_tlb_hits); it outlives the check.
  explicit StaleUseCheck(Platform& platform);
  ~StaleUseCheck();
  StaleUseCheck(const StaleUseCheck&) = delete;
  StaleUseCheck& operator=(const StaleUseCheck&) = delete;

  // Watches one VM's flushes, SPTE changes and root loads. REQUIRES: `kvm` outlives the
  // check, or unwatch() first.
  void watch(Kvm& kvm);
  void unwatch(Kvm& kvm);

  StaleUseCounts counts() const;
  // The first violations (at most kKeep), in the order they happened.
  std::vector<StaleUseViolation> violations() const;
  bool ok() const { return counts().violations == 0; }

  static constexpr size_t kKeep = 16;

 private:
  struct Flush {
    uint64_t begin, end;
    Gfn start;
    uint64_t pages;  // 0: everything
  };
  struct VmState {
    Kvm* kvm;
    // (gfn aligned to its level) << 2 | level index → the change's stamp.
    std::unordered_map<uint64_t, uint64_t> changed;
    // Changes begun and not yet ended, by the same key: a walk may see them unstamped.
    std::unordered_map<uint64_t, uint32_t> in_flight;
    std::vector<Flush> whole;         // completed whole flushes, in completion order
    std::vector<uint64_t> max_begin;  // prefix maxima of whole[i].begin
    std::vector<Flush> ranged;
    std::unordered_map<std::thread::id, uint64_t> flush_begun;
    std::unordered_map<unsigned, uint64_t> load_begun;  // by CPU
    std::unordered_map<uint64_t, uint64_t> loaded;      // (cpu, root) → begin
    std::vector<Tracepoint<RemoteFlushEvent>::Subscription> flush_sub;
    std::vector<Tracepoint<SpteChangeEvent>::Subscription> spte_sub;
    std::vector<Tracepoint<RootLoadEvent>::Subscription> load_sub;
  };

  void on_stale_use(const StaleUse& use);
  void on_flush(VmState& vm, const RemoteFlushEvent& e);
  void on_spte(VmState& vm, const SpteChangeEvent& e);
  void on_load(VmState& vm, const RootLoadEvent& e);
  void on_free(const HostMemory::FramesFreed& e);
  uint64_t last_change(const VmState& vm, Gfn gfn) const TDXSIM_REQUIRES(mu_);
  bool in_flight(const VmState& vm, Gfn gfn) const TDXSIM_REQUIRES(mu_);
  void record(StalePoint point, const StaleUse& use, uint64_t changed, uint64_t at)
      TDXSIM_REQUIRES(mu_);

  Platform& platform_;
  CheckClock& clock_;
  mutable Mutex mu_{"stale_use_check"};
  std::vector<std::unique_ptr<VmState>> vms_ TDXSIM_GUARDED_BY(mu_);
  // Root HPA → the VM that last loaded it: attributes a use to a VM.
  std::unordered_map<uint64_t, VmState*> root_owner_ TDXSIM_GUARDED_BY(mu_);
  std::unordered_map<uint64_t, uint64_t> freed_ TDXSIM_GUARDED_BY(mu_);  // pfn → stamp
  StaleUseCounts counts_ TDXSIM_GUARDED_BY(mu_);
  std::vector<StaleUseViolation> kept_ TDXSIM_GUARDED_BY(mu_);
  std::vector<Tracepoint<StaleUse>::Subscription> cpu_subs_;
  Tracepoint<HostMemory::FramesFreed>::Subscription free_sub_;
};

}  // namespace tdxsim
