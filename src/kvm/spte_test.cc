#include "kvm/spte.h"

#include <gtest/gtest.h>

#include <variant>

#include "kvm/page_fault.h"
#include "kvm/tdp_tables_for_test.h"
#include "platform/host_memory.h"
#include "platform/page_walk.h"

namespace tdxsim {
namespace {

using testing::TestTdpTables;

constexpr Level kLeafLevels[] = {Level::k4K, Level::k2M, Level::k1G};

// Bit positions written out from upstream spte.h / the SDM, not taken from the header.
constexpr uint64_t kBit11 = 0x800;
constexpr uint64_t kBit63 = uint64_t{1} << 63;

TEST(Spte, ExactValues) {
  EXPECT_EQ(Spte::nonpresent().raw(), kBit63);
  EXPECT_EQ(Spte::frozen().raw(), kBit63 | 0x5a0);
  EXPECT_EQ(Spte::kEptMmioMask, kBit63 | 0x7);
  EXPECT_EQ(static_cast<uint64_t>(MmioValue::kEptMisconfig), 0x6u);
  EXPECT_EQ(static_cast<uint64_t>(MmioValue::kTdVe), 0u);
  EXPECT_EQ(Spte::make_leaf(SpteFormat::kEpt, Pfn{0x1234}, Level::k4K, {}).raw(), 0x8600'0000'0123'4B37ull);
  EXPECT_EQ(Spte::make_nonleaf(SpteFormat::kEpt, Hpa{0xABC'D000}).raw(), kBit63 | kBit11 | 0x100 | 0x7 | 0xABC'D000);
}

TEST(Spte, NonPresentAndFrozen) {
  for (Spte s : {Spte::nonpresent(), Spte::frozen()}) {
    EXPECT_FALSE(s.is_shadow_present());
    EXPECT_TRUE(s.is_suppress_ve(SpteFormat::kEpt));
    EXPECT_FALSE(s.ept().is_present(/*mbec=*/false));
    EXPECT_FALSE(s.is_mmio(MmioValue::kEptMisconfig));
    EXPECT_FALSE(s.is_mmio(MmioValue::kTdVe));
  }
  EXPECT_TRUE(Spte::frozen().is_frozen());
  EXPECT_FALSE(Spte::nonpresent().is_frozen());
  // Only the exact value is frozen: a leaf that happens to share its low bits is not.
  EXPECT_FALSE(Spte{Spte::kFrozenValue | kBit11}.is_frozen());
}

TEST(Spte, LeafAtEveryLevel) {
  for (Level level : kLeafLevels) {
    const Pfn pfn{0x4000'0000};  // 1G-aligned
    const Spte s = Spte::make_leaf(SpteFormat::kEpt, pfn, level, {});
    EXPECT_TRUE(s.is_shadow_present());
    EXPECT_TRUE(s.is_last(level));
    EXPECT_EQ(s.is_large(), level != Level::k4K);
    EXPECT_EQ(s.pfn(), pfn);
    EXPECT_TRUE(s.is_suppress_ve(SpteFormat::kEpt));
    EXPECT_TRUE(s.ept().is_present(false));
    EXPECT_EQ(s.ept().mem_type(), EptMemType::kWB);
    EXPECT_FALSE(s.is_mmio(MmioValue::kEptMisconfig));
    EXPECT_FALSE(s.is_mmio(MmioValue::kTdVe));
    EXPECT_TRUE(s.writable_bits_consistent(SpteFormat::kEpt));
  }
}

TEST(Spte, NonLeafIsNeverLastAboveFourK) {
  const Spte s = Spte::make_nonleaf(SpteFormat::kEpt, Hpa{0x7000});
  EXPECT_TRUE(s.is_shadow_present());
  EXPECT_EQ(s.child_table(), Hpa{0x7000});
  EXPECT_EQ(s.pfn(), Pfn{7});
  for (Level l : {Level::k2M, Level::k1G, Level::k512G, Level::k256T}) EXPECT_FALSE(s.is_last(l));
  // At 4K every entry is last: there is nothing below it.
  EXPECT_TRUE(s.is_last(Level::k4K));
}

TEST(Spte, PfnRoundTripsAcrossTheAddressField) {
  for (uint64_t raw : {uint64_t{0}, uint64_t{1}, uint64_t{0xF'FFFF'FFFF}, uint64_t{0x12'3456'789A},
                       Spte::Addr::kMax}) {
    EXPECT_EQ(Spte::make_leaf(SpteFormat::kEpt, Pfn{raw}, Level::k4K, {}).pfn(), Pfn{raw});
  }
  EXPECT_EQ(Spte::make_leaf(SpteFormat::kEpt, Pfn{0x3FE00}, Level::k2M, {}).pfn(), Pfn{0x3FE00});
}

TEST(Spte, WritableBits) {
  const Spte rw = Spte::make_leaf(SpteFormat::kEpt, Pfn{1}, Level::k4K, {});
  EXPECT_TRUE(rw.is_writable() && rw.is_mmu_writable(SpteFormat::kEpt) && rw.is_host_writable(SpteFormat::kEpt));
  EXPECT_TRUE(rw.is_dirty(SpteFormat::kEpt));

  // The guest may not write, the host would let it: host-writable only.
  const Spte ro = Spte::make_leaf(SpteFormat::kEpt, Pfn{1}, Level::k4K, {.write = false});
  EXPECT_FALSE(ro.is_writable() || ro.is_mmu_writable(SpteFormat::kEpt) || ro.is_dirty(SpteFormat::kEpt));
  EXPECT_TRUE(ro.is_host_writable(SpteFormat::kEpt));
  EXPECT_TRUE(ro.writable_bits_consistent(SpteFormat::kEpt));

  // A read-only memslot: the host's refusal wins over the access asked for.
  const Spte host_ro = Spte::make_leaf(SpteFormat::kEpt, Pfn{1}, Level::k4K, {.host_writable = false});
  EXPECT_FALSE(host_ro.is_writable() || host_ro.is_mmu_writable(SpteFormat::kEpt) || host_ro.is_host_writable(SpteFormat::kEpt));
  EXPECT_TRUE(host_ro.writable_bits_consistent(SpteFormat::kEpt));

  EXPECT_FALSE(Spte{rw.raw() & ~Spte::EptMmuWritable::kMask}.writable_bits_consistent(SpteFormat::kEpt));
  EXPECT_FALSE(Spte{rw.raw() & ~Spte::EptHostWritable::kMask}.writable_bits_consistent(SpteFormat::kEpt));
}

TEST(Spte, AccessedTracking) {
  const Spte touched = Spte::make_leaf(SpteFormat::kEpt, Pfn{1}, Level::k4K, {});
  EXPECT_TRUE(touched.is_accessed(SpteFormat::kEpt));
  const Spte prefetched = Spte::make_leaf(SpteFormat::kEpt, Pfn{1}, Level::k4K, {.prefetch = true});
  EXPECT_FALSE(prefetched.is_accessed(SpteFormat::kEpt));
  EXPECT_TRUE(prefetched.is_dirty(SpteFormat::kEpt));  // writable: dirty whether or not prefetched
  const Spte aged = touched.with_accessed(SpteFormat::kEpt, false);
  EXPECT_EQ(aged.raw(), touched.raw() & ~uint64_t{0x100});
  EXPECT_TRUE(aged.ept().is_present(false));  // aging with A/D on keeps the mapping
  EXPECT_TRUE(Spte::make_nonleaf(SpteFormat::kEpt, Hpa{0x1000}).is_accessed(SpteFormat::kEpt));
}

TEST(Spte, MemoryTypeAndPermissions) {
  const Spte s = Spte::make_leaf(SpteFormat::kEpt, 
      Pfn{2}, Level::k4K,
      {.write = false, .exec = false, .mem_type = EptMemType::kUC, .ignore_pat = true});
  EXPECT_EQ(s.ept().mem_type(), EptMemType::kUC);
  EXPECT_TRUE(s.ept().is_ignore_pat());
  EXPECT_TRUE(s.ept().is_read());
  EXPECT_FALSE(s.ept().is_write() || s.is_executable(SpteFormat::kEpt));
  const Spte xo = Spte::make_leaf(SpteFormat::kEpt, Pfn{2}, Level::k4K, {.read = false, .write = false});
  EXPECT_TRUE(xo.is_executable(SpteFormat::kEpt));
  EXPECT_FALSE(xo.ept().is_read());
}

TEST(Spte, MmioRoundTrips) {
  for (uint64_t gen : {uint64_t{0}, uint64_t{1}, uint64_t{0xFF}, uint64_t{0x100}, uint64_t{0x5A5A5},
                       Spte::kMmioGenMax}) {
    for (MmioValue v : {MmioValue::kEptMisconfig, MmioValue::kTdVe}) {
      const Spte s = Spte::make_mmio(Gfn{0xFEE00}, gen, v);
      EXPECT_TRUE(s.is_mmio(v));
      EXPECT_FALSE(s.is_shadow_present());
      EXPECT_EQ(s.mmio_gfn(MmioSpteMasks::ept(v)), Gfn{0xFEE00});
      EXPECT_EQ(s.mmio_generation(), gen);
    }
  }
  const Spte ept = Spte::make_mmio(Gfn{5}, 3, MmioValue::kEptMisconfig);
  const Spte td = Spte::make_mmio(Gfn{5}, 3, MmioValue::kTdVe);
  EXPECT_FALSE(ept.is_mmio(MmioValue::kTdVe));
  EXPECT_FALSE(td.is_mmio(MmioValue::kEptMisconfig));
  EXPECT_FALSE(td.is_suppress_ve(SpteFormat::kEpt));  // the point of the TD value: the guest gets a #VE
}

// With the TD's MMIO value 0, any word with RWX = 0 and SVE clear is MMIO — a zeroed entry
// included. That is why KVM's non-present value sets SVE.
TEST(Spte, TdMmioValueMatchesAZeroWordButNotTheNonPresentValue) {
  EXPECT_TRUE(Spte{0}.is_mmio(MmioValue::kTdVe));
  EXPECT_FALSE(Spte::nonpresent().is_mmio(MmioValue::kTdVe));
}

TEST(SpteDeathTest, BuildersRefuseWhatKvmNeverBuilds) {
  EXPECT_DEATH(Spte::make_leaf(SpteFormat::kEpt, Pfn{0x201}, Level::k2M, {}), "misaligned");
  EXPECT_DEATH(Spte::make_leaf(SpteFormat::kEpt, Pfn{0}, Level::k512G, {}), "a 512G leaf");
  EXPECT_DEATH(Spte::make_leaf(SpteFormat::kEpt, Pfn{1}, Level::k4K, {.read = false}), "write-only");
  EXPECT_DEATH(Spte::make_nonleaf(SpteFormat::kEpt, Hpa{0x1008}), "not page-aligned");
  EXPECT_DEATH(Spte::make_mmio(Gfn{1}, Spte::kMmioGenMax + 1, MmioValue::kTdVe), "generation");
}

// --- The hardware walker reads what KVM builds ---------------------------------------------

class SpteWalkTest : public ::testing::TestWithParam<unsigned> {
 protected:
  SpteWalkTest()
      : mem_(HostMemoryConfig{.bytes = uint64_t{64} << 20}),
        tables_(mem_, level_from(GetParam())) {}

  WalkContext ctx(bool mbec = false) const {
    WalkContext c;
    c.format = PagingFormat::kEpt;
    c.root = tables_.root().spt();
    c.levels = GetParam();
    c.ad_enabled = true;  // as KVM runs EPT, and as TDX requires
    c.table_key = kHostKey;
    c.mbec = mbec;
    return c;
  }
  WalkResult walk_at(Gfn gfn, AccessType type = AccessType::kRead,
                     WalkMode mode = WalkMode::kProbe) {
    AccessRequest a;
    a.type = type;
    return walk(mem_, mem_.layout(), ctx(), gfn.gpa(), a, mode);
  }

  HostMemory mem_;
  TestTdpTables tables_;
};

TEST_P(SpteWalkTest, LeavesTranslateWithTheirPermissionsAndPfn) {
  struct Case {
    Gfn gfn;
    Pfn pfn;
    Level level;
    SpteLeafAttrs attrs;
    Perms perms;
  };
  const Case cases[] = {
      {Gfn{0x12345}, Pfn{0x777}, Level::k4K, {}, {true, true, true, true}},
      {Gfn{0x400}, Pfn{0x1200}, Level::k2M, {.write = false}, {true, false, true, true}},
      {Gfn{0x80000},
       Pfn{0x40000},
       Level::k1G,
       {.write = false, .exec = false},
       {true, false, false, false}},
      {Gfn{0x12346},
       Pfn{0x778},
       Level::k4K,
       {.read = false, .write = false},
       {false, false, true, true}},
  };
  for (const Case& c : cases) tables_.map(c.gfn, c.pfn, c.level, c.attrs);
  for (const Case& c : cases) {
    const Gfn inside = c.gfn + (level_pages(c.level) - 1);
    const WalkResult r = walk_at(inside, c.perms.read ? AccessType::kRead : AccessType::kFetch);
    ASSERT_TRUE(r.has_value()) << fmt::format("{}", c.gfn);
    EXPECT_EQ(r->level, c.level);
    EXPECT_EQ(r->hpa, c.pfn.hpa());
    EXPECT_EQ(r->hpa_of(inside.gpa()), (c.pfn + (level_pages(c.level) - 1)).hpa());
    EXPECT_EQ(r->key, kHostKey);
    EXPECT_EQ(r->perms, c.perms) << fmt::format("{}", c.gfn);
    EXPECT_EQ(Spte{r->leaf}, tables_.get(c.gfn, c.level));
  }
}

TEST_P(SpteWalkTest, FrozenAndNonPresentEndTheWalkWithSuppressVe) {
  tables_.map(Gfn{0x12345}, Pfn{0x777}, Level::k4K);
  tables_.map(Gfn{0x200000}, Pfn{0x888}, Level::k4K);
  // A frozen leaf, a frozen non-leaf (its table is still linked below: hardware must not
  // follow it), and never-mapped space reading SHADOW_NONPRESENT_VALUE.
  tables_.set(Gfn{0x12345}, Level::k4K, Spte::frozen());
  tables_.set(Gfn{0x200000}, Level::k1G, Spte::frozen());
  struct Case {
    Gfn gfn;
    Level level;
  };
  for (const Case& c : {Case{Gfn{0x12345}, Level::k4K}, Case{Gfn{0x200000}, Level::k1G},
                        Case{Gfn{0x12344}, Level::k4K}, Case{Gfn{0x100000}, Level::k1G}}) {
    for (WalkMode mode : {WalkMode::kProbe, WalkMode::kHardware}) {
      const WalkResult r = walk_at(c.gfn, AccessType::kWrite, mode);
      ASSERT_FALSE(r.has_value());
      const auto* v = std::get_if<EptViolation>(&r.error());
      ASSERT_NE(v, nullptr) << fmt::format("{}", c.gfn);
      EXPECT_EQ(v->level, c.level) << fmt::format("{}", c.gfn);
      EXPECT_TRUE(v->suppress_ve) << fmt::format("{}", c.gfn);  // an exit to KVM, never a #VE
    }
  }
  // Hardware sets no A/D in an entry it found not present: FROZEN stays FROZEN.
  EXPECT_TRUE(tables_.get(Gfn{0x12345}, Level::k4K).is_frozen());
  EXPECT_TRUE(tables_.get(Gfn{0x200000}, Level::k1G).is_frozen());
}

TEST_P(SpteWalkTest, MmioSptes) {
  tables_.set(Gfn{0xFEE00}, Level::k4K, Spte::make_mmio(Gfn{0xFEE00}, 9, MmioValue::kEptMisconfig));
  tables_.set(Gfn{0xFEE01}, Level::k4K, Spte::make_mmio(Gfn{0xFEE01}, 9, MmioValue::kTdVe));
  const WalkResult ept = walk_at(Gfn{0xFEE00});
  ASSERT_FALSE(ept.has_value());
  EXPECT_TRUE(std::holds_alternative<EptMisconfig>(ept.error()));
  const WalkResult td = walk_at(Gfn{0xFEE01});
  ASSERT_FALSE(td.has_value());
  const auto* v = std::get_if<EptViolation>(&td.error());
  ASSERT_NE(v, nullptr);
  EXPECT_FALSE(v->suppress_ve);  // delivered to a #VE-enabled guest as #VE
}

TEST_P(SpteWalkTest, HardwareSetsAccessedAndDirtyInKvmLeaves) {
  tables_.map(Gfn{0x10}, Pfn{0x20}, Level::k4K, {.prefetch = true});
  ASSERT_FALSE(tables_.get(Gfn{0x10}, Level::k4K).is_accessed(SpteFormat::kEpt));
  ASSERT_TRUE(walk_at(Gfn{0x10}, AccessType::kWrite, WalkMode::kHardware).has_value());
  const Spte after = tables_.get(Gfn{0x10}, Level::k4K);
  EXPECT_TRUE(after.is_accessed(SpteFormat::kEpt) && after.is_dirty(SpteFormat::kEpt));
  EXPECT_TRUE(after.is_shadow_present());  // KVM's bits survive the CPU's update
  EXPECT_TRUE(after.is_mmu_writable(SpteFormat::kEpt) && after.is_host_writable(SpteFormat::kEpt));
}

// FROZEN_SPTE has bit 10 set: under mode-based execute control it would be a present,
// user-execute-only entry. KVM never enables MBEC for its TDP; this pins down why it must not.
TEST_P(SpteWalkTest, FrozenWouldBePresentUnderMbec) {
  EXPECT_FALSE(PageWalk::is_present(ctx(/*mbec=*/false), Spte::kFrozenValue));
  EXPECT_TRUE(PageWalk::is_present(ctx(/*mbec=*/true), Spte::kFrozenValue));
  EXPECT_FALSE(PageWalk::is_present(ctx(/*mbec=*/true), Spte::kNonPresentValue));
}

INSTANTIATE_TEST_SUITE_P(Levels, SpteWalkTest, ::testing::Values(4u, 5u),
                         ::testing::PrintToStringParamName());


// --- NPT -------------------------------------------------------------------------------------

constexpr SpteFormat kNpt = SpteFormat::kNpt;

TEST(NptSpte, ExactValues) {
  // Bit positions from upstream spte.h / the APM: P 0, W 1, U 2, A 5, D 6, PS 7, HOSTW 9,
  // MMUW 10, PRESENT 11, NX 63.
  EXPECT_EQ(Spte::make_leaf(kNpt, Pfn{0x1234}, Level::k4K, {}).raw(),
            0x1234'000ull | kBit11 | 0x400 | 0x200 | 0x40 | 0x20 | 0x4 | 0x2 | 0x1);
  EXPECT_EQ(Spte::make_nonleaf(kNpt, Hpa{0xABC'D000}).raw(), kBit11 | 0x20 | 0x7 | 0xABC'D000);
  EXPECT_EQ(Spte::make_leaf(kNpt, Pfn{0x1234}, Level::k4K, {.exec = false}).raw() & kBit63, kBit63);
  // The non-present and frozen values are the same words in every format.
  EXPECT_FALSE(NptEntry{Spte::kNonPresentValue}.is_present());
  EXPECT_FALSE(NptEntry{Spte::kFrozenValue}.is_present());
}

TEST(NptSpte, LeafReadsBackAsTheHardwareEntry) {
  for (Level level : kLeafLevels) {
    const Pfn pfn{0x4000'0000};
    const Spte s = Spte::make_leaf(kNpt, pfn, level, {});
    const NptEntry e = s.npt();
    EXPECT_TRUE(e.is_present() && e.is_writable() && e.is_user() && e.is_accessed() && e.is_dirty());
    EXPECT_FALSE(e.is_nx() || e.is_pwt() || e.is_pcd() || e.is_global());
    EXPECT_EQ(e.is_page_size(), level != Level::k4K);
    EXPECT_EQ(e.addr(level), pfn.hpa().raw());
    EXPECT_TRUE(s.is_shadow_present() && s.is_last(level));
    EXPECT_TRUE(s.is_executable(kNpt));
    EXPECT_FALSE(s.is_suppress_ve(kNpt));  // NPT has no #VE: bit 63 is NX
    EXPECT_TRUE(s.writable_bits_consistent(kNpt));
    // KVM's bits are in the entry's AVL field.
    EXPECT_EQ(e.avail_low(), 0x7u);
  }
}

TEST(NptSpte, WritableAccessedAndExecutableTakeTheFormat) {
  const Spte rw = Spte::make_leaf(kNpt, Pfn{1}, Level::k4K, {});
  EXPECT_TRUE(rw.is_writable() && rw.is_mmu_writable(kNpt) && rw.is_host_writable(kNpt));
  // The EPT positions of the same bits are clear: reading with the wrong format is wrong.
  EXPECT_FALSE(rw.is_mmu_writable(SpteFormat::kEpt) || rw.is_host_writable(SpteFormat::kEpt));
  const Spte ro = Spte::make_leaf(kNpt, Pfn{1}, Level::k4K, {.host_writable = false});
  EXPECT_FALSE(ro.is_writable() || ro.is_mmu_writable(kNpt) || ro.is_host_writable(kNpt) ||
               ro.is_dirty(kNpt));
  const Spte nx = Spte::make_leaf(kNpt, Pfn{1}, Level::k4K, {.exec = false});
  EXPECT_FALSE(nx.is_executable(kNpt));
  EXPECT_TRUE(nx.npt().is_nx());
  const Spte prefetched = Spte::make_leaf(kNpt, Pfn{1}, Level::k4K, {.prefetch = true});
  EXPECT_FALSE(prefetched.is_accessed(kNpt));
  const Spte aged = rw.with_accessed(kNpt, false);
  EXPECT_FALSE(aged.is_accessed(kNpt));
  EXPECT_TRUE(aged.npt().is_present());
  EXPECT_EQ(aged.raw() | 0x20, rw.raw());
}

TEST(NptSpte, MmioSptesSetReservedBitsAndPresent) {
  const MmioSpteMasks m = MmioSpteMasks::npt(46);
  EXPECT_EQ(m.mask, (uint64_t{0x3F} << 46) | 1);
  EXPECT_EQ(m.value, m.mask);
  EXPECT_EQ(m.access, 0x6u);
  for (uint64_t gen : {uint64_t{0}, uint64_t{0xFF}, uint64_t{0x100}, Spte::kMmioGenMax}) {
    const Spte s = Spte::make_mmio(m, Gfn{0x3'FFFF'FFFF}, gen);  // the highest gfn below 2^46
    EXPECT_TRUE(s.is_mmio(m));
    EXPECT_TRUE(s.npt().is_present());
    EXPECT_FALSE(s.is_shadow_present());
    EXPECT_EQ(s.mmio_gfn(m), Gfn{0x3'FFFF'FFFF});
    EXPECT_EQ(s.mmio_generation(), gen);
    EXPECT_FALSE(s.is_mmio(MmioValue::kEptMisconfig) && s.is_mmio(MmioValue::kTdVe));
  }
  EXPECT_FALSE(Spte::make_leaf(kNpt, Pfn{0x1000}, Level::k2M, {}).is_mmio(m));
  EXPECT_FALSE(MmioSpteMasks::npt(52).caching);
}

TEST(NptSpteDeathTest, BuildersRefuseWhatNptCannotHold) {
  EXPECT_DEATH(Spte::make_leaf(kNpt, Pfn{1}, Level::k4K, {.read = false, .write = false}),
               "unreadable NPT leaf");
  EXPECT_DEATH(Spte::make_mmio(MmioSpteMasks::npt(46), Gfn{uint64_t{1} << 34}, 0), "overlaps");
  EXPECT_DEATH(Spte::make_mmio(MmioSpteMasks::npt(52), Gfn{1}, 0), "caching off");
}

// The NPT walker reads what KVM builds: permissions, A/D, and MMIO as a reserved-bit fault.
class NptSpteWalkTest : public ::testing::TestWithParam<unsigned> {
 protected:
  static HostMemoryConfig mem_config() {
    HostMemoryConfig c;
    c.bytes = uint64_t{64} << 20;
    c.layout.maxphyaddr = 48;
    c.layout.keyid_bits = 0;
    return c;
  }
  NptSpteWalkTest()
      : mem_(mem_config()),
        tables_(mem_, level_from(GetParam()), false, Gfn{0}, SpteFormat::kNpt) {}

  WalkResult walk_at(Gfn gfn, AccessType type, WalkMode mode = WalkMode::kProbe) {
    WalkContext c;
    c.format = PagingFormat::kNpt;
    c.root = tables_.root().spt();
    c.levels = GetParam();
    AccessRequest a;
    a.type = type;
    return walk(mem_, mem_.layout(), c, gfn.gpa(), a, mode);
  }

  HostMemory mem_;
  TestTdpTables tables_;
};

TEST_P(NptSpteWalkTest, LeavesTranslateWithTheirPermissions) {
  tables_.map(Gfn{0x12345}, Pfn{0x777}, Level::k4K);
  tables_.map(Gfn{0x400}, Pfn{0x1200}, Level::k2M, {.write = false});
  tables_.map(Gfn{0x80000}, Pfn{0x40000}, Level::k1G, {.exec = false});
  const WalkResult rw = walk_at(Gfn{0x12345}, AccessType::kWrite);
  ASSERT_TRUE(rw.has_value());
  EXPECT_EQ(rw->hpa, Pfn{0x777}.hpa());
  EXPECT_EQ(rw->perms, (Perms{true, true, true, true}));
  const WalkResult ro = walk_at(Gfn{0x5FF}, AccessType::kRead);
  ASSERT_TRUE(ro.has_value());
  EXPECT_EQ(ro->level, Level::k2M);
  EXPECT_EQ(ro->perms, (Perms{true, false, true, true}));
  const WalkResult nx = walk_at(Gfn{0x80001}, AccessType::kFetch);
  ASSERT_FALSE(nx.has_value());
  const auto* f = std::get_if<NptFault>(&nx.error());
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->error_code & 0x1F, 0x1u | 0x4 | 0x10);  // P | U | FETCH, no RSVD
}

TEST_P(NptSpteWalkTest, NonPresentAndFrozenAreNotPresentFaults) {
  tables_.map(Gfn{0x12345}, Pfn{0x777}, Level::k4K);
  tables_.set(Gfn{0x12345}, Level::k4K, Spte::frozen());
  for (Gfn gfn : {Gfn{0x12345}, Gfn{0x12344}, Gfn{0x100000}}) {
    const WalkResult r = walk_at(gfn, AccessType::kWrite, WalkMode::kHardware);
    ASSERT_FALSE(r.has_value());
    const auto* f = std::get_if<NptFault>(&r.error());
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->error_code & 0x9, 0u);  // neither P nor RSVD
  }
  EXPECT_TRUE(tables_.get(Gfn{0x12345}, Level::k4K).is_frozen());
}

TEST_P(NptSpteWalkTest, AnMmioSpteIsAReservedBitFault) {
  const MmioSpteMasks m = MmioSpteMasks::npt(mem_.layout().maxphyaddr);
  tables_.set(Gfn{0xFEE00}, Level::k4K, Spte::make_mmio(m, Gfn{0xFEE00}, 0x5A5A5));
  for (AccessType type : {AccessType::kRead, AccessType::kWrite}) {
    const WalkResult r = walk_at(Gfn{0xFEE00}, type);
    ASSERT_FALSE(r.has_value());
    const auto* f = std::get_if<NptFault>(&r.error());
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->error_code & kPferrRsvd, kPferrRsvd);
    EXPECT_EQ(f->error_code & kPferrPresent, kPferrPresent);
    EXPECT_EQ(f->gpa, Gfn{0xFEE00}.gpa());
  }
}

TEST_P(NptSpteWalkTest, HardwareSetsAccessedAndDirtyInKvmLeaves) {
  tables_.map(Gfn{0x10}, Pfn{0x20}, Level::k4K, {.prefetch = true});
  ASSERT_FALSE(tables_.get(Gfn{0x10}, Level::k4K).is_accessed(kNpt));
  ASSERT_TRUE(walk_at(Gfn{0x10}, AccessType::kWrite, WalkMode::kHardware).has_value());
  const Spte after = tables_.get(Gfn{0x10}, Level::k4K);
  EXPECT_TRUE(after.is_accessed(kNpt) && after.is_dirty(kNpt));
  EXPECT_TRUE(after.is_shadow_present() && after.is_mmu_writable(kNpt) &&
              after.is_host_writable(kNpt));
}

INSTANTIATE_TEST_SUITE_P(Levels, NptSpteWalkTest, ::testing::Values(4u, 5u),
                         ::testing::PrintToStringParamName());

}  // namespace
}  // namespace tdxsim
