#include "tdx_module/sept_entry.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "platform/host_memory.h"
#include "platform/page_walk.h"

namespace tdxsim {
namespace {

using enum SeptState;

constexpr PhysAddrLayout kLayout{};  // MAXPHYADDR 52, key ID in bits 51:46
constexpr KeyId kHkid{5};
constexpr uint64_t kKeyBits = uint64_t{5} << 46;

// Written out from the module's sept_state_lookup.h (bit 6 of the encoding = PS … bit 0 = D),
// not taken from the header under test.
struct EncodingRow {
  SeptState state;
  uint8_t public_value;
  uint8_t encoding;
};
constexpr EncodingRow kEncodings[] = {
    {kFree, 0x00, 0x0E},
    {kRemoved, 0x05, 0x0C},
    {kNlMapped, 0x84, 0x00},
    {kNlBlocked, 0x81, 0x08},
    {kMapped, 0x04, 0x60},
    {kBlocked, 0x01, 0x68},
    {kPending, 0x02, 0x70},
    {kPendingBlocked, 0x03, 0x78},
    {kBlockedW, 0x08, 0x64},
    {kExportedBlockedW, 0x09, 0x66},
    {kExportedDirty, 0x0B, 0x63},
    {kExportedDirtyBlockedW, 0x0C, 0x67},
    {kPendingBlockedW, 0x10, 0x74},
    {kPendingExportedBlockedW, 0x11, 0x76},
    {kPendingExportedDirty, 0x13, 0x73},
    {kPendingExportedDirtyBlockedW, 0x14, 0x77},
};

// The 7-bit encoding spread over PS(7) IPAT(6) TDP(56) TDB(55) TDBW(54) TDEX(53) D(9).
constexpr uint64_t spread(uint8_t e) {
  constexpr unsigned kBitOf[7] = {9, 53, 54, 55, 56, 6, 7};
  uint64_t raw = 0;
  for (unsigned i = 0; i < 7; ++i) {
    if (e & (1u << i)) raw |= uint64_t{1} << kBitOf[i];
  }
  return raw;
}

TEST(SeptState, EveryEncodingRoundTrips) {
  int checked = 0;
  for (const EncodingRow& row : kEncodings) {
    SCOPED_TRACE(to_string(row.state));
    EXPECT_EQ(static_cast<uint8_t>(row.state), row.public_value);
    EXPECT_EQ(sept_state_encoding(row.state), row.encoding);
    EXPECT_EQ(sept_state_from_encoding(row.encoding), row.state);
    // Through a whole entry word, with bits outside the encoding set around it.
    const SeptEntry e{spread(row.encoding) | uint64_t{1} << 63 | 0x0000'1234'5678'9000ull};
    EXPECT_EQ(e.state_encoding(), row.encoding);
    EXPECT_EQ(e.state(), row.state);
    EXPECT_EQ(e.is_nl_mapped(), row.state == kNlMapped);  // the walk's test, without decoding
    ++checked;
  }
  // The other 112 encodings name nothing.
  int unnamed = 0;
  for (unsigned enc = 0; enc < 128; ++enc) {
    if (!sept_state_from_encoding(static_cast<uint8_t>(enc))) ++unnamed;
  }
  EXPECT_EQ(unnamed, 128 - 16);
  for (SeptState l2 : {kL2Free, kL2Blocked, kL2Mapped, kL2NlBlocked, kL2NlMapped}) {
    EXPECT_FALSE(sept_state_encoding(l2).has_value()) << to_string(l2);
  }
  fmt::print("[ info ] {} encodings round-tripped, {} unnamed\n", checked, unnamed);
}

// Entries built for a 4K page at 0x1234000 and a table at 0x5000, HKID 5, written out bit by
// bit: SVE 63 | TDP 56 | TDB 55 | TDBW 54 | TDEX 53 | key 51:46 | address | PS | IPAT | MT | RWX.
struct BuiltRow {
  const char* name;
  SeptEntry entry;
  uint64_t raw;
  SeptState state;
  bool leaf;
};

std::vector<BuiltRow> built_rows() {
  const Hpa page{0x123'4000};
  const Hpa table{0x5000};
  const SeptEntry mapped = SeptEntry::mapped(page, kHkid, Level::k4K, kLayout);
  const SeptEntry pending = SeptEntry::pending(page, kHkid, Level::k4K, kLayout);
  const SeptEntry nl = SeptEntry::non_leaf(table, kHkid, kLayout);
  return {
      {"free", SeptEntry::free(), 0x80E0'0000'0000'0000, kFree, false},
      {"default", SeptEntry{}, 0x80E0'0000'0000'0000, kFree, false},
      {"mapped", mapped, 0x8001'4000'0123'40F7, kMapped, true},
      {"pending", pending, 0x8101'4000'0123'40F0, kPending, true},
      {"mapped->blocked", mapped.with_state(kBlocked), 0x8081'4000'0123'40F0, kBlocked, true},
      {"pending->pending_blocked", pending.with_state(kPendingBlocked), 0x8181'4000'0123'40F0,
       kPendingBlocked, true},
      {"blocked->mapped", mapped.with_state(kBlocked).with_state(kMapped), 0x8001'4000'0123'40F7,
       kMapped, true},
      {"pending_blocked->pending", pending.with_state(kPendingBlocked).with_state(kPending),
       0x8101'4000'0123'40F0, kPending, true},
      {"pending->mapped (accept)", pending.with_state(kMapped), 0x8001'4000'0123'40F7, kMapped,
       true},
      {"non_leaf", nl, 0x8001'4000'0000'5007, kNlMapped, false},
      {"nl->nl_blocked", nl.with_state(kNlBlocked), 0x8081'4000'0000'5000, kNlBlocked, false},
      {"nl_blocked->nl", nl.with_state(kNlBlocked).with_state(kNlMapped), 0x8001'4000'0000'5007,
       kNlMapped, false},
      {"mapped->free", mapped.with_state(kFree), 0x80E0'0000'0000'0000, kFree, false},
      {"mapped->removed", mapped.with_state(kRemoved), 0x80C0'0000'0000'0000, kRemoved, false},
      {"2M mapped", SeptEntry::mapped(Hpa{0x140'0000}, kHkid, Level::k2M, kLayout),
       0x8001'4000'0140'00F7, kMapped, true},
      {"1G pending", SeptEntry::pending(Hpa{0x4000'0000}, kHkid, Level::k1G, kLayout),
       0x8101'4000'4000'00F0, kPending, true},
  };
}

TEST(SeptEntry, BuildersAndTransitionsWriteTheModulesBits) {
  int checked = 0;
  for (const BuiltRow& row : built_rows()) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(row.entry.raw(), row.raw) << fmt::format("{:#x} vs {:#x}", row.entry.raw(), row.raw);
    EXPECT_EQ(row.entry.state(), row.state);
    EXPECT_EQ(row.entry.is_leaf(), row.leaf);
    EXPECT_TRUE(row.entry.ept().is_suppress_ve());  // every entry the module writes
    const bool present = row.state == kMapped || row.state == kNlMapped;
    EXPECT_EQ(row.entry.ept().is_present(false), present);
    if (row.state != kFree && row.state != kRemoved) {
      EXPECT_EQ(row.entry.hkid(kLayout), kHkid);
    }
    EXPECT_EQ(row.entry.hpa(SeptEntry::hpa_mask(kLayout)), row.entry.hpa(kLayout));
    ++checked;
  }
  const Hpa page{0x123'4000};
  EXPECT_EQ(SeptEntry::mapped(page, kHkid, Level::k4K, kLayout).with_state(kBlocked).hpa(kLayout),
            page);  // blocking keeps the HPA
  fmt::print("[ info ] {} built entries checked\n", checked);
}

TEST(SeptEntry, TransitionsKeepTheEntryLockBits) {
  const SeptEntry locked = SeptEntry::mapped(Hpa{0x7000}, kHkid, Level::k4K, kLayout)
                               .with_lock(true)
                               .with_host_priority(true);
  EXPECT_EQ(locked.raw() & ((uint64_t{1} << 11) | (uint64_t{1} << 52)),
            (uint64_t{1} << 11) | (uint64_t{1} << 52));
  const SeptEntry blocked = locked.with_state(kBlocked);
  EXPECT_TRUE(blocked.is_locked());
  EXPECT_TRUE(blocked.host_priority());
  EXPECT_EQ(blocked.state(), kBlocked);  // the lock bits are outside the encoding
  EXPECT_FALSE(blocked.with_lock(false).is_locked());
  // The hardware ignores both bits: the locked MAPPED entry is the same EPT leaf.
  EXPECT_EQ(locked.raw() & ~EptEntry::ignored_bits_mask(),
            SeptEntry::mapped(Hpa{0x7000}, kHkid, Level::k4K, kLayout).raw() &
                ~EptEntry::ignored_bits_mask());
}

// --- What the hardware walker sees --------------------------------------------------------

// A one-path S-EPT in host memory, keyed with the TD's HKID as the module keeps it: every
// table page filled with FREE entries, NL_MAPPED entries down to `leaf_level`.
class SeptWalkTest : public testing::Test {
 protected:
  SeptWalkTest() : mem_(HostMemoryConfig{.bytes = uint64_t{64} << 20}) {}

  Hpa new_table() {
    const Pfn pfn = *mem_.alloc_frame();
    mem_.set_key(pfn, kHkid);
    mem_.fill(pfn, kHkid, SeptEntry::free().raw());
    return pfn.hpa();
  }

  // Builds the path for kGpa and returns where the entry at `leaf_level` lives.
  Hpa build(Level leaf_level) {
    root_ = new_table();
    Hpa table = root_;
    for (Level l = Level::k512G; l > leaf_level; l = level_down(l)) {
      const Hpa child = new_table();
      store(table, l, SeptEntry::non_leaf(child, kHkid, kLayout));
      table = child;
    }
    return table + uint64_t{kGpa.index(leaf_level)} * 8;
  }
  void store(Hpa table, Level l, SeptEntry e) {
    mem_.store(table + uint64_t{kGpa.index(l)} * 8, kHkid, e.raw(), std::memory_order_release);
  }

  WalkResult walk_for(AccessType t) {
    WalkContext ctx;
    ctx.root = root_;
    ctx.levels = 4;
    ctx.ad_enabled = false;  // the S-EPT keeps its state in D
    ctx.table_key = kHkid;
    AccessRequest a;
    a.type = t;
    return walk(mem_, kLayout, ctx, kGpa, a, WalkMode::kHardware);
  }

  static constexpr Gpa kGpa{0x8'0000'0000 + 0x4020'3000};
  HostMemory mem_;
  Hpa root_;
};

// The entry for a page in leaf state `s`, as the module's transitions produce it.
SeptEntry leaf_in(SeptState s, Hpa hpa, Level level) {
  const SeptEntry mapped = SeptEntry::mapped(hpa, kHkid, level, kLayout);
  const SeptEntry pending = SeptEntry::pending(hpa, kHkid, level, kLayout);
  switch (s) {
    case kFree: return SeptEntry::free();
    case kPending: return pending;
    case kPendingBlocked: return pending.with_state(kPendingBlocked);
    case kBlocked: return mapped.with_state(kBlocked);
    case kRemoved: return mapped.with_state(kRemoved);
    default: return mapped;
  }
}

TEST_F(SeptWalkTest, OnlyMappedLeavesTranslateAndEveryOtherStateFaultsToTheModule) {
  struct Page {
    Level level;
    Hpa hpa;
  };
  const Page pages[] = {{Level::k4K, Hpa{0x123'4000}},
                        {Level::k2M, Hpa{0x140'0000}},
                        {Level::k1G, Hpa{0x4000'0000}}};
  const SeptState leaf_states[] = {kFree, kMapped, kBlocked, kPending, kPendingBlocked, kRemoved};
  int walks = 0;
  for (const Page& p : pages) {
    for (SeptState s : leaf_states) {
      SCOPED_TRACE(fmt::format("{} at {}", to_string(s), level_name(p.level)));
      const Hpa where = build(p.level);
      const SeptEntry entry = leaf_in(s, p.hpa, p.level);
      ASSERT_EQ(entry.state(), s);
      mem_.store(where, kHkid, entry.raw(), std::memory_order_release);
      for (AccessType t : {AccessType::kRead, AccessType::kWrite, AccessType::kFetch}) {
        const WalkResult r = walk_for(t);
        ++walks;
        if (s == kMapped) {
          ASSERT_TRUE(r.has_value());
          EXPECT_EQ(r->hpa, p.hpa);
          EXPECT_EQ(r->key, kHkid);  // the TD's key reaches memory
          EXPECT_EQ(r->level, p.level);
          EXPECT_EQ(r->perms, (Perms{true, true, true, true}));
          EXPECT_EQ(r->leaf, entry.raw());
          continue;
        }
        ASSERT_FALSE(r.has_value());
        const auto* v = std::get_if<EptViolation>(&r.error());
        ASSERT_NE(v, nullptr) << "not an EPT violation (a misconfiguration?)";
        EXPECT_TRUE(v->suppress_ve);
        EXPECT_EQ(v->level, p.level);
      }
      // With A/D off the walk never writes the entry (D is a state bit).
      EXPECT_EQ(mem_.load(where, kHkid, std::memory_order_acquire), entry.raw());
    }
  }
  fmt::print("[ info ] {} S-EPT walks\n", walks);
}

TEST_F(SeptWalkTest, BlockedTablesFaultAtTheirLevel) {
  int walks = 0;
  for (Level l : {Level::k512G, Level::k1G, Level::k2M}) {
    SCOPED_TRACE(level_name(l));
    const Hpa leaf = build(Level::k4K);
    mem_.store(leaf, kHkid, SeptEntry::mapped(Hpa{0x9000}, kHkid, Level::k4K, kLayout).raw(),
               std::memory_order_release);
    ASSERT_TRUE(walk_for(AccessType::kRead).has_value());
    // Block the table entry at level l on the path.
    Hpa table = root_;
    for (Level k = Level::k512G; k > l; k = level_down(k)) {
      const SeptEntry e{mem_.load(table + uint64_t{kGpa.index(k)} * 8, kHkid,
                                  std::memory_order_acquire)};
      table = e.hpa(kLayout);
    }
    const Hpa at = table + uint64_t{kGpa.index(l)} * 8;
    const SeptEntry nl{mem_.load(at, kHkid, std::memory_order_acquire)};
    ASSERT_EQ(nl.state(), kNlMapped);
    mem_.store(at, kHkid, nl.with_state(kNlBlocked).raw(), std::memory_order_release);
    const WalkResult r = walk_for(AccessType::kRead);
    ++walks;
    ASSERT_FALSE(r.has_value());
    const auto* v = std::get_if<EptViolation>(&r.error());
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->level, l);
    EXPECT_TRUE(v->suppress_ve);
    // A FREE table entry: the same, one level down the path is never read.
    mem_.store(at, kHkid, SeptEntry::free().raw(), std::memory_order_release);
    const WalkResult f = walk_for(AccessType::kWrite);
    ++walks;
    ASSERT_FALSE(f.has_value());
    ASSERT_NE(std::get_if<EptViolation>(&f.error()), nullptr);
    EXPECT_EQ(std::get<EptViolation>(f.error()).level, l);
    EXPECT_TRUE(std::get<EptViolation>(f.error()).suppress_ve);
  }
  fmt::print("[ info ] {} walks through blocked or free tables\n", walks);
}

// --- The architectural view ----------------------------------------------------------------

TEST(SeptEntry, ArchitecturalViewPerState) {
  const Hpa page{0x123'4000};
  const SeptEntry mapped = SeptEntry::mapped(page, kHkid, Level::k4K, kLayout);
  const SeptEntry pending = SeptEntry::pending(page, kHkid, Level::k4K, kLayout);
  const SeptEntry nl = SeptEntry::non_leaf(Hpa{0x5000}, kHkid, kLayout);
  struct Row {
    const char* name;
    SeptEntry entry;
    uint64_t rcx;
  };
  // Leaf: RWX | MT | IPAT | PS | address without the HKID | SVE. Non-leaf: RWX | PS only.
  const Row rows[] = {
      {"FREE", SeptEntry::free(), 0x8000'0000'0000'0000},
      {"MAPPED", mapped, 0x8000'0000'0123'40F7},
      {"MAPPED, entry locked", mapped.with_lock(true).with_host_priority(true),
       0x8000'0000'0123'40F7},
      {"BLOCKED", mapped.with_state(kBlocked), 0x8000'0000'0123'40F0},
      {"PENDING", pending, 0x8000'0000'0123'40F0},
      {"PENDING_BLOCKED", pending.with_state(kPendingBlocked), 0x8000'0000'0123'40F0},
      {"MAPPED 2M", SeptEntry::mapped(Hpa{0x140'0000}, kHkid, Level::k2M, kLayout),
       0x8000'0000'0140'00F7},
      {"NL_MAPPED", nl, 0x7},
      {"NL_BLOCKED", nl.with_state(kNlBlocked), 0x0},
      {"REMOVED", mapped.with_state(kRemoved), 0x0},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(row.entry.arch_view(kLayout), row.rcx)
        << row.name << fmt::format(": {:#x}", row.entry.arch_view(kLayout));
  }
  EXPECT_EQ(kKeyBits & rows[1].rcx, 0u);
  fmt::print("[ info ] {} architectural views\n", std::size(rows));
}

TEST(SeptEntry, DetailWordIsLevelStateAndVm) {
  const SeptEntry mapped = SeptEntry::mapped(Hpa{0x200000}, kHkid, Level::k2M, kLayout);
  EXPECT_EQ(mapped.arch_detail(Level::k2M), 0x0401u);
  EXPECT_EQ(SeptEntry::free().arch_detail(Level::k4K), 0x0u);
  EXPECT_EQ(SeptEntry::non_leaf(Hpa{0x5000}, kHkid, kLayout).arch_detail(Level::k512G), 0x8403u);
  EXPECT_EQ(SeptEntry::non_leaf(Hpa{0x5000}, kHkid, kLayout)
                .with_state(kNlBlocked)
                .arch_detail(Level::k1G),
            0x8102u);
  EXPECT_EQ(mapped.with_state(kBlocked).arch_detail(Level::k2M, 2), 0x2'0101u);
  EXPECT_EQ(sept_level_abi(Level::k4K), 0);
  EXPECT_EQ(sept_level_abi(Level::k256T), 4);
}

TEST(SeptEntryDeathTest, SimulatorBugsAbort) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // 0x61: MAPPED with D set, an encoding the module never writes.
  const SeptEntry odd{spread(0x61) | uint64_t{1} << 63};
  EXPECT_DEATH((void)odd.state(), "never writes");
  const SeptEntry mapped = SeptEntry::mapped(Hpa{0x7000}, kHkid, Level::k4K, kLayout);
  EXPECT_DEATH((void)mapped.with_state(kNlBlocked), "cannot become");
  EXPECT_DEATH((void)SeptEntry::free().with_state(kMapped), "cannot become");
  EXPECT_DEATH((void)mapped.with_state(kBlockedW), "not modelled");
  EXPECT_DEATH((void)SeptEntry::mapped(Hpa{0x1000}, kHkid, Level::k2M, kLayout), "leaf");
  EXPECT_DEATH((void)mapped.arch_detail(Level::k4K, 4), "VM index");
}

}  // namespace
}  // namespace tdxsim
