// Tables a hostile host (or a buggy one) can make the walker read: a root or table beyond the
// end of host memory, where no memory answers and the read completes with all ones (for EPT
// a malformed entry at every level, for NPT above the 4K level), and a TD's table page the
// host wrote with its own key, whose read is a machine check.
#include <gtest/gtest.h>

#include <variant>

#include "platform/page_walk.h"
#include "platform/table_builder.h"

namespace tdxsim {
namespace {

constexpr Gpa kGpa{0x4020'3000};
constexpr Perms kRwx{true, true, true, true};
constexpr Hpa kBeyond{uint64_t{1} << 40};

class PageWalkHostileTablesTest : public ::testing::Test {
 protected:
  static HostMemoryConfig config() {
    HostMemoryConfig c;
    c.bytes = 64 * kPageSize;
    return c;
  }
  WalkResult walk_from(Hpa root, PagingFormat format, KeyId table_key = kHostKey,
                       WalkMode mode = WalkMode::kHardware) {
    WalkContext ctx;
    ctx.format = format;
    ctx.root = root;
    ctx.table_key = table_key;
    return walk(mem_, mem_.layout(), ctx, kGpa, AccessRequest{}, mode);
  }

  HostMemory mem_{config()};
};

TEST_F(PageWalkHostileTablesTest, ARootBeyondMemoryReadsAsAMalformedEntry) {
  const WalkResult ept = walk_from(kBeyond, PagingFormat::kEpt);
  ASSERT_FALSE(ept.has_value());
  EXPECT_TRUE(std::holds_alternative<EptMisconfig>(ept.error()));
  const WalkResult npt = walk_from(kBeyond, PagingFormat::kNpt);
  ASSERT_FALSE(npt.has_value());
  ASSERT_TRUE(std::holds_alternative<NptFault>(npt.error()));
  EXPECT_NE(std::get<NptFault>(npt.error()).error_code & 0x8, 0u) << "RSVD";
}

TEST_F(PageWalkHostileTablesTest, AnEptTableBeyondMemoryReadsAsAMalformedEntry) {
  // At every level: the page directory (2M entries) and the page table below it.
  for (const Level level : {Level::k1G, Level::k2M}) {
    TableBuilder tables(mem_, PagingFormat::kEpt, 4);
    tables.map(kGpa, Pfn{40}.hpa(), Level::k4K, kRwx);
    const uint64_t entry = tables.read_entry(kGpa, level);
    tables.write_entry(kGpa, level, (entry & 0xFFF) | kBeyond.raw());
    const WalkResult r = walk_from(tables.root(), PagingFormat::kEpt);
    ASSERT_FALSE(r.has_value());
    EXPECT_TRUE(std::holds_alternative<EptMisconfig>(r.error())) << level_name(level);
  }
}

TEST_F(PageWalkHostileTablesTest, APoisonedTablePageIsAMachineCheck) {
  const KeyId td{5};
  TableBuilder tables(mem_, PagingFormat::kEpt, 4, td);
  tables.map(kGpa, Pfn{40}.hpa(), Level::k4K, kRwx, td);
  ASSERT_TRUE(walk_from(tables.root(), PagingFormat::kEpt, td).has_value());
  // The host writes one word of the page directory with its own key.
  const Hpa pde = tables.entry_hpa(kGpa, Level::k2M);
  mem_.write(pde.align_down(Level::k4K) + 8 * 511, kHostKey, 1);
  for (const WalkMode mode : {WalkMode::kHardware, WalkMode::kProbe}) {
    const WalkResult r = walk_from(tables.root(), PagingFormat::kEpt, td, mode);
    ASSERT_FALSE(r.has_value());
    ASSERT_TRUE(std::holds_alternative<MachineCheck>(r.error()));
    EXPECT_EQ(std::get<MachineCheck>(r.error()).entry_hpa, pde);
    EXPECT_EQ(std::get<MachineCheck>(r.error()).gpa, kGpa);
  }
  // The host's own tables are never poisoned: its key owns them.
  TableBuilder host(mem_, PagingFormat::kEpt, 4);
  host.map(kGpa, Pfn{41}.hpa(), Level::k4K, kRwx);
  mem_.write(host.entry_hpa(kGpa, Level::k2M).align_down(Level::k4K) + 8 * 511, kHostKey, 1);
  EXPECT_TRUE(walk_from(host.root(), PagingFormat::kEpt).has_value());
}

}  // namespace
}  // namespace tdxsim
