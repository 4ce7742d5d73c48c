// MmuPage: KVM's kvm_mmu_page for the TDP MMU — the bookkeeping beside one page-table page.
//
// The page-table page itself (spt) is a frame of host memory read and written with the host
// key; its 512 entries are Sptes. Everything here is what KVM keeps *outside* the entries:
// the role (which tree and level the page belongs to), the base gfn it maps, the S-EPT page
// paired with a mirror page, and, for roots, the reference count.
//
// KVM's `tdp_mmu_page` flag is not kept: it tells TDP pages from the shadow MMU's, and tdxsim
// has only the TDP MMU, so every MmuPage is one.
//
// A mirror page (role.is_mirror) belongs to KVM's copy of a TD's Secure EPT. Its external_spt
// is a second frame, handed to the TDX module (TDH.MEM.SEPT.ADD) to become the matching S-EPT
// page; KVM never reads or writes it, and it is allocated but not initialised here — the
// module initialises it (shared/spec/kvm-tdx-mmu.md §1.2). A mirror root has none: the
// module owns the S-EPT root itself.
//
// Thread safety: role (but `invalid`), gfn and spt are fixed at creation. `invalid` is set
// with mmu_lock held for write and read by threads that hold it for read or only walk under
// RCU, hence an atomic with release/acquire. external_spt changes only before the page is
// published (the SPTE that links it is stored with release) or with mmu_lock held for write
// (teardown), so readers that reached the page through its parent's SPTE see it. The root
// refcount is an atomic counter any thread may take or drop.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "base/addr.h"
#include "base/atomic.h"
#include "platform/host_memory.h"

namespace tdxsim {

// What every word of a freed page-table page holds until its frame is handed out again: the
// kernel's page poisoning on free (init_on_free), with a value no walk can mistake for a
// table's entry — not present in either format, not MMIO, not FROZEN_SPTE, and never built
// by KVM. A walk that reads it was in a table freed under it (TdpIter reports it).
inline constexpr uint64_t kFreedTablePoison = 0xDEAD'0000'0000'0000;

// kvm_mmu_page_role, for the TDP MMU only: the fields that tell two TDP pages apart. KVM
// compares roles as one word when it looks for a root to reuse; mirror and direct roots thus
// never match. The shadow-paging fields (guest_mode, cr0_wp, access, quadrant, …) have no
// meaning for TDP and are left out; `direct` is always 1 for TDP pages and is left out too.
struct MmuPageRole {
  Level level = Level::k4K;  // the level of the entries this page holds
  bool is_mirror = false;    // part of a mirror root (KVM's copy of the S-EPT)
  bool invalid = false;      // the root was invalidated and awaits its zap
  constexpr bool operator==(const MmuPageRole&) const = default;
};

class MmuPage {
 public:
  // A page-table page for `role` mapping the gfns [gfn, gfn + level_pages(role.level) * 512),
  // every entry SHADOW_NONPRESENT_VALUE (KVM's shadow-page cache hands out pages filled with
  // it, so no entry of a fresh table can read as a TD's #VE-delivering zero).
  // `with_external_spt`: also allocate the S-EPT page (mirror, non-root pages only).
  // REQUIRES: `mem` outlives the page; gfn is aligned to the span; role.invalid is false.
  // Returns: the page, or nullptr when host memory has no free frame (nothing is leaked).
  static std::unique_ptr<MmuPage> create(HostMemory& mem, MmuPageRole role, Gfn gfn,
                                         bool with_external_spt = false);
  // A root: gfn 0, `refcount` references (KVM takes two: the vCPU's and the TDP MMU's own,
  // dropped when the root is invalidated).
  static std::unique_ptr<MmuPage> create_root(HostMemory& mem, MmuPageRole role, uint64_t refcount);
  // Poisons spt (kFreedTablePoison) and frees it and, unless leaked, external_spt back to the
  // host's allocator.
  ~MmuPage();
  MmuPage(const MmuPage&) = delete;
  MmuPage& operator=(const MmuPage&) = delete;

  MmuPageRole role() const;
  Level level() const { return role_.level; }
  bool is_mirror() const { return role_.is_mirror; }
  Gfn gfn() const { return gfn_; }
  Hpa spt() const { return spt_; }
  // The host address of entry `index` of this page (an SPTE pointer).
  Hpa sptep(unsigned index) const;

  std::optional<Hpa> external_spt() const { return external_spt_; }
  // The TDX module could not give the S-EPT page back (reclaim failed): forget it, so the
  // destructor does not return a page the module may still own to the host's allocator.
  // REQUIRES: mmu_lock held for write.
  void leak_external_spt() { external_spt_.reset(); }

  // REQUIRES: mmu_lock held for write.
  void mark_invalid();

  // kvm_tdp_mmu_get_root: takes a reference unless the count already reached zero (the
  // root is being freed). Returns whether it took one.
  [[nodiscard]] bool try_get_root();
  // Drops a reference. Returns: true if it was the last (the caller frees the root).
  [[nodiscard]] bool put_root();
  uint64_t root_refcount() const { return root_refcount_.load(std::memory_order_acquire); }

 private:
  MmuPage(HostMemory& mem, MmuPageRole role, Gfn gfn, Hpa spt);

  HostMemory& mem_;
  const MmuPageRole role_;  // `invalid` lives in invalid_
  const Gfn gfn_;
  const Hpa spt_;
  std::optional<Hpa> external_spt_;
  AtomicWord invalid_;
  AtomicWord root_refcount_;
};

}  // namespace tdxsim
