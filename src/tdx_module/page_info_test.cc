#include "tdx_module/page_info.h"

#include <gtest/gtest.h>

#include "platform/vector_file_for_test.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim {
namespace {

using testing::read_vectors;
using testing::report_checked;
using testing::Symbols;

constexpr uint64_t kOk = 0;
constexpr uint64_t kInvalidRcx = 0xC000'0100'0000'0001;
constexpr uint64_t kInvalidRdx = 0xC000'0100'0000'0002;

// A leaf's level range, whichever interface it belongs to.
std::optional<LevelRange> levels_of(const std::string& leaf, unsigned pwl) {
  if (auto s = seamcall_leaf_from_name(leaf)) return page_info_levels(*s, pwl);
  if (auto t = tdcall_leaf_from_name(leaf)) return page_info_levels(*t);
  ADD_FAILURE() << "no leaf named " << leaf;
  return std::nullopt;
}

TEST(PageInfo, ValidatesAsTheModuleDoes) {
  const Symbols statuses = {{"ok", kOk}, {"invalid", kInvalidRcx}};
  const auto vectors = read_vectors("page_info_vectors.txt");
  for (const auto& v : vectors) {
    SCOPED_TRACE(v.where());
    const PageInfo info{v.num("rcx")};
    const unsigned pwl = static_cast<unsigned>(v.num_or("pwl", 3));
    const Gpaw gpaw = v.num_or("gpaw", 48) == 52 ? Gpaw::k52 : Gpaw::k48;
    const auto range = levels_of(v.str("leaf"), pwl);
    ASSERT_TRUE(range.has_value());
    EXPECT_EQ(info.tdx_level(), v.num("level"));
    EXPECT_EQ(info.gpa(), Gpa{v.num("gpa")});
    const uint64_t status = v.num("status", statuses);
    EXPECT_EQ(info.validate_private(*range, gpaw), status);
    EXPECT_EQ(info.validate(*range), v.num_or("format", status, statuses));
    v.expect_all_used();
  }
  report_checked("page_info_vectors", vectors.size());
}

TEST(PageInfo, LevelRangesPerLeaf) {
  struct Row {
    SeamcallLeaf leaf;
    unsigned pwl;
    std::optional<LevelRange> range;
  };
  const Row rows[] = {
      {SeamcallLeaf::kMemPageAdd, 3, LevelRange{0, 0}},
      {SeamcallLeaf::kMemPageRelocate, 4, LevelRange{0, 0}},
      {SeamcallLeaf::kMemPageAug, 4, LevelRange{0, 1}},
      {SeamcallLeaf::kMemPageRemove, 4, LevelRange{0, 2}},
      {SeamcallLeaf::kMemPageDemote, 3, LevelRange{1, 2}},
      {SeamcallLeaf::kMemPagePromote, 4, LevelRange{1, 2}},
      {SeamcallLeaf::kMemSeptAdd, 3, LevelRange{1, 3}},
      {SeamcallLeaf::kMemSeptAdd, 4, LevelRange{1, 4}},
      {SeamcallLeaf::kMemSeptRemove, 3, LevelRange{1, 3}},
      {SeamcallLeaf::kMemSeptRemove, 4, LevelRange{1, 4}},
      {SeamcallLeaf::kMemRangeBlock, 3, LevelRange{0, 3}},
      {SeamcallLeaf::kMemRangeBlock, 4, LevelRange{0, 4}},
      {SeamcallLeaf::kMemRangeUnblock, 3, LevelRange{0, 3}},
      {SeamcallLeaf::kMemSeptRd, 4, LevelRange{0, 4}},
      // RCX is not a page-info operand.
      {SeamcallLeaf::kMrExtend, 3, std::nullopt},
      {SeamcallLeaf::kMemRd, 3, std::nullopt},
      {SeamcallLeaf::kMngCreate, 3, std::nullopt},
      {SeamcallLeaf::kVpEnter, 3, std::nullopt},
  };
  for (const auto& r : rows) {
    EXPECT_EQ(page_info_levels(r.leaf, r.pwl), r.range) << to_string(r.leaf) << " pwl " << r.pwl;
  }
  EXPECT_EQ(page_info_levels(TdcallLeaf::kMemPageAccept), (LevelRange{0, 1}));
  EXPECT_EQ(page_info_levels(TdcallLeaf::kVpInfo), std::nullopt);
  report_checked("page_info_levels", std::size(rows) + 2);
}

TEST(PageInfo, BuildsWhatLinuxPasses) {
  EXPECT_EQ(PageInfo::of(Gpa{0x1234'5000}, Level::k4K).raw(), 0x1234'5000u);
  EXPECT_EQ(PageInfo::of(Gpa{0x4000'0000}, Level::k1G).raw(), 0x4000'0002u);
  EXPECT_EQ(PageInfo::of(Gpa{0x80'0000'0000}, 3u).raw(), 0x80'0000'0003u);
  // The builder keeps only bits 51:12 of the GPA.
  EXPECT_EQ(PageInfo::of(Gpa{0xFFF0'0000'0000'1FFF}, Level::k4K).raw(), 0x0000'0000'0000'1000u);
  for (Level l : {Level::k4K, Level::k2M, Level::k1G, Level::k512G, Level::k256T}) {
    EXPECT_EQ(PageInfo::from_tdx_level(PageInfo::to_tdx_level(l)), l);
    EXPECT_EQ(PageInfo::of(Gpa{0}, l).level(), l);
  }
  EXPECT_EQ(PageInfo::to_tdx_level(Level::k2M), 1u);
  EXPECT_FALSE(PageInfo{0x5}.is_aligned());  // level 5: no S-EPT has it
}

TEST(PageInfo, RejectsALevelRangeNoLeafHas) {
  EXPECT_DEATH((void)PageInfo{0}.validate(2, 1), "bad page-info level range");
  EXPECT_DEATH((void)PageInfo{0}.validate(0, 5), "bad page-info level range");
  EXPECT_DEATH((void)page_info_levels(SeamcallLeaf::kMemSeptAdd, 5), "EPT PWL 5");
}

TEST(PrivateGpa, FollowsCheckGpaValidityOfModule1501) {
  struct Row {
    uint64_t gpa;
    bool valid48, private48, valid52, private52;
  };
  const Row rows[] = {
      {0x0000'0000'0000'0000, true, true, true, true},
      {0x0000'7FFF'FFFF'F000, true, true, true, true},
      {0x0000'8000'0000'0000, true, false, true, true},     // bit 47: shared with GPAW 48
      {0x0001'0000'0000'0000, false, false, true, true},    // bit 48
      {0x0004'0000'0000'0000, false, false, true, true},    // bit 50
      {0x0008'0000'0000'0000, false, false, true, false},   // bit 51: shared with GPAW 52
      {0x0010'0000'0000'0000, false, false, false, false},  // bit 52: above MAX_PA 52
      {0x8000'0000'0000'0000, false, false, false, false},  // bit 63
  };
  for (const auto& r : rows) {
    const Gpa gpa{r.gpa};
    SCOPED_TRACE(fmt::format("{}", gpa));
    EXPECT_EQ(is_valid_gpa(gpa, Gpaw::k48), r.valid48);
    EXPECT_EQ(is_valid_private_gpa(gpa, Gpaw::k48), r.private48);
    EXPECT_EQ(is_valid_gpa(gpa, Gpaw::k52), r.valid52);
    EXPECT_EQ(is_valid_private_gpa(gpa, Gpaw::k52), r.private52);
  }
  EXPECT_EQ(shared_bit(Gpaw::k48), 47u);
  EXPECT_EQ(shared_bit(Gpaw::k52), 51u);
  report_checked("private_gpa", std::size(rows));
}

TEST(TdHandle, DecodesAndChecksTheTdrOperand) {
  const PhysAddrLayout layout{};  // MAXPHYADDR 52, key ID in bits 51:46
  struct Row {
    uint64_t rdx;
    uint64_t tdr;
    bool flag;
    bool reserved_zero;
    uint64_t with_flag;     // check(leaf_has_flag = true)
    uint64_t without_flag;  // check(leaf_has_flag = false)
  };
  constexpr uint64_t kBad = kInvalidRdx;
  const Row rows[] = {
      {0x0000'0000'0000'1000, 0x1000, false, true, kOk, kOk},
      {0x0000'0000'0000'1001, 0x1000, true, true, kOk, kBad},                // ALLOW_EXISTING
      {0x0000'0000'0000'1002, 0x1000, false, false, kBad, kBad},             // bit 1
      {0x0000'0000'0000'1800, 0x1000, false, false, kBad, kBad},             // bit 11
      {0x0000'3FFF'FFFF'F000, 0x3FFF'FFFF'F000, false, true, kOk, kOk},      // bits 45:12
      {0x0000'4000'0000'0000, 0x4000'0000'0000, false, true, kBad, kBad},    // key-ID bit 46
      {0x0008'0000'0000'1000, 0x8'0000'0000'1000, false, true, kBad, kBad},  // key-ID bit 51
      {0x0010'0000'0000'1000, 0x1000, false, false, kBad, kBad},             // bit 52
      {0x8000'0000'0000'1001, 0x1000, true, false, kBad, kBad},              // bit 63
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(fmt::format("rdx={:#x}", r.rdx));
    const TdHandle h{r.rdx};
    EXPECT_EQ(h.tdr(), Hpa{r.tdr});
    EXPECT_EQ(h.flag(), r.flag);
    EXPECT_EQ(h.allow_existing(), r.flag);
    EXPECT_EQ(h.l2_sept_add_mode(), r.flag);
    EXPECT_EQ(h.reserved_zero(), r.reserved_zero);
    EXPECT_EQ(h.check(true, layout), r.with_flag);
    EXPECT_EQ(h.check(false, layout), r.without_flag);
    if (r.reserved_zero) {
      EXPECT_EQ(TdHandle::of(Hpa{r.tdr}, r.flag), h);
    }
  }
  // A platform with fewer key-ID bits moves the boundary: bit 46 is address, not key.
  EXPECT_EQ(TdHandle{0x0000'4000'0000'0000}.check(
                false, PhysAddrLayout{.maxphyaddr = 52, .keyid_bits = 4}),
            kOk);
  report_checked("td_handle", std::size(rows));
}

}  // namespace
}  // namespace tdxsim
