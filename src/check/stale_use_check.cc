#include "check/stale_use_check.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/check_clock.h"
#include "kvm/kvm.h"
#include "platform/platform.h"

namespace tdxsim {

namespace {

const char* access_name(AccessType a) {
  switch (a) {
    case AccessType::kRead:
      return "read";
    case AccessType::kWrite:
      return "write";
    case AccessType::kFetch:
      return "fetch";
  }
  return "?";
}

uint64_t change_key(Gfn gfn, Level level) {
  return (gfn.align_down(level).raw() << 3) | (level_num(level) - 1);
}

// Every level an entry covering a GFN may sit at (5-level tables included).
constexpr Level kLevels[] = {Level::k4K, Level::k2M, Level::k1G, Level::k512G, Level::k256T};

uint64_t load_key(unsigned cpu, Hpa root) {
  // Roots are page-aligned: the CPU number fits below bit 12.
  return root.raw() | cpu;
}

}  // namespace

const char* to_string(StalePoint p) {
  switch (p) {
    case StalePoint::kRemoteFlushReturned:
      return "after a remote TLB flush returned";
    case StalePoint::kRootLoaded:
      return "after the root was loaded (and flushed) on this CPU";
    case StalePoint::kFrameFreed:
      return "after its frame went back to the allocator";
  }
  return "?";
}

std::string StaleUseViolation::describe() const {
  std::string fresh = "no mapping";
  if (use.fresh) fresh = fmt::format("{} key {}", use.fresh->hpa_of(use.gpa), use.fresh->key.raw());
  return fmt::format(
      "CPU {} used a stale translation of GPA {:#x} ({}, {}, served from {}): {} key {} "
      "where the tables now give {}; the GFN last changed at t={}, {} at t={}, used at t={}",
      use.cpu, use.gpa.raw(), access_name(use.access), to_string(use.served.staleness),
      use.served.source == TranslationSource::kTlb   ? "the TLB"
      : use.served.source == TranslationSource::kL0  ? "the Hyper-V L0"
      : use.served.source == TranslationSource::kPsc ? "a walk from the paging-structure cache"
                                                     : "a walk",
      use.served.hpa, use.served.key.raw(), fresh, changed_at, to_string(point), point_at,
      use.served.seen_at);
}

StaleUseCheck::StaleUseCheck(Platform& platform)
    : platform_(platform), clock_(platform.check_clock()) {
  TDXSIM_CHECK(platform.config().probe_tlb_hits,
               "the stale-use check needs the CPUs to probe the translations they serve");
  for (unsigned i = 0; i < platform.cpu_count(); ++i) {
    cpu_subs_.push_back(
        platform.cpu(i).stale_use.attach([this](const StaleUse& u) { on_stale_use(u); }));
  }
  free_sub_ = platform.memory().frames_freed.attach(
      [this](const HostMemory::FramesFreed& e) { on_free(e); });
}

StaleUseCheck::~StaleUseCheck() {
  // Detach first (waits for listeners in flight), then the state they use may go.
  cpu_subs_.clear();
  free_sub_.reset();
  std::vector<std::unique_ptr<VmState>> vms;
  {
    MutexLock l(mu_);
    vms.swap(vms_);
  }
  for (auto& vm : vms) {
    vm->flush_sub.clear();
    vm->spte_sub.clear();
    vm->load_sub.clear();
  }
}

void StaleUseCheck::watch(Kvm& kvm) {
  auto vm = std::make_unique<VmState>();
  VmState* s = vm.get();
  s->kvm = &kvm;
  {
    MutexLock l(mu_);
    vms_.push_back(std::move(vm));
  }
  KvmEvents& ev = kvm.events();
  s->flush_sub.push_back(
      ev.remote_flush.attach([this, s](const RemoteFlushEvent& e) { on_flush(*s, e); }));
  s->spte_sub.push_back(
      ev.spte_changed.attach([this, s](const SpteChangeEvent& e) { on_spte(*s, e); }));
  s->load_sub.push_back(
      ev.root_loaded.attach([this, s](const RootLoadEvent& e) { on_load(*s, e); }));
}

void StaleUseCheck::unwatch(Kvm& kvm) {
  std::unique_ptr<VmState> gone;
  {
    MutexLock l(mu_);
    auto it = std::find_if(vms_.begin(), vms_.end(), [&](const auto& v) { return v->kvm == &kvm; });
    if (it == vms_.end()) return;
    gone = std::move(*it);
    vms_.erase(it);
    std::erase_if(root_owner_, [&](const auto& kv) { return kv.second == gone.get(); });
  }
  gone->flush_sub.clear();
  gone->spte_sub.clear();
  gone->load_sub.clear();
}

void StaleUseCheck::on_flush(VmState& vm, const RemoteFlushEvent& e) {
  const uint64_t now = clock_.tick();
  MutexLock l(mu_);
  if (e.phase == EventPhase::kBegin) {
    vm.flush_begun[std::this_thread::get_id()] = now;
    return;
  }
  auto it = vm.flush_begun.find(std::this_thread::get_id());
  if (it == vm.flush_begun.end()) return;
  const Flush f{it->second, now, e.start, e.pages};
  vm.flush_begun.erase(it);
  if (!e.done) return;  // the vendor had no ranged flush: the full one that follows counts
  if (e.pages != 0) {
    vm.ranged.push_back(f);
    return;
  }
  vm.whole.push_back(f);
  vm.max_begin.push_back(vm.max_begin.empty() ? f.begin : std::max(vm.max_begin.back(), f.begin));
}

void StaleUseCheck::on_spte(VmState& vm, const SpteChangeEvent& e) {
  const uint64_t key = change_key(e.gfn, e.level);
  if (e.phase == EventPhase::kBegin) {
    MutexLock l(mu_);
    ++vm.in_flight[key];
    return;
  }
  // Only what was present can have been cached: its change (a leaf's, or a table's unlinking
  // for everything below it) is what makes a cached copy stale.
  const bool changed = e.old_spte.is_shadow_present() && e.new_spte != e.old_spte;
  const uint64_t now = changed ? clock_.tick() : 0;
  MutexLock l(mu_);
  if (changed) vm.changed[key] = now;
  auto it = vm.in_flight.find(key);
  TDXSIM_CHECK(it != vm.in_flight.end(), "an SPTE change at {} ended without a begin", e.gfn);
  if (--it->second == 0) vm.in_flight.erase(it);
}

bool StaleUseCheck::in_flight(const VmState& vm, Gfn gfn) const {
  for (Level level : kLevels) {
    if (vm.in_flight.contains(change_key(gfn, level))) return true;
  }
  return false;
}

void StaleUseCheck::on_load(VmState& vm, const RootLoadEvent& e) {
  const uint64_t now = clock_.tick();
  MutexLock l(mu_);
  if (e.phase == EventPhase::kBegin) {
    vm.load_begun[e.cpu] = now;
    return;
  }
  auto it = vm.load_begun.find(e.cpu);
  if (it == vm.load_begun.end()) return;
  vm.loaded[load_key(e.cpu, e.root)] = it->second;
  root_owner_[e.root.raw()] = &vm;
  vm.load_begun.erase(it);
}

void StaleUseCheck::on_free(const HostMemory::FramesFreed& e) {
  const uint64_t now = clock_.tick();
  MutexLock l(mu_);
  for (uint64_t i = 0; i < e.count; ++i) freed_[e.first.raw() + i] = now;
}

uint64_t StaleUseCheck::last_change(const VmState& vm, Gfn gfn) const {
  uint64_t last = 0;
  for (Level level : kLevels) {
    auto it = vm.changed.find(change_key(gfn, level));
    if (it != vm.changed.end()) last = std::max(last, it->second);
  }
  return last;
}

void StaleUseCheck::record(StalePoint point, const StaleUse& use, uint64_t changed, uint64_t at) {
  ++counts_.violations;
  if (kept_.size() < kKeep) kept_.push_back(StaleUseViolation{point, use, changed, at});
}

void StaleUseCheck::on_stale_use(const StaleUse& use) {
  const uint64_t used = use.served.seen_at;
  MutexLock l(mu_);
  ++counts_.stale_uses;
  auto owner = root_owner_.find(use.ctx_root.raw());
  if (owner == root_owner_.end()) {
    ++counts_.unattributed;
    return;
  }
  const VmState& vm = *owner->second;
  const Gfn gfn = use.gpa.gfn();
  if (in_flight(vm, gfn)) {
    // A change under way: the walk may have seen it before it was stamped, so the stamps
    // cannot say which change the use is stale against.
    ++counts_.in_flight;
    return;
  }
  const uint64_t changed = last_change(vm, gfn);

  // Remote flushes: the latest whole flush returned by the use; did any of those start
  // after the change?
  auto end = std::upper_bound(vm.whole.begin(), vm.whole.end(), used,
                              [](uint64_t t, const Flush& f) { return t < f.end; });
  if (end != vm.whole.begin()) {
    const size_t i = static_cast<size_t>(end - vm.whole.begin()) - 1;
    if (vm.max_begin[i] > changed) {
      // Report the earliest-completing flush that qualifies, as the evidence.
      for (size_t j = 0; j <= i; ++j) {
        if (vm.whole[j].begin > changed) {
          record(StalePoint::kRemoteFlushReturned, use, changed, vm.whole[j].begin);
          return;
        }
      }
    }
  }
  for (const Flush& f : vm.ranged) {
    if (f.end <= used && f.begin > changed && gfn >= f.start && gfn < f.start + f.pages) {
      record(StalePoint::kRemoteFlushReturned, use, changed, f.begin);
      return;
    }
  }
  if (auto it = vm.loaded.find(load_key(use.cpu, use.ctx_root));
      it != vm.loaded.end() && it->second > changed && it->second <= used) {
    record(StalePoint::kRootLoaded, use, changed, it->second);
    return;
  }
  if (auto it = freed_.find(use.served.hpa.pfn().raw());
      it != freed_.end() && it->second > changed && it->second <= used) {
    record(StalePoint::kFrameFreed, use, changed, it->second);
  }
}

StaleUseCounts StaleUseCheck::counts() const {
  MutexLock l(mu_);
  return counts_;
}

std::vector<StaleUseViolation> StaleUseCheck::violations() const {
  MutexLock l(mu_);
  return kept_;
}

}  // namespace tdxsim
