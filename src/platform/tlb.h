// A logical CPU's TLB for second-level (guest-physical) translations, tagged the way the
// manuals say, with the flush instructions' exact reach.
//
// Intel (SDM Vol. 3 §28.4): two kinds of cached mapping.
//   - guest-physical mappings (GPA → HPA), tagged by EP4TA; created by accesses that use a
//     guest-physical address directly (guest paging-structure accesses).
//   - combined mappings (linear → HPA), tagged by VPID + PCID + EP4TA; created by ordinary
//     accesses. tdxsim's guests run with paging off, so linear address == GPA.
//   INVEPT single-context removes both kinds for one EP4TA; INVEPT all-context removes both
//   kinds for every EP4TA; INVVPID removes combined mappings only, never guest-physical ones.
// AMD (APM Vol. 2 §15.16): entries are tagged by ASID only — the nCR3 they came from is not
//   part of the tag, so loading a new nested root needs an ASID flush (TLB_CONTROL).
// A TD's private and shared translations are both tagged by the TD's secure EPTP.
//
// Organisation (SetAssociative): a bounded TLB is sets × ways indexed by the page number's low
// bits, as hardware's (1536 entries: 128 sets of 12 ways), and a fill into a full set evicts
// a way of it chosen by a seeded generator; capacity and seed are settable per run.
// "Unbounded" (capacity 0) never evicts, so eviction can never hide a stale entry by accident.
//
// Every entry remembers the root it was walked from (`source_root`): not a tag, but what
// the Hyper-V L0 needs to drop entries derived from one root, and what the staleness probe
// re-walks.
//
// Paging-structure cache (SDM Vol. 3 §28.4.1 and §4.10.3; APM Vol. 2 §15.16 has the same for
// the nested tables): besides final translations the CPU caches non-leaf entries, so that a
// TLB miss can start the walk at a lower table. tdxsim caches the PDE level (a 2M region →
// the page table it pointed to, with the permissions of the entries above), tagged as a
// guest-physical mapping (EP4TA; AMD: ASID). Every flush above drops the PSC entries that
// the manuals say it drops; INVVPID never does (it reaches combined mappings only). A PSC
// entry outlives a change to its upper entries until such a flush: a page table that KVM
// unlinked and whose frame was reused can still be walked through it.
//
// Thread safety: a TLB belongs to one logical CPU, but Hyper-V's GPA-flush hypercalls flush
// every CPU's TLB from the calling thread ("without IPIs"), so every member takes the TLB's
// own lock: a SpinLock, not a Mutex — its owner takes it on every guest access and another
// thread almost never (base/spin_lock.h). Lookups return copies.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/addr.h"
#include "base/atomic.h"
#include "base/spin_lock.h"
#include "base/thread_annotations.h"
#include "platform/key_id.h"
#include "platform/set_associative.h"
#include "platform/translation.h"

namespace tdxsim {

enum class TlbEntryKind : uint8_t { kGuestPhysical, kCombined, kAsid };

// What an entry is tagged with. Fields that do not apply to a kind are zero.
struct TlbTag {
  TlbEntryKind kind = TlbEntryKind::kGuestPhysical;
  uint16_t vpid_or_asid = 0;  // VPID (combined) or ASID (AMD)
  uint16_t pcid = 0;          // combined only
  uint64_t ep4ta = 0;         // Intel only: the EPTP's root-table address
  bool operator==(const TlbTag&) const = default;
};

struct TlbEntry {
  TlbTag tag;
  uint64_t page = 0;  // linear or guest-physical address, aligned to `level`
  Level level = Level::k4K;
  Hpa hpa;
  KeyId key;
  Perms perms;
  Hpa source_root;  // the root of the tables the translation was walked from
  Gpa gpa;          // guest-physical page (== page for every kind in tdxsim)
  // The leaf's dirty flag as the fill saw it (always true where the CPU tracks no D in the
  // TLB: EPT without A/D, NPT, the L0's cache). The CPU may cache D (SDM §29.3.5); a write
  // through a translation cached clean walks again, so that D is set in memory (and logged
  // by PML), while one cached dirty writes without a walk.
  bool dirty = true;

  // The host address that backs `addr`, which lies inside this entry.
  Hpa hpa_of(uint64_t addr) const { return hpa + (addr - page); }
};

// One paging-structure-cache entry: the page table that translated `region` (2M-aligned).
struct PscEntry {
  TlbTag tag;  // kGuestPhysical (Intel, by EP4TA) or kAsid
  uint64_t region = 0;
  Hpa table;
  uint64_t upper_all = ~uint64_t{0};  // AND of the entries above the table
  uint64_t upper_any = 0;             // OR of the entries above the table
  Hpa source_root;
};

struct TlbConfig {
  uint32_t capacity = 0;  // entries; 0 = unbounded
  uint64_t seed = 1;      // eviction choice
};

enum class InveptType : uint8_t { kSingleContext = 1, kAllContext = 2 };
enum class InvvpidType : uint8_t {
  kIndividualAddress = 0,
  kSingleContext = 1,
  kAllContext = 2,
  kSingleContextRetainingGlobals = 3,
};

// Written under the TLB's lock.
struct TlbStats {
  OwnerCounter hits, misses, fills, evictions, flushes, entries_flushed;
  OwnerCounter psc_hits, psc_fills, psc_flushed;
};

class Tlb {
 public:
  explicit Tlb(const TlbConfig& config);

  // The entry that translates `addr` under `tag`, at any page size.
  std::optional<TlbEntry> lookup(const TlbTag& tag, uint64_t addr);
  // lookup(), and on a miss psc_lookup() as well, under one acquisition of the lock: what
  // a translation asks before it walks.
  struct Probe {
    std::optional<TlbEntry> entry;
    std::optional<PscEntry> psc;  // only on a miss
  };
  Probe probe(const TlbTag& tag, uint64_t addr);
  void insert(const TlbEntry& entry);

  // --- Paging-structure cache ------------------------------------------------------------
  // The tag a translation tagged `tag` uses for the PSC: combined mappings share the
  // guest-physical entries of their EP4TA.
  static TlbTag psc_tag(const TlbTag& tag);
  // The cached page table for `addr`'s 2M region under `tag` (a translation's tag).
  std::optional<PscEntry> psc_lookup(const TlbTag& tag, uint64_t addr);
  void psc_insert(const PscEntry& entry);
  // As insert_unless_flushed.
  void psc_insert_unless_flushed(const PscEntry& entry, uint64_t generation);
  // An EPT violation / nested page fault from a walk: the PSC entries that translate
  // `addr` go (invalidate_on_fault drops them too).
  size_t psc_invalidate(const TlbTag& tag, uint64_t addr);
  std::vector<PscEntry> psc_entries();  // for tests

  // --- Intel ---------------------------------------------------------------------------
  // INVEPT: single-context drops guest-physical and combined mappings tagged with `ep4ta`;
  // all-context drops every guest-physical and combined mapping. Returns entries dropped.
  size_t invept(InveptType type, uint64_t ep4ta);
  // INVVPID: combined mappings only. VPID 0 is the host's and is never a valid operand
  // for the single/individual forms (hardware VMfails); tdxsim checks it.
  size_t invvpid(InvvpidType type, uint16_t vpid, uint64_t linear);
  // An EPT violation invalidates the mappings for the faulting address under the current
  // EP4TA (SDM §28.4.3.3), so the retried access walks fresh tables.
  size_t invalidate_on_fault(const TlbTag& tag, uint64_t addr);

  // --- AMD -----------------------------------------------------------------------------
  size_t flush_asid(uint16_t asid);
  size_t flush_all_asids();
  size_t invlpga(uint16_t asid, uint64_t addr);

  // --- Hyper-V L0 (guest-physical flush hypercalls reach every TLB) ---------------------
  // Drops entries walked from `root` whose guest-physical page overlaps [gpa, gpa+bytes);
  // bytes == 0 means the whole address space.
  size_t flush_source_root(Hpa root, Gpa gpa, uint64_t bytes);
  // The L0's flushes come from another thread, possibly between this CPU's walk and its
  // fill; hardware finishes the instruction's fill before the flush takes effect. A fill
  // made with the generation read before the walk is dropped when such a flush came
  // between (the access itself still completes: it happened before the flush).
  uint64_t remote_flush_generation();
  void insert_unless_flushed(const TlbEntry& entry, uint64_t generation);

  size_t size();
  std::vector<TlbEntry> entries();  // for tests and the stale-use checker
  const TlbStats& stats() const { return stats_; }

 private:
  // What an entry's set and its quick compare are computed from (SetAssociative).
  static uint64_t tag_hash(const TlbTag& tag, Level level);
  uint64_t next_random() TDXSIM_REQUIRES(mu_);

  template <typename Pred>
  size_t erase_if_locked(Pred pred) TDXSIM_REQUIRES(mu_);
  // Drops the PSC entries `pred` selects; counted with the flush that called it.
  template <typename Pred>
  size_t psc_erase_if_locked(Pred pred) TDXSIM_REQUIRES(mu_);
  void psc_insert_locked(const PscEntry& entry) TDXSIM_REQUIRES(mu_);
  size_t psc_erase_locked(const TlbTag& tag, uint64_t addr) TDXSIM_REQUIRES(mu_);
  void insert_locked(const TlbEntry& entry) TDXSIM_REQUIRES(mu_);
  std::optional<TlbEntry> lookup_locked(const TlbTag& tag, uint64_t addr) TDXSIM_REQUIRES(mu_);
  std::optional<PscEntry> psc_lookup_locked(const TlbTag& tag, uint64_t addr) TDXSIM_REQUIRES(mu_);

  SpinLock mu_{"tlb"};
  SetAssociative<TlbEntry> entries_ TDXSIM_GUARDED_BY(mu_);
  // Entries per page size: a lookup skips the sizes the TLB holds none of (most guests map
  // only 4K pages).
  std::array<uint64_t, 3> per_level_ TDXSIM_GUARDED_BY(mu_){};
  // As large as the TLB, with the same organisation.
  SetAssociative<PscEntry> psc_ TDXSIM_GUARDED_BY(mu_);
  uint64_t remote_flushes_ TDXSIM_GUARDED_BY(mu_) = 0;
  // splitmix64's state: the eviction choices, seeded.
  uint64_t rng_ TDXSIM_GUARDED_BY(mu_);
  TlbStats stats_;
};

}  // namespace tdxsim
