#include "platform/page_walk.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "platform/ept_entry.h"
#include "platform/eptp.h"
#include "platform/npt_entry.h"
#include "platform/vector_file_for_test.h"

namespace tdxsim {
namespace {

using testing::read_vectors;
using testing::report_checked;
using testing::Symbols;
using testing::Vector;

// Bit positions written out from the manuals (not taken from the headers under test).
Symbols ept_symbols() {
  return Symbols{
      {"r", 0x1},
      {"w", 0x2},
      {"x", 0x4},
      {"rw", 0x3},
      {"rx", 0x5},
      {"wx", 0x6},
      {"rwx", 0x7},
      {"uc", 0x00},
      {"wc", 0x08},
      {"wt", 0x20},
      {"wp", 0x28},
      {"wb", 0x30},
      {"mt2", 0x10},
      {"mt3", 0x18},
      {"mt7", 0x38},
      {"ipat", 0x40},
      {"ps", 0x80},
      {"a", 0x100},
      {"d", 0x200},
      {"ad", 0x300},
      {"ux", 0x400},
      {"sw11", 0x800},
      {"sve", uint64_t{1} << 63},
  };
}

Symbols npt_symbols() {
  return Symbols{
      {"p", 0x1},    {"rw", 0x2},  {"us", 0x4},    {"pwt", 0x8},
      {"pcd", 0x10}, {"a", 0x20},  {"d", 0x40},    {"ad", 0x60},
      {"ps", 0x80},  {"g", 0x100}, {"avl", 0xE00}, {"nx", uint64_t{1} << 63},
      {"prw", 0x3},  {"pu", 0x5},  {"prwu", 0x7},
  };
}

std::string perms_string(const Perms& p) {
  return fmt::format("{}{}{}{}", p.read ? 'r' : '-', p.write ? 'w' : '-', p.exec ? 'x' : '-',
                     p.user_exec ? 'u' : '-');
}

std::string describe(const WalkResult& r) {
  if (r) {
    return fmt::format("translation level {} hpa {:#x} key {} perms {}", level_num(r->level),
                       r->hpa.raw(), r->key.raw(), perms_string(r->perms));
  }
  const TranslationFault& f = r.error();
  if (const auto* v = std::get_if<EptViolation>(&f)) {
    return fmt::format("EPT violation qual {:#x} level {} sve {}", v->qualification,
                       level_num(v->level), v->suppress_ve);
  }
  if (const auto* m = std::get_if<EptMisconfig>(&f)) {
    return fmt::format("EPT misconfig level {}", level_num(m->level));
  }
  const auto& n = std::get<NptFault>(f);
  return fmt::format("NPF ec {:#x} level {}", n.error_code, level_num(n.level));
}

struct Written {
  unsigned level;
  Hpa slot;
  uint64_t value;
};

// Builds the tables a vector describes, walks, and checks the result and every entry.
void check_walk_vector(const Vector& v, PagingFormat format) {
  const Symbols sym = format == PagingFormat::kEpt ? ept_symbols() : npt_symbols();
  PhysAddrLayout layout;
  layout.maxphyaddr = static_cast<unsigned>(v.num_or("maxpa", 52));
  layout.keyid_bits = static_cast<unsigned>(v.num_or("keybits", 6));
  HostMemoryConfig cfg;
  cfg.bytes = 64 * kPageSize;
  cfg.reuse = ReusePolicy::kLowestFirst;
  cfg.layout = layout;
  HostMemory mem(cfg);
  const KeyId tkey{static_cast<uint16_t>(v.num_or("tkey", 0))};
  const auto new_table = [&] {
    const std::optional<Pfn> pfn = mem.alloc_frame();
    EXPECT_TRUE(pfn.has_value());
    if (!tkey.is_host()) {
      mem.set_key(*pfn, tkey);
      mem.fill(*pfn, tkey, 0);
    }
    return pfn->hpa();
  };
  // Frame 0 stays an empty table: where a walker would land that wrongly followed an
  // entry with address 0 (the last entry of many vectors is a malformed non-leaf).
  new_table();

  WalkContext ctx;
  ctx.format = format;
  ctx.levels = static_cast<unsigned>(v.num_or("levels", 4));
  ctx.root = new_table();
  ctx.ad_enabled = !v.flag("noad");
  ctx.table_key = tkey;
  ctx.mbec = v.flag("mbec");
  ctx.execute_only = !v.flag("noxo");
  ctx.nx_enabled = !v.flag("nonx");
  const Gpa gpa{v.num("gpa")};

  std::vector<Written> written;
  Hpa table = ctx.root;
  for (unsigned l = ctx.levels; l >= 1 && v.has(fmt::format("e{}", l)); --l) {
    uint64_t value = v.num(fmt::format("e{}", l), sym);
    const Hpa slot = table + uint64_t{gpa.index(level_from(l))} * 8;
    if (l > 1 && v.has(fmt::format("e{}", l - 1))) {
      table = new_table();
      value |= table.raw();
    }
    mem.store(slot, tkey, value, std::memory_order_release);
    written.push_back({l, slot, value});
  }
  ASSERT_FALSE(written.empty()) << "no entries";

  // The raw iterator yields what was written, root first, with nothing checked.
  {
    size_t i = 0;
    for (const WalkStep& s : PageWalk(mem, layout, ctx, gpa)) {
      if (i == written.size()) break;  // a malformed last entry may be followed further
      EXPECT_EQ(level_num(s.level), written[i].level);
      EXPECT_EQ(s.entry_hpa, written[i].slot);
      EXPECT_EQ(s.entry, written[i].value);
      ++i;
    }
    EXPECT_EQ(i, written.size()) << "the iterator stopped early";
  }

  AccessRequest access;
  const std::string acc = v.has("acc") ? v.str("acc") : "r";
  access.type = acc == "w"   ? AccessType::kWrite
                : acc == "x" ? AccessType::kFetch
                             : AccessType::kRead;
  EXPECT_TRUE(acc == "r" || acc == "w" || acc == "x") << "acc=" << acc;
  access.user_mode = v.flag("user");
  access.gla_valid = !v.flag("nogla");
  access.final_translation = !v.flag("nonfinal");
  const WalkMode mode = v.flag("probe") ? WalkMode::kProbe : WalkMode::kHardware;

  const WalkResult r = walk(mem, layout, ctx, gpa, access, mode);
  const std::string expect = v.str("expect");
  const Level level = level_from(static_cast<unsigned>(v.num("level")));
  if (expect == "ok") {
    ASSERT_TRUE(r.has_value()) << describe(r);
    EXPECT_EQ(r->level, level);
    EXPECT_EQ(r->hpa, Hpa{v.num("hpa")});
    EXPECT_EQ(r->gpa, Gpa{v.num("gbase")});
    EXPECT_EQ(r->key, KeyId{static_cast<uint16_t>(v.num_or("key", 0))});
    EXPECT_EQ(perms_string(r->perms), v.str("perms"));
    EXPECT_EQ(r->hpa_of(gpa), Hpa{v.num("hpa") + (gpa.raw() - v.num("gbase"))});
    const Written& leaf = written.back();
    EXPECT_EQ(r->leaf_entry_hpa, leaf.slot);
    EXPECT_EQ(r->leaf, leaf.value | v.num_or(fmt::format("set{}", leaf.level), 0, sym));
  } else if (expect == "violation") {
    ASSERT_TRUE(!r && std::holds_alternative<EptViolation>(r.error())) << describe(r);
    const auto& f = std::get<EptViolation>(r.error());
    EXPECT_EQ(f.gpa, gpa);
    EXPECT_EQ(f.qualification, v.num("qual")) << fmt::format("{:#x}", f.qualification);
    EXPECT_EQ(f.level, level);
    EXPECT_EQ(f.suppress_ve, v.num_or("sve", 0) != 0);
  } else if (expect == "misconfig") {
    ASSERT_TRUE(!r && std::holds_alternative<EptMisconfig>(r.error())) << describe(r);
    const auto& f = std::get<EptMisconfig>(r.error());
    EXPECT_EQ(f.gpa, gpa);
    EXPECT_EQ(f.level, level);
  } else if (expect == "npf") {
    ASSERT_TRUE(!r && std::holds_alternative<NptFault>(r.error())) << describe(r);
    const auto& f = std::get<NptFault>(r.error());
    EXPECT_EQ(f.gpa, gpa);
    EXPECT_EQ(f.error_code, v.num("ec")) << fmt::format("{:#x}", f.error_code);
    EXPECT_EQ(f.level, level);
  } else {
    ADD_FAILURE() << "unknown expect=" << expect;
  }

  // Every entry holds exactly what was written plus the bits the walk was meant to set.
  for (const Written& w : written) {
    const uint64_t set = v.num_or(fmt::format("set{}", w.level), 0, sym);
    EXPECT_EQ(mem.load(w.slot, tkey, std::memory_order_acquire), w.value | set)
        << "level " << w.level;
  }
  EXPECT_EQ(mem.violation_count(), 0u);
  v.expect_all_used();
}

TEST(PageWalk, EptVectors) {
  const auto vectors = read_vectors("ept_walk_vectors.txt");
  for (const auto& v : vectors) {
    SCOPED_TRACE(v.where());
    check_walk_vector(v, PagingFormat::kEpt);
  }
  report_checked("ept_walk_vectors", vectors.size());
}

TEST(PageWalk, NptVectors) {
  const auto vectors = read_vectors("npt_walk_vectors.txt");
  for (const auto& v : vectors) {
    SCOPED_TRACE(v.where());
    check_walk_vector(v, PagingFormat::kNpt);
  }
  report_checked("npt_walk_vectors", vectors.size());
}

// A small EPT built with the entry builders, for the tests below.
struct SmallEpt {
  HostMemory mem{[] {
    HostMemoryConfig c;
    c.bytes = 32 * kPageSize;
    return c;
  }()};
  Hpa root, l3, l2, l1;
  static constexpr Gpa kGpa{0x0080'8060'4567};

  SmallEpt() {
    root = mem.alloc_frame()->hpa();
    l3 = mem.alloc_frame()->hpa();
    l2 = mem.alloc_frame()->hpa();
    l1 = mem.alloc_frame()->hpa();
    const EptEntry table = EptEntry{}.with_read(true).with_write(true).with_exec(true);
    put(root, Level::k512G, table.with_addr(l3.raw()).raw());
    put(l3, Level::k1G, table.with_addr(l2.raw()).raw());
    put(l2, Level::k2M, table.with_addr(l1.raw()).raw());
    put(l1, Level::k4K, table.with_mem_type(EptMemType::kWB).with_addr(0x1234'5000).raw());
  }
  Hpa slot(Hpa table, Level l) const { return table + uint64_t{kGpa.index(l)} * 8; }
  void put(Hpa table, Level l, uint64_t e) {
    mem.store(slot(table, l), kHostKey, e, std::memory_order_release);
  }
  uint64_t get(Hpa table, Level l) const {
    return mem.load(slot(table, l), kHostKey, std::memory_order_acquire);
  }
  WalkContext ctx() const { return Eptp::make(root, 4, true).walk_context(kHostKey); }
};

TEST(PageWalk, IteratorYieldsOneStepPerLevelAndWritesNothing) {
  SmallEpt t;
  std::vector<WalkStep> steps;
  for (const WalkStep& s : PageWalk(t.mem, t.mem.layout(), t.ctx(), SmallEpt::kGpa)) {
    steps.push_back(s);
  }
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_EQ(steps[0].level, Level::k512G);
  EXPECT_EQ(steps[0].entry_hpa, t.slot(t.root, Level::k512G));
  EXPECT_EQ(steps[3].level, Level::k4K);
  EXPECT_EQ(steps[3].entry_hpa, t.slot(t.l1, Level::k4K));
  EXPECT_EQ(EptEntry{steps[3].entry}.addr(), 0x1234'5000u);
  EXPECT_FALSE(EptEntry{t.get(t.root, Level::k512G)}.is_accessed());
}

TEST(PageWalk, IteratorStopsAtNotPresentAndAtLargeLeaves) {
  SmallEpt t;
  t.put(t.l3, Level::k1G, 0);
  size_t n = 0;
  for (const WalkStep& s : PageWalk(t.mem, t.mem.layout(), t.ctx(), SmallEpt::kGpa)) {
    ++n;
    EXPECT_FALSE(PageWalk::is_terminal(t.ctx(), s.entry, s.level) && n < 2);
  }
  EXPECT_EQ(n, 2u);
  t.put(t.l3, Level::k1G,
        EptEntry{}.with_read(true).with_page_size(true).with_addr(0x4000'0000).raw());
  n = 0;
  for (const WalkStep& s : PageWalk(t.mem, t.mem.layout(), t.ctx(), SmallEpt::kGpa)) {
    ++n;
    if (n == 2) {
      EXPECT_TRUE(PageWalk::is_leaf(t.ctx(), s.entry, s.level));
    }
  }
  EXPECT_EQ(n, 2u);
}

TEST(PageWalk, IteratorReadsATableOutsideHostMemoryAsAllOnes) {
  SmallEpt t;
  t.put(t.l3, Level::k1G, EptEntry{}.with_read(true).with_addr(uint64_t{1} << 40).raw());
  size_t n = 0;
  for (const WalkStep& s : PageWalk(t.mem, t.mem.layout(), t.ctx(), SmallEpt::kGpa)) {
    ++n;
    if (n == 3) {
      // No memory answers there: all ones, a large leaf (bit 7) that ends the walk.
      EXPECT_EQ(s.entry, ~uint64_t{0});
      EXPECT_FALSE(t.mem.contains(s.entry_hpa));
      EXPECT_TRUE(PageWalk::is_leaf(t.ctx(), s.entry, s.level));
    }
  }
  EXPECT_EQ(n, 3u);
}

TEST(PageWalk, HardwareWalkSetsAccessedOnceAndProbeMatchesIt) {
  SmallEpt t;
  AccessRequest write;
  write.type = AccessType::kWrite;
  const WalkResult probe =
      walk(t.mem, t.mem.layout(), t.ctx(), SmallEpt::kGpa, write, WalkMode::kProbe);
  ASSERT_TRUE(probe);
  const WalkResult hw =
      walk(t.mem, t.mem.layout(), t.ctx(), SmallEpt::kGpa, write, WalkMode::kHardware);
  ASSERT_TRUE(hw);
  EXPECT_EQ(probe->hpa, hw->hpa);
  EXPECT_FALSE(EptEntry{probe->leaf}.is_dirty());
  EXPECT_TRUE(EptEntry{hw->leaf}.is_dirty());
  EXPECT_EQ(hw->leaf, t.get(t.l1, Level::k4K));
  EXPECT_TRUE(EptEntry{t.get(t.l2, Level::k2M)}.is_accessed());
  // Everything already set: a second walk writes nothing and reports the same leaf.
  const WalkResult again =
      walk(t.mem, t.mem.layout(), t.ctx(), SmallEpt::kGpa, write, WalkMode::kHardware);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->leaf, hw->leaf);
}

}  // namespace
}  // namespace tdxsim
