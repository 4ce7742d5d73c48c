#include "fuzz/module_invariants.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "check/pamt_balance.h"
#include "check/sept_census.h"
#include "fuzz/host_world.h"
#include "tdx_module/pamt.h"
#include "tdx_module/sept_entry.h"

namespace tdxsim::fuzz {

namespace {

[[noreturn]] void violated(std::string_view invariant, const std::string& evidence) {
  fmt::print(stderr, "seamcall fuzzer: invariant {} violated: {}\n", invariant, evidence);
  std::abort();
}

// The S-EPT can be read only while the TD's key is configured: from MNG.INIT (the tables
// exist) until KEY.FREEID. In TEARDOWN the host reclaims pages without touching the S-EPT,
// so PAMT and S-EPT part ways by design.
bool sept_readable(HostWorld& world, const TdRecord& td) {
  if (!td.initialized) return false;
  const std::optional<TdLifecycle> life = world.module().td_lifecycle(td.tdr);
  return life == TdLifecycle::kKeysConfigured || life == TdLifecycle::kBlocked;
}

// An S-EPT entry read with the TD's key; nullopt when the frame is poisoned.
std::optional<SeptEntry> read_entry(const HostMemory& mem, Hpa entry, KeyId hkid) {
  const MemWord w = mem.read(entry, hkid);
  if (w.origin != hkid) return std::nullopt;
  return SeptEntry{w.value};
}

// sept_state_from_encoding() as a table: the census decodes every entry of every table.
constexpr std::array<std::optional<SeptState>, 128> kStateByEncoding = [] {
  std::array<std::optional<SeptState>, 128> t{};
  for (uint8_t e = 0; e < 128; ++e) t[e] = sept_state_from_encoding(e);
  return t;
}();
std::optional<SeptState> state_of(SeptEntry e) {
  return kStateByEncoding[e.state_encoding()];
}

bool is_leaf_state(SeptState s) {
  return s == SeptState::kMapped || s == SeptState::kBlocked || s == SeptState::kPending ||
         s == SeptState::kPendingBlocked;
}

// The census of one TD's S-EPT from memory, with every disagreement between an entry and the
// PAMT type of the page it names.
class SeptReader {
 public:
  SeptReader(HostWorld& world, const TdRecord& td) : world_(world), td_(td) {}

  // Returns: false when a table was poisoned (the census is then meaningless).
  bool read(Hpa root) {
    tables_seen_.insert(root.raw());
    return table(root, level_from(td_.ept_levels));
  }
  const SeptCensus& census() const { return census_; }
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  bool table(Hpa page, Level entry_level) {
    const HostMemory& mem = world_.mem();
    const PhysAddrLayout& layout = world_.layout();
    const Pamt& pamt = world_.module().pamt();
    for (uint64_t i = 0; i < 512; ++i) {
      const Hpa at = page + 8 * i;
      const std::optional<SeptEntry> e = read_entry(mem, at, td_.hkid);
      if (!e) return false;
      ++census_.sept_reads;
      const std::optional<SeptState> s = state_of(*e);
      if (!s) {
        problem("{} entry {:#x} at {} holds no state the module writes", level_name(entry_level),
                e->raw(), at);
        continue;
      }
      if (*s == SeptState::kFree) continue;
      const Hpa target = e->hpa(layout);
      if (!mem.contains(target)) {
        problem("{} entry {:#x} at {} names {} beyond memory", level_name(entry_level), e->raw(),
                at, target);
        continue;
      }
      if (e->hkid(layout) != td_.hkid) {
        problem("entry {:#x} at {} carries key {}, not the TD's {}", e->raw(), at,
                e->hkid(layout).raw(), td_.hkid.raw());
      }
      if (*s == SeptState::kNlMapped || *s == SeptState::kNlBlocked) {
        if (entry_level == Level::k4K) {
          problem("a 4K entry {:#x} at {} is a table", e->raw(), at);
          continue;
        }
        if (!tables_seen_.insert(target.raw()).second) {
          problem("table page {} linked twice (again at {})", target, at);
          continue;
        }
        if (pamt.peek_type(target.pfn(), Level::k4K) != PamtPageType::kEpt) {
          problem("table page {} at {} is PAMT {}", target, at,
                  to_string(pamt.peek_type(target.pfn(), Level::k4K)));
        }
        // A PML4 page under a 5-level root counts with the PDPTs: pamt_imbalance adds up the
        // table pages below the root, whatever their level.
        const Level child = level_down(entry_level);
        ++census_.tables[std::min<unsigned>(level_num(child) - 1, 2)];
        if (!table(target, child)) return false;
        continue;
      }
      if (!is_leaf_state(*s) || entry_level > Level::k1G) {
        problem("{} entry {:#x} at {} is {}", level_name(entry_level), e->raw(), at, to_string(*s));
        continue;
      }
      ++census_.leaves[level_num(entry_level) - 1];
      if (pamt.peek_type(target.pfn(), entry_level) != PamtPageType::kReg) {
        problem("{} leaf {:#x} at {} maps a PAMT {} page", level_name(entry_level), e->raw(), at,
                to_string(pamt.peek_type(target.pfn(), entry_level)));
      }
    }
    return true;
  }

  template <typename... Args>
  void problem(fmt::format_string<Args...> f, Args&&... args) {
    problems_.push_back(fmt::format(f, std::forward<Args>(args)...));
  }

  HostWorld& world_;
  const TdRecord& td_;
  SeptCensus census_;
  std::set<uint64_t> tables_seen_;
  std::vector<std::string> problems_;
};

// The leaf that maps `gpa` in the TD's S-EPT (through blocked tables too), and the level it
// maps at; nullopt when there is none, or a table on the way is poisoned.
struct Leaf {
  SeptEntry entry;
  SeptState state;
  Level level;
};
std::optional<Leaf> find_leaf(HostWorld& world, const TdRecord& td, Gpa gpa) {
  const std::optional<Hpa> root = world.module().td_sept_root(td.tdr);
  if (!root) return std::nullopt;
  Hpa table = *root;
  for (Level l = level_from(td.ept_levels);; l = level_down(l)) {
    const std::optional<SeptEntry> e = read_entry(world.mem(), table + 8 * gpa.index(l), td.hkid);
    if (!e) return std::nullopt;
    const std::optional<SeptState> s = state_of(*e);
    if (!s || *s == SeptState::kFree) return std::nullopt;
    if (is_leaf_state(*s)) return Leaf{*e, *s, l};
    if (l == Level::k4K || (*s != SeptState::kNlMapped && *s != SeptState::kNlBlocked)) {
      return std::nullopt;
    }
    table = e->hpa(world.layout());
    if (!world.mem().contains(table)) return std::nullopt;
  }
}

// The 4K frame that holds `gpa` under `leaf`.
Hpa frame_of(HostWorld& world, const Leaf& leaf, Gpa gpa) {
  const uint64_t offset = gpa.raw() & (level_bytes(leaf.level) - 1) & ~(kPageSize - 1);
  return leaf.entry.hpa(world.layout()) + offset;
}

void check_no_plaintext_leak(HostWorld& world) {
  for (const MemViolation& v : world.mem().violations()) {
    if (v.kind == MemViolationKind::kPlaintextLeak) {
      violated("no_plaintext_leak", fmt::format("key {}'s plaintext written at {} with key {}",
                                                v.owner.raw(), v.hpa, v.accessor.raw()));
    }
  }
}

using OwnerCounts = std::map<uint64_t, Pamt::OwnedEntries>;

const Pamt::OwnedEntries& owned_by(const OwnerCounts& counts, Hpa tdr) {
  static const Pamt::OwnedEntries kNone;
  const auto it = counts.find(tdr.pfn().raw());
  return it == counts.end() ? kNone : it->second;
}

void check_registries(HostWorld& world, const OwnerCounts& counts) {
  // Control pages are 4K pages only.
  uint64_t tdrs = 0;
  uint64_t tdvprs = 0;
  for (const auto& [owner, e] : counts) {
    tdrs += e.of(PamtPageType::kTdr, Level::k4K);
    tdvprs += e.of(PamtPageType::kTdvpr, Level::k4K);
  }
  if (world.module().td_count() != tdrs || world.module().vcpu_count() != tdvprs) {
    violated("registries",
             fmt::format("{} TDs and {} vCPUs; the PAMT has {} PT_TDR and {} PT_TDVPR",
                         world.module().td_count(), world.module().vcpu_count(), tdrs, tdvprs));
  }
}

void check_child_count(HostWorld& world, const TdRecord& td, const Pamt::OwnedEntries& owned) {
  const std::optional<uint64_t> children = world.module().td_child_count(td.tdr);
  if (!children) return;
  uint64_t pages = 0;
  for (PamtPageType t :
       {PamtPageType::kTdcx, PamtPageType::kTdvpr, PamtPageType::kEpt, PamtPageType::kReg}) {
    for (Level l : {Level::k4K, Level::k2M, Level::k1G}) pages += owned.of(t, l) * level_pages(l);
  }
  if (pages != *children) {
    violated("child_count", fmt::format("TD {}: CHLDCNT {}, the PAMT assigns it {} 4K pages",
                                        td.tdr, *children, pages));
  }
}

// The census of the TD's S-EPT against the PAMT. The counts come from the one scan every
// check shares; pamt_imbalance (check/pamt_balance.h), which states the invariant, scans
// again to word the evidence once they disagree.
void check_pamt_balance(HostWorld& world, const TdRecord& td, const Pamt::OwnedEntries& owned) {
  if (!sept_readable(world, td)) return;
  const std::optional<Hpa> root = world.module().td_sept_root(td.tdr);
  if (!root) return;
  SeptReader reader(world, td);
  if (!reader.read(*root)) return;
  const SeptCensus& census = reader.census();
  bool balanced = owned.of(PamtPageType::kEpt, Level::k4K) ==
                  census.tables[0] + census.tables[1] + census.tables[2];
  constexpr Level kLevels[] = {Level::k4K, Level::k2M, Level::k1G};
  for (size_t i = 0; i < 3; ++i) {
    balanced = balanced && owned.of(PamtPageType::kReg, kLevels[i]) == census.leaves[i];
  }
  std::vector<std::string> problems = reader.problems();
  if (!balanced) {
    for (std::string& p : pamt_imbalance(world.module().pamt(), td.tdr, census)) {
      problems.push_back(std::move(p));
    }
    if (problems.empty()) problems.push_back("the PAMT's counts moved between two scans");
  }
  if (!problems.empty()) {
    violated("pamt_balance", fmt::format("TD {}: {}", td.tdr, fmt::join(problems, "; ")));
  }
}

void check_measured_intact(HostWorld& world, const TdRecord& td) {
  if (!sept_readable(world, td)) return;
  for (const MeasuredPage& m : td.measured) {
    if (m.disturbed) continue;
    const std::optional<Leaf> leaf = find_leaf(world, td, m.gpa);
    if (!leaf || (leaf->state != SeptState::kMapped && leaf->state != SeptState::kBlocked)) {
      continue;
    }
    const Hpa frame = frame_of(world, *leaf, m.gpa);
    // Poisoned by the host's own writes: the content is lost to everyone, as on hardware.
    if (world.mem().read(frame, td.hkid).origin != td.hkid) continue;
    const uint64_t hash = world.mem().page_hash(frame.pfn(), td.hkid);
    if (hash != m.hash) {
      violated("measured_intact",
               fmt::format("TD {}: measured page at {} (frame {}, {} leaf {}) changed", td.tdr,
                           m.gpa, frame, level_name(leaf->level), to_string(leaf->state)));
    }
  }
}

}  // namespace

void check_module_invariants(HostWorld& world) {
  check_no_plaintext_leak(world);
  if (!world.stale_private_uses().empty()) {
    violated("stale_private_frame", world.stale_private_uses().front());
  }
  const OwnerCounts counts = world.module().pamt().count_by_owner();
  check_registries(world, counts);
  for (const TdRecord& td : world.tds()) {
    const Pamt::OwnedEntries& owned = owned_by(counts, td.tdr);
    check_child_count(world, td, owned);
    check_pamt_balance(world, td, owned);
    check_measured_intact(world, td);
  }
}

void check_accepted_zero(HostWorld& world) {
  for (const std::unique_ptr<FuzzGuest>& guest : world.guests()) {
    for (const auto& [gpa, value] : guest->take_suspects()) {
      const TdRecord* td = world.td_by_tdr(guest->tdr().raw());
      // A debug TD's host may write its private memory (MEM.WR).
      if (td == nullptr || td->debug || !sept_readable(world, *td)) continue;
      const std::optional<Leaf> leaf = find_leaf(world, *td, gpa);
      if (!leaf || leaf->state != SeptState::kMapped) continue;
      const Hpa word = frame_of(world, *leaf, gpa) + (gpa.raw() & (kPageSize - 1) & ~uint64_t{7});
      if (world.mem().read(word, td->hkid).origin != td->hkid) continue;  // poisoned
      violated("accepted_zero",
               fmt::format("TD {}: the guest read {:#x} at {} right after accepting it (frame "
                           "now reads {:#x})",
                           td->tdr, value, gpa, world.mem().read(word, td->hkid).value));
    }
  }
}

void check_page_add_copy(const HostMemory& mem, Hpa dst, KeyId td_key, uint64_t src) {
  const KeyId src_key = mem.layout().key_of(src);
  const Hpa source = mem.layout().strip_key(src);
  if (source.pfn() == dst.pfn()) return;
  if (mem.page_hash(dst.pfn(), td_key) != mem.page_hash(source.pfn(), src_key)) {
    violated("page_add_copy", fmt::format("PAGE.ADD of {} from {} (key {}) copied something else",
                                          dst, source, src_key.raw()));
  }
}

}  // namespace tdxsim::fuzz
