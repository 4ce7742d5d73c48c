// The second-level page walker: GPA → HPA through an EPT (Intel) or nested page table
// (AMD), written once for both formats and every level.
//
//   PageWalk   the raw walk: a range over the entries from the root down, one per level,
//              ending at a leaf or a not-present entry. No checks, no side effects; KVM's
//              get_walk helper and the tests read tables with it.
//   walk()     what the hardware does with that range: the misconfiguration / reserved-bit
//              checks, the permission AND over the levels, the fault with its exact
//              qualification or error code, and (kHardware) the A/D updates.
//
// Thread safety: tables may change under a walk; every entry is read once, with acquire
// (KVM publishes entries with release). In kHardware mode A/D bits are set with a
// compare-and-swap from the value the walk read: a concurrent CAS by KVM never loses them,
// and they never land in an entry the walk did not use (hardware never sets A/D in a
// not-present entry — KVM's FROZEN value relies on it); if an entry changed under the
// walk, the walk restarts from the root, as hardware re-walks.
#pragma once

#include <cstdint>
#include <iterator>

#include "base/addr.h"
#include "platform/host_memory.h"
#include "platform/key_id.h"
#include "platform/translation.h"

namespace tdxsim {

struct WalkContext {
  PagingFormat format = PagingFormat::kEpt;
  Hpa root;             // the top table (EPTP bits 51:12, nCR3); key bits, if any, are stripped
  unsigned levels = 4;  // 4 or 5
  // EPT: EPTP bit 6. NPT: ignored (nested walks always set A/D).
  bool ad_enabled = false;
  // The key the tables are read with: a TD's HKID for the S-EPT, the host key otherwise.
  KeyId table_key = kHostKey;
  bool mbec = false;         // EPT mode-based execute control (secondary control bit 22)
  bool execute_only = true;  // IA32_VMX_EPT_VPID_CAP bit 0: X-only entries are legal
  bool nx_enabled = true;    // NPT: EFER.NXE (else bit 63 is reserved)
  // EPT with PML on and the PML index out of range: a kHardware walk that would set a leaf's
  // dirty flag stops with PmlFull instead.
  bool pml_full = false;

  Level root_level() const { return level_from(levels); }
  // GPA bits the walk translates: 48 with 4 levels, 57 with 5.
  unsigned gpa_width() const { return level_shift(root_level()) + kLevelBits; }
};

enum class WalkMode : uint8_t {
  kHardware,  // what the CPU does: sets A/D atomically on a successful translation
  kProbe,     // side-effect free (the TLB's staleness probe): never writes
};

struct WalkStep {
  Level level = Level::k4K;
  Hpa entry_hpa;       // where the entry lives (key bits stripped)
  uint64_t entry = 0;  // as read
  // The entry's page is poisoned for the table key: `entry` is garbage (a read that is a
  // machine check on hardware). The walk ends at such a step.
  bool poisoned = false;
};

// Where a walk starts below the root: a paging-structure-cache entry (SDM Vol. 3 §28.4.1,
// §4.10.3) names the table at `level` that its cached non-leaf entry pointed to, and the AND
// and OR of the entries above it as the full walk read them. A walk from here reads only
// `table` and what lies below it: the cached entries are not read again, and their A flags
// (set by the walk that filled the cache) are not set again.
struct WalkStart {
  Hpa table;  // key bits stripped
  Level level = Level::k4K;
  uint64_t upper_all = ~uint64_t{0};
  uint64_t upper_any = 0;
};

// The entries that translate `gpa`, root first. Iteration ends after a leaf, after a
// not-present entry, or after a poisoned one. A table outside host memory reads as all ones
// (no memory answers): a malformed entry for EPT at every level, for NPT above 4K. It does
// not check reserved bits: a non-leaf with reserved bits is followed like any other (use
// walk() for the hardware's verdict). GPA bits above ctx.gpa_width() are ignored.
class PageWalk {
 public:
  PageWalk(const HostMemory& mem, const PhysAddrLayout& layout, const WalkContext& ctx, Gpa gpa);
  // The entries from `table` (at `level`) down. REQUIRES: `table` is page-aligned.
  PageWalk(const HostMemory& mem, const PhysAddrLayout& layout, const WalkContext& ctx, Gpa gpa,
           Hpa table, Level level);

  class Iterator {
   public:
    using value_type = WalkStep;
    using difference_type = std::ptrdiff_t;
    Iterator() = default;
    const WalkStep& operator*() const { return walk_->step_; }
    const WalkStep* operator->() const { return &walk_->step_; }
    Iterator& operator++() {
      walk_->advance();
      return *this;
    }
    void operator++(int) { walk_->advance(); }
    bool operator==(std::default_sentinel_t) const { return walk_->done_; }

   private:
    friend class PageWalk;
    explicit Iterator(PageWalk* w) : walk_(w) {}
    PageWalk* walk_ = nullptr;
  };

  // Single pass: begin() once per PageWalk.
  Iterator begin() { return Iterator{this}; }
  std::default_sentinel_t end() const { return {}; }

  // True for the entries that end a walk: not present, or a leaf at `level`.
  static bool is_terminal(const WalkContext& ctx, uint64_t entry, Level level);
  static bool is_present(const WalkContext& ctx, uint64_t entry);
  static bool is_leaf(const WalkContext& ctx, uint64_t entry, Level level);

 private:
  void read(Hpa table, Level level);
  void advance();

  const HostMemory* mem_;
  PhysAddrLayout layout_;
  WalkContext ctx_;
  Gpa gpa_;
  WalkStep step_;
  bool done_ = false;
};
static_assert(std::input_iterator<PageWalk::Iterator>);

// Translates `gpa` for `access` as the CPU's second-level walk does.
//
// EPT (Intel SDM Vol. 3 §29.3.3): a not-present entry or a permission denied by the AND
// over the levels → EptViolation with the Table 28-7 qualification; a present entry with
// W without R, X without R (no execute-only support), reserved bits, a bad leaf memory
// type or bit 7 in a PML4E/PML5E → EptMisconfig. With A/D enabled, an access to a guest
// paging-structure entry (gla_valid && !final_translation) is treated as a write (SDM
// §29.3.3.2, §29.3.5): it needs write permission, sets D in the leaf, and an EPT violation
// it causes reports both bit 0 and bit 1.
// NPT (AMD APM Vol. 2 §15.25.10): every access is a user access; a fault → NptFault with
// the #PF-style error code plus bit 32 (final translation) or 33 (guest table access).
// A GPA above ctx.gpa_width() faults as if its root entry were missing, without reading
// one (EPT: qualification bits 5:3 = 0, suppress_ve = true; NPT: P = 0): hardware reports
// no entry for it, and a #VE needs an entry whose bit 63 is clear.
//
// REQUIRES: ctx.levels is 4 or 5; ctx.root is page-aligned. A root or table outside host
//           memory reads as all ones (EPT: a misconfiguration; NPT: a reserved-bit #NPF,
//           or at 4K a translation past the end of memory).
// With ctx.pml_full, a kHardware walk that would set the leaf's D fails with PmlFull first.
// A table entry read from a page poisoned for ctx.table_key fails the walk with MachineCheck.
// With `start`, the walk begins at a cached table instead of the root (a paging-structure
// cache hit): the permissions and the fault are computed over the cached upper entries and
// the entries read from start->table down, exactly as over a full walk's.
// Returns: the translation (kHardware: after its A/D updates; dirty_set when this walk set
// the leaf's D), or the fault.
WalkResult walk(HostMemory& mem, const PhysAddrLayout& layout, const WalkContext& ctx, Gpa gpa,
                const AccessRequest& access, WalkMode mode, const WalkStart* start = nullptr);

}  // namespace tdxsim
