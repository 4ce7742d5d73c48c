#include "check/zapped_range.h"

#include <fmt/format.h>

#include <optional>

#include "kvm/kvm.h"

namespace tdxsim {

std::string ZappedRangeViolation::describe() const {
  const char* alias = zap.shared && zap.private_alias ? "both aliases"
                      : zap.shared                    ? "the shared alias"
                                                      : "the private alias";
  return fmt::format(
      "after the {} zap of [{}, {}) ({}) returned, the {} {} root at {} still maps {} at {} "
      "(SPTE {:#x}, pfn {}); {} leaf(s) left in all",
      zap.why, zap.start, zap.end, alias, leaf.invalid ? "invalid" : "valid",
      leaf.mirror ? "mirror" : "direct", leaf.root, level_name(leaf.level), leaf.gfn,
      leaf.spte.raw(), leaf.spte.pfn(), leaves);
}

ZappedRangeCheck::~ZappedRangeCheck() {
  std::vector<Watched> w;
  {
    MutexLock l(mu_);
    w.swap(watched_);
  }
  // Detached outside mu_: a detach waits for running listeners, which take mu_.
}

void ZappedRangeCheck::watch(Kvm& kvm, const TdpMmu& mmu) {
  auto sub =
      kvm.events().range_zapped.attach([this, &mmu](const RangeZapEvent& e) { on_zap(mmu, e); });
  MutexLock l(mu_);
  watched_.push_back(Watched{&kvm, std::move(sub)});
}

void ZappedRangeCheck::unwatch(Kvm& kvm) {
  std::vector<Watched> gone;
  {
    MutexLock l(mu_);
    for (auto it = watched_.begin(); it != watched_.end();) {
      if (it->kvm != &kvm) {
        ++it;
        continue;
      }
      gone.push_back(std::move(*it));
      it = watched_.erase(it);
    }
  }
  // `gone` detaches here, outside mu_: a detach waits for running listeners, which take mu_.
}

void ZappedRangeCheck::on_zap(const TdpMmu& mmu, const RangeZapEvent& e) {
  std::optional<ZappedRangeViolation> v;
  mmu.visit_leaves(e.shared, e.private_alias, e.start, e.end, [&](const TdpMmu::RootLeaf& leaf) {
    if (!v) v = ZappedRangeViolation{e, leaf, 0};
    ++v->leaves;
  });
  MutexLock l(mu_);
  ++zaps_;
  if (!v) return;
  ++count_;
  if (kept_.size() < kKept) kept_.push_back(*v);
}

uint64_t ZappedRangeCheck::zaps_checked() const {
  MutexLock l(mu_);
  return zaps_;
}

uint64_t ZappedRangeCheck::violation_count() const {
  MutexLock l(mu_);
  return count_;
}

std::vector<ZappedRangeViolation> ZappedRangeCheck::violations() const {
  MutexLock l(mu_);
  return kept_;
}

}  // namespace tdxsim
