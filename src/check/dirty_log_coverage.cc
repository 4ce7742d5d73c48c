#include "check/dirty_log_coverage.h"

#include <fmt/format.h>

#include <algorithm>

namespace tdxsim {

namespace {

constexpr size_t kMaxViolationsKept = 16;

bool bit_set(const std::vector<uint64_t>& bitmap, uint64_t page) {
  return page / 64 < bitmap.size() && ((bitmap[page / 64] >> (page % 64)) & 1) != 0;
}

uint64_t bits_set(const std::vector<uint64_t>& bitmap) {
  uint64_t n = 0;
  for (uint64_t w : bitmap) n += static_cast<uint64_t>(__builtin_popcountll(w));
  return n;
}

}  // namespace

void DirtyLogCoverage::watch(vmm::Vm& vm) {
  auto w = std::make_unique<Watched>();
  w->vm = &vm;
  const vmm::Vm* key = &vm;
  w->sub =
      vm.kvm().events().dirty_log.attach([this, key](const DirtyLogEvent& e) { on_event(key, e); });
  watched_.push_back(std::move(w));
}

void DirtyLogCoverage::unwatch(vmm::Vm& vm) {
  std::erase_if(watched_, [&](const auto& w) { return w->vm == &vm; });
  MutexLock l(mu_);
  const auto gone = std::erase_if(slots_, [&](const SlotLog& s) { return s.vm == &vm; });
  logging_.fetch_sub(gone, std::memory_order_relaxed);
}

DirtyLogCoverage::SlotLog* DirtyLogCoverage::find(const vmm::Vm* vm, uint32_t slot) {
  for (SlotLog& s : slots_) {
    if (s.vm == vm && s.slot == slot) return &s;
  }
  return nullptr;
}

void DirtyLogCoverage::stored(const GuestStoreSeen& s) {
  if (logging_.load(std::memory_order_relaxed) == 0 || s.private_side) return;
  const Gfn gfn = s.gpa.gfn();
  MutexLock l(mu_);
  for (SlotLog& log : slots_) {
    if (log.vm != s.vm || gfn < log.base || gfn >= log.base + log.npages) continue;
    ++counts_.stores_tracked;
    log.pending.try_emplace(gfn.raw() - log.base.raw(), Store{s.vcpu, s.gpa, s.value, ++seq_});
    return;
  }
}

void DirtyLogCoverage::on_event(const vmm::Vm* vm, const DirtyLogEvent& e) {
  MutexLock l(mu_);
  SlotLog* log = find(vm, e.slot);
  switch (e.op) {
    case DirtyLogOp::kStart:
      if (log == nullptr) {
        slots_.push_back(SlotLog{vm, e.slot, e.base_gfn, e.npages, 0, 0, {}});
        logging_.fetch_add(1, std::memory_order_relaxed);
      }
      return;
    case DirtyLogOp::kStop:
      if (log != nullptr) {
        std::erase_if(slots_, [&](const SlotLog& s) { return &s == log; });
        logging_.fetch_sub(1, std::memory_order_relaxed);
      }
      return;
    case DirtyLogOp::kHarvestBegin:
      if (log != nullptr) log->harvest_began = ++seq_;
      return;
    case DirtyLogOp::kHarvestEnd:
      if (log != nullptr && e.bitmap != nullptr) harvested(*log, *e.bitmap);
      return;
  }
}

void DirtyLogCoverage::harvested(SlotLog& log, const std::vector<uint64_t>& bitmap) {
  ++log.harvests;
  ++counts_.harvests_checked;
  for (auto it = log.pending.begin(); it != log.pending.end();) {
    const Store& st = it->second;
    const bool before = log.harvest_began != 0 && st.seq < log.harvest_began;
    if (bit_set(bitmap, it->first)) {
      if (before) ++counts_.pages_checked;
      it = log.pending.erase(it);
      continue;
    }
    if (!before) {
      // Retired while the harvest ran: the next harvest must have it.
      ++it;
      continue;
    }
    ++counts_.pages_checked;
    ++counts_.violations;
    if (violations_.size() < kMaxViolationsKept) {
      violations_.push_back(fmt::format(
          "vCPU {} stored {:#x} at {} ({}, memslot {:#x}) before harvest #{} of that slot "
          "began and after the previous one, but KVM_GET_DIRTY_LOG's bitmap lacks the page "
          "({} of {} pages set)",
          st.vcpu, st.value, st.gpa, log.base + it->first, log.slot, log.harvests, bits_set(bitmap),
          log.npages));
    }
    it = log.pending.erase(it);
  }
  log.harvest_began = 0;
}

DirtyLogCoverageCounts DirtyLogCoverage::counts() const {
  MutexLock l(mu_);
  return counts_;
}

std::vector<std::string> DirtyLogCoverage::violations() const {
  MutexLock l(mu_);
  return violations_;
}

}  // namespace tdxsim
