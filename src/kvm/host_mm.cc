#include "kvm/host_mm.h"

#include <algorithm>
#include <utility>

#include "base/check.h"

namespace tdxsim {
namespace {

bool page_aligned(uint64_t v) { return (v & (kPageSize - 1)) == 0; }
uint64_t page_down(uint64_t v) { return v & ~(kPageSize - 1); }

}  // namespace

HostMm::HostMm(HostMemory& mem) : mem_(mem), mu_("mm->mmap_lock") {}

HostMm::~HostMm() { exit(); }

uint64_t HostMm::mmap(uint64_t len) {
  TDXSIM_CHECK(len > 0, "mmap of 0 bytes");
  len = (len + kPageSize - 1) & ~(kPageSize - 1);
  MutexLock l(mu_);
  TDXSIM_CHECK(!exited_, "mmap after exit");
  const uint64_t hva = next_hva_;
  // A guard page between mappings, so that ranges never merge by accident.
  next_hva_ += len + kPageSize;
  vmas_.emplace(hva, hva + len);
  return hva;
}

bool HostMm::mapped(uint64_t hva) const {
  auto it = vmas_.upper_bound(hva);
  if (it == vmas_.begin()) return false;
  --it;
  return hva < it->second;
}

void HostMm::remove_vmas(uint64_t start, uint64_t end) {
  auto it = vmas_.upper_bound(start);
  if (it != vmas_.begin()) --it;
  while (it != vmas_.end() && it->first < end) {
    const uint64_t vs = it->first;
    const uint64_t ve = it->second;
    if (ve <= start) {
      ++it;
      continue;
    }
    it = vmas_.erase(it);
    if (vs < start) vmas_.emplace(vs, start);
    if (ve > end) it = vmas_.emplace(end, ve).first;
  }
}

KvmResult<> HostMm::munmap(uint64_t hva, uint64_t len) {
  if (!page_aligned(hva) || !page_aligned(len) || len == 0) return std::unexpected(Errno::kEinval);
  const uint64_t end = hva + len;
  MutexLock l(mu_);
  for (MmuNotifier* n : notifiers_) n->invalidate_range_start(hva, end);
  std::vector<Pfn> freed;
  for (auto it = ptes_.lower_bound(hva); it != ptes_.end() && it->first < end;) {
    freed.push_back(it->second.pfn);
    it = ptes_.erase(it);
  }
  remove_vmas(hva, end);
  for (MmuNotifier* n : notifiers_) n->invalidate_range_end(hva, end);
  // Linux frees unmapped pages only after the TLB flush that follows the zap; the notifiers'
  // secondary mappings went in invalidate_range_start.
  for (Pfn p : freed) mem_.free_frame(p);
  return {};
}

KvmResult<HostMm::Pte*> HostMm::fault_in(uint64_t hva, bool write) {
  if (!mapped(hva)) return std::unexpected(Errno::kEfault);
  const uint64_t page = page_down(hva);
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
  return &it->second;
}

KvmResult<Pfn> HostMm::get_user_page(uint64_t hva, bool write) {
  MutexLock l(mu_);
  KvmResult<Pte*> pte = fault_in(hva, write);
  if (!pte) return std::unexpected(pte.error());
  return (*pte)->pfn;
}

KvmResult<uint64_t> HostMm::read(uint64_t hva) {
  TDXSIM_CHECK(hva % 8 == 0, "unaligned read at hva {:#x}", hva);
  MutexLock l(mu_);
  KvmResult<Pte*> pte = fault_in(hva, false);
  if (!pte) return std::unexpected(pte.error());
  return mem_.read((*pte)->pfn.hpa() + (hva & (kPageSize - 1)), kHostKey).value;
}

KvmResult<> HostMm::write(uint64_t hva, uint64_t value) {
  TDXSIM_CHECK(hva % 8 == 0, "unaligned write at hva {:#x}", hva);
  MutexLock l(mu_);
  KvmResult<Pte*> pte = fault_in(hva, true);
  if (!pte) return std::unexpected(pte.error());
  mem_.write((*pte)->pfn.hpa() + (hva & (kPageSize - 1)), kHostKey, value);
  return {};
}

void HostMm::reclaim(uint64_t hva, uint64_t len) {
  TDXSIM_CHECK(page_aligned(hva) && page_aligned(len), "unaligned reclaim [{:#x}, +{:#x})", hva, len);
  if (len == 0) return;
  const uint64_t end = hva + len;
  MutexLock l(mu_);
  for (MmuNotifier* n : notifiers_) n->invalidate_range_start(hva, end);
  // Only now may the old frames go: no secondary mapping of them is left.
  for (auto it = ptes_.lower_bound(hva); it != ptes_.end() && it->first < end; ++it) {
    const std::optional<Pfn> fresh = mem_.alloc_frame();
    if (!fresh) break;
    Pte& pte = it->second;
    mem_.copy_page(*fresh, kHostKey, pte.pfn, kHostKey);
    mem_.free_frame(pte.pfn);
    pte = Pte{*fresh, false, pte.dirty};
  }
  for (MmuNotifier* n : notifiers_) n->invalidate_range_end(hva, end);
}

bool HostMm::age(uint64_t hva, uint64_t len) {
  const uint64_t end = hva + len;
  MutexLock l(mu_);
  bool young = false;
  for (MmuNotifier* n : notifiers_) young |= n->clear_young(hva, end);
  for (auto it = ptes_.lower_bound(page_down(hva)); it != ptes_.end() && it->first < end; ++it) {
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
  ptes_.clear();
  vmas_.clear();
}

uint64_t HostMm::resident_pages() const {
  MutexLock l(mu_);
  return ptes_.size();
}

std::optional<Pfn> HostMm::resident_pfn(uint64_t hva) const {
  MutexLock l(mu_);
  auto it = ptes_.find(page_down(hva));
  if (it == ptes_.end()) return std::nullopt;
  return it->second.pfn;
}

}  // namespace tdxsim
