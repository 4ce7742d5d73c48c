#include "platform/tlb.h"

#include <iterator>

#include "base/check.h"
#include "base/mix.h"

namespace tdxsim {

namespace {

constexpr Level kTlbLevels[] = {Level::k4K, Level::k2M, Level::k1G};

}  // namespace

size_t Tlb::KeyHash::operator()(const Key& k) const {
  uint64_t h = k.page ^ (uint64_t{level_num(k.level)} << 60);
  h = mix64(h ^ k.tag.ep4ta);
  h = mix64(h ^ (uint64_t{k.tag.vpid_or_asid} << 16) ^ k.tag.pcid ^
            (uint64_t{static_cast<uint8_t>(k.tag.kind)} << 40));
  return static_cast<size_t>(h);
}

size_t Tlb::PscKeyHash::operator()(const PscKey& k) const {
  uint64_t h = mix64(k.region ^ k.tag.ep4ta);
  h = mix64(h ^ (uint64_t{k.tag.vpid_or_asid} << 16) ^
            (uint64_t{static_cast<uint8_t>(k.tag.kind)} << 40));
  return static_cast<size_t>(h);
}

Tlb::Tlb(const TlbConfig& config) : config_(config), rng_(config.seed) {
  // A bounded TLB never grows past its capacity: no rehash on the fill path.
  if (config.capacity != 0) map_.reserve(config.capacity + 1);
}

std::optional<TlbEntry> Tlb::lookup(const TlbTag& tag, uint64_t addr) {
  MutexLock lock(mu_);
  return lookup_locked(tag, addr);
}

Tlb::Probe Tlb::probe(const TlbTag& tag, uint64_t addr) {
  MutexLock lock(mu_);
  Probe p;
  p.entry = lookup_locked(tag, addr);
  if (!p.entry) p.psc = psc_lookup_locked(tag, addr);
  return p;
}

std::optional<TlbEntry> Tlb::lookup_locked(const TlbTag& tag, uint64_t addr) {
  for (Level l : kTlbLevels) {
    if (per_level_[level_num(l) - 1] == 0) continue;
    const uint64_t page = addr & ~(level_bytes(l) - 1);
    if (auto it = map_.find(Key{tag, page, l}); it != map_.end()) {
      stats_.hits.add();
      return it->second.entry;
    }
  }
  stats_.misses.add();
  return std::nullopt;
}

void Tlb::insert(const TlbEntry& entry) {
  MutexLock lock(mu_);
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
  MutexLock lock(mu_);
  return psc_lookup_locked(tag, addr);
}

std::optional<PscEntry> Tlb::psc_lookup_locked(const TlbTag& tag, uint64_t addr) {
  if (psc_.empty()) return std::nullopt;
  auto it = psc_.find(PscKey{psc_tag(tag), addr & ~(kPscRegion - 1)});
  if (it == psc_.end()) return std::nullopt;
  stats_.psc_hits.add();
  return it->second;
}

void Tlb::psc_insert(const PscEntry& entry) {
  MutexLock lock(mu_);
  psc_insert_locked(entry);
}

void Tlb::psc_insert_unless_flushed(const PscEntry& entry, uint64_t generation) {
  MutexLock lock(mu_);
  if (remote_flushes_ != generation) return;
  psc_insert_locked(entry);
}

void Tlb::psc_insert_locked(const PscEntry& entry) {
  TDXSIM_CHECK((entry.region & (kPscRegion - 1)) == 0, "PSC region {:#x} not 2M-aligned",
               entry.region);
  TDXSIM_CHECK(entry.tag == psc_tag(entry.tag), "a PSC entry tagged as a combined mapping");
  const PscKey key{entry.tag, entry.region};
  if (auto it = psc_.find(key); it != psc_.end()) {
    it->second = entry;
    stats_.psc_fills.add();
    return;
  }
  if (config_.capacity != 0 && psc_.size() >= config_.capacity) {
    std::uniform_int_distribution<size_t> pick(0, psc_.size() - 1);
    psc_.erase(std::next(psc_.begin(), static_cast<std::ptrdiff_t>(pick(rng_))));
    stats_.evictions.add();
  }
  psc_.emplace(key, entry);
  stats_.psc_fills.add();
}

template <typename Pred>
size_t Tlb::psc_erase_if_locked(Pred pred) {
  const size_t n = std::erase_if(psc_, [&](const auto& kv) { return pred(kv.second); });
  stats_.psc_flushed.add(n);
  return n;
}

size_t Tlb::psc_invalidate(const TlbTag& tag, uint64_t addr) {
  MutexLock lock(mu_);
  const size_t n = psc_.erase(PscKey{psc_tag(tag), addr & ~(kPscRegion - 1)});
  stats_.psc_flushed.add(n);
  return n;
}

std::vector<PscEntry> Tlb::psc_entries() {
  MutexLock lock(mu_);
  std::vector<PscEntry> out;
  out.reserve(psc_.size());
  for (const auto& [key, e] : psc_) out.push_back(e);
  return out;
}

uint64_t Tlb::remote_flush_generation() {
  MutexLock lock(mu_);
  return remote_flushes_;
}

void Tlb::insert_unless_flushed(const TlbEntry& entry, uint64_t generation) {
  MutexLock lock(mu_);
  if (remote_flushes_ != generation) return;
  insert_locked(entry);
}

void Tlb::insert_locked(const TlbEntry& entry) {
  TDXSIM_CHECK(entry.level <= Level::k1G, "a TLB entry of {}", level_name(entry.level));
  TDXSIM_CHECK((entry.page & (level_bytes(entry.level) - 1)) == 0,
               "TLB entry page {:#x} not aligned to {}", entry.page, level_name(entry.level));
  const Key key{entry.tag, entry.page, entry.level};
  if (auto it = map_.find(key); it != map_.end()) {
    it->second.entry = entry;
    stats_.fills.add();
    return;
  }
  if (config_.capacity != 0 && map_.size() >= config_.capacity) {
    std::uniform_int_distribution<size_t> pick(0, order_.size() - 1);
    // The new entry takes the victim's node and its place in order_: a full TLB's fill
    // (every fill, once a guest has touched more pages than it holds) then neither frees
    // nor allocates, and moves no other entry.
    const size_t victim = pick(rng_);
    auto node = map_.extract(order_[victim]);
    TDXSIM_CHECK(!node.empty(), "TLB victim missing from the map");
    --per_level_[level_num(node.key().level) - 1];
    stats_.evictions.add();
    node.key() = key;
    node.mapped() = Slot{entry, victim};
    map_.insert(std::move(node));
    order_[victim] = key;
  } else {
    map_.emplace(key, Slot{entry, order_.size()});
    order_.push_back(key);
  }
  ++per_level_[level_num(entry.level) - 1];
  stats_.fills.add();
}

void Tlb::erase_locked(const Key& key) {
  auto it = map_.find(key);
  TDXSIM_CHECK(it != map_.end(), "TLB erase of a missing key");
  const size_t idx = it->second.order;
  --per_level_[level_num(key.level) - 1];
  map_.erase(it);
  // Swap-remove keeps order_ dense; fix the moved key's back-pointer.
  if (idx != order_.size() - 1) {
    order_[idx] = order_.back();
    map_.find(order_[idx])->second.order = idx;
  }
  order_.pop_back();
}

template <typename Pred>
size_t Tlb::erase_if_locked(Pred pred) {
  std::vector<Key> doomed;
  for (const auto& [key, slot] : map_)
    if (pred(slot.entry)) doomed.push_back(key);
  for (const Key& k : doomed) erase_locked(k);
  stats_.flushes.add();
  stats_.entries_flushed.add(doomed.size());
  return doomed.size();
}

size_t Tlb::invept(InveptType type, uint64_t ep4ta) {
  MutexLock lock(mu_);
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
  MutexLock lock(mu_);
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
  MutexLock lock(mu_);
  stats_.psc_flushed.add(psc_.erase(PscKey{psc_tag(tag), addr & ~(kPscRegion - 1)}));
  return erase_if_locked([&](const TlbEntry& e) {
    const bool covers = addr >= e.page && addr < e.page + level_bytes(e.level);
    if (!covers) return false;
    if (tag.kind == TlbEntryKind::kAsid)
      return e.tag.kind == TlbEntryKind::kAsid && e.tag.vpid_or_asid == tag.vpid_or_asid;
    return e.tag.kind != TlbEntryKind::kAsid && e.tag.ep4ta == tag.ep4ta;
  });
}

size_t Tlb::flush_asid(uint16_t asid) {
  MutexLock lock(mu_);
  psc_erase_if_locked([&](const PscEntry& e) {
    return e.tag.kind == TlbEntryKind::kAsid && e.tag.vpid_or_asid == asid;
  });
  return erase_if_locked([&](const TlbEntry& e) {
    return e.tag.kind == TlbEntryKind::kAsid && e.tag.vpid_or_asid == asid;
  });
}

size_t Tlb::flush_all_asids() {
  MutexLock lock(mu_);
  psc_erase_if_locked([](const PscEntry& e) { return e.tag.kind == TlbEntryKind::kAsid; });
  return erase_if_locked([](const TlbEntry& e) { return e.tag.kind == TlbEntryKind::kAsid; });
}

size_t Tlb::invlpga(uint16_t asid, uint64_t addr) {
  MutexLock lock(mu_);
  return erase_if_locked([&](const TlbEntry& e) {
    return e.tag.kind == TlbEntryKind::kAsid && e.tag.vpid_or_asid == asid && addr >= e.page &&
           addr < e.page + level_bytes(e.level);
  });
}

size_t Tlb::flush_source_root(Hpa root, Gpa gpa, uint64_t bytes) {
  MutexLock lock(mu_);
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
  MutexLock lock(mu_);
  return map_.size();
}

std::vector<TlbEntry> Tlb::entries() {
  MutexLock lock(mu_);
  std::vector<TlbEntry> out;
  out.reserve(map_.size());
  for (const auto& [key, slot] : map_) out.push_back(slot.entry);
  return out;
}

}  // namespace tdxsim
