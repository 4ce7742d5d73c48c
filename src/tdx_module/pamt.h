// The PAMT (Physical Address Metadata Table): the module's record of what every frame of
// host memory is and whom it belongs to (shared/spec/tdx-module-abi.md §4; TDX module
// src/common/memory_handlers/pamt_manager.{h,c}, src/common/helpers/helpers.c).
//
// Layout. Three arrays of entries, one per page size, as the module keeps PAMT_4K, PAMT_2M
// and PAMT_1G per TDMR: one entry per 4 KiB frame, per 2 MiB and per 1 GiB of host memory.
// tdxsim has one TDMR covering all host memory, initialised once (TDH.SYS.TDMR.INIT done):
// every entry starts PT_NDA. An entry is three words, 24 bytes:
//
//   word 0   lock     the module's host-priority shared/exclusive lock (TryLockRef over it)
//   word 1   meta     page type (7:0) | owner: the TDR's frame number, 40 bits (47:8)
//   word 2   BEPOCH   TD epoch of the block (bit 63: migration flag, not modelled)
//
// The module packs lock, type and owner into one 64-bit word (16 + 8 + 40 bits); tdxsim
// gives the lock a word of its own so that TryLock's algorithm runs on it unchanged.
// The arrays are LazyWords: a 65 GiB host costs nothing until entries are touched.
//
// Page size is where the entry lives, not a field: a 2M page is tracked by its 2M entry
// (its 512 4K entries stay PT_NDA, BEPOCH lives in the 2M entry), a 1G page by its 1G
// entry; DEMOTE and PROMOTE move a page's metadata one level down or up (demote, promote). The module finds a page's entry by walking down from the 1G entry and stopping at
// the first entry that is not PT_NDA (pamt_walk): so a 4K request inside an assigned 2M page
// ends at the 2M entry, and the size check fails (rules sheet A15).
//
// Locking (pamt_walk / pamt_unwalk). A walk takes the 1G entry's lock shared, then the 2M
// entry's shared, then the leaf's: the 4K entry in the requested mode, or a 1G/2M entry by
// promoting its shared hold. Any failure releases what the walk holds and answers BUSY (or,
// to a guest, BUSY_HOST_PRIORITY) at once; nothing ever waits. A PamtLock holds the whole
// path and releases it leaf first. Type, owner and BEPOCH are read under the leaf lock in
// either mode and written only under it exclusively (checked).
//
// Thread safety: every member may be called from any thread. Every word is accessed through
// AtomicWordRef; lock words with the orders TryLock documents, meta and BEPOCH words with
// relaxed loads and stores, which the lock orders (its acquire and release publish them from
// one holder to the next). The snapshot readers (peek_type, is_2m_range_free, counts) take no
// lock: their answers are exact only when the caller excludes writers — the module calls
// is_2m_range_free holding the 2M entry exclusively, which keeps every 4K walk below it out.
// Clang's analysis cannot follow entry locks chosen at run time; PamtLock is not annotated.
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <map>
#include <utility>

#include "base/addr.h"
#include "base/atomic.h"
#include "base/bitfield.h"
#include "base/try_lock.h"
#include "platform/key_id.h"
#include "platform/lazy_words.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {

// PAMT page types (module page_type_t). Values are ABI: TDH.PHYMEM.PAGE.RDMD and RECLAIM
// return them in RCX.
enum class PamtPageType : uint8_t {
  kNda = 0,    // not directly assigned: free for the module to take
  kRsvd = 1,   // reserved: never convertible
  kReg = 3,    // a TD's private data page
  kTdr = 4,    // a TD's root
  kTdcx = 5,   // a TDCS page or a TDVPS extension page
  kTdvpr = 6,  // a vCPU's root
  kEpt = 8,    // an S-EPT page
};
const char* to_string(PamtPageType t);

// Whether the block that recorded `bepoch` has been TLB-tracked (module helpers.h,
// is_tlb_tracked): true iff no logical CPU can still hold a translation cached before the
// block. With E = td_epoch:
//   BEPOCH < E-1                        tracked: every vCPU running then has exited since;
//   BEPOCH = E-1 and REFCOUNT[parity]=0 tracked: TRACK advanced the epoch and every vCPU
//                                       that entered in epoch E-1 has exited;
//   otherwise (BEPOCH >= E, or = E-1 with vCPUs still in it, or the migration flag (bit 63)
//   set)                                not tracked.
// `refcount` is REFCOUNT[bepoch & 1]. Arithmetic is the module's unsigned 64-bit
// arithmetic (TD_EPOCH starts at 1, so E-1 never wraps in a real TD).
constexpr bool is_tlb_tracked(uint64_t bepoch, uint64_t td_epoch, uint16_t refcount) {
  if (Bit<63>::get(bepoch) != 0) return false;
  if (bepoch == td_epoch - 1 && refcount == 0) return true;
  return bepoch < td_epoch - 1;
}

class Pamt;

// A locked PAMT entry and the path above it; releases them on destruction (leaf first).
// Move-only. Obtained from Pamt::lock() or Pamt::check_hpa_operand().
class PamtLock {
 public:
  // Inline: every leaf returns its PAMT locks by value through std::expected.
  PamtLock(PamtLock&& o) noexcept
      : pamt_(std::exchange(o.pamt_, nullptr)),
        leaf_(o.leaf_),
        pfn_(o.pfn_),
        level_(o.level_),
        exclusive_(o.exclusive_) {}
  PamtLock& operator=(PamtLock&& o) noexcept;
  PamtLock(const PamtLock&) = delete;
  PamtLock& operator=(const PamtLock&) = delete;
  ~PamtLock() { unlock(); }

  // The entry's first frame (the page base) and page size.
  Pfn pfn() const { return pfn_; }
  Level level() const { return level_; }
  bool exclusive() const { return exclusive_; }
  bool held() const { return pamt_ != nullptr; }

  // REQUIRES (all, checked): held(); the setters also exclusive().
  PamtPageType type() const;
  Pfn owner() const;  // the owning TD's TDR frame; 0 when none was recorded
  uint64_t bepoch() const;
  void set_type(PamtPageType t);
  void set_owner(Pfn tdr);  // REQUIRES: tdr < 2^40 (checked)
  void set_bepoch(uint64_t bepoch);
  // The three at once, as a leaf that hands a page out writes them (AUG, PAGE.ADD, SEPT.ADD,
  // DEMOTE's new table, RELOCATE's target, PROMOTE's merged page): one check and one write
  // of each word.
  void assign(PamtPageType t, Pfn owner, uint64_t bepoch);

  // Releases the path now (the destructor then does nothing).
  void unlock();

 private:
  friend class Pamt;
  PamtLock(Pamt* pamt, uint64_t* leaf, Pfn pfn, Level level, bool exclusive)
      : pamt_(pamt), leaf_(leaf), pfn_(pfn), level_(level), exclusive_(exclusive) {}

  // What it holds is implied: the entries covering pfn_ from 1G down to level_, the leaf's
  // in its mode, the others shared (pamt_ == nullptr: nothing). Small, since every leaf moves
  // its PAMT locks through std::expected.
  Pamt* pamt_ = nullptr;
  uint64_t* leaf_ = nullptr;  // the entry at level_
  Pfn pfn_;
  Level level_ = Level::k4K;
  bool exclusive_ = false;
};

class Pamt {
 public:
  // A PAMT for `frames` frames of host memory, every entry PT_NDA.
  explicit Pamt(uint64_t frames);
  Pamt(const Pamt&) = delete;
  Pamt& operator=(const Pamt&) = delete;

  uint64_t frames() const { return frames_; }

  // Walks to `pfn`'s entry, stopping at `target` or at the first larger entry that is not
  // PT_NDA, and locks it (module pamt_walk): the returned lock's level() says where it
  // stopped. `exclusive` asks for the leaf exclusively.
  // REQUIRES: pfn < frames(); target is 4K, 2M or 1G; a guest never asks exclusive
  // (checked).
  // Returns: the lock, or kBusy / kBusyHostPriority (guest only) with nothing held.
  [[nodiscard]] std::expected<PamtLock, TryLockResult> lock(Pfn pfn, Level target, Requester r,
                                                            bool exclusive);

  // The module's checks on an explicit HPA operand, in its order (module
  // check_and_lock_explicit_private_hpa, check_and_lock_free_range_hpa):
  //   1. aligned to `size`, no HKID bits, below MAX_PA       else OPERAND_INVALID|op
  //   2. [hpa, hpa + size) inside the TDMR (all host memory)  else OPERAND_ADDR_RANGE_ERROR|op
  //   3. the walk to `size` locks the entry                   else OPERAND_BUSY|op
  //                                    (a guest that lost to host priority: BUSY_HOST_PRIORITY|op)
  //   4. the walk stopped at `size` and the type is `expected`;
  //      a free 2M page (expected PT_NDA) also needs all 512 4K entries PT_NDA
  //                                                           else PAGE_METADATA_INCORRECT|op
  // REQUIRES: size is 4K, 2M or 1G, and not 1G with expected PT_NDA (no leaf takes a free
  // 1G page; checked).
  // Returns: the locked entry, or the status with nothing held.
  [[nodiscard]] std::expected<PamtLock, uint64_t> check_hpa_operand(
      Hpa hpa, Level size, PamtPageType expected, TdxOperand op, Requester r, bool exclusive,
      const PhysAddrLayout& layout);
  // The same but for step 1's HKID and MAX_PA tests, for a caller that made them itself (the
  // module's 4K format check, which also cuts step 2 at what TDMR.INIT initialised): the
  // alignment to `size` and the whole page inside the TDMR are still checked here.
  // An HPA with bits above the frame mask fails step 2 here, not step 1.
  [[nodiscard]] std::expected<PamtLock, uint64_t> lock_hpa_operand(Hpa hpa, Level size,
                                                                   PamtPageType expected,
                                                                   TdxOperand op, Requester r,
                                                                   bool exclusive);

  // TDH.MEM.PAGE.DEMOTE's split of a page's metadata (module pamt_demote): the 512 entries
  // one level below the locked large page take its type and owner, BEPOCH 0, and the large
  // entry becomes PT_NDA (its owner field left as the module leaves it). The children are
  // written under `page`'s exclusive hold, which keeps every walk to them out.
  // REQUIRES (checked): `page` held exclusively; a 2M or 1G entry; not PT_NDA.
  void demote(PamtLock& page);
  // TDH.MEM.PAGE.PROMOTE's merge (module pamt_promote): the locked large entry takes the
  // type and owner its 512 children share, BEPOCH 0, and the children become PT_NDA.
  // REQUIRES (checked): `range` held exclusively; a 2M or 1G entry; PT_NDA; its children
  // all of one type other than PT_NDA, with one owner (what the S-EPT the caller checked
  // guarantees: a mismatch is a simulator bug).
  void promote(PamtLock& range);

  // Whether the 2M page at `pfn` is free: its 2M entry and all 512 4K entries PT_NDA
  // (module pamt_is_2mb_range_free, plus the 2M entry the walk checks). A snapshot; see the
  // header comment. REQUIRES: pfn 2M aligned, and the whole 2M inside memory (checked).
  bool is_2m_range_free(Pfn pfn) const;

  // The type of the entry at `level` covering `pfn`, without locking (a snapshot).
  PamtPageType peek_type(Pfn pfn, Level level) const;

  // Entries of type `t` at `level` / at every level: a scan of the entries ever assigned
  // (for tests and reports; not for hot paths). Snapshots while setters run.
  // REQUIRES: t is not PT_NDA (free is the absence of an assignment; checked).
  uint64_t count(PamtPageType t, Level level) const;
  uint64_t count(PamtPageType t) const;
  // The same, only entries whose owner is the TD of TDR frame `owner`.
  uint64_t count_owned(PamtPageType t, Level level, Pfn owner) const;

  // The entries of every type but PT_NDA, by owner (the TDR's frame number; 0 when none was
  // recorded): one scan of the entries ever assigned, for checks that ask about every TD
  // at once where count_owned would scan once per question. A snapshot, as count() is.
  struct OwnedEntries {
    std::array<std::array<uint64_t, 3>, 16> by_type{};  // [type][level: 4K, 2M, 1G]
    uint64_t of(PamtPageType t, Level level) const {
      return by_type[static_cast<uint8_t>(t) % by_type.size()][level_num(level) - 1];
    }
  };
  std::map<uint64_t, OwnedEntries> count_by_owner() const;
  // Marks frames PT_RSVD, as TDMR initialisation does for a TDMR's reserved areas.
  // REQUIRES: no other thread uses the PAMT yet; [first, first + n) inside memory.
  void mark_reserved(Pfn first, uint64_t n);

 private:
  friend class PamtLock;
  static constexpr uint64_t kWordsPerEntry = 3;
  static constexpr size_t kTypeSlots = 16;

  // The three words of the entry at `level` covering `pfn`. Inline: every PAMT walk takes
  // three.
  uint64_t* entry(Pfn pfn, Level level) const {
    const uint64_t index = pfn.raw() >> (kLevelBits * (level_num(level) - 1));
    return base_[level_num(level) - 1] + index * kWordsPerEntry;
  }
  LazyWords& words(Level level);
  const LazyWords& words(Level level) const;
  // Records that the entry `e` at `level` got a type, so count() scans its page. A load,
  // and a locked OR only the first time a page of entries is typed.
  void note_typed(uint64_t* e, Level level);
  // Releases the leaf `leaf` of a walk to `pfn` at `level`, then the path above it.
  void unwalk(uint64_t* leaf, bool exclusive, Pfn pfn, Level level);
  // Releases the shared holds a walk to `pfn` took above `level`, lowest first.
  void release_above(Pfn pfn, Level level);
  [[gnu::cold]] std::unexpected<TryLockResult> walk_failed(Pfn pfn, Level level, TryLockResult why);
  // lock()'s walk and the releases, over TryLockRef under a scheduler (every point taken) or
  // FreeRunningTryLockRef free-running (none: there each would be a no-op); the callers test
  // sched_active() once.
  template <typename LockRef>
  std::expected<PamtLock, TryLockResult> walk_and_lock(Pfn pfn, Level target, Requester r,
                                                       bool exclusive);
  template <typename LockRef>
  void release_as(uint64_t* lock_word, bool exclusive);
  template <typename LockRef>
  void release_above_as(Pfn pfn, Level level);

  uint64_t frames_;
  LazyWords words_4k_;
  LazyWords words_2m_;
  LazyWords words_1g_;
  // words_4k_, words_2m_, words_1g_'s data, by level index.
  std::array<uint64_t*, 3> base_;
};

}  // namespace tdxsim
