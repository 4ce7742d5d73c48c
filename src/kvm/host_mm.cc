#include "kvm/host_mm.h"

#include <algorithm>
#include <utility>

#include "base/check.h"

namespace tdxsim {
namespace {

constexpr uint64_t kHugeSize = level_bytes(Level::k2M);

bool page_aligned(uint64_t v) {
  return (v & (kPageSize - 1)) == 0;
}
uint64_t page_down(uint64_t v) {
  return v & ~(kPageSize - 1);
}
uint64_t huge_down(uint64_t v) {
  return v & ~(kHugeSize - 1);
}
uint64_t huge_up(uint64_t v) {
  return (v + kHugeSize - 1) & ~(kHugeSize - 1);
}

// The entry of `map` (start -> end, disjoint) containing `v`, or map.end().
template <class Map>
auto containing(Map& map, uint64_t v) {
  auto it = map.upper_bound(v);
  if (it == map.begin()) return map.end();
  --it;
  return v < it->second ? it : map.end();
}

}  // namespace

HostMm::HostMm(HostMemory& mem) : mem_(mem), mu_("mm->mmap_lock") {}

HostMm::~HostMm() {
  exit();
}

uint64_t HostMm::mmap(uint64_t len, Level page) {
  TDXSIM_CHECK(len > 0, "mmap of 0 bytes");
  TDXSIM_CHECK(page == Level::k4K || page == Level::k2M, "mmap with {} pages", level_name(page));
  const bool huge = page == Level::k2M;
  len = huge ? huge_up(len) : (len + kPageSize - 1) & ~(kPageSize - 1);
  MutexLock l(mu_);
  TDXSIM_CHECK(!exited_, "mmap after exit");
  // THP needs the mapping 2M-aligned to use a 2M page anywhere in it.
  const uint64_t hva = huge ? huge_up(next_hva_) : next_hva_;
  // A guard page between mappings, so that ranges never merge by accident.
  next_hva_ = hva + len + kPageSize;
  vmas_.emplace(hva, hva + len);
  if (huge) huge_vmas_.emplace(hva, hva + len);
  return hva;
}

bool HostMm::mapped(uint64_t hva) const {
  return containing(vmas_, hva) != vmas_.end();
}

bool HostMm::in_huge_vma(uint64_t hva) const {
  // The whole 2M range around hva must be inside one THP mapping (a partial munmap can
  // leave pieces that are not).
  auto it = containing(huge_vmas_, hva);
  return it != huge_vmas_.end() && it->first <= huge_down(hva) &&
         huge_down(hva) + kHugeSize <= it->second;
}

std::pair<uint64_t, uint64_t> HostMm::widen_to_huge(uint64_t start, uint64_t end) const {
  if (huge_ptes_.contains(huge_down(start))) start = huge_down(start);
  if (end > 0 && huge_ptes_.contains(huge_down(end - 1))) end = huge_down(end - 1) + kHugeSize;
  return {start, end};
}

namespace {

// Removes [start, end) from a map of disjoint ranges, splitting the ranges it cuts.
void carve(std::map<uint64_t, uint64_t>& ranges, uint64_t start, uint64_t end) {
  auto it = ranges.upper_bound(start);
  if (it != ranges.begin()) --it;
  while (it != ranges.end() && it->first < end) {
    const uint64_t vs = it->first;
    const uint64_t ve = it->second;
    if (ve <= start) {
      ++it;
      continue;
    }
    it = ranges.erase(it);
    if (vs < start) ranges.emplace(vs, start);
    if (ve > end) it = ranges.emplace(end, ve).first;
  }
}

}  // namespace

void HostMm::remove_vmas(uint64_t start, uint64_t end) {
  carve(vmas_, start, end);
  carve(huge_vmas_, start, end);
}

KvmResult<> HostMm::munmap(uint64_t hva, uint64_t len) {
  if (!page_aligned(hva) || !page_aligned(len) || len == 0) return std::unexpected(Errno::kEinval);
  const uint64_t end = hva + len;
  MutexLock l(mu_);
  if (widen_to_huge(hva, end) != std::pair{hva, end}) return std::unexpected(Errno::kEinval);
  for (MmuNotifier* n : notifiers_) n->invalidate_range_start(hva, end);
  std::vector<Pfn> freed;
  for (auto it = ptes_.lower_bound(hva); it != ptes_.end() && it->first < end;) {
    freed.push_back(it->second.pfn);
    it = ptes_.erase(it);
  }
  std::vector<Pfn> freed_huge;
  for (auto it = huge_ptes_.lower_bound(hva); it != huge_ptes_.end() && it->first < end;) {
    freed_huge.push_back(it->second.pfn);
    it = huge_ptes_.erase(it);
  }
  remove_vmas(hva, end);
  for (MmuNotifier* n : notifiers_) n->invalidate_range_end(hva, end);
  // Linux frees unmapped pages only after the TLB flush that follows the zap; the notifiers'
  // secondary mappings went in invalidate_range_start.
  for (Pfn p : freed) mem_.free_frame(p);
  for (Pfn p : freed_huge) mem_.free_huge_2m(p);
  return {};
}

KvmResult<Pfn> HostMm::fault_in(uint64_t hva, bool write) {
  if (!mapped(hva)) return std::unexpected(Errno::kEfault);
  const uint64_t page = page_down(hva);
  if (in_huge_vma(hva)) {
    const uint64_t head = huge_down(hva);
    auto huge = huge_ptes_.find(head);
    // A 2M page only where no 4K page of the range is resident yet (no collapse modelled).
    if (huge == huge_ptes_.end()) {
      auto first = ptes_.lower_bound(head);
      if (first == ptes_.end() || first->first >= head + kHugeSize) {
        if (const std::optional<Pfn> pfn = mem_.alloc_huge_2m()) {
          huge = huge_ptes_.emplace(head, Pte{*pfn}).first;
        }
      }
    }
    if (huge != huge_ptes_.end()) {
      huge->second.young = true;
      huge->second.dirty |= write;
      return huge->second.pfn + (page - head) / kPageSize;
    }
  }
  auto it = ptes_.find(page);
  if (it == ptes_.end()) {
    const std::optional<Pfn> pfn = mem_.alloc_frame();
    if (!pfn) return std::unexpected(Errno::kEnomem);
    // A fresh anonymous page reads as zeros (clear_user_highpage); alloc_frame zeroes only
    // frames the host key holds, and the write makes a leftover TD frame's state visible.
    mem_.fill(*pfn, kHostKey, 0);
    it = ptes_.emplace(page, Pte{*pfn}).first;
  }
  it->second.young = true;
  it->second.dirty |= write;
  return it->second.pfn;
}

KvmResult<Pfn> HostMm::get_user_page(uint64_t hva, bool write, Level* level) {
  MutexLock l(mu_);
  KvmResult<Pfn> pfn = fault_in(hva, write);
  if (pfn && level != nullptr) *level = level_at(hva);
  return pfn;
}

KvmResult<uint64_t> HostMm::read(uint64_t hva) {
  TDXSIM_CHECK(hva % 8 == 0, "unaligned read at hva {:#x}", hva);
  MutexLock l(mu_);
  KvmResult<Pfn> pfn = fault_in(hva, false);
  if (!pfn) return std::unexpected(pfn.error());
  return mem_.read(pfn->hpa() + (hva & (kPageSize - 1)), kHostKey).value;
}

KvmResult<> HostMm::write(uint64_t hva, uint64_t value) {
  TDXSIM_CHECK(hva % 8 == 0, "unaligned write at hva {:#x}", hva);
  MutexLock l(mu_);
  KvmResult<Pfn> pfn = fault_in(hva, true);
  if (!pfn) return std::unexpected(pfn.error());
  mem_.write(pfn->hpa() + (hva & (kPageSize - 1)), kHostKey, value);
  return {};
}

void HostMm::reclaim(uint64_t hva, uint64_t len) {
  TDXSIM_CHECK(page_aligned(hva) && page_aligned(len), "unaligned reclaim [{:#x}, +{:#x})", hva,
               len);
  if (len == 0) return;
  MutexLock l(mu_);
  // A 2M page migrates whole, so the invalidation covers all of it.
  const auto [start, end] = widen_to_huge(hva, hva + len);
  for (MmuNotifier* n : notifiers_) n->invalidate_range_start(start, end);
  // Only now may the old frames go: no secondary mapping of them is left.
  for (auto it = ptes_.lower_bound(start); it != ptes_.end() && it->first < end; ++it) {
    const std::optional<Pfn> fresh = mem_.alloc_frame();
    if (!fresh) break;
    Pte& pte = it->second;
    mem_.copy_page(*fresh, kHostKey, pte.pfn, kHostKey);
    mem_.free_frame(pte.pfn);
    pte = Pte{*fresh, false, pte.dirty};
  }
  for (auto it = huge_ptes_.lower_bound(start); it != huge_ptes_.end() && it->first < end; ++it) {
    const std::optional<Pfn> fresh = mem_.alloc_huge_2m();
    if (!fresh) break;
    Pte& pte = it->second;
    for (uint64_t i = 0; i < kHugeSize / kPageSize; ++i) {
      mem_.copy_page(*fresh + i, kHostKey, pte.pfn + i, kHostKey);
    }
    mem_.free_huge_2m(pte.pfn);
    pte = Pte{*fresh, false, pte.dirty};
  }
  for (MmuNotifier* n : notifiers_) n->invalidate_range_end(start, end);
}

bool HostMm::age(uint64_t hva, uint64_t len) {
  const uint64_t end = hva + len;
  MutexLock l(mu_);
  bool young = false;
  for (MmuNotifier* n : notifiers_) young |= n->clear_young(hva, end);
  for (auto it = ptes_.lower_bound(page_down(hva)); it != ptes_.end() && it->first < end; ++it) {
    young |= std::exchange(it->second.young, false);
  }
  for (auto it = huge_ptes_.lower_bound(huge_down(hva)); it != huge_ptes_.end() && it->first < end;
       ++it) {
    young |= std::exchange(it->second.young, false);
  }
  return young;
}

bool HostMm::test_young(uint64_t hva, uint64_t len) {
  const uint64_t end = hva + len;
  MutexLock l(mu_);
  for (auto it = ptes_.lower_bound(page_down(hva)); it != ptes_.end() && it->first < end; ++it) {
    if (it->second.young) return true;
  }
  for (auto it = huge_ptes_.lower_bound(huge_down(hva)); it != huge_ptes_.end() && it->first < end;
       ++it) {
    if (it->second.young) return true;
  }
  return std::ranges::any_of(notifiers_, [&](MmuNotifier* n) { return n->test_young(hva, end); });
}

void HostMm::register_notifier(MmuNotifier* n) {
  MutexLock l(mu_);
  TDXSIM_CHECK(!exited_, "notifier registered after exit");
  TDXSIM_CHECK(std::ranges::find(notifiers_, n) == notifiers_.end(), "notifier registered twice");
  notifiers_.push_back(n);
}

void HostMm::unregister_notifier(MmuNotifier* n) {
  MutexLock l(mu_);
  std::erase(notifiers_, n);
}

void HostMm::exit() {
  MutexLock l(mu_);
  if (exited_) return;
  exited_ = true;
  for (MmuNotifier* n : notifiers_) n->release();
  notifiers_.clear();
  for (const auto& [hva, pte] : ptes_) mem_.free_frame(pte.pfn);
  for (const auto& [hva, pte] : huge_ptes_) mem_.free_huge_2m(pte.pfn);
  ptes_.clear();
  huge_ptes_.clear();
  vmas_.clear();
  huge_vmas_.clear();
}

uint64_t HostMm::resident_pages() const {
  MutexLock l(mu_);
  return ptes_.size() + huge_ptes_.size() * (kHugeSize / kPageSize);
}

Level HostMm::mapping_level(uint64_t hva) const {
  MutexLock l(mu_);
  return level_at(hva);
}

Level HostMm::level_at(uint64_t hva) const {
  return huge_ptes_.contains(huge_down(hva)) ? Level::k2M : Level::k4K;
}

std::optional<Pfn> HostMm::resident_pfn(uint64_t hva) const {
  MutexLock l(mu_);
  if (auto huge = huge_ptes_.find(huge_down(hva)); huge != huge_ptes_.end()) {
    return huge->second.pfn + (page_down(hva) - huge->first) / kPageSize;
  }
  auto it = ptes_.find(page_down(hva));
  if (it == ptes_.end()) return std::nullopt;
  return it->second.pfn;
}

}  // namespace tdxsim
