// Host physical memory: frames, their key IDs and their contents.
//
// Memory and the host's allocator are two things. Contents, key, poison and cache state
// belong to the frame, whether or not the host's allocator holds it free: a hostile host may
// name any frame of the TDMR in a SEAMCALL, and hardware knows nothing of the host kernel's
// free lists, so every content, key and cache operation works on every frame in range.
// Allocation is the host's bookkeeping on top:
// - free_frame changes nothing in memory. A free frame reads as what it last held, and a
//   frame the module (or a vCPU) still uses after the host freed it keeps working.
// - alloc_frame hands out only frames its allocator holds free, and re-keys none: allocating
//   a page cannot take it from a TD. A frame the host's key holds comes zero-filled, as
//   from the kernel. A frame a TD's key holds (the module took it while it was free, or the
//   host freed it after RECLAIM without resetting it) comes as it is; the violation is the
//   host's first write to it with its key, recorded where it lands (kIntegrityPoison), and
//   the TD's next read is kPoisonConsumed.
//
// Contents are compact: a frame holds a page-granular fill value, and only a frame whose
// individual words were written (a page-table page, a VMCS, a word a test poked) gets word
// storage, in 64-word chunks allocated on first write. A 64 GiB guest whose every page was
// filled therefore costs the per-frame metadata (≤ 16 bytes a frame) and no page copies.
// Word storage stays with its frame until the HostMemory goes, through free and reuse: no
// moment is safe to free it at while a hostile host may free a frame a TD still walks, and
// the default reuse policy brings the same frames back first. The allocator's own lists add
// up to 8 bytes a frame, for frames freed only (frame_allocator.h).
//
// Keys. Every access carries the accessor's key ID, as the physical address bits would.
// - A read with the frame's own key returns the plaintext, tagged with that key as its
//   origin (see MemWord). A read with another key returns what hardware would return: a
//   ciphertext-like value derived from the contents and keys, or zeros (config), never the
//   plaintext.
// - A write with another key than a TD frame's own poisons the frame for its owner (TDX's
//   integrity check): the owner's later reads return garbage and are recorded. The poison
//   lasts until set_key, or a whole-page write (fill, copy_page) by the owner, as
//   MOVDIR64B over every line would clear it.
// - A TD's plaintext reaching host-readable memory (a write, with the host key or into a
//   host-keyed frame, of a value whose origin is a TD key) is a confidentiality violation
//   and is recorded, as is a frame handed back to the host key while it still has the TD's
//   dirty cache lines (no WBINVD / TDH.PHYMEM.PAGE.WBINVD first).
// - Cache: a write by a TD with the frame's own key leaves that key's lines dirty (one dirty
//   key a frame is tracked; host lines are not). The lines stay dirty through free_frame and
//   alloc_frame; if set_key gives the frame another key before wbinvd_frame/wbinvd_key wrote
//   them back, kStaleCacheReuse is recorded once and the dirty state is dropped.
//
// Violations are recorded once per event: every leaking write, every read of a poisoned
// frame by its owner, each clean-to-poisoned transition, each stale reuse. Page-granular
// operations (fill, copy_page) record each kind at most once, at the frame's base.
//
// Thread safety: every member function may be called from any thread. Word accesses are
// single atomic operations (page-table entries are compared-and-swapped in place; the
// walker's A/D updates are compare-and-swaps from the value it read, so they never land in an
// entry that changed under it). Since word storage is never freed under a frame, threads
// racing on one frame (the host reusing a page the module still uses) get a race's values,
// never freed memory.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/trace.h"
#include "platform/key_id.h"

namespace tdxsim {

// Which free frame the allocator hands out next. LastFreedFirst makes a freed page-table
// page come straight back at the same HPA — the reuse that exposes stale TLB entries.
enum class ReusePolicy : uint8_t { kLastFreedFirst, kFirstFreedFirst, kLowestFirst, kRandom };

// What a read with the wrong key returns (MKTME: ciphertext; TDX with logical integrity:
// zeros for TD-private lines read by the host).
enum class ForeignReadResult : uint8_t { kCiphertext, kZeros };

struct HostMemoryConfig {
  uint64_t bytes = uint64_t{1} << 30;
  ReusePolicy reuse = ReusePolicy::kLastFreedFirst;
  uint64_t seed = 1;  // for kRandom
  ForeignReadResult foreign_read = ForeignReadResult::kCiphertext;
  PhysAddrLayout layout{};
  // 2M pages set aside at the top of memory (hugetlbfs's boot-time reservation): the only
  // physically contiguous runs anyone can get, handed out by alloc_huge_2m. The 4K
  // allocator never sees these frames.
  uint64_t huge_2m_pages = 0;
};

// A word as read from memory, with the key whose plaintext it is. kHostKey for host data,
// ciphertext and zeros; a TD's HKID for that TD's plaintext. The origin travels with the
// value so that a leak into host-readable memory can be recognised where it happens.
struct MemWord {
  uint64_t value = 0;
  KeyId origin = kHostKey;
  bool operator==(const MemWord&) const = default;
};

enum class MemViolationKind : uint8_t {
  kPlaintextLeak,    // a TD's plaintext written to memory the host can read
  kIntegrityPoison,  // a TD frame written with another key; its owner's data is lost
  kPoisonConsumed,   // the owner read a poisoned frame (hardware: #MC)
  kStaleCacheReuse,  // a frame re-keyed while it still had dirty lines of its old key
};
const char* to_string(MemViolationKind k);

struct MemViolation {
  MemViolationKind kind;
  Hpa hpa;
  KeyId accessor;  // the key of the access that caused it
  KeyId owner;     // the frame's key (or the value's origin, for a leak)
};

class HostMemory {
 public:
  explicit HostMemory(const HostMemoryConfig& config);
  ~HostMemory();
  HostMemory(const HostMemory&) = delete;
  HostMemory& operator=(const HostMemory&) = delete;

  const HostMemoryConfig& config() const { return config_; }
  const PhysAddrLayout& layout() const { return config_.layout; }
  uint64_t total_frames() const { return frames_; }
  bool contains(Hpa hpa) const { return hpa.pfn().raw() < frames_; }

  // --- Frame allocator -------------------------------------------------------------------
  // Whether alloc_frame clears what it hands out. kNone is for a caller that writes the whole
  // page itself before anything reads it (guest_memfd's prepare does): the kernel's page
  // allocator does not clear either, and one clear is enough.
  enum class Clear : uint8_t { kZero, kNone };
  // Returns: a frame the allocator held free, or nullopt when none is. Zero-filled if its
  // key is kHostKey (unless `clear` is kNone: then it holds what it last held); a frame keyed
  // to a TD keeps key and contents (see the file comment). Dirty lines of a TD key are not
  // written back: set_key to another key reports them.
  std::optional<Pfn> alloc_frame(Clear clear = Clear::kZero);
  // REQUIRES: `pfn` is allocated. The frame keeps its contents, key and dirty lines.
  void free_frame(Pfn pfn);
  // Every frame handed back to the allocator (after it is free: a translation still used
  // after this point names memory that may already be someone else's).
  struct FramesFreed {
    Pfn first;
    uint64_t count;
  };
  Tracepoint<FramesFreed> frames_freed;
  uint64_t free_frame_count() const;
  bool is_allocated(Pfn pfn) const;
  // A 2M-aligned run of 512 frames from the reserved pool, each zero-filled like a 4K
  // frame from alloc_frame; nullopt when the pool is empty. Freed with free_huge_2m only
  // (free_frame of a pool frame is a check failure).
  std::optional<Pfn> alloc_huge_2m();
  // REQUIRES: `head` came from alloc_huge_2m and was not freed since.
  void free_huge_2m(Pfn head);
  uint64_t free_huge_2m_count() const;

  // --- Keys and caches -------------------------------------------------------------------
  // Free frames included, as everywhere below.
  KeyId key(Pfn pfn) const;
  // REQUIRES: no other thread accesses the frame meanwhile (else they read a mix).
  // Re-keys a frame (the module assigning it to a TD, or handing it back). Re-keying a
  // frame that still has dirty lines of another key than `key` records kStaleCacheReuse.
  // Clears the integrity poison. Hardware keeps the bytes, not their meaning: with a new
  // key the frame holds what a read with that key returned before (ciphertext or zeros;
  // for a filled frame one ciphertext word throughout), so whoever re-keys a page then
  // initialises it (fill, copy_page), as the module and KVM do.
  void set_key(Pfn pfn, KeyId key);
  // Writes back and invalidates the frame's cache lines of `key` (TDH.PHYMEM.PAGE.WBINVD).
  void wbinvd_frame(Pfn pfn, KeyId key);
  // Writes back and invalidates every line of `key` (TDH.PHYMEM.CACHE.WB, WBINVD).
  void wbinvd_key(KeyId key);
  bool has_dirty_lines(Pfn pfn) const;
  // Whether reads of the frame with `key` consume poison: `key` owns the frame and another
  // key wrote it since (TDX's integrity check fails). Hardware raises a machine check on
  // such a read; whoever models the reader asks this after reading (a read already
  // recorded kPoisonConsumed) to know that its value is garbage.
  bool consumes_poison(Pfn pfn, KeyId key) const;

  // --- Contents (8-byte aligned words) -----------------------------------------------------
  // REQUIRES (every content and entry access): `hpa` is in memory and 8-byte aligned; keys
  // are within the layout's key ID bits. Allocated or free does not matter.
  MemWord read(Hpa hpa, KeyId key) const;
  // The value's origin is the writer's key.
  void write(Hpa hpa, KeyId key, uint64_t value);
  // A copy of a word read elsewhere: its origin decides whether this is a leak.
  void write(Hpa hpa, KeyId key, MemWord word);
  // Sets every word of the frame to `value` (the page-granular fill). Word storage is
  // overwritten in place, not dropped: a concurrent walker may be reading it.
  // A fill racing with the first write into part of the same frame may leave that part at
  // the old fill (a caller bug: page contents are initialised before they are published).
  void fill(Pfn pfn, KeyId key, uint64_t value);
  // Page-granular copy with the keys of both sides (TDH.MEM.PAGE.ADD's copy, memcpy): per
  // word, a read with `src_key` then a write with `dst_key` (a TD page copied out with its
  // own key into a host page is a leak; a wrong `src_key` copies ciphertext).
  void copy_page(Pfn dst, KeyId dst_key, Pfn src, KeyId src_key);
  // A digest of the frame's contents as `key` reads them (tests compare private pages with
  // it): equal for equal contents however they were written. Records no violation.
  uint64_t page_hash(Pfn pfn, KeyId key) const;

  // --- Atomic entry access (page tables) --------------------------------------------------
  // The same key rules as read/write apply. Orders are the caller's: entries are published
  // with release and read with acquire.
  uint64_t load(Hpa hpa, KeyId key, std::memory_order order) const;
  // The same, and in `poisoned` whether the read consumed poison (consumes_poison), from
  // the one look at the frame's state the load takes anyway: the page walkers ask it of
  // every entry they read.
  uint64_t load(Hpa hpa, KeyId key, std::memory_order order, bool& poisoned) const;
  void store(Hpa hpa, KeyId key, uint64_t value, std::memory_order order);
  // Returns: true and stores `desired` if the word equals `expected`; else false and
  // `expected` is updated to the current value.
  bool compare_exchange(Hpa hpa, KeyId key, uint64_t& expected, uint64_t desired,
                        std::memory_order order);
  uint64_t exchange(Hpa hpa, KeyId key, uint64_t value, std::memory_order order);
  // Hardware's locked OR (A/D bit updates). Returns the old value.
  // Through another key than the frame's, the read-modify-writes act on what that key
  // reads (ciphertext) and poison a TD frame, whether or not a compare_exchange succeeds:
  // a locked RMW always writes the line.
  uint64_t fetch_or(Hpa hpa, KeyId key, uint64_t bits, std::memory_order order);

  // --- Violations -------------------------------------------------------------------------
  // The first 1024 violations recorded (the log is bounded; the count is not).
  std::vector<MemViolation> violations() const;
  uint64_t violation_count() const;

  // Bytes of host memory the model itself uses for metadata and word storage right now.
  uint64_t model_bytes() const;

 private:
  struct Impl;
  HostMemoryConfig config_;
  uint64_t frames_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tdxsim
