// Tracer: a run's timeline as Chrome/Perfetto trace-event JSON (`tdxsim run --trace FILE`,
// opened with ui.perfetto.dev or chrome://tracing).
//
// It attaches to a VM's tracepoints (KvmEvents, and the TDX SEAMCALLs of that TD) and records,
// on one track per OS thread ("vCPU N" for a thread that entered a guest, "host N" else):
//   vcpu_run       X  one guest entry (vendor vcpu_run), args: cpu, fastpath
//   page_fault     i  kvm_mmu_page_fault's outcome, args: gpa, error_code, ret
//   TDH.*          i  a SEAMCALL by leaf name, args: status, gfn, cpu
//   zap            i  an SPTE that was present became not present, args: gfn, level, mirror
//   remote_flush   X  kvm_flush_remote_tlbs(_range), args: start, pages, done
//   root_load      X  kvm_mmu_load choosing a new root, args: cpu, root
// Timestamps are microseconds of a steady clock since the tracer was built.
//
// Bounded: each kind has a ring of capacity / 6 events that keeps its most recent (the end of
// a run, where it failed, matters more than its start; and the millions of entries and faults
// of a long run must not push out its few flushes and root loads). Each event pushed out
// counts as dropped, per kind and (SEAMCALLs) per leaf. write() puts the counts in "otherData" with
// the VMs' own counters over the traced window, so that for every kind  events in the file +
// dropped == counted.
//
// Thread safety: listeners run on the emitting threads; the ring is behind one mutex held for
// a copy of a 48-byte record. attach(), write() and the accessors from any thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <expected>
#include <iosfwd>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "base/lock.h"
#include "kvm/kvm_events.h"
#include "kvm/vmx/tdx.h"

namespace tdxsim {

namespace vmm {
class Vm;
}

class Tracer {
 public:
  enum class Kind : uint8_t { kVcpuRun, kPageFault, kSeamcall, kZap, kRemoteFlush, kRootLoad };
  static constexpr size_t kKinds = 6;
  // About 110 bytes of JSON an event: some 45 MB at most, well under the 100 MB a trace
  // viewer opens comfortably.
  static constexpr size_t kDefaultCapacity = 400'000;

  // What the attached VMs counted themselves while attached (VcpuStats::entries, MmuStats'
  // faults and remote flushes, TdxStats::count), summed over VMs.
  struct Counted {
    uint64_t vcpu_entries = 0;
    uint64_t page_faults = 0;
    uint64_t remote_flushes = 0;
    std::array<uint64_t, kNumSeamcallLeaves> seamcalls{};
  };

  // The subscriptions of one attached VM. Destroying it detaches (after which no listener
  // runs) and adds the VM's counts over the window to counted().
  class Attachment {
   public:
    Attachment(Tracer& tracer, vmm::Vm& vm);
    ~Attachment();
    Attachment(const Attachment&) = delete;
    Attachment& operator=(const Attachment&) = delete;

   private:
    Tracer& tracer_;
    vmm::Vm& vm_;
    const Counted at_attach_;
    Tracepoint<VcpuRunEvent>::Subscription run_;
    Tracepoint<PageFaultEvent>::Subscription fault_;
    Tracepoint<SpteChangeEvent>::Subscription spte_;
    Tracepoint<RemoteFlushEvent>::Subscription flush_;
    Tracepoint<RootLoadEvent>::Subscription root_;
    Tracepoint<TdxSeamcallEvent>::Subscription seamcall_;
  };

  // REQUIRES: capacity > 0. Each kind keeps max(1, capacity / 6) events.
  explicit Tracer(size_t capacity = kDefaultCapacity);
  ~Tracer();
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  // REQUIRES: the Attachment dies before the VM and before the tracer.
  [[nodiscard]] std::unique_ptr<Attachment> attach(vmm::Vm& vm);

  static const char* to_string(Kind k);
  size_t capacity() const { return capacity_; }
  // Events that came in (kept or dropped since) and events pushed out of the ring.
  uint64_t recorded(Kind k) const TDXSIM_EXCLUDES(mu_);
  uint64_t dropped(Kind k) const TDXSIM_EXCLUDES(mu_);
  uint64_t dropped() const TDXSIM_EXCLUDES(mu_);
  uint64_t dropped_seamcalls(SeamcallLeaf leaf) const TDXSIM_EXCLUDES(mu_);
  Counted counted() const TDXSIM_EXCLUDES(mu_);

  // The whole document: {"traceEvents": [...], "displayTimeUnit": "ns", "otherData":
  // {"dropped_events", "dropped_by_kind", "dropped_seamcalls_by_leaf", "recorded_by_kind",
  // "counted": {"vcpu_entries", "page_faults", "remote_flushes", "seamcalls": {leaf: n}}, …}}.
  void write(std::ostream& out) const TDXSIM_EXCLUDES(mu_);
  // The same into `path`; the error names the path.
  std::expected<void, std::string> write(const std::string& path) const TDXSIM_EXCLUDES(mu_);

 private:
  // One event, 48 bytes: what each kind's args are built from.
  struct Record {
    uint64_t ts_ns = 0;
    uint64_t dur_ns = 0;  // complete (X) events only
    uint64_t a = 0, b = 0;
    uint32_t tid = 0;
    uint32_t cpu = 0;
    Kind kind = Kind::kVcpuRun;
    uint8_t sub = 0;    // fastpath, RetPf, leaf, level
    bool flag = false;  // zap: mirror; flush: done
  };
  // One OS thread's track. The begin timestamps belong to that thread alone.
  struct Track {
    uint32_t tid = 0;
    int vcpu_id = -1;  // the first vCPU it ran; guarded by mu_
    uint64_t run_begin_ns = 0, flush_begin_ns = 0, root_begin_ns = 0;
  };

  static nlohmann::json event_json(const Record& r);
  uint64_t now_ns() const;
  Track& track() TDXSIM_EXCLUDES(mu_);
  void push(const Record& r) TDXSIM_EXCLUDES(mu_);
  void on_vcpu_run(const VcpuRunEvent& e);
  void on_page_fault(const PageFaultEvent& e);
  void on_seamcall(const TdxSeamcallEvent& e);
  void on_spte_changed(const SpteChangeEvent& e);
  void on_remote_flush(const RemoteFlushEvent& e);
  void on_root_loaded(const RootLoadEvent& e);
  void add_counted(const Counted& c) TDXSIM_EXCLUDES(mu_);

  const size_t capacity_;
  const size_t per_kind_;  // each ring's capacity
  const uint64_t serial_;  // tells a thread's cached track from another tracer's
  const std::chrono::steady_clock::time_point start_;
  mutable Mutex mu_{"tracer"};
  std::array<std::vector<Record>, kKinds> rings_ TDXSIM_GUARDED_BY(mu_);
  // The oldest event of each ring once it is full.
  std::array<size_t, kKinds> heads_ TDXSIM_GUARDED_BY(mu_){};
  std::array<uint64_t, kKinds> recorded_ TDXSIM_GUARDED_BY(mu_){};
  std::array<uint64_t, kKinds> dropped_ TDXSIM_GUARDED_BY(mu_){};
  std::array<uint64_t, kNumSeamcallLeaves> dropped_seamcalls_ TDXSIM_GUARDED_BY(mu_){};
  std::deque<Track> tracks_ TDXSIM_GUARDED_BY(mu_);  // stable addresses
  Counted counted_ TDXSIM_GUARDED_BY(mu_);
};

}  // namespace tdxsim
