// HostMemory's representation.
//
// Frame metadata: two words a frame in a lazily resident array (LazyWords), so frames no one
// touched cost nothing. A frame's metadata page is recorded as touched before its first
// write, from whichever thread; the touched pages bound the scans of wbinvd_key and the
// destructor, since any frame may have been used, allocated or not.
//   word 0  the fill value: what every word without word storage holds.
//   word 1  "info", one atomic word so that key, cache and poison state change together:
//             15:0   key ID of the frame (whose plaintext the stored words are)
//             31:16  key ID of the frame's dirty cache lines; 0: none (host lines are not
//                    tracked: only a TD key's lines can corrupt a later owner's data). Always
//                    0 or the frame's key: set_key to another key reports and drops them.
//             32     allocated (the host allocator's bookkeeping; contents ignore it)
//             33     poisoned (TDX integrity: the owner's reads fail)
//             63:34  word storage: storage slot + 1; 0: none
//
// Word storage: a slot of 8 chunk pointers in a lazily resident slot arena, installed with a
// CAS of info on the frame's first word write; each chunk (64 words) is allocated on the
// first write into it, initialised to the fill value, and installed with a CAS into its slot.
// Installed chunks are never moved, and freed only with the HostMemory: no point in a frame's
// life is safe to free them at, since a hostile host may free or reallocate a frame that the
// module or a vCPU is still walking. So a word operation on one is a single atomic on the
// word itself, and a frame's storage serves its every later life. fill() stores the new fill
// value and then overwrites the installed chunks in place.
//
// Memory orders: info and chunk pointers are published with release (acq_rel CAS) and read
// with acquire, so that a reader that sees a slot or chunk also sees it initialised. Word
// values use the caller's order for the atomic-entry API and acquire/release for read/write.
#include "platform/host_memory.h"

#include <algorithm>
#include <array>
#include <new>

#include "base/atomic.h"
#include "base/bitfield.h"
#include "base/check.h"
#include "base/lock.h"
#include "base/mix.h"
#include "platform/frame_allocator.h"
#include "platform/lazy_words.h"

namespace tdxsim {

const char* to_string(MemViolationKind k) {
  switch (k) {
    case MemViolationKind::kPlaintextLeak:
      return "plaintext-leak";
    case MemViolationKind::kIntegrityPoison:
      return "integrity-poison";
    case MemViolationKind::kPoisonConsumed:
      return "poison-consumed";
    case MemViolationKind::kStaleCacheReuse:
      return "stale-cache-reuse";
  }
  return "?";
}

namespace {

constexpr unsigned kWordsPerPage = kPageSize / sizeof(uint64_t);
constexpr unsigned kChunkWords = 64;
constexpr unsigned kChunksPerFrame = kWordsPerPage / kChunkWords;
constexpr std::align_val_t kChunkAlign{64};
constexpr uint64_t kMaxLoggedViolations = 1024;
constexpr uint64_t kSpareSlots = 1024;

using InfoKey = BitField<15, 0>;
using InfoDirtyKey = BitField<31, 16>;
using InfoAllocated = Bit<32>;
using InfoPoisoned = Bit<33>;
using InfoStorage = BitField<63, 34>;

KeyId info_key(uint64_t info) {
  return KeyId{static_cast<uint16_t>(InfoKey::get(info))};
}
KeyId info_dirty(uint64_t info) {
  return KeyId{static_cast<uint16_t>(InfoDirtyKey::get(info))};
}
bool info_allocated(uint64_t info) {
  return InfoAllocated::get(info) != 0;
}
bool info_poisoned(uint64_t info) {
  return InfoPoisoned::get(info) != 0;
}
uint64_t info_storage(uint64_t info) {
  return InfoStorage::get(info);
}

// Domain tweaks keep ciphertext, poison garbage and the page hash unrelated to each other.
constexpr uint64_t kCipherDomain = 0x4b45'5949'4443'4950ull;
constexpr uint64_t kPoisonDomain = 0x504f'4953'4f4e'4544ull;
constexpr uint64_t kHashSeed = 0x5041'4745'4841'5348ull;

uint64_t scramble(uint64_t value, uint64_t addr, uint64_t tweak) {
  const uint64_t c = mix64(value ^ mix64(addr ^ tweak));
  // "Never the plaintext" is what tests of the key rules rely on: a collision, however
  // unlikely, is excluded rather than left to chance.
  return c == value ? ~c : c;
}

// What `reader` sees of `value` stored under `frame_key` at `addr` (MKTME ciphertext).
uint64_t ciphertext(uint64_t value, Hpa addr, KeyId frame_key, KeyId reader) {
  const uint64_t keys = (uint64_t{frame_key.raw()} << 16) | reader.raw();
  return scramble(value, addr.raw(), kCipherDomain ^ (keys << 32));
}

// What the owner of a poisoned frame reads (hardware would raise #MC).
uint64_t poison_garbage(uint64_t value, Hpa addr, KeyId owner) {
  return scramble(value, addr.raw(), kPoisonDomain ^ (uint64_t{owner.raw()} << 32));
}

uint64_t* as_chunk(uint64_t word) {
  return reinterpret_cast<uint64_t*>(word);
}

}  // namespace

struct HostMemory::Impl {
  Impl(const HostMemoryConfig& cfg, uint64_t n)
      : config(cfg),
        frames(n),
        meta(n * 2),
        // A frame holds at most one slot, for life; threads racing to install one hold
        // at most one spare each, and the margin covers them.
        slots(std::min(n + kSpareSlots, InfoStorage::kMax) * kChunksPerFrame),
        pool_base(huge_pool_base(cfg, n)),
        allocator(cfg.reuse, pool_base, cfg.seed) {
    // Last freed first, as for 4K frames: a freed huge page comes back at the same HPA.
    for (uint64_t p = n / kHugeFrames * kHugeFrames; p > pool_base;) {
      p -= kHugeFrames;
      huge_free.push_back(p);
    }
  }

  static constexpr uint64_t kHugeFrames = 512;
  static uint64_t huge_pool_base(const HostMemoryConfig& cfg, uint64_t n) {
    const uint64_t top = n / kHugeFrames * kHugeFrames;
    TDXSIM_CHECK(cfg.huge_2m_pages * kHugeFrames < top || cfg.huge_2m_pages == 0,
                 "HostMemory: {} 2M pages leave no 4K frames in {} frames", cfg.huge_2m_pages, n);
    return cfg.huge_2m_pages == 0 ? n : top - cfg.huge_2m_pages * kHugeFrames;
  }
  bool in_huge_pool(uint64_t pfn) const { return pfn >= pool_base && pool_base != frames; }

  // --- Addressing and input checks ---

  void check_frame(Pfn pfn, const char* op) const {
    TDXSIM_CHECK(pfn.raw() < frames, "HostMemory::{}: {} is outside host memory ({} frames)", op,
                 pfn, frames);
  }
  void check_key(KeyId key, const char* op) const {
    TDXSIM_CHECK(key.raw() <= config.layout.max_keyid(),
                 "HostMemory::{}: key ID {} exceeds the layout's {} key ID bits", op, key.raw(),
                 config.layout.keyid_bits);
  }
  // Returns: the word's index within its frame. Every word access starts here, so the
  // test is one branch and the failure report is out of line.
  [[gnu::always_inline]] unsigned check_word(Hpa hpa, KeyId key, const char* op) const {
    if (hpa.pfn().raw() >= frames || hpa.raw() % sizeof(uint64_t) != 0 || key.raw() > max_key)
        [[unlikely]]
      bad_word(hpa, key, op);
    return static_cast<unsigned>(hpa.page_offset() / sizeof(uint64_t));
  }
  [[noreturn, gnu::noinline, gnu::cold]] void bad_word(Hpa hpa, KeyId key, const char* op) const {
    TDXSIM_CHECK(hpa.pfn().raw() < frames, "HostMemory::{}: {} is outside host memory ({} frames)",
                 op, hpa, frames);
    TDXSIM_CHECK(hpa.raw() % sizeof(uint64_t) == 0, "HostMemory::{}: {} is not 8-byte aligned", op,
                 hpa);
    check_key(key, op);
    TDXSIM_CHECK(false, "HostMemory::{}: {} with key ID {} passes every check", op, hpa, key.raw());
    __builtin_unreachable();
  }

  // Ref = FreeRunningWordRef for a path that tested !sched_active() once.
  template <typename Ref = AtomicWordRef>
  Ref fill_word(uint64_t pfn) const {
    return Ref(meta[pfn * 2]);
  }
  template <typename Ref = AtomicWordRef>
  Ref info_word(uint64_t pfn) const {
    return Ref(meta[pfn * 2 + 1]);
  }
  template <typename Ref = AtomicWordRef>
  Ref slot_word(uint64_t handle, unsigned chunk) const {
    return Ref(slots[(handle - 1) * kChunksPerFrame + chunk]);
  }

  [[gnu::always_inline]] uint64_t frame_info(uint64_t pfn) const {
    return info_word(pfn).load(std::memory_order_acquire);
  }

  // Before the first write of a frame's metadata (a no-op but for one load after that).
  void touch(uint64_t pfn) { meta.note_touched(pfn * 2); }

  // Calls f(pfn) for every frame whose metadata may be other than zero.
  template <typename F>
  void for_each_touched_frame(F&& f) const {
    constexpr uint64_t kFramesPerMetaPage = LazyWords::kWordsPerPage / 2;
    for (uint64_t first = 0; first < frames; first += kFramesPerMetaPage) {
      if (!meta.is_touched(first * 2)) continue;
      const uint64_t end = std::min(frames, first + kFramesPerMetaPage);
      for (uint64_t pfn = first; pfn < end; ++pfn) f(pfn);
    }
  }

  // --- Word storage ---

  [[gnu::always_inline]] uint64_t* chunk(uint64_t info, unsigned c) const {
    const uint64_t handle = info_storage(info);
    if (handle == 0) return nullptr;
    return as_chunk(slot_word(handle, c).load(std::memory_order_acquire));
  }

  [[gnu::always_inline]] uint64_t load_raw(uint64_t pfn, uint64_t info, unsigned idx,
                                           std::memory_order order) const {
    if (uint64_t* c = chunk(info, idx / kChunkWords)) {
      return AtomicWordRef(c[idx % kChunkWords]).load(order);
    }
    return fill_word(pfn).load(order);
  }

  // load_raw without its scheduling points. REQUIRES: !sched_active().
  [[gnu::always_inline]] uint64_t load_raw_free_running(uint64_t pfn, uint64_t info, unsigned idx,
                                                        std::memory_order order) const {
    if (const uint64_t handle = info_storage(info); handle != 0) {
      const uint64_t c =
          slot_word<FreeRunningWordRef>(handle, idx / kChunkWords).load(std::memory_order_acquire);
      if (c != 0) return FreeRunningWordRef(as_chunk(c)[idx % kChunkWords]).load(order);
    }
    return fill_word<FreeRunningWordRef>(pfn).load(order);
  }

  uint64_t take_slot() {
    MutexLock l(slot_mu);
    uint64_t handle = slot_free;
    if (handle != 0) {
      slot_free = slot_word(handle, 0).load(std::memory_order_relaxed);
      slot_word(handle, 0).store(0, std::memory_order_relaxed);
    } else {
      TDXSIM_CHECK(slot_bump < slots.size() / kChunksPerFrame,
                   "HostMemory: all {} word-storage slots in use (more than {} threads installing "
                   "word storage at once?)",
                   slot_bump, kSpareSlots);
      handle = ++slot_bump;
      slots.note_touched((handle - 1) * kChunksPerFrame);
    }
    return handle;
  }

  // REQUIRES: every chunk pointer of the slot is null.
  void give_slot(uint64_t handle) {
    MutexLock l(slot_mu);
    slot_word(handle, 0).store(slot_free, std::memory_order_relaxed);
    slot_free = handle;
  }

  // Returns: the frame's storage slot, installing an empty one if it has none.
  uint64_t install_slot(uint64_t pfn) {
    AtomicWordRef w = info_word(pfn);
    uint64_t info = w.load(std::memory_order_acquire);
    if (info_storage(info) != 0) return info_storage(info);
    const uint64_t mine = take_slot();
    for (;;) {
      // Lost the installation race (or the flags changed): use the winner's slot.
      if (info_storage(info) != 0) {
        give_slot(mine);
        return info_storage(info);
      }
      if (w.compare_exchange(info, InfoStorage::set(info, mine), std::memory_order_acq_rel)) {
        return mine;
      }
    }
  }

  // Returns: the chunk holding word `idx`, installing it (filled with the fill value) first.
  uint64_t* install_chunk(uint64_t pfn, unsigned idx) {
    const unsigned c = idx / kChunkWords;
    uint64_t info = info_word(pfn).load(std::memory_order_acquire);
    if (uint64_t* existing = chunk(info, c)) return existing;
    const uint64_t handle = install_slot(pfn);
    AtomicWordRef ptr = slot_word(handle, c);
    uint64_t cur = ptr.load(std::memory_order_acquire);
    if (cur != 0) return as_chunk(cur);
    auto* fresh =
        static_cast<uint64_t*>(::operator new(kChunkWords * sizeof(uint64_t), kChunkAlign));
    std::fill_n(fresh, kChunkWords, fill_word(pfn).load(std::memory_order_acquire));
    // Release publishes the initialised words; a loser's acquire sees the winner's.
    if (ptr.compare_exchange(cur, reinterpret_cast<uint64_t>(fresh), std::memory_order_acq_rel)) {
      chunk_count.fetch_add(1, std::memory_order_relaxed);
      return fresh;
    }
    ::operator delete(fresh, kChunkAlign);
    return as_chunk(cur);
  }

  void store_raw(uint64_t pfn, unsigned idx, uint64_t value, std::memory_order order) {
    AtomicWordRef(install_chunk(pfn, idx)[idx % kChunkWords]).store(value, order);
  }

  // REQUIRES: no other thread accesses the frame (the destructor's).
  void release_storage(uint64_t handle) {
    for (unsigned c = 0; c < kChunksPerFrame; ++c) {
      const uint64_t p = slot_word(handle, c).exchange(0, std::memory_order_acquire);
      if (p != 0) {
        ::operator delete(as_chunk(p), kChunkAlign);
        chunk_count.fetch_sub(1, std::memory_order_relaxed);
      }
    }
    give_slot(handle);
  }

  // Page-granular content write: the fill, then every installed word. Chunks stay: a
  // concurrent walker may be holding one.
  // Ref as for fill_word: FreeRunningWordRef for a caller that tested !sched_active().
  template <typename Ref = AtomicWordRef>
  void fill_contents(uint64_t pfn, uint64_t value) {
    fill_word<Ref>(pfn).store(value, std::memory_order_release);
    const uint64_t info = info_word<Ref>(pfn).load(std::memory_order_acquire);
    if (info_storage(info) == 0) return;  // most frames: the fill is the whole content
    for (unsigned c = 0; c < kChunksPerFrame; ++c) {
      if (uint64_t* words = chunk(info, c)) {
        for (unsigned i = 0; i < kChunkWords; ++i) {
          AtomicWordRef(words[i]).store(value, std::memory_order_release);
        }
      }
    }
  }

  // fill(): the write rules for a whole page, then the contents.
  template <typename Ref>
  void fill_as(uint64_t pfn, KeyId key, uint64_t value) {
    const Hpa base = Pfn{pfn}.hpa();
    const uint64_t info = note_write<Ref>(pfn, base, key, /*whole_page=*/true);
    note_leak(base, key, info, key);
    fill_contents<Ref>(pfn, value);
  }

  // --- Key rules ---

  uint64_t foreign_view(uint64_t raw, Hpa where, KeyId owner, KeyId reader) const {
    return config.foreign_read == ForeignReadResult::kZeros ? 0
                                                            : ciphertext(raw, where, owner, reader);
  }

  // What a read with `key` returns for the stored word `raw` at `where`.
  MemWord view(uint64_t raw, Hpa where, KeyId key, uint64_t info) const {
    const KeyId owner = info_key(info);
    if (key != owner) return {foreign_view(raw, where, owner, key), kHostKey};
    if (info_poisoned(info)) return {poison_garbage(raw, where, owner), kHostKey};
    return {raw, key};
  }

  // The owner's access to its own, unpoisoned frame: hardware atomics apply unchanged.
  static bool plain_access(KeyId key, uint64_t info) {
    return key == info_key(info) && !info_poisoned(info);
  }

  // The word that a write with `key` may update in place: the owner's own unpoisoned frame
  // whose lines are already dirty with that key (or the host's frame), with the word's
  // chunk installed. Such a write changes nothing that note_write tracks and can leak
  // nothing, so every S-EPT and SPTE update after the first skips the write rules.
  // nullptr: take the path that applies them.
  // Ref = FreeRunningWordRef: its two loads skip their points (REQUIRES: !sched_active()).
  template <typename Ref = AtomicWordRef>
  [[gnu::always_inline]] uint64_t* owned_word(uint64_t pfn, KeyId key, unsigned idx) const {
    const uint64_t info = info_word<Ref>(pfn).load(std::memory_order_acquire);
    if (!plain_access(key, info) || (!key.is_host() && info_dirty(info) != key)) return nullptr;
    const uint64_t handle = info_storage(info);
    if (handle == 0) return nullptr;
    uint64_t* c =
        as_chunk(slot_word<Ref>(handle, idx / kChunkWords).load(std::memory_order_acquire));
    return c == nullptr ? nullptr : c + idx % kChunkWords;
  }

  // HostMemory::load under a deterministic scheduler: every word read is a scheduling point.
  [[gnu::noinline]] uint64_t scheduled_load(Hpa hpa, KeyId key, unsigned idx,
                                            std::memory_order order, bool* poisoned) {
    const uint64_t pfn = hpa.pfn().raw();
    const uint64_t info = frame_info(pfn);
    if (poisoned != nullptr) *poisoned = info_poisoned(info) && info_key(info) == key;
    if (plain_access(key, info)) return load_raw(pfn, info, idx, order);
    return keyed_load(hpa, key, info, idx, order);
  }

  // A load through another key than the frame's, or of a poisoned frame: out of line, so
  // that the owner's loads (every page-table walk) keep a short prologue.
  [[gnu::noinline]] uint64_t keyed_load(Hpa hpa, KeyId key, uint64_t info, unsigned idx,
                                        std::memory_order order) {
    note_read(hpa, key, info);
    return view(load_raw(hpa.pfn().raw(), info, idx, order), hpa, key, info).value;
  }

  void note_read(Hpa where, KeyId key, uint64_t info) {
    if (key == info_key(info) && info_poisoned(info)) {
      record(MemViolationKind::kPoisonConsumed, where, key, info_key(info));
    }
  }

  // The cache and integrity effects of a write with `key`, as one update of info.
  // Returns: info after the update.
  // Ref as for fill_word.
  template <typename Ref = AtomicWordRef>
  uint64_t note_write(uint64_t pfn, Hpa where, KeyId key, bool whole_page) {
    touch(pfn);
    Ref w = info_word<Ref>(pfn);
    uint64_t old = w.load(std::memory_order_acquire);
    uint64_t now = 0;
    if (update_info(w, old, now, key, whole_page, /*may_poison=*/false)) return now;
    // The write poisons the frame. Poisoning and its log entry happen under the log lock, so
    // an owner's read that sees the poison logs its kPoisonConsumed after this entry.
    MutexLock l(log_mu);
    if (!update_info(w, old, now, key, whole_page, /*may_poison=*/true)) {
      record_locked(MemViolationKind::kIntegrityPoison, where, key, info_key(now));
    }
    return now;
  }

  // One CAS loop over info for a write with `key`. Returns false, leaving info unchanged,
  // when the write would poison the frame and !may_poison; with may_poison it returns false
  // after storing the poisoning update (the caller logs it) and true otherwise.
  template <typename Ref>
  static bool update_info(Ref w, uint64_t& old, uint64_t& now, KeyId key, bool whole_page,
                          bool may_poison) {
    for (;;) {
      const KeyId owner = info_key(old);
      now = old;
      bool poisons = false;
      // TDX integrity: a line written with another key fails the owner's MAC/TD-bit check.
      if (key != owner && !owner.is_host() && !info_poisoned(old)) {
        now = InfoPoisoned::set(now, 1);
        poisons = true;
      }
      if (key == owner && !key.is_host()) now = InfoDirtyKey::set(now, key.raw());
      // A whole-page write by the owner rewrites every line (MOVDIR64B), clearing poison.
      if (whole_page && key == owner) now = InfoPoisoned::set(now, 0);
      if (poisons && !may_poison) return false;
      if (now == old || w.compare_exchange(old, now, std::memory_order_acq_rel)) return !poisons;
    }
  }

  // A TD's plaintext stored where the host reads it as plaintext.
  void note_leak(Hpa where, KeyId key, uint64_t info, KeyId origin) {
    if (!origin.is_host() && (key.is_host() || info_key(info).is_host())) {
      record(MemViolationKind::kPlaintextLeak, where, key, origin);
    }
  }

  void record(MemViolationKind kind, Hpa where, KeyId accessor, KeyId owner) {
    // The ticket bounds the log without taking the lock once it is full.
    if (violation_total.fetch_add(1, std::memory_order_relaxed) >= kMaxLoggedViolations) return;
    MutexLock l(log_mu);
    log.push_back(MemViolation{kind, where, accessor, owner});
  }

  void record_locked(MemViolationKind kind, Hpa where, KeyId accessor, KeyId owner)
      TDXSIM_REQUIRES(log_mu) {
    if (violation_total.fetch_add(1, std::memory_order_relaxed) >= kMaxLoggedViolations) return;
    log.push_back(MemViolation{kind, where, accessor, owner});
  }

  // set_key(); Ref as for fill_word.
  template <typename Ref>
  void set_key_as(uint64_t pfn, KeyId key) {
    touch(pfn);
    Ref w = info_word<Ref>(pfn);
    uint64_t old = w.load(std::memory_order_acquire);
    uint64_t now;
    KeyId stale;
    for (;;) {
      const KeyId dirty = info_dirty(old);
      stale = !dirty.is_host() && dirty != key ? dirty : kHostKey;
      now = InfoPoisoned::set(InfoKey::set(old, key.raw()), 0);
      if (!stale.is_host()) now = InfoDirtyKey::set(now, 0);
      if (w.compare_exchange(old, now, std::memory_order_acq_rel)) break;
    }
    if (!stale.is_host()) record(MemViolationKind::kStaleCacheReuse, Pfn{pfn}.hpa(), key, stale);
    if (info_key(old) != key) rekey_contents<Ref>(pfn, now, info_key(old), key);
  }

  // Re-keying keeps the bytes, not their meaning: the frame now holds what a read with the
  // new key would have returned. REQUIRES: no concurrent access to the frame.
  template <typename Ref>
  void rekey_contents(uint64_t pfn, uint64_t info, KeyId from, KeyId to) {
    const Hpa base = Pfn{pfn}.hpa();
    Ref fill = fill_word<Ref>(pfn);
    fill.store(foreign_view(fill.load(std::memory_order_acquire), base, from, to),
               std::memory_order_release);
    if (info_storage(info) == 0) return;
    for (unsigned c = 0; c < kChunksPerFrame; ++c) {
      uint64_t* words = chunk(info, c);
      if (words == nullptr) continue;
      for (unsigned i = 0; i < kChunkWords; ++i) {
        AtomicWordRef w(words[i]);
        const Hpa at = base + (uint64_t{c} * kChunkWords + i) * sizeof(uint64_t);
        w.store(foreign_view(w.load(std::memory_order_acquire), at, from, to),
                std::memory_order_release);
      }
    }
  }

  const HostMemoryConfig& config;
  const uint64_t frames;
  const uint16_t max_key = config.layout.max_keyid();
  LazyWords meta;   // 2 words a frame; touched pages recorded by touch()
  LazyWords slots;  // kChunksPerFrame chunk pointers a slot; touched recorded under slot_mu

  Mutex alloc_mu{"host_memory.alloc"};
  // Frames [pool_base, frames) form the 2M pool (pool_base == frames: no pool).
  const uint64_t pool_base;
  FrameAllocator allocator TDXSIM_GUARDED_BY(alloc_mu);
  std::vector<uint64_t> huge_free TDXSIM_GUARDED_BY(alloc_mu);

  Mutex slot_mu{"host_memory.slots"};
  uint64_t slot_free TDXSIM_GUARDED_BY(slot_mu) = 0;  // free-slot list head, as handle
  uint64_t slot_bump TDXSIM_GUARDED_BY(slot_mu) = 0;  // handles above it were never used
  AtomicWord chunk_count;

  Mutex log_mu{"host_memory.violations"};
  std::vector<MemViolation> log TDXSIM_GUARDED_BY(log_mu);
  AtomicWord violation_total;
};

HostMemory::HostMemory(const HostMemoryConfig& config)
    : config_(config), frames_(config.bytes / kPageSize) {
  TDXSIM_CHECK(frames_ > 0 && config.bytes % kPageSize == 0,
               "HostMemory: {:#x} bytes is not a positive number of pages", config.bytes);
  TDXSIM_CHECK(config.layout.keyid_bits <= 16 && config.layout.keyid_shift() > kPageShift &&
                   frames_ - 1 <= (config.layout.frame_mask() >> kPageShift),
               "HostMemory: {:#x} bytes do not fit below the key ID bits (MAXPHYADDR {}, {} key "
               "ID bits)",
               config.bytes, config.layout.maxphyaddr, config.layout.keyid_bits);
  impl_ = std::make_unique<Impl>(config_, frames_);
}

HostMemory::~HostMemory() {
  // Word storage is heap memory: give it back (LazyWords unmaps the rest).
  Impl& m = *impl_;
  m.for_each_touched_frame([&m](uint64_t pfn) {
    const uint64_t handle = info_storage(m.frame_info(pfn));
    if (handle != 0) m.release_storage(handle);
  });
}

// --- Frame allocator ---

std::optional<Pfn> HostMemory::alloc_frame(Clear clear) {
  Impl& m = *impl_;
  uint64_t info;
  Pfn pfn;
  {
    MutexLock l(m.alloc_mu);
    const std::optional<uint64_t> taken = m.allocator.take();
    if (!taken) return std::nullopt;
    pfn = Pfn{*taken};
    m.touch(pfn.raw());
    AtomicWordRef w = m.info_word(pfn.raw());
    info = w.load(std::memory_order_relaxed);
    // Only the allocated bit: key, contents, poison and dirty lines are the memory's. The
    // loop is for the module and wbinvd_key, which may change the rest concurrently.
    for (;;) {
      TDXSIM_CHECK(!info_allocated(info), "HostMemory: allocator handed out {}, which is in use",
                   pfn);
      if (w.compare_exchange(info, InfoAllocated::set(info, 1), std::memory_order_acq_rel)) break;
    }
  }
  // The kernel's clearing, a write with the host key, of a frame the host's key holds. A
  // TD's frame comes as it is: the host's first write to it is the violation (see the
  // header).
  if (clear == Clear::kZero && info_key(info).is_host()) fill(pfn, kHostKey, 0);
  return pfn;
}

void HostMemory::free_frame(Pfn pfn) {
  Impl& m = *impl_;
  m.check_frame(pfn, "free_frame");
  TDXSIM_CHECK(!m.in_huge_pool(pfn.raw()), "HostMemory::free_frame: {} belongs to a 2M page", pfn);
  AtomicWordRef w = m.info_word(pfn.raw());
  // Allocator bookkeeping only: contents, word storage, key and dirty lines stay with the
  // frame, which the module may still be using.
  {
    MutexLock l(m.alloc_mu);
    uint64_t old = w.load(std::memory_order_acquire);
    for (;;) {
      TDXSIM_CHECK(info_allocated(old),
                   "HostMemory::free_frame: {} is not allocated (double free?)", pfn);
      if (w.compare_exchange(old, InfoAllocated::set(old, 0), std::memory_order_acq_rel)) break;
    }
    m.allocator.give(pfn.raw());
  }
  if (frames_freed.enabled()) frames_freed.emit(FramesFreed{pfn, 1});
}

std::optional<Pfn> HostMemory::alloc_huge_2m() {
  Impl& m = *impl_;
  uint64_t head;
  {
    MutexLock l(m.alloc_mu);
    if (m.huge_free.empty()) return std::nullopt;
    head = m.huge_free.back();
    m.huge_free.pop_back();
    for (uint64_t p = head; p < head + Impl::kHugeFrames; ++p) {
      m.touch(p);
      AtomicWordRef w = m.info_word(p);
      uint64_t info = w.load(std::memory_order_relaxed);
      for (;;) {
        TDXSIM_CHECK(!info_allocated(info), "HostMemory: 2M page {} has {} in use", Pfn{head},
                     Pfn{p});
        if (w.compare_exchange(info, InfoAllocated::set(info, 1), std::memory_order_acq_rel)) {
          break;
        }
      }
    }
  }
  for (uint64_t p = head; p < head + Impl::kHugeFrames; ++p) {
    if (key(Pfn{p}).is_host()) fill(Pfn{p}, kHostKey, 0);
  }
  return Pfn{head};
}

void HostMemory::free_huge_2m(Pfn head) {
  Impl& m = *impl_;
  m.check_frame(head, "free_huge_2m");
  TDXSIM_CHECK(m.in_huge_pool(head.raw()) && head.is_aligned(Level::k2M),
               "HostMemory::free_huge_2m: {} is not a 2M page of the pool", head);
  {
    MutexLock l(m.alloc_mu);
    for (uint64_t p = head.raw(); p < head.raw() + Impl::kHugeFrames; ++p) {
      AtomicWordRef w = m.info_word(p);
      uint64_t old = w.load(std::memory_order_acquire);
      for (;;) {
        TDXSIM_CHECK(info_allocated(old), "HostMemory::free_huge_2m: {} is not allocated", head);
        if (w.compare_exchange(old, InfoAllocated::set(old, 0), std::memory_order_acq_rel)) {
          break;
        }
      }
    }
    m.huge_free.push_back(head.raw());
  }
  if (frames_freed.enabled()) frames_freed.emit(FramesFreed{head, Impl::kHugeFrames});
}

uint64_t HostMemory::free_huge_2m_count() const {
  Impl& m = *impl_;
  MutexLock l(m.alloc_mu);
  return m.huge_free.size();
}

uint64_t HostMemory::free_frame_count() const {
  Impl& m = *impl_;
  MutexLock l(m.alloc_mu);
  return m.allocator.free_count();
}

bool HostMemory::is_allocated(Pfn pfn) const {
  impl_->check_frame(pfn, "is_allocated");
  return info_allocated(impl_->info_word(pfn.raw()).load(std::memory_order_acquire));
}

// --- Keys and caches ---

KeyId HostMemory::key(Pfn pfn) const {
  impl_->check_frame(pfn, "key");
  return info_key(impl_->info_word(pfn.raw()).load(std::memory_order_acquire));
}

void HostMemory::set_key(Pfn pfn, KeyId key) {
  Impl& m = *impl_;
  m.check_frame(pfn, "set_key");
  m.check_key(key, "set_key");
  // As fill: every AUG and ADD re-keys a frame.
  if (sched_active()) [[unlikely]] {
    m.set_key_as<AtomicWordRef>(pfn.raw(), key);
  } else {
    m.set_key_as<FreeRunningWordRef>(pfn.raw(), key);
  }
}

void HostMemory::wbinvd_frame(Pfn pfn, KeyId key) {
  Impl& m = *impl_;
  m.check_frame(pfn, "wbinvd_frame");
  m.check_key(key, "wbinvd_frame");
  if (key.is_host()) return;
  AtomicWordRef w = m.info_word(pfn.raw());
  uint64_t old = w.load(std::memory_order_acquire);
  while (info_dirty(old) == key) {
    if (w.compare_exchange(old, InfoDirtyKey::set(old, 0), std::memory_order_acq_rel)) break;
  }
}

void HostMemory::wbinvd_key(KeyId key) {
  Impl& m = *impl_;
  m.check_key(key, "wbinvd_key");
  if (key.is_host()) return;
  // Frames whose metadata was never touched were never written. Allocated or not does not
  // matter: the module may have used a frame the host holds free.
  m.for_each_touched_frame([&m, key](uint64_t pfn) {
    AtomicWordRef w = m.info_word(pfn);
    uint64_t old = w.load(std::memory_order_relaxed);
    while (info_dirty(old) == key) {
      if (w.compare_exchange(old, InfoDirtyKey::set(old, 0), std::memory_order_acq_rel)) break;
    }
  });
}

bool HostMemory::has_dirty_lines(Pfn pfn) const {
  impl_->check_frame(pfn, "has_dirty_lines");
  return !info_dirty(impl_->info_word(pfn.raw()).load(std::memory_order_acquire)).is_host();
}

bool HostMemory::consumes_poison(Pfn pfn, KeyId key) const {
  impl_->check_frame(pfn, "consumes_poison");
  const uint64_t info = impl_->info_word(pfn.raw()).load(std::memory_order_acquire);
  return info_poisoned(info) && info_key(info) == key;
}

// --- Contents ---

MemWord HostMemory::read(Hpa hpa, KeyId key) const {
  Impl& m = *impl_;
  const unsigned idx = m.check_word(hpa, key, "read");
  const uint64_t pfn = hpa.pfn().raw();
  const uint64_t info = m.frame_info(pfn);
  m.note_read(hpa, key, info);
  return m.view(m.load_raw(pfn, info, idx, std::memory_order_acquire), hpa, key, info);
}

void HostMemory::write(Hpa hpa, KeyId key, uint64_t value) {
  write(hpa, key, MemWord{value, key});
}

void HostMemory::write(Hpa hpa, KeyId key, MemWord word) {
  Impl& m = *impl_;
  const unsigned idx = m.check_word(hpa, key, "write");
  const uint64_t pfn = hpa.pfn().raw();
  // A TD's plaintext written by the host leaks even into the host's own frame.
  if (word.origin == key || !key.is_host()) {
    if (uint64_t* w = m.owned_word(pfn, key, idx)) [[likely]] {
      AtomicWordRef(*w).store(word.value, std::memory_order_release);
      return;
    }
  }
  const uint64_t info = m.note_write(pfn, hpa, key, /*whole_page=*/false);
  m.note_leak(hpa, key, info, word.origin);
  m.store_raw(pfn, idx, word.value, std::memory_order_release);
}

void HostMemory::fill(Pfn pfn, KeyId key, uint64_t value) {
  Impl& m = *impl_;
  m.check_frame(pfn, "fill");
  m.check_key(key, "fill");
  // As load: free-running, the metadata words skip their no-op points (every S-EPT page
  // and every accepted page is filled once).
  if (sched_active()) [[unlikely]] {
    m.fill_as<AtomicWordRef>(pfn.raw(), key, value);
  } else {
    m.fill_as<FreeRunningWordRef>(pfn.raw(), key, value);
  }
}

void HostMemory::copy_page(Pfn dst, KeyId dst_key, Pfn src, KeyId src_key) {
  Impl& m = *impl_;
  m.check_frame(dst, "copy_page");
  m.check_frame(src, "copy_page");
  m.check_key(dst_key, "copy_page");
  m.check_key(src_key, "copy_page");
  const Hpa sbase = src.hpa();
  const uint64_t sinfo = m.frame_info(src.raw());
  // Violations are per page here: one poisoned source page is one #MC, not 512.
  m.note_read(sbase, src_key, sinfo);
  const KeyId origin = Impl::plain_access(src_key, sinfo) ? src_key : kHostKey;
  // Without word storage the source reads as one value per page unless what src_key sees
  // depends on the address (ciphertext, poison garbage).
  const bool uniform =
      info_storage(sinfo) == 0 &&
      (src_key == info_key(sinfo) ? !info_poisoned(sinfo)
                                  : m.config.foreign_read == ForeignReadResult::kZeros);
  std::array<uint64_t, kWordsPerPage> words;
  if (uniform) {
    words[0] =
        m.view(m.fill_word(src.raw()).load(std::memory_order_acquire), sbase, src_key, sinfo).value;
  } else {
    for (unsigned i = 0; i < kWordsPerPage; ++i) {
      const Hpa at = sbase + uint64_t{i} * sizeof(uint64_t);
      words[i] =
          m.view(m.load_raw(src.raw(), sinfo, i, std::memory_order_acquire), at, src_key, sinfo)
              .value;
    }
  }
  const uint64_t dinfo = m.note_write(dst.raw(), dst.hpa(), dst_key, /*whole_page=*/true);
  m.note_leak(dst.hpa(), dst_key, dinfo, origin);
  const auto same = [&](uint64_t v) { return v == words[0]; };
  if (uniform || std::all_of(words.begin(), words.end(), same)) {
    m.fill_contents(dst.raw(), words[0]);
    return;
  }
  for (unsigned i = 0; i < kWordsPerPage; ++i) {
    m.store_raw(dst.raw(), i, words[i], std::memory_order_release);
  }
}

uint64_t HostMemory::page_hash(Pfn pfn, KeyId key) const {
  Impl& m = *impl_;
  m.check_frame(pfn, "page_hash");
  m.check_key(key, "page_hash");
  const Hpa base = pfn.hpa();
  const uint64_t info = m.frame_info(pfn.raw());
  // Word by word whatever the representation, so a filled page and a page written word by
  // word to the same values hash alike. A digest is no access: nothing is recorded.
  uint64_t h = kHashSeed;
  for (unsigned i = 0; i < kWordsPerPage; ++i) {
    const Hpa at = base + uint64_t{i} * sizeof(uint64_t);
    const uint64_t v =
        m.view(m.load_raw(pfn.raw(), info, i, std::memory_order_acquire), at, key, info).value;
    h = mix64(h ^ mix64(v + i));
  }
  return h;
}

// --- Atomic entry access ---

// The owner reading its own unpoisoned frame (every page-table walk) returns the stored word
// and records nothing; the key rules are the other path. Free-running, the three words it
// reads (frame info, storage slot, word) skip their scheduling points, which are no-ops
// then; under a scheduler the load takes every one.
uint64_t HostMemory::load(Hpa hpa, KeyId key, std::memory_order order) const {
  Impl& m = *impl_;
  const unsigned idx = m.check_word(hpa, key, "load");
  if (sched_active()) [[unlikely]]
    return m.scheduled_load(hpa, key, idx, order, nullptr);
  const uint64_t pfn = hpa.pfn().raw();
  const uint64_t info = m.info_word<FreeRunningWordRef>(pfn).load(std::memory_order_acquire);
  if (Impl::plain_access(key, info)) [[likely]]
    return m.load_raw_free_running(pfn, info, idx, order);
  return m.keyed_load(hpa, key, info, idx, order);
}

uint64_t HostMemory::load(Hpa hpa, KeyId key, std::memory_order order, bool& poisoned) const {
  Impl& m = *impl_;
  const unsigned idx = m.check_word(hpa, key, "load");
  if (sched_active()) [[unlikely]]
    return m.scheduled_load(hpa, key, idx, order, &poisoned);
  const uint64_t pfn = hpa.pfn().raw();
  const uint64_t info = m.info_word<FreeRunningWordRef>(pfn).load(std::memory_order_acquire);
  poisoned = info_poisoned(info) && info_key(info) == key;
  if (Impl::plain_access(key, info)) [[likely]]
    return m.load_raw_free_running(pfn, info, idx, order);
  return m.keyed_load(hpa, key, info, idx, order);
}

void HostMemory::store(Hpa hpa, KeyId key, uint64_t value, std::memory_order order) {
  Impl& m = *impl_;
  const unsigned idx = m.check_word(hpa, key, "store");
  const uint64_t pfn = hpa.pfn().raw();
  if (uint64_t* word = m.owned_word(pfn, key, idx)) [[likely]] {
    AtomicWordRef(*word).store(value, order);
    return;
  }
  const uint64_t info = m.note_write(pfn, hpa, key, /*whole_page=*/false);
  m.note_leak(hpa, key, info, key);
  m.store_raw(pfn, idx, value, order);
}

// The locked read-modify-writes below always write the line (x86 writes back even a failed
// CMPXCHG), so the write rules apply whatever the outcome. Through another key, or on a
// poisoned frame, they act on what that key reads and store the result as it is.

bool HostMemory::compare_exchange(Hpa hpa, KeyId key, uint64_t& expected, uint64_t desired,
                                  std::memory_order order) {
  Impl& m = *impl_;
  const unsigned idx = m.check_word(hpa, key, "compare_exchange");
  const uint64_t pfn = hpa.pfn().raw();
  if (!sched_active()) [[likely]] {
    // As load: free-running, the fast path's three words skip their no-op points.
    if (uint64_t* word = m.owned_word<FreeRunningWordRef>(pfn, key, idx)) [[likely]]
      return FreeRunningWordRef(*word).compare_exchange(expected, desired, order);
  } else if (uint64_t* word = m.owned_word(pfn, key, idx)) {
    return AtomicWordRef(*word).compare_exchange(expected, desired, order);
  }
  const uint64_t info = m.note_write(pfn, hpa, key, /*whole_page=*/false);
  m.note_read(hpa, key, info);
  AtomicWordRef w(m.install_chunk(pfn, idx)[idx % kChunkWords]);
  bool done;
  if (Impl::plain_access(key, info)) {
    done = w.compare_exchange(expected, desired, order);
  } else {
    uint64_t raw = w.load(AtomicWord::failure_order(order));
    for (;;) {
      const uint64_t seen = m.view(raw, hpa, key, info).value;
      if (seen != expected) {
        expected = seen;
        done = false;
        break;
      }
      if (w.compare_exchange(raw, desired, order)) {
        done = true;
        break;
      }
    }
  }
  if (done) m.note_leak(hpa, key, info, key);
  return done;
}

uint64_t HostMemory::exchange(Hpa hpa, KeyId key, uint64_t value, std::memory_order order) {
  Impl& m = *impl_;
  const unsigned idx = m.check_word(hpa, key, "exchange");
  const uint64_t pfn = hpa.pfn().raw();
  if (uint64_t* word = m.owned_word(pfn, key, idx)) [[likely]]
    return AtomicWordRef(*word).exchange(value, order);
  const uint64_t info = m.note_write(pfn, hpa, key, /*whole_page=*/false);
  m.note_read(hpa, key, info);
  m.note_leak(hpa, key, info, key);
  AtomicWordRef w(m.install_chunk(pfn, idx)[idx % kChunkWords]);
  if (Impl::plain_access(key, info)) return w.exchange(value, order);
  return m.view(w.exchange(value, order), hpa, key, info).value;
}

uint64_t HostMemory::fetch_or(Hpa hpa, KeyId key, uint64_t bits, std::memory_order order) {
  Impl& m = *impl_;
  const unsigned idx = m.check_word(hpa, key, "fetch_or");
  const uint64_t pfn = hpa.pfn().raw();
  if (uint64_t* word = m.owned_word(pfn, key, idx)) [[likely]]
    return AtomicWordRef(*word).fetch_or(bits, order);
  const uint64_t info = m.note_write(pfn, hpa, key, /*whole_page=*/false);
  m.note_read(hpa, key, info);
  m.note_leak(hpa, key, info, key);
  AtomicWordRef w(m.install_chunk(pfn, idx)[idx % kChunkWords]);
  if (Impl::plain_access(key, info)) return w.fetch_or(bits, order);
  uint64_t raw = w.load(AtomicWord::failure_order(order));
  for (;;) {
    const uint64_t seen = m.view(raw, hpa, key, info).value;
    if (w.compare_exchange(raw, seen | bits, order)) return seen;
  }
}

// --- Violations and accounting ---

std::vector<MemViolation> HostMemory::violations() const {
  Impl& m = *impl_;
  MutexLock l(m.log_mu);
  return m.log;
}

uint64_t HostMemory::violation_count() const {
  return impl_->violation_total.load(std::memory_order_relaxed);
}

uint64_t HostMemory::model_bytes() const {
  Impl& m = *impl_;
  uint64_t bytes = m.chunk_count.load(std::memory_order_relaxed) * kChunkWords * sizeof(uint64_t);
  bytes += m.meta.resident_bytes();
  {
    MutexLock l(m.alloc_mu);
    bytes += m.allocator.resident_bytes();
  }
  {
    MutexLock l(m.slot_mu);
    bytes += m.slots.resident_bytes();
  }
  return bytes;
}

}  // namespace tdxsim
