// TdpMmu: KVM's TDP MMU (arch/x86/kvm/mmu/tdp_mmu.c) for one VM — the roots, the one place
// every SPTE changes, the fault-time map, and the zaps.
//
// Two kinds of tree hang off the root list. Direct roots are the EPT the CPU walks (for a TD:
// the shared EPT, placed at gfn_direct_bits). Mirror roots are KVM's copy of a TD's Secure
// EPT: the CPU never walks them, and every change to one is reflected into the real S-EPT
// through the four external hooks of MmuVendorOps. The mirror half of this class is private:
// only MirrorPrivateMem (mirror_private_mem.h), the private-memory path the rest of the MMU
// goes through, may use it, so the compiler proves that nothing else reaches private
// memory (docs/architecture.md, "private-memory path").
//
// The choke point. Every SPTE change goes through set_spte_atomic() (mmu_lock held for read:
// compare-and-swap, failing with EBUSY when another thread got there first) or set_spte()
// (mmu_lock held for write: exchange), and both end in handle_changed_spte(), which keeps
// the statistics, marks pages dirty, tears down a table an entry no longer links
// (handle_removed_pt: every child is frozen, its own change handled, a mirror child's
// external entry removed, then the page freed after an RCU grace period) and reflects mirror
// changes into the external tables. Mirror entries are set present only by the atomic path,
// through FROZEN_SPTE (set_external_spte_present), and removed only under the write lock.
//
// VM bugs. Where KVM says KVM_BUG_ON — a state its own rules exclude, such as a private
// mapping that is not RWX or a removal hook that fails under the write lock — the VM is
// marked bugged (vm_bugged()) and the operation fails; the simulator itself goes on.
//
// Thread safety: mmu_lock (the caller's) is the MMU lock of the contract on each member;
// walks of the tables also hold an RCU read-side section, which these members take
// themselves. The root list has its own lock (tdp_mmu_pages_lock). Statistics are relaxed
// counters.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/atomic.h"
#include "base/fault_injection.h"
#include "base/lock.h"
#include "base/rcu.h"
#include "kvm/gfn_range.h"
#include "kvm/kvm_errno.h"
#include "kvm/mmu_page.h"
#include "kvm/mmu_stats.h"
#include "kvm/mmu_vendor_ops.h"
#include "kvm/page_fault.h"
#include "kvm/spte.h"
#include "kvm/tdp_iter.h"
#include "platform/lazy_words.h"

namespace tdxsim {

class Kvm;
class MirrorPrivateMem;

// enum kvm_tdp_mmu_root_types.
enum RootTypes : uint8_t {
  kInvalidRoots = 1u << 0,
  kDirectRoots = 1u << 1,
  kMirrorRoots = 1u << 2,
  kValidRoots = kDirectRoots | kMirrorRoots,
  kAllRoots = kValidRoots | kInvalidRoots,
};

struct TdpMmuConfig {
  // The root's level: 4 (4-level EPT) or 5.
  Level root_level = Level::k512G;
  // kvm->arch.gfn_direct_bits: where direct roots map (a TD's shared bit as a gfn bit).
  Gfn gfn_direct_bits{0};
  // The hardware format of every SPTE (the vendor's, KvmX86Ops::spte_format). Mirror roots
  // are EPT only: a TD's S-EPT is an EPT.
  SpteFormat format = SpteFormat::kEpt;
  // What this VM's MMIO SPTEs look like (a TD's value is 0, for #VE; an NPT VM's sets
  // reserved bits). With caching off, an MMIO fault emulates without building an SPTE.
  MmioSpteMasks mmio = MmioSpteMasks::ept(MmioValue::kEptMisconfig);
  // How many entries a zap walks under the write lock before it lets waiters in
  // (tdp_mmu_iter_cond_resched; KVM yields on need_resched or a contended lock, which a
  // user-space rwlock cannot tell, so a budget stands in for it).
  unsigned yield_every = 512;
};

class TdpMmu {
 public:
  // `kvm` is only handed back to the vendor hooks (it may be null in tests of this class).
  TdpMmu(HostMemory& mem, SharedMutex& mmu_lock, MmuVendorOps& ops, Kvm* kvm,
         const TdpMmuConfig& config);
  // REQUIRES: every root is gone (uninit() ran and every vCPU put its references).
  ~TdpMmu();
  TdpMmu(const TdpMmu&) = delete;
  TdpMmu& operator=(const TdpMmu&) = delete;

  const TdpMmuConfig& config() const { return config_; }
  HostMemory& mem() const { return mem_; }
  SharedMutex& mmu_lock() const { return mmu_lock_; }

  // --- Roots (direct) --------------------------------------------------------------------
  // kvm_tdp_mmu_alloc_root for a direct root: a valid one with the same role gets another
  // reference, else a new root starts with two (the caller's and the MMU's own, dropped
  // when it is invalidated). Returns null when host memory is exhausted.
  // REQUIRES: mmu_lock not held (it takes it for read).
  MmuPage* get_direct_root();
  // kvm_tdp_mmu_put_root: drops the caller's reference; the last one frees the root (after a
  // grace period). REQUIRES: the root was invalidated if this may be the last reference.
  void put_root(MmuPage* root);
  // is_obsolete_root: a root a vCPU must not keep using.
  static bool is_obsolete_root(const MmuPage* root) { return root->role().invalid; }
  size_t root_count() const;

  // kvm_tdp_mmu_invalidate_roots for `types` (never including mirror roots from outside
  // the private path: see the class comment). REQUIRES: mmu_lock held for write.
  void invalidate_direct_roots();
  // kvm_tdp_mmu_zap_invalidated_roots: zap every invalid root and drop the MMU's
  // reference. `shared`: whether the caller holds mmu_lock for read (fast zap) or write.
  // REQUIRES: mmu_lock held as `shared` says.
  void zap_invalidated_roots(bool shared);

  // --- Faults ----------------------------------------------------------------------------
  // kvm_tdp_mmu_map on a direct root: maps fault.gfn at fault.goal_level with fault.pfn
  // (or an MMIO SPTE when fault.slot is null). REQUIRES: mmu_lock held for read; `root` is
  // a referenced direct root.
  RetPf map(MmuPage* root, KvmPageFault& fault);

  // --- Zaps (direct and invalid roots) ----------------------------------------------------
  // kvm_tdp_mmu_unmap_gfn_range restricted to the shared alias: zaps the leaves of
  // [start, end) in every direct and invalid root. REQUIRES: mmu_lock held for write.
  // Returns: whether a TLB flush is needed (flush is "one is already pending").
  // `with_invalid` false skips the invalid roots (only bug switches M4 and T4 pass it: an
  // invalid root still maps the range after the unmap returns).
  bool zap_direct_leafs(Gfn start, Gfn end, ZapReason reason, bool can_yield, bool flush,
                        bool with_invalid = true);
  // kvm_tdp_mmu_zap_all: every direct and invalid root, whole (MMU-notifier release).
  // REQUIRES: mmu_lock held for write.
  void zap_all_direct();
  // kvm_tdp_mmu_age_gfn_range / test_age_gfn on direct roots. `shared`: mmu_lock is held
  // for read (A is cleared by compare-and-swap); else for write (clear_spte_bits).
  // REQUIRES: mmu_lock held in that mode.
  bool age_gfn_range(Gfn start, Gfn end, bool test_only, bool shared = true);
  // Dirty logging with PML (the CPU logs the pages whose D it sets):
  // kvm_tdp_mmu_clear_dirty_slot: clear D in every leaf of [start, end), so that the next
  // write to each page sets D and is logged. REQUIRES: mmu_lock held for read.
  // Returns: whether any D was cleared (a flush is needed).
  bool clear_dirty_slot(Gfn start, Gfn end);
  // kvm_tdp_mmu_clear_dirty_pt_masked: clear D in the 4K leaves of base + each set bit of
  // `mask`, just harvested. REQUIRES: mmu_lock held for write.
  // Returns: whether any D was cleared.
  bool clear_dirty_pt_masked(Gfn base, uint64_t mask);
  // Dirty logging: write-protect every writable leaf of [start, end) at min_level or above
  // in the valid direct roots (kvm_tdp_mmu_wrprot_slot). REQUIRES: mmu_lock held (read when
  // a slot starts logging, write when a harvest re-protects pages).
  // Returns: whether a flush is needed.
  bool wrprot_range(Gfn start, Gfn end, Level min_level);

  // --- Walks -------------------------------------------------------------------------------
  // kvm_tdp_mmu_get_walk on a direct root: fills sptes[level - 1] for each level walked
  // from the root down to the last present entry for `gpa` (direct bits included).
  // Returns: the level of the last entry read. REQUIRES: `root` is referenced.
  Level get_walk(const MmuPage* root, Gpa gpa, std::array<Spte, 5>& sptes) const;
  // The present leaf that maps `gfn` in `root` (gfn without direct bits), if any.
  std::optional<Spte> leaf_for(const MmuPage* root, Gfn gfn) const;

  // --- For checkers (read-only) -----------------------------------------------------------
  // A present leaf some root holds.
  struct RootLeaf {
    Hpa root;
    bool mirror = false;
    bool invalid = false;
    Gfn gfn{0};  // without direct bits
    Level level = Level::k4K;
    Spte spte;
  };
  // Calls `visit` for every present leaf mapping any gfn of [start, end) (gfns without direct
  // bits) in every root of the kinds asked for, valid and invalid alike. Reads only: a
  // checker's window into the tables, the mirror half included, that cannot change them.
  // REQUIRES: mmu_lock held (either mode); roots_lock not held; `visit` does not call into
  // the MMU.
  void visit_leaves(bool direct, bool mirror, Gfn start, Gfn end,
                    const std::function<void(const RootLeaf&)>& visit) const;

  // The page-table pages of this MMU, roots included, as a balance: every page allocated is
  // either released (freed, or unlinked and queued to be freed after a grace period) or
  // reachable — a root on the list, valid or invalid, or a table some reachable entry links.
  struct TableCensus {
    struct Table {
      Hpa spt;
      Gfn gfn{0};  // the first gfn it maps, without direct bits
      Level level = Level::k4K;
      bool mirror = false;
    };
    static constexpr size_t kKept = 8;

    uint64_t allocated = 0;
    uint64_t released = 0;
    // Of the released, how many still wait for their grace period (callbacks may run while
    // this is read: a figure, not part of the balance).
    uint64_t awaiting_grace = 0;
    uint64_t reachable = 0;
    uint64_t roots = 0;
    uint64_t invalid_roots = 0;
    // Only when the balance fails: the pages neither released nor reachable (the first
    // kKept) and how many there are.
    std::vector<Table> unreachable;
    uint64_t unreachable_count = 0;

    bool balanced() const { return allocated == released + reachable; }
  };
  // Counts the pages and walks every root down to the 2M entries (the 4K tables are counted
  // from the entries that link them). Exact whenever it runs: it holds mmu_lock for write
  // and the root list's lock, under which every page changes hands. When the balance fails
  // it also waits for the queued frees (with neither lock held), counts again and names
  // the pages left over.
  // REQUIRES: mmu_lock not held; not inside an RCU read-side section.
  TableCensus table_census() const;
  // The walks that read kFreedTablePoison: each was inside a table freed under it.
  const FreedTableReads& freed_table_reads() const { return freed_reads_; }

  // --- Bookkeeping -------------------------------------------------------------------------
  const MmuStats& stats() const { return stats_; }
  MmuStats& stats() { return stats_; }
  // Page-table pages (spt frames, roots included) allocated and not yet freed.
  uint64_t live_table_pages() const { return live_tables_.load(std::memory_order_acquire); }
  // KVM_BUG_ON: marks the VM bugged with `what` (Kvm::bug_on, which also kills the vCPUs;
  // standalone tests have no Kvm and keep the mark here). Returns `cond`.
  bool vm_bugged() const;
  std::string bug_message() const;
  bool bug_on(bool cond, const char* what);
  // kvm_flush_remote_tlbs through the vendor hook (counted).
  void flush_remote_tlbs();
  // kvm_flush_remote_tlbs_range: [start, start + pages) through the vendor's ranged hook
  // when it has one (only Hyper-V's); a full flush otherwise (on bare metal a range
  // flush is a full INVEPT anyway).
  void flush_remote_tlbs_range(Gfn start, uint64_t pages);
  // The gfns a root spans (tdp_mmu_max_gfn_exclusive).
  Gfn max_gfn_exclusive() const;
  // The root's direct bits: 0 for a mirror root (kvm_gfn_root_bits).
  Gfn root_bits(const MmuPage* root) const;

  // Waits for every deferred page-table free to have run (tests count frames after it).
  static void barrier();

 private:
  friend class MirrorPrivateMem;
  friend class TdpMmuTestPeer;

  // --- Mirror roots (the private path's) -----------------------------------------------------
  MmuPage* get_mirror_root();
  void invalidate_roots(uint8_t types);
  bool zap_leafs_in(uint8_t types, Gfn start, Gfn end, ZapReason reason, bool can_yield,
                    bool flush);
  RetPf map_in(MmuPage* root, KvmPageFault& fault);

  MmuPage* get_root(bool mirror);
  // tdp_mmu_next_root: the next root after `prev` (null: the first) matching `types`, with
  // a reference taken; drops the reference on `prev`.
  MmuPage* next_root(MmuPage* prev, uint8_t types);
  static bool root_matches(const MmuPage* root, uint8_t types);

  // --- The choke point ----------------------------------------------------------------------
  // tdp_mmu_set_spte_atomic: compare-and-swap iter.old_spte → new_spte (mirror entries
  // set present go through FROZEN and the external hooks). EBUSY when the entry changed
  // (iter.old_spte refreshed) or a hook said busy. REQUIRES: mmu_lock held for read.
  KvmResult<> set_spte_atomic(const MmuPage* root, TdpIter& iter, Spte new_spte);
  // tdp_mmu_set_spte: exchange, for zaps under the write lock. REQUIRES: mmu_lock held for
  // write; neither value is frozen.
  Spte set_spte(bool mirror, Hpa sptep, Spte old_spte, Spte new_spte, Gfn gfn, Level level);
  // set_external_spte_present.
  KvmResult<> set_external_spte_present(Hpa sptep, Gfn gfn, Spte old_spte, Spte new_spte,
                                        Level level);
  // The begin (before the write) and lost-race end of an SPTE change's tracepoint pair; the
  // end of a change that happened is emitted by handle_changed_spte.
  void trace_change_begin(bool mirror, Gfn gfn, Level level, Spte old_spte, Spte new_spte);
  void trace_change_lost(bool mirror, Gfn gfn, Level level, Spte old_spte);
  // handle_changed_spte: everything that follows an entry's change.
  void handle_changed_spte(bool mirror, Gfn gfn, Spte old_spte, Spte new_spte, Level level,
                           bool shared);
  // handle_removed_pt: the table `pt` left the tree; freeze and handle its entries, free it.
  void handle_removed_pt(MmuPage* pt, bool shared);
  void remove_external_spte(Gfn gfn, Spte old_spte, Level level);

  // --- Tables --------------------------------------------------------------------------------
  MmuPage* alloc_sp(MmuPageRole role, Gfn gfn);
  MmuPage* sp_of_table(Hpa spt) const;
  // Releases a page no walker can be in: one never linked (tdp_mmu_free_sp).
  void free_sp_now(MmuPage* sp);
  // Releases an unlinked page, freed after a grace period (tdp_mmu_free_sp via call_rcu).
  void free_sp_deferred(MmuPage* sp);
  // Returns the page's frames (poisoned) to the host.
  void destroy_sp(MmuPage* sp);
  // A walk of `root` that reports freed-table reads.
  TdpIter walk(const MmuPage& root, Level min_level, Gfn start, Gfn end, Gfn gfn_bits) const {
    return TdpIter(mem_, root, min_level, start, end, gfn_bits, &freed_reads_);
  }
  KvmResult<> link_sp(const MmuPage* root, TdpIter& iter, MmuPage* sp);
  KvmResult<> split_huge_page(const MmuPage* root, TdpIter& iter, MmuPage* sp);
  RetPf map_handle_target_level(const MmuPage* root, KvmPageFault& fault, TdpIter& iter);

  // --- Zaps -----------------------------------------------------------------------------------
  bool zap_leafs(MmuPage* root, Gfn start, Gfn end, ZapReason reason, bool can_yield, bool flush);
  void zap_root(MmuPage* root, bool shared);
  // tdp_mmu_iter_cond_resched: after yield_every steps (and progress), flush if asked, leave
  // the RCU section and let waiters take mmu_lock. Returns whether it yielded (the walk
  // restarts from the root).
  bool cond_resched(TdpIter& iter, unsigned& steps, bool flush, bool shared,
                    std::optional<RcuReadGuard>& rcu) TDXSIM_NO_THREAD_SAFETY_ANALYSIS;

  Spte read_spte(Hpa sptep) const;
  // tdp_mmu_clear_spte_bits: clears `mask` in the direct leaf at `iter` under the write lock,
  // through the choke point's tracepoint and bookkeeping. A leaf with volatile bits is
  // changed by an atomic AND, so that an A/D the CPU sets meanwhile survives.
  // REQUIRES: mmu_lock held for write. Returns: the value written.
  Spte clear_spte_bits(TdpIter& iter, uint64_t mask);
  // Clears `mask` in the present leaves of [start, end) of the valid direct roots, at every
  // level or only at 4K; under the read lock by compare-and-swap, under the write lock by
  // clear_spte_bits. Returns: whether any leaf had a bit of `mask`.
  bool clear_leaf_bits(Gfn start, Gfn end, uint64_t mask, bool only_4k, bool shared);
  // Whether a bug-catalogue switch is on for this VM's platform (never without a Kvm).
  bool bug(BugId id) const;
  // Every present leaf of [start, end) at min_level or above in the valid direct roots:
  // `update(old)` gives the new value or nullopt to leave it; set atomically, re-decided on
  // a lost race. Returns: whether any leaf changed. REQUIRES: mmu_lock held.
  template <class Update>
  bool update_direct_leafs(Gfn start, Gfn end, Level min_level, Update&& update);

  HostMemory& mem_;
  SharedMutex& mmu_lock_;
  MmuVendorOps& ops_;
  Kvm* const kvm_;
  // Without a Kvm (unit tests of the TDP MMU alone).
  AtomicWord bugged_;
  mutable Mutex bug_mu_{"tdp_mmu bug message"};
  std::string bug_message_ TDXSIM_GUARDED_BY(bug_mu_);
  const TdpMmuConfig config_;

  // The root list (kvm->arch.tdp_mmu_roots) under tdp_mmu_pages_lock.
  mutable Mutex roots_lock_{"kvm->arch.tdp_mmu_pages_lock"};
  std::vector<MmuPage*> roots_ TDXSIM_GUARDED_BY(roots_lock_);
  // Invalidated roots whose zap (and the MMU's own reference) kvm_tdp_mmu_zap_invalidated_roots
  // owns (tdp_mmu_scheduled_root_to_zap).
  std::vector<MmuPage*> scheduled_to_zap_ TDXSIM_GUARDED_BY(roots_lock_);
  // The MmuPage of each page-table frame, indexed by pfn (KVM keeps it in struct page).
  LazyWords sp_by_pfn_;
  std::atomic<uint64_t> live_tables_{0};
  // The balance's two sides (TableCensus): changed only under mmu_lock (either mode) or,
  // for a root's release, under roots_lock.
  std::atomic<uint64_t> allocated_tables_{0};
  std::atomic<uint64_t> released_tables_{0};
  mutable FreedTableReads freed_reads_;

  MmuStats stats_;
};

}  // namespace tdxsim
