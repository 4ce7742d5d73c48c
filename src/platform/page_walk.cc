#include "platform/page_walk.h"

#include <array>
#include <span>

#include "base/bitfield.h"
#include "base/check.h"
#include "platform/ept_entry.h"
#include "platform/npt_entry.h"

namespace tdxsim {
namespace {

constexpr uint64_t kTableAddrMask = BitField<51, 12>::kMask;

// Why a walk ended without a translation.
enum class Stop : uint8_t { kNotPresent, kMalformed, kDenied, kOutOfRange };

// The AND and OR of every entry walked, the one that stopped the walk included: the
// effective permissions and EPT qualification bits 6:3 are functions of these two words.
struct Accum {
  uint64_t all = ~uint64_t{0};
  uint64_t any = 0;
  void add(uint64_t e) {
    all &= e;
    any |= e;
  }
};

// What the two formats disagree on. Everything else in this file is shared by both.
struct EptFormat {
  using Accessed = EptEntry::Accessed;
  using Dirty = EptEntry::Dirty;
  // The largest page: bit 7 makes a PDPTE or PDE a leaf.
  static constexpr Level kLargestPage = Level::k1G;
  // Reserved in a non-leaf above the largest page (PML5E, PML4E: 7:3, so bit 7 too) and in
  // one that could have been a leaf (PDPTE, PDE referencing a table: 6:3).
  static constexpr uint64_t kUpperTableReserved = bit_range(7, 3);
  static constexpr uint64_t kTableReserved = bit_range(6, 3);
  // A large leaf's address starts at its level's shift; the bits from here up to it are
  // reserved (2M: 20:12, 1G: 29:12).
  static constexpr unsigned kLargeLeafReservedLo = 12;

  static bool present(const WalkContext& c, uint64_t e) { return EptEntry{e}.is_present(c.mbec); }
  static bool page_size(uint64_t e) { return EptEntry{e}.is_page_size(); }
  static bool ad_enabled(const WalkContext& c) { return c.ad_enabled; }
  static uint64_t always_reserved(const WalkContext&) { return 0; }

  // The misconfigurations that are not reserved bits (SDM Vol. 3 §29.3.3.1).
  static bool malformed(const WalkContext& c, uint64_t e, bool leaf) {
    const EptEntry x{e};
    if (x.is_write() && !x.is_read()) return true;
    if (!c.execute_only && !x.is_read() && (x.is_exec() || (c.mbec && x.is_user_exec()))) {
      return true;
    }
    return leaf && !is_valid_ept_mem_type(x.mem_type_raw());
  }

  static Perms perms(const WalkContext& c, const Accum& a) {
    const EptEntry all{a.all};
    Perms p;
    p.read = all.is_read();
    p.write = all.is_write();
    p.exec = all.is_exec();
    p.user_exec = c.mbec ? all.is_user_exec() : p.exec;
    return p;
  }

  // SDM §29.3.3.2: with A/D flags on, the CPU's accesses to guest paging structures are
  // writes as far as EPT is concerned (it may have to set their A/D bits).
  static bool guest_table_write(const WalkContext& c, const AccessRequest& a) {
    return c.ad_enabled && a.gla_valid && !a.final_translation;
  }
  static AccessRequest effective(const WalkContext& c, const AccessRequest& a) {
    if (!guest_table_write(c, a)) return a;
    TDXSIM_CHECK(a.type != AccessType::kFetch, "a guest paging-structure access is never a fetch");
    AccessRequest w = a;
    w.type = AccessType::kWrite;
    return w;
  }

  // SDM Vol. 3 Table 28-7.
  static TranslationFault fault(Stop why, const WalkContext& c, Gpa gpa, const AccessRequest& a,
                                Level level, uint64_t entry, const Accum& acc) {
    if (why == Stop::kMalformed) return EptMisconfig{gpa, level};
    uint64_t q = 0;
    switch (a.type) {
      case AccessType::kRead:
        q = 1;
        break;
      case AccessType::kWrite:
        q = 2;
        break;
      case AccessType::kFetch:
        q = 4;
        break;
    }
    // "If such an access causes an EPT violation, the processor sets both bit 0 and bit 1."
    if (guest_table_write(c, a)) q |= 3;
    q = BitField<5, 3>::set(q, acc.all & bit_range(2, 0));
    if (c.mbec) q = Bit<6>::set(q, EptEntry{acc.all}.is_user_exec());
    q = Bit<7>::set(q, a.gla_valid);
    q = Bit<8>::set(q, a.gla_valid && a.final_translation);
    const bool suppress_ve = why == Stop::kOutOfRange || EptEntry{entry}.is_suppress_ve();
    return EptViolation{gpa, q, level, suppress_ve};
  }
};

struct NptFormat {
  using Accessed = NptEntry::Accessed;
  using Dirty = NptEntry::Dirty;
  static constexpr Level kLargestPage = Level::k1G;
  // PML5E/PML4E bits 8:7 are MBZ (APM Vol. 2 Figure 5-18; KVM's nonleaf_bit8_rsvd); a
  // PDPE/PDE referencing a table has no reserved low bits.
  static constexpr uint64_t kUpperTableReserved = bit_range(8, 7);
  static constexpr uint64_t kTableReserved = 0;
  // Bit 12 of a large leaf is PAT: 2M reserves 20:13, 1G 29:13.
  static constexpr unsigned kLargeLeafReservedLo = 13;

  static bool present(const WalkContext&, uint64_t e) { return NptEntry{e}.is_present(); }
  static bool page_size(uint64_t e) { return NptEntry{e}.is_page_size(); }
  static bool ad_enabled(const WalkContext&) { return true; }
  static uint64_t always_reserved(const WalkContext& c) {
    return c.nx_enabled ? 0 : NptEntry::NoExec::kMask;
  }
  static bool malformed(const WalkContext&, uint64_t, bool) { return false; }

  // Nested accesses are user accesses: U/S=0 anywhere denies everything.
  static Perms perms(const WalkContext& c, const Accum& a) {
    const NptEntry all{a.all};
    Perms p;
    p.read = all.is_present() && all.is_user();
    p.write = p.read && all.is_writable();
    p.exec = p.read && !(c.nx_enabled && NptEntry{a.any}.is_nx());
    p.user_exec = p.exec;
    return p;
  }

  static AccessRequest effective(const WalkContext&, const AccessRequest& a) { return a; }

  // AMD APM Vol. 2 §15.25.6: EXITINFO1 is a #PF error code plus bits 32/33.
  static TranslationFault fault(Stop why, const WalkContext& c, Gpa gpa, const AccessRequest& a,
                                Level level, uint64_t, const Accum&) {
    uint64_t ec = 0;
    ec = Bit<0>::set(ec, why == Stop::kMalformed || why == Stop::kDenied);
    ec = Bit<1>::set(ec, a.type == AccessType::kWrite);
    ec = Bit<2>::set(ec, 1);
    ec = Bit<3>::set(ec, why == Stop::kMalformed);
    ec = Bit<4>::set(ec, a.type == AccessType::kFetch && c.nx_enabled);
    ec = Bit<32>::set(ec, a.final_translation);
    ec = Bit<33>::set(ec, !a.final_translation);
    return NptFault{gpa, ec, level};
  }
};

template <typename F>
bool is_leaf_as(uint64_t e, Level level) {
  return level == Level::k4K || (level <= F::kLargestPage && F::page_size(e));
}

// Reserved bits of a present entry at `level` (a leaf or not).
template <typename F>
uint64_t reserved_mask(const WalkContext& c, const PhysAddrLayout& layout, Level level, bool leaf) {
  uint64_t m = F::always_reserved(c);
  if (layout.maxphyaddr < 52) m |= bit_range(51, layout.maxphyaddr);
  if (!leaf) {
    m |= level > F::kLargestPage ? F::kUpperTableReserved : F::kTableReserved;
  } else if (level != Level::k4K) {
    m |= bit_range(level_shift(level) - 1, F::kLargeLeafReservedLo);
  }
  return m;
}

// Sets A in every entry of `path` and D in its leaf for a write, each by a CAS from the
// value the walk read, so that a concurrent CAS of the same entry never loses the bits
// and the bits never land in an entry the walk did not use.
// `dirty_set`: whether this walk's CAS is the one that set the leaf's D.
// Returns: false if an entry changed under the walk (beyond A/D): the walk must restart.
template <typename F>
bool set_accessed_dirty(HostMemory& mem, KeyId key, std::span<WalkStep> path, bool write,
                        bool& dirty_set) {
  constexpr uint64_t kAd = F::Accessed::kMask | F::Dirty::kMask;
  dirty_set = false;
  for (size_t i = 0; i < path.size(); ++i) {
    WalkStep& s = path[i];
    const bool leaf = i + 1 == path.size();
    const uint64_t bits = F::Accessed::kMask | (leaf && write ? F::Dirty::kMask : 0);
    uint64_t cur = s.entry;
    while ((cur & bits) != bits) {
      if (mem.compare_exchange(s.entry_hpa, key, cur, cur | bits, std::memory_order_acq_rel)) {
        if (leaf && write && (cur & F::Dirty::kMask) == 0) dirty_set = true;
        cur |= bits;
        break;
      }
      // Another walker's A/D (or KVM aging A away) leaves the translation as read; any
      // other change means this walk used a stale entry.
      if ((cur & ~kAd) != (s.entry & ~kAd)) return false;
    }
    s.entry = cur;
  }
  return true;
}

template <typename F>
WalkResult walk_as(HostMemory& mem, const PhysAddrLayout& layout, const WalkContext& ctx, Gpa gpa,
                   const AccessRequest& access, WalkMode mode, const WalkStart* start) {
  const AccessRequest eff = F::effective(ctx, access);
  const auto fail = [&](Stop why, Level level, uint64_t entry, const Accum& acc) {
    return std::unexpected(F::fault(why, ctx, gpa, access, level, entry, acc));
  };
  if ((gpa.raw() >> ctx.gpa_width()) != 0) {
    return fail(Stop::kOutOfRange, ctx.root_level(), 0, Accum{0, 0});
  }
  for (;;) {
    std::array<WalkStep, 5> path;
    size_t n = 0;
    Accum acc;
    if (start != nullptr) acc = Accum{start->upper_all, start->upper_any};
    // The accumulation before the last entry read: above a 4K leaf, what its table's
    // paging-structure-cache entry keeps.
    Accum upper = acc;
    PageWalk pw = start != nullptr ? PageWalk(mem, layout, ctx, gpa, start->table, start->level)
                                   : PageWalk(mem, layout, ctx, gpa);
    for (const WalkStep& s : pw) {
      if (s.poisoned) return std::unexpected(MachineCheck{gpa, s.entry_hpa});
      path[n++] = s;
      upper = acc;
      acc.add(s.entry);
      if (!F::present(ctx, s.entry)) return fail(Stop::kNotPresent, s.level, s.entry, acc);
      const bool leaf = is_leaf_as<F>(s.entry, s.level);
      if ((s.entry & reserved_mask<F>(ctx, layout, s.level, leaf)) != 0 ||
          F::malformed(ctx, s.entry, leaf)) {
        return fail(Stop::kMalformed, s.level, s.entry, acc);
      }
    }
    TDXSIM_CHECK(n > 0 && is_leaf_as<F>(path[n - 1].entry, path[n - 1].level),
                 "walk of {} ended on a non-leaf (entry {:#x} at level {})", gpa,
                 n > 0 ? path[n - 1].entry : 0, n > 0 ? level_num(path[n - 1].level) : 0);
    const Perms perms = F::perms(ctx, acc);
    if (!perms.allows(eff)) return fail(Stop::kDenied, path[n - 1].level, path[n - 1].entry, acc);
    const bool write = eff.type == AccessType::kWrite;
    bool dirty_set = false;
    if (mode == WalkMode::kHardware && F::ad_enabled(ctx)) {
      // The log must have room before the flag is set (SDM §29.3.6): a full one exits first.
      if (ctx.pml_full && write && (path[n - 1].entry & F::Dirty::kMask) == 0) {
        return std::unexpected(PmlFull{gpa});
      }
      if (!set_accessed_dirty<F>(mem, ctx.table_key, std::span(path.data(), n), write, dirty_set)) {
        continue;
      }
    }
    const WalkStep& leaf = path[n - 1];
    const uint64_t addr = leaf.entry & bit_range(51, level_shift(leaf.level));
    Translation t;
    t.gpa = gpa.align_down(leaf.level);
    t.hpa = layout.strip_key(addr);
    t.key = layout.key_of(addr);
    t.level = leaf.level;
    t.perms = perms;
    t.leaf = leaf.entry;
    t.leaf_entry_hpa = leaf.entry_hpa;
    t.dirty_set = dirty_set;
    if (leaf.level == Level::k4K) {
      t.leaf_table = leaf.entry_hpa.align_down(Level::k4K);
      t.upper_all = upper.all;
      t.upper_any = upper.any;
    }
    return t;
  }
}

}  // namespace

PageWalk::PageWalk(const HostMemory& mem, const PhysAddrLayout& layout, const WalkContext& ctx,
                   Gpa gpa)
    : mem_(&mem), layout_(layout), ctx_(ctx), gpa_(gpa) {
  TDXSIM_CHECK(ctx.levels == 4 || ctx.levels == 5, "{}-level second-level paging", ctx.levels);
  const Hpa root = layout.strip_key(ctx.root.raw());
  TDXSIM_CHECK(root.is_aligned(Level::k4K), "bad walk root {}", root);
  read(root, ctx.root_level());
}

PageWalk::PageWalk(const HostMemory& mem, const PhysAddrLayout& layout, const WalkContext& ctx,
                   Gpa gpa, Hpa table, Level level)
    : mem_(&mem), layout_(layout), ctx_(ctx), gpa_(gpa) {
  TDXSIM_CHECK(level <= ctx.root_level(), "a walk from level {} of a {}-level table",
               level_num(level), ctx.levels);
  TDXSIM_CHECK(table.is_aligned(Level::k4K), "bad walk start {}", table);
  read(table, level);
}

bool PageWalk::is_present(const WalkContext& ctx, uint64_t entry) {
  return ctx.format == PagingFormat::kEpt ? EptFormat::present(ctx, entry)
                                          : NptFormat::present(ctx, entry);
}

bool PageWalk::is_leaf(const WalkContext& ctx, uint64_t entry, Level level) {
  return ctx.format == PagingFormat::kEpt ? is_leaf_as<EptFormat>(entry, level)
                                          : is_leaf_as<NptFormat>(entry, level);
}

bool PageWalk::is_terminal(const WalkContext& ctx, uint64_t entry, Level level) {
  return !is_present(ctx, entry) || is_leaf(ctx, entry, level);
}

void PageWalk::read(Hpa table, Level level) {
  step_.level = level;
  step_.entry_hpa = table + uint64_t{gpa_.index(level)} * sizeof(uint64_t);
  // No memory answers beyond the end of host memory: the read completes with all ones (a
  // master abort), which EPT finds malformed at every level (memory type 7).
  if (!mem_->contains(table)) {
    step_.entry = ~uint64_t{0};
    step_.poisoned = false;
    return;
  }
  step_.entry =
      mem_->load(step_.entry_hpa, ctx_.table_key, std::memory_order_acquire, step_.poisoned);
}

void PageWalk::advance() {
  if (done_) return;
  if (step_.poisoned || is_terminal(ctx_, step_.entry, step_.level)) {
    done_ = true;
    return;
  }
  // Tables are always read with ctx.table_key, whatever key bits the entry carries.
  read(layout_.strip_key(step_.entry & kTableAddrMask), level_down(step_.level));
}

WalkResult walk(HostMemory& mem, const PhysAddrLayout& layout, const WalkContext& ctx, Gpa gpa,
                const AccessRequest& access, WalkMode mode, const WalkStart* start) {
  return ctx.format == PagingFormat::kEpt
             ? walk_as<EptFormat>(mem, layout, ctx, gpa, access, mode, start)
             : walk_as<NptFormat>(mem, layout, ctx, gpa, access, mode, start);
}

}  // namespace tdxsim
