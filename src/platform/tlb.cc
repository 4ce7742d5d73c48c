#include "platform/tlb.h"

#include "base/check.h"
#include "base/mix.h"

namespace tdxsim {

namespace {

constexpr Level kTlbLevels[] = {Level::k4K, Level::k2M, Level::k1G};

}  // namespace

uint64_t Tlb::tag_hash(const TlbTag& tag, Level level) {
  return mix64(tag.ep4ta ^ (uint64_t{tag.vpid_or_asid} << 16) ^ (uint64_t{tag.pcid} << 32) ^
               (uint64_t{static_cast<uint8_t>(tag.kind)} << 48) ^
               (uint64_t{level_num(level)} << 56));
}

namespace {

uint64_t vpn_of(uint64_t addr, Level level) {
  return addr >> level_shift(level);
}

}  // namespace

Tlb::Tlb(const TlbConfig& config)
    : entries_(config.capacity), psc_(config.capacity), rng_(config.seed) {}

uint64_t Tlb::next_random() {
  rng_ += 0x9e3779b97f4a7c15ull;  // splitmix64
  return mix64(rng_);
}

std::optional<TlbEntry> Tlb::lookup(const TlbTag& tag, uint64_t addr) {
  SpinLockGuard lock(mu_);
  return lookup_locked(tag, addr);
}

Tlb::Probe Tlb::probe(const TlbTag& tag, uint64_t addr) {
  SpinLockGuard lock(mu_);
  Probe p;
  p.entry = lookup_locked(tag, addr);
  if (!p.entry) p.psc = psc_lookup_locked(tag, addr);
  return p;
}

std::optional<TlbEntry> Tlb::lookup_locked(const TlbTag& tag, uint64_t addr) {
  for (Level l : kTlbLevels) {
    if (per_level_[level_num(l) - 1] == 0) continue;
    const uint64_t page = addr & ~(level_bytes(l) - 1);
    const TlbEntry* e = entries_.find(vpn_of(page, l), tag_hash(tag, l), [&](const TlbEntry& x) {
      return x.page == page && x.level == l && x.tag == tag;
    });
    if (e != nullptr) {
      stats_.hits.add();
      return *e;
    }
  }
  stats_.misses.add();
  return std::nullopt;
}

void Tlb::insert(const TlbEntry& entry) {
  SpinLockGuard lock(mu_);
  insert_locked(entry);
}

namespace {

constexpr uint64_t kPscRegion = level_bytes(Level::k2M);

bool psc_region_overlaps(uint64_t region, uint64_t lo, uint64_t bytes) {
  return region < lo + bytes && lo < region + kPscRegion;
}

}  // namespace

TlbTag Tlb::psc_tag(const TlbTag& tag) {
  if (tag.kind == TlbEntryKind::kAsid) return TlbTag{TlbEntryKind::kAsid, tag.vpid_or_asid, 0, 0};
  return TlbTag{TlbEntryKind::kGuestPhysical, 0, 0, tag.ep4ta};
}

std::optional<PscEntry> Tlb::psc_lookup(const TlbTag& tag, uint64_t addr) {
  SpinLockGuard lock(mu_);
  return psc_lookup_locked(tag, addr);
}

std::optional<PscEntry> Tlb::psc_lookup_locked(const TlbTag& tag, uint64_t addr) {
  if (psc_.size() == 0) return std::nullopt;
  const TlbTag t = psc_tag(tag);
  const uint64_t region = addr & ~(kPscRegion - 1);
  const PscEntry* e =
      psc_.find(vpn_of(region, Level::k2M), tag_hash(t, Level::k2M),
                [&](const PscEntry& x) { return x.region == region && x.tag == t; });
  if (e == nullptr) return std::nullopt;
  stats_.psc_hits.add();
  return *e;
}

size_t Tlb::psc_erase_locked(const TlbTag& tag, uint64_t addr) {
  const TlbTag t = psc_tag(tag);
  const uint64_t region = addr & ~(kPscRegion - 1);
  return psc_.erase(vpn_of(region, Level::k2M), tag_hash(t, Level::k2M),
                    [&](const PscEntry& x) { return x.region == region && x.tag == t; })
             ? 1
             : 0;
}

void Tlb::psc_insert(const PscEntry& entry) {
  SpinLockGuard lock(mu_);
  psc_insert_locked(entry);
}

void Tlb::psc_insert_unless_flushed(const PscEntry& entry, uint64_t generation) {
  SpinLockGuard lock(mu_);
  if (remote_flushes_ != generation) return;
  psc_insert_locked(entry);
}

void Tlb::psc_insert_locked(const PscEntry& entry) {
  TDXSIM_CHECK((entry.region & (kPscRegion - 1)) == 0, "PSC region {:#x} not 2M-aligned",
               entry.region);
  TDXSIM_CHECK(entry.tag == psc_tag(entry.tag), "a PSC entry tagged as a combined mapping");
  psc_.insert(
      vpn_of(entry.region, Level::k2M), tag_hash(entry.tag, Level::k2M), entry,
      [&](const PscEntry& x) { return x.region == entry.region && x.tag == entry.tag; },
      next_random(), [&](const PscEntry&) { stats_.evictions.add(); });
  stats_.psc_fills.add();
}

template <typename Pred>
size_t Tlb::psc_erase_if_locked(Pred pred) {
  const size_t n = psc_.erase_if(pred);
  stats_.psc_flushed.add(n);
  return n;
}

size_t Tlb::psc_invalidate(const TlbTag& tag, uint64_t addr) {
  SpinLockGuard lock(mu_);
  const size_t n = psc_erase_locked(tag, addr);
  stats_.psc_flushed.add(n);
  return n;
}

std::vector<PscEntry> Tlb::psc_entries() {
  SpinLockGuard lock(mu_);
  std::vector<PscEntry> out;
  out.reserve(psc_.size());
  psc_.for_each([&](const PscEntry& e) { out.push_back(e); });
  return out;
}

uint64_t Tlb::remote_flush_generation() {
  SpinLockGuard lock(mu_);
  return remote_flushes_;
}

void Tlb::insert_unless_flushed(const TlbEntry& entry, uint64_t generation) {
  SpinLockGuard lock(mu_);
  if (remote_flushes_ != generation) return;
  insert_locked(entry);
}

void Tlb::insert_locked(const TlbEntry& entry) {
  TDXSIM_CHECK(entry.level <= Level::k1G, "a TLB entry of {}", level_name(entry.level));
  TDXSIM_CHECK((entry.page & (level_bytes(entry.level) - 1)) == 0,
               "TLB entry page {:#x} not aligned to {}", entry.page, level_name(entry.level));
  std::optional<Level> evicted;
  const bool added = entries_.insert(
      vpn_of(entry.page, entry.level), tag_hash(entry.tag, entry.level), entry,
      [&](const TlbEntry& x) {
        return x.page == entry.page && x.level == entry.level && x.tag == entry.tag;
      },
      next_random(), [&](const TlbEntry& victim) { evicted = victim.level; });
  if (evicted) {
    --per_level_[level_num(*evicted) - 1];
    stats_.evictions.add();
  }
  if (added) ++per_level_[level_num(entry.level) - 1];
  stats_.fills.add();
}

template <typename Pred>
size_t Tlb::erase_if_locked(Pred pred) {
  std::array<uint64_t, 3> dropped{};
  const size_t n = entries_.erase_if([&](const TlbEntry& e) {
    if (!pred(e)) return false;
    ++dropped[level_num(e.level) - 1];
    return true;
  });
  for (size_t i = 0; i < dropped.size(); ++i) per_level_[i] -= dropped[i];
  stats_.flushes.add();
  stats_.entries_flushed.add(n);
  return n;
}

size_t Tlb::invept(InveptType type, uint64_t ep4ta) {
  SpinLockGuard lock(mu_);
  // SDM §28.4.3.1: both forms invalidate the paging-structure caches of the EP4TAs they
  // reach along with the mappings.
  const auto reached = [&](const TlbTag& t) {
    if (t.kind == TlbEntryKind::kAsid) return false;
    return type == InveptType::kAllContext || t.ep4ta == ep4ta;
  };
  psc_erase_if_locked([&](const PscEntry& e) { return reached(e.tag); });
  return erase_if_locked([&](const TlbEntry& e) { return reached(e.tag); });
}

size_t Tlb::invvpid(InvvpidType type, uint16_t vpid, uint64_t linear) {
  TDXSIM_CHECK(type == InvvpidType::kAllContext || vpid != 0,
               "INVVPID type {} with VPID 0 (VMfailValid on hardware)", static_cast<int>(type));
  SpinLockGuard lock(mu_);
  return erase_if_locked([&](const TlbEntry& e) {
    if (e.tag.kind != TlbEntryKind::kCombined) return false;  // never guest-physical
    switch (type) {
      case InvvpidType::kIndividualAddress:
        return e.tag.vpid_or_asid == vpid && linear >= e.page &&
               linear < e.page + level_bytes(e.level);
      case InvvpidType::kSingleContext:
      case InvvpidType::kSingleContextRetainingGlobals:
        return e.tag.vpid_or_asid == vpid;
      case InvvpidType::kAllContext:
        return e.tag.vpid_or_asid != 0;
    }
    return false;
  });
}

size_t Tlb::invalidate_on_fault(const TlbTag& tag, uint64_t addr) {
  SpinLockGuard lock(mu_);
  stats_.psc_flushed.add(psc_erase_locked(tag, addr));
  return erase_if_locked([&](const TlbEntry& e) {
    const bool covers = addr >= e.page && addr < e.page + level_bytes(e.level);
    if (!covers) return false;
    if (tag.kind == TlbEntryKind::kAsid)
      return e.tag.kind == TlbEntryKind::kAsid && e.tag.vpid_or_asid == tag.vpid_or_asid;
    return e.tag.kind != TlbEntryKind::kAsid && e.tag.ep4ta == tag.ep4ta;
  });
}

size_t Tlb::flush_asid(uint16_t asid) {
  SpinLockGuard lock(mu_);
  psc_erase_if_locked([&](const PscEntry& e) {
    return e.tag.kind == TlbEntryKind::kAsid && e.tag.vpid_or_asid == asid;
  });
  return erase_if_locked([&](const TlbEntry& e) {
    return e.tag.kind == TlbEntryKind::kAsid && e.tag.vpid_or_asid == asid;
  });
}

size_t Tlb::flush_all_asids() {
  SpinLockGuard lock(mu_);
  psc_erase_if_locked([](const PscEntry& e) { return e.tag.kind == TlbEntryKind::kAsid; });
  return erase_if_locked([](const TlbEntry& e) { return e.tag.kind == TlbEntryKind::kAsid; });
}

size_t Tlb::invlpga(uint16_t asid, uint64_t addr) {
  SpinLockGuard lock(mu_);
  return erase_if_locked([&](const TlbEntry& e) {
    return e.tag.kind == TlbEntryKind::kAsid && e.tag.vpid_or_asid == asid && addr >= e.page &&
           addr < e.page + level_bytes(e.level);
  });
}

size_t Tlb::flush_source_root(Hpa root, Gpa gpa, uint64_t bytes) {
  SpinLockGuard lock(mu_);
  ++remote_flushes_;
  // The L0 drops the cached paging structures of the range with its translations: a PSC
  // entry whose 2M region overlaps the range goes.
  psc_erase_if_locked([&](const PscEntry& e) {
    return e.source_root == root && (bytes == 0 || psc_region_overlaps(e.region, gpa.raw(), bytes));
  });
  return erase_if_locked([&](const TlbEntry& e) {
    if (e.source_root != root) return false;
    if (bytes == 0) return true;
    const uint64_t lo = e.gpa.raw(), hi = lo + level_bytes(e.level);
    return lo < gpa.raw() + bytes && gpa.raw() < hi;
  });
}

size_t Tlb::size() {
  SpinLockGuard lock(mu_);
  return entries_.size();
}

std::vector<TlbEntry> Tlb::entries() {
  SpinLockGuard lock(mu_);
  std::vector<TlbEntry> out;
  out.reserve(entries_.size());
  entries_.for_each([&](const TlbEntry& e) { out.push_back(e); });
  return out;
}

}  // namespace tdxsim
