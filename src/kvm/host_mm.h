// HostMm: the VMM process's address space (the mm_struct KVM's memslots point into), and
// MmuNotifier, the hook by which KVM learns that host mappings are about to change.
//
// Anonymous memory only: mmap() hands out fresh, never-reused virtual ranges; a page gets a
// zero-filled host frame on first touch (by the VMM's own read/write or by KVM's
// get_user_page, hva_to_pfn), and keeps it until the range is unmapped or reclaimed.
//
// Reclaim is modelled as page migration: reclaim(hva, len) moves each resident page of the
// range to a fresh frame (content copied) and frees the old one. It is the harshest form of
// memory pressure for KVM (the pfn under a gfn changes while the page stays resident, so a
// stale SPTE would silently read old contents), needs no swap store, and a later touch simply
// finds the new frame. If no frame is free the page stays where it is (migration failed).
// The notifiers' invalidate_range_start always returns before an old frame is freed, and
// invalidate_range_end is called after the range's new state is in place, as in Linux.
//
// Thread safety: every member may be called from any thread. One mutex plays mmap_lock and
// the page-table lock together and is held across a whole munmap/reclaim/age, notifier
// callbacks included: a fault's get_user_page therefore never sees a half-moved page. Lock
// order: HostMm's lock -> whatever the notifiers take (KVM's mmu_lock). Hence get_user_page,
// read and write REQUIRE that the caller holds no lock a notifier takes (KVM calls
// hva_to_pfn before it takes mmu_lock).
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "base/addr.h"
#include "base/lock.h"
#include "base/thread_annotations.h"
#include "kvm/kvm_errno.h"
#include "platform/host_memory.h"

namespace tdxsim {

// struct mmu_notifier_ops, the subset KVM implements. Ranges are [start, end) in bytes.
class MmuNotifier {
 public:
  virtual ~MmuNotifier() = default;
  virtual void invalidate_range_start(uint64_t start, uint64_t end) = 0;
  virtual void invalidate_range_end(uint64_t start, uint64_t end) = 0;
  // Returns: whether any secondary mapping in the range was young (and clears it).
  virtual bool clear_young(uint64_t start, uint64_t end) = 0;
  virtual bool test_young(uint64_t start, uint64_t end) = 0;
  // The mm is going away: drop every secondary mapping.
  virtual void release() = 0;
};

class HostMm {
 public:
  // The first address mmap() hands out.
  static constexpr uint64_t kMmapBase = 0x7f00'0000'0000;

  // REQUIRES: `mem` outlives the HostMm.
  explicit HostMm(HostMemory& mem);
  // exit() if it has not run.
  ~HostMm();
  HostMm(const HostMm&) = delete;
  HostMm& operator=(const HostMm&) = delete;

  // A fresh mapping of `len` bytes (rounded up to pages). REQUIRES: len > 0.
  // `page` k2M: a transparent-huge-page mapping — 2M-aligned, and each 2M range is backed
  // by one 2M page from HostMemory's pool on first touch, or by 4K pages when the pool is
  // empty (THP's fallback).
  uint64_t mmap(uint64_t len, Level page = Level::k4K) TDXSIM_EXCLUDES(mu_);
  // Unmaps [hva, hva + len): notifiers' invalidate_range_start, pages freed, _end.
  // EINVAL if hva or len is not page aligned or len is 0 (unmapped holes are fine), or if
  // the range cuts a resident 2M page (Linux would split it; this model does not).
  KvmResult<> munmap(uint64_t hva, uint64_t len) TDXSIM_EXCLUDES(mu_);
  // hva_to_pfn: the frame behind `hva`, allocated (zeroed) on first touch, marked young (and
  // dirty if `write`). EFAULT if unmapped, ENOMEM if host memory is exhausted. `level`, when
  // given, receives mapping_level(hva) as of the same lookup (one lock for both, as a
  // fault needs both).
  KvmResult<Pfn> get_user_page(uint64_t hva, bool write, Level* level = nullptr)
      TDXSIM_EXCLUDES(mu_);
  // The VMM's own 8-byte accesses. REQUIRES: hva 8-byte aligned. EFAULT/ENOMEM as above.
  KvmResult<uint64_t> read(uint64_t hva) TDXSIM_EXCLUDES(mu_);
  KvmResult<> write(uint64_t hva, uint64_t value) TDXSIM_EXCLUDES(mu_);
  // Memory pressure: migrates every resident page of [hva, hva + len) (see the file comment).
  // REQUIRES: page-aligned arguments.
  void reclaim(uint64_t hva, uint64_t len) TDXSIM_EXCLUDES(mu_);
  // Page aging (the reclaim scanner): clears the young bits of the range's ptes and of every
  // secondary mapping (clear_young). Returns whether anything was young.
  bool age(uint64_t hva, uint64_t len) TDXSIM_EXCLUDES(mu_);
  // Whether anything in the range is young, without clearing (test_young).
  bool test_young(uint64_t hva, uint64_t len) TDXSIM_EXCLUDES(mu_);

  // mmu_notifier_register / unregister. REQUIRES: `n` outlives its registration. A notifier
  // may be unregistered after exit() (a no-op then).
  void register_notifier(MmuNotifier* n) TDXSIM_EXCLUDES(mu_);
  void unregister_notifier(MmuNotifier* n) TDXSIM_EXCLUDES(mu_);
  // exit_mmap: every notifier's release(), the notifiers dropped, every page freed and every
  // mapping gone. Idempotent.
  void exit() TDXSIM_EXCLUDES(mu_);

  // The size of the host page mapping `hva` right now (host_pfn_mapping_level): k2M while a
  // 2M page backs it, else k4K.
  Level mapping_level(uint64_t hva) const TDXSIM_EXCLUDES(mu_);

  // Pages (4K units) with a frame right now.
  uint64_t resident_pages() const TDXSIM_EXCLUDES(mu_);
  // The frame behind `hva` if resident (no fault-in, no young bit): for tests.
  std::optional<Pfn> resident_pfn(uint64_t hva) const TDXSIM_EXCLUDES(mu_);

 private:
  struct Pte {
    Pfn pfn;
    bool young = false;
    bool dirty = false;
  };

  bool mapped(uint64_t hva) const TDXSIM_REQUIRES(mu_);
  bool in_huge_vma(uint64_t hva) const TDXSIM_REQUIRES(mu_);
  Level level_at(uint64_t hva) const TDXSIM_REQUIRES(mu_);
  // The frame of the 4K page at `hva`, faulted in if needed; young (and dirty) set.
  KvmResult<Pfn> fault_in(uint64_t hva, bool write) TDXSIM_REQUIRES(mu_);
  // [start, end) widened to whole 2M pages wherever it touches a resident one.
  std::pair<uint64_t, uint64_t> widen_to_huge(uint64_t start, uint64_t end) const
      TDXSIM_REQUIRES(mu_);
  void remove_vmas(uint64_t start, uint64_t end) TDXSIM_REQUIRES(mu_);

  HostMemory& mem_;
  mutable Mutex mu_;
  uint64_t next_hva_ TDXSIM_GUARDED_BY(mu_) = kMmapBase;
  bool exited_ TDXSIM_GUARDED_BY(mu_) = false;
  // VMAs: start -> end, disjoint.
  std::map<uint64_t, uint64_t> vmas_ TDXSIM_GUARDED_BY(mu_);
  // The subset of vmas_ that are THP mappings: start -> end, 2M aligned.
  std::map<uint64_t, uint64_t> huge_vmas_ TDXSIM_GUARDED_BY(mu_);
  // Resident 4K pages by page-aligned hva.
  std::map<uint64_t, Pte> ptes_ TDXSIM_GUARDED_BY(mu_);
  // Resident 2M pages by 2M-aligned hva (pfn: the first frame). Never overlaps ptes_.
  std::map<uint64_t, Pte> huge_ptes_ TDXSIM_GUARDED_BY(mu_);
  std::vector<MmuNotifier*> notifiers_ TDXSIM_GUARDED_BY(mu_);
};

}  // namespace tdxsim
