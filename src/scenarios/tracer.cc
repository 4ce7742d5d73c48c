#include "scenarios/tracer.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/check.h"
#include "kvm/kvm_vm.h"
#include "kvm/vcpu.h"
#include "vmm/machine.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

std::atomic<uint64_t> next_serial{1};

// The calling thread's track in the tracer it last traced for; a serial, not a pointer,
// tells tracers apart (a new one may be built where an old one died).
struct CachedTrack {
  uint64_t serial = 0;
  void* track = nullptr;
};
thread_local CachedTrack cached_track;

const char* fastpath_name(uint8_t f) {
  switch (static_cast<ExitFastpath>(f)) {
    case ExitFastpath::kNone:
      return "none";
    case ExitFastpath::kReenterGuest:
      return "reenter_guest";
    case ExitFastpath::kExitHandled:
      return "exit_handled";
  }
  return "?";
}

std::string hex(uint64_t v) {
  return fmt::format("{:#x}", v);
}

Tracer::Counted read_counted(vmm::Vm& vm) {
  Tracer::Counted c;
  for (unsigned i = 0; i < vm.nr_vcpus(); ++i) {
    c.vcpu_entries += vm.vcpu(i).kvm_vcpu().stats().entries.value();
  }
  const MmuStats& mmu = vm.kvm_vm().mmu().stats();
  for (const ShardedCounter& f : mmu.faults) c.page_faults += static_cast<uint64_t>(f.value());
  c.remote_flushes = mmu.remote_tlb_flushes.value() + mmu.remote_tlb_flushes_range.value();
  if (vm.kvm().type() == VmType::kTdx) {
    const TdxStats& st = TdxOps::to_tdx(vm.kvm_vm()).stats();
    for (size_t i = 0; i < kNumSeamcallLeaves; ++i) c.seamcalls[i] = st.calls[i].value();
  }
  return c;
}

}  // namespace

Tracer::Attachment::Attachment(Tracer& tracer, vmm::Vm& vm)
    : tracer_(tracer), vm_(vm), at_attach_(read_counted(vm)) {
  KvmEvents& ev = vm.kvm().events();
  run_ = ev.vcpu_run.attach([&t = tracer_](const VcpuRunEvent& e) { t.on_vcpu_run(e); });
  fault_ = ev.page_fault.attach([&t = tracer_](const PageFaultEvent& e) { t.on_page_fault(e); });
  spte_ =
      ev.spte_changed.attach([&t = tracer_](const SpteChangeEvent& e) { t.on_spte_changed(e); });
  flush_ =
      ev.remote_flush.attach([&t = tracer_](const RemoteFlushEvent& e) { t.on_remote_flush(e); });
  root_ = ev.root_loaded.attach([&t = tracer_](const RootLoadEvent& e) { t.on_root_loaded(e); });
  if (vm.kvm().type() == VmType::kTdx) {
    // TdxOps traces every TD's SEAMCALLs: keep this one's (its TDR is fixed once created).
    const Hpa tdr = TdxOps::to_tdx(vm.kvm_vm()).tdr();
    seamcall_ =
        vm.machine().tdx()->seamcall_trace.attach([&t = tracer_, tdr](const TdxSeamcallEvent& e) {
          if (e.tdr == tdr) t.on_seamcall(e);
        });
  }
}

Tracer::Attachment::~Attachment() {
  // No listener runs once these are gone, so the counts below cover exactly the window.
  run_.reset();
  fault_.reset();
  spte_.reset();
  flush_.reset();
  root_.reset();
  seamcall_.reset();
  const Counted now = read_counted(vm_);
  Counted delta;
  delta.vcpu_entries = now.vcpu_entries - at_attach_.vcpu_entries;
  delta.page_faults = now.page_faults - at_attach_.page_faults;
  delta.remote_flushes = now.remote_flushes - at_attach_.remote_flushes;
  for (size_t i = 0; i < kNumSeamcallLeaves; ++i) {
    delta.seamcalls[i] = now.seamcalls[i] - at_attach_.seamcalls[i];
  }
  tracer_.add_counted(delta);
}

Tracer::Tracer(size_t capacity)
    : capacity_(capacity),
      per_kind_(std::max<size_t>(1, capacity / kKinds)),
      serial_(next_serial.fetch_add(1, std::memory_order_relaxed)),
      start_(std::chrono::steady_clock::now()) {
  TDXSIM_CHECK(capacity > 0, "a Tracer with no room for events");
}

Tracer::~Tracer() = default;

std::unique_ptr<Tracer::Attachment> Tracer::attach(vmm::Vm& vm) {
  return std::make_unique<Attachment>(*this, vm);
}

const char* Tracer::to_string(Kind k) {
  switch (k) {
    case Kind::kVcpuRun:
      return "vcpu_run";
    case Kind::kPageFault:
      return "page_fault";
    case Kind::kSeamcall:
      return "seamcall";
    case Kind::kZap:
      return "zap";
    case Kind::kRemoteFlush:
      return "remote_flush";
    case Kind::kRootLoad:
      return "root_load";
  }
  return "?";
}

uint64_t Tracer::now_ns() const {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now() - start_)
                                   .count());
}

Tracer::Track& Tracer::track() {
  if (cached_track.serial == serial_) return *static_cast<Track*>(cached_track.track);
  MutexLock l(mu_);
  Track& t = tracks_.emplace_back();
  t.tid = static_cast<uint32_t>(tracks_.size());
  cached_track = CachedTrack{serial_, &t};
  return t;
}

void Tracer::push(const Record& r) {
  const size_t kind = static_cast<size_t>(r.kind);
  MutexLock l(mu_);
  ++recorded_[kind];
  std::vector<Record>& ring = rings_[kind];
  if (ring.size() < per_kind_) {
    ring.push_back(r);
    return;
  }
  Record& oldest = ring[heads_[kind]];
  ++dropped_[kind];
  if (oldest.kind == Kind::kSeamcall) ++dropped_seamcalls_[oldest.sub];
  oldest = r;
  heads_[kind] = (heads_[kind] + 1) % per_kind_;
}

void Tracer::on_vcpu_run(const VcpuRunEvent& e) {
  Track& t = track();
  if (e.phase == EventPhase::kBegin) {
    if (t.vcpu_id < 0) {
      MutexLock l(mu_);
      t.vcpu_id = e.vcpu_id;
    }
    t.run_begin_ns = now_ns();
    return;
  }
  const uint64_t end = now_ns();
  Record r;
  r.ts_ns = t.run_begin_ns;
  r.dur_ns = end - t.run_begin_ns;
  r.a = static_cast<uint64_t>(e.vcpu_id);
  r.tid = t.tid;
  r.cpu = e.cpu;
  r.kind = Kind::kVcpuRun;
  r.sub = static_cast<uint8_t>(e.fastpath);
  push(r);
}

void Tracer::on_page_fault(const PageFaultEvent& e) {
  Record r;
  r.ts_ns = now_ns();
  r.a = e.gpa.raw();
  r.b = e.error_code;
  r.tid = track().tid;
  r.kind = Kind::kPageFault;
  r.sub = static_cast<uint8_t>(e.ret);
  push(r);
}

void Tracer::on_seamcall(const TdxSeamcallEvent& e) {
  Record r;
  r.ts_ns = now_ns();
  r.a = e.status;
  r.b = e.gfn.raw();
  r.tid = track().tid;
  r.cpu = e.cpu;
  r.kind = Kind::kSeamcall;
  r.sub = static_cast<uint8_t>(static_cast<size_t>(e.leaf) % kNumSeamcallLeaves);
  push(r);
}

void Tracer::on_spte_changed(const SpteChangeEvent& e) {
  // A zap: a present SPTE made not present (a lost race ends with new == old, present).
  if (e.phase != EventPhase::kEnd || !e.old_spte.is_shadow_present() ||
      e.new_spte.is_shadow_present()) {
    return;
  }
  Record r;
  r.ts_ns = now_ns();
  r.a = e.gfn.raw();
  r.b = e.old_spte.raw();
  r.tid = track().tid;
  r.kind = Kind::kZap;
  r.sub = static_cast<uint8_t>(level_num(e.level));
  r.flag = e.mirror;
  push(r);
}

void Tracer::on_remote_flush(const RemoteFlushEvent& e) {
  Track& t = track();
  if (e.phase == EventPhase::kBegin) {
    t.flush_begin_ns = now_ns();
    return;
  }
  Record r;
  r.ts_ns = t.flush_begin_ns;
  r.dur_ns = now_ns() - t.flush_begin_ns;
  r.a = e.start.raw();
  r.b = e.pages;
  r.tid = t.tid;
  r.kind = Kind::kRemoteFlush;
  r.flag = e.done;
  push(r);
}

void Tracer::on_root_loaded(const RootLoadEvent& e) {
  Track& t = track();
  if (e.phase == EventPhase::kBegin) {
    t.root_begin_ns = now_ns();
    return;
  }
  Record r;
  r.ts_ns = t.root_begin_ns;
  r.dur_ns = now_ns() - t.root_begin_ns;
  r.a = e.root.raw();
  r.b = static_cast<uint64_t>(e.vcpu_id);
  r.tid = t.tid;
  r.cpu = e.cpu;
  r.kind = Kind::kRootLoad;
  push(r);
}

void Tracer::add_counted(const Counted& c) {
  MutexLock l(mu_);
  counted_.vcpu_entries += c.vcpu_entries;
  counted_.page_faults += c.page_faults;
  counted_.remote_flushes += c.remote_flushes;
  for (size_t i = 0; i < kNumSeamcallLeaves; ++i) counted_.seamcalls[i] += c.seamcalls[i];
}

uint64_t Tracer::recorded(Kind k) const {
  MutexLock l(mu_);
  return recorded_[static_cast<size_t>(k)];
}

uint64_t Tracer::dropped(Kind k) const {
  MutexLock l(mu_);
  return dropped_[static_cast<size_t>(k)];
}

uint64_t Tracer::dropped() const {
  MutexLock l(mu_);
  uint64_t n = 0;
  for (uint64_t d : dropped_) n += d;
  return n;
}

uint64_t Tracer::dropped_seamcalls(SeamcallLeaf leaf) const {
  MutexLock l(mu_);
  return dropped_seamcalls_[static_cast<size_t>(leaf) % kNumSeamcallLeaves];
}

Tracer::Counted Tracer::counted() const {
  MutexLock l(mu_);
  return counted_;
}

namespace {

// Trace-event timestamps are microseconds; nanoseconds kept as the fraction.
double us(uint64_t ns) {
  return static_cast<double>(ns) / 1000.0;
}

}  // namespace

nlohmann::json Tracer::event_json(const Record& r) {
  nlohmann::json e = {{"ts", us(r.ts_ns)}, {"pid", 1}, {"tid", r.tid}, {"cat", to_string(r.kind)}};
  switch (r.kind) {
    case Kind::kVcpuRun:
      e["ph"] = "X";
      e["dur"] = us(r.dur_ns);
      e["name"] = "vcpu_run";
      e["args"] = {{"vcpu", r.a}, {"cpu", r.cpu}, {"fastpath", fastpath_name(r.sub)}};
      break;
    case Kind::kPageFault:
      e["ph"] = "i";
      e["s"] = "t";
      e["name"] = "page_fault";
      e["args"] = {{"gpa", hex(r.a)},
                   {"error_code", hex(r.b)},
                   {"ret", tdxsim::to_string(static_cast<RetPf>(r.sub))}};
      break;
    case Kind::kSeamcall:
      e["ph"] = "i";
      e["s"] = "t";
      e["name"] = tdxsim::to_string(static_cast<SeamcallLeaf>(r.sub));
      e["args"] = {{"status", hex(r.a)}, {"gfn", hex(r.b)}, {"cpu", r.cpu}};
      break;
    case Kind::kZap:
      e["ph"] = "i";
      e["s"] = "t";
      e["name"] = "zap";
      e["args"] = {{"gfn", hex(r.a)}, {"level", r.sub}, {"mirror", r.flag}, {"old_spte", hex(r.b)}};
      break;
    case Kind::kRemoteFlush:
      e["ph"] = "X";
      e["dur"] = us(r.dur_ns);
      e["name"] = r.b == 0 ? "remote_flush" : "remote_flush_range";
      e["args"] = {{"start_gfn", hex(r.a)}, {"pages", r.b}, {"done", r.flag}};
      break;
    case Kind::kRootLoad:
      e["ph"] = "X";
      e["dur"] = us(r.dur_ns);
      e["name"] = "root_load";
      e["args"] = {{"vcpu", r.b}, {"cpu", r.cpu}, {"root", hex(r.a)}};
      break;
  }
  return e;
}

void Tracer::write(std::ostream& out) const {
  // A copy, so that listeners still running wait for a memcpy rather than the formatting.
  std::vector<Record> events;
  std::vector<std::pair<uint32_t, int>> tracks;  // tid, vCPU id or -1
  std::array<uint64_t, kKinds> recorded{}, dropped{};
  std::array<uint64_t, kNumSeamcallLeaves> dropped_leaves{};
  Counted counted;
  {
    MutexLock l(mu_);
    for (size_t k = 0; k < kKinds; ++k) {
      const std::vector<Record>& ring = rings_[k];
      for (size_t n = 0; n < ring.size(); ++n)
        events.push_back(ring[(heads_[k] + n) % ring.size()]);
    }
    for (const Track& t : tracks_) tracks.emplace_back(t.tid, t.vcpu_id);
    recorded = recorded_;
    dropped = dropped_;
    dropped_leaves = dropped_seamcalls_;
    counted = counted_;
  }
  // One event at a time: a whole document of 400,000 json objects would cost far more memory
  // than its text.
  out << "{\"traceEvents\":[\n";
  out << nlohmann::json{{"ph", "M"},
                        {"ts", 0},
                        {"pid", 1},
                        {"tid", 0},
                        {"name", "process_name"},
                        {"args", {{"name", "tdxsim"}}}}
             .dump();
  unsigned host = 0;
  for (const auto& [tid, vcpu] : tracks) {
    const std::string name =
        vcpu >= 0 ? fmt::format("vCPU {}", vcpu) : fmt::format("host {}", host++);
    out << ",\n"
        << nlohmann::json{{"ph", "M"},
                          {"ts", 0},
                          {"pid", 1},
                          {"tid", tid},
                          {"name", "thread_name"},
                          {"args", {{"name", name}}}}
               .dump();
    // The vCPUs' tracks first, in vCPU order, then the host's.
    const int64_t sort = vcpu >= 0 ? vcpu : int64_t{1000} + tid;
    out << ",\n"
        << nlohmann::json{{"ph", "M"},
                          {"ts", 0},
                          {"pid", 1},
                          {"tid", tid},
                          {"name", "thread_sort_index"},
                          {"args", {{"sort_index", sort}}}}
               .dump();
  }
  for (const Record& r : events) out << ",\n" << event_json(r).dump();

  uint64_t dropped_total = 0;
  nlohmann::json recorded_by = nlohmann::json::object();
  nlohmann::json dropped_by = nlohmann::json::object();
  for (size_t k = 0; k < kKinds; ++k) {
    recorded_by[to_string(static_cast<Kind>(k))] = recorded[k];
    dropped_by[to_string(static_cast<Kind>(k))] = dropped[k];
    dropped_total += dropped[k];
  }
  nlohmann::json dropped_by_leaf = nlohmann::json::object();
  nlohmann::json counted_by_leaf = nlohmann::json::object();
  for (size_t i = 0; i < kNumSeamcallLeaves; ++i) {
    const char* leaf = tdxsim::to_string(static_cast<SeamcallLeaf>(i));
    if (dropped_leaves[i] != 0) dropped_by_leaf[leaf] = dropped_leaves[i];
    if (counted.seamcalls[i] != 0) counted_by_leaf[leaf] = counted.seamcalls[i];
  }
  const nlohmann::json other = {{"capacity", capacity_},
                                {"kept", "the most recent events of each kind"},
                                {"capacity_per_kind", per_kind_},
                                {"dropped_events", dropped_total},
                                {"dropped_by_kind", dropped_by},
                                {"dropped_seamcalls_by_leaf", dropped_by_leaf},
                                {"recorded_by_kind", recorded_by},
                                {"counted",
                                 {{"vcpu_entries", counted.vcpu_entries},
                                  {"page_faults", counted.page_faults},
                                  {"remote_flushes", counted.remote_flushes},
                                  {"seamcalls", counted_by_leaf}}}};
  out << "\n],\n\"displayTimeUnit\":\"ns\",\n\"otherData\":" << other.dump() << "}\n";
}

std::expected<void, std::string> Tracer::write(const std::string& path) const {
  std::ofstream out(path, std::ios::out | std::ios::trunc);
  if (!out) return std::unexpected(fmt::format("cannot write {}: {}", path, std::strerror(errno)));
  write(out);
  out.close();
  if (!out) return std::unexpected(fmt::format("cannot write {}: {}", path, std::strerror(errno)));
  return {};
}

}  // namespace tdxsim
