#include "platform/hyperv_l0.h"

#include "base/mix.h"
#include "platform/tlb.h"

namespace tdxsim {

const char* to_string(HvStatus s) {
  switch (s) {
    case HvStatus::kSuccess:
      return "HV_STATUS_SUCCESS";
    case HvStatus::kInvalidHypercallCode:
      return "HV_STATUS_INVALID_HYPERCALL_CODE";
    case HvStatus::kInvalidHypercallInput:
      return "HV_STATUS_INVALID_HYPERCALL_INPUT";
    case HvStatus::kInvalidParameter:
      return "HV_STATUS_INVALID_PARAMETER";
  }
  return "HV_STATUS_?";
}

size_t HyperVL0::KeyHash::operator()(const Key& k) const {
  return static_cast<size_t>(mix64(mix64(k.root) ^ k.gpa ^ level_num(k.level)));
}

HyperVL0::HyperVL0(const HyperVConfig& config, std::span<Tlb* const> cpu_tlbs)
    : config_(config), tlbs_(cpu_tlbs.begin(), cpu_tlbs.end()) {}

std::optional<L0Translation> HyperVL0::lookup(Hpa root, Gpa gpa) {
  MutexLock lock(mu_);
  for (Level l : {Level::k4K, Level::k2M, Level::k1G}) {
    auto it = cache_.find(Key{root.raw(), gpa.align_down(l).raw(), l});
    if (it != cache_.end()) return it->second;
  }
  return std::nullopt;
}

uint64_t HyperVL0::generation() {
  MutexLock lock(mu_);
  return drops_;
}

void HyperVL0::insert(const L0Translation& t, uint64_t generation) {
  MutexLock lock(mu_);
  if (drops_ != generation) return;
  cache_.insert_or_assign(Key{t.root.raw(), t.gpa.raw(), t.level}, t);
}

void HyperVL0::drop(Hpa root, Gpa gpa) {
  MutexLock lock(mu_);
  drop_if_locked([&](const L0Translation& t) {
    return t.root == root && gpa >= t.gpa && gpa.raw() < t.gpa.raw() + level_bytes(t.level);
  });
}

template <typename Pred>
size_t HyperVL0::drop_if_locked(Pred pred) {
  ++drops_;
  size_t n = 0;
  for (auto it = cache_.begin(); it != cache_.end();) {
    if (pred(it->second)) {
      it = cache_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  stats_.translations_dropped.add(n);
  return n;
}

size_t HyperVL0::flush_range(Hpa root, Gpa gpa, uint64_t bytes) {
  size_t n;
  {
    MutexLock lock(mu_);
    n = drop_if_locked([&](const L0Translation& t) {
      if (t.root != root) return false;
      if (bytes == 0) return true;
      const uint64_t lo = t.gpa.raw(), hi = lo + level_bytes(t.level);
      return lo < gpa.raw() + bytes && gpa.raw() < hi;
    });
  }
  // The L0 flushes the hardware TLBs of every CPU itself: no IPI from L1 is needed.
  for (Tlb* tlb : tlbs_) n += tlb->flush_source_root(root, gpa, bytes);
  return n;
}

HvStatus HyperVL0::flush_guest_physical_address_space(Hpa root) {
  stats_.flush_space_calls.add();
  hypercalls.emit_lazy([&] {
    return HvFlushHypercall{HvCallCode::kFlushGuestPhysicalAddressSpace, root, {}};
  });
  flush_range(root, Gpa{0}, 0);
  return HvStatus::kSuccess;
}

HvStatus HyperVL0::flush_guest_physical_address_list(Hpa root,
                                                     std::span<const HvGpaPageRange> list) {
  stats_.flush_list_calls.add();
  hypercalls.emit_lazy([&] {
    return HvFlushHypercall{HvCallCode::kFlushGuestPhysicalAddressList, root,
                            std::vector<HvGpaPageRange>(list.begin(), list.end())};
  });
  if (list.empty() || list.size() > kHvMaxFlushRepCount) return HvStatus::kInvalidHypercallInput;
  stats_.list_entries.add(list.size());
  for (const HvGpaPageRange& r : list) flush_range(root, r.start(), r.bytes());
  return HvStatus::kSuccess;
}

void HyperVL0::on_invept(bool all_context, uint64_t ep4ta) {
  stats_.trapped_invept.add();
  MutexLock lock(mu_);
  drop_if_locked([&](const L0Translation& t) { return all_context || t.root.raw() == ep4ta; });
}

void HyperVL0::on_asid_flush(uint16_t asid, bool all_asids) {
  stats_.asid_flushes_seen.add();
  // The enlightenment's whole point: the L0 no longer syncs its shadow on every ASID flush,
  // so L1 must use the GPA-flush hypercalls when its NPT changes (seed 003).
  if (config_.enlightened_tlb) return;
  MutexLock lock(mu_);
  drop_if_locked([&](const L0Translation& t) { return all_asids || t.asid == asid; });
}

size_t HyperVL0::cached() {
  MutexLock lock(mu_);
  return cache_.size();
}

}  // namespace tdxsim
