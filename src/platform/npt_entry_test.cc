#include "platform/npt_entry.h"

#include <gtest/gtest.h>

#include "platform/vector_file_for_test.h"

namespace tdxsim {
namespace {

using testing::read_vectors;
using testing::report_checked;

TEST(NptEntry, DecodesEveryBitPerTheApm) {
  const PhysAddrLayout layout{};  // MAXPHYADDR 52, key ID bits 51:46: what the file assumes
  const auto vectors = read_vectors("npt_entry_vectors.txt");
  for (const auto& v : vectors) {
    SCOPED_TRACE(v.where());
    const uint64_t raw = v.num("raw");
    const NptEntry e{raw};
    EXPECT_EQ(e.is_present(), v.num_or("p", 0) != 0);
    EXPECT_EQ(e.is_writable(), v.num_or("rw", 0) != 0);
    EXPECT_EQ(e.is_user(), v.num_or("us", 0) != 0);
    EXPECT_EQ(e.is_pwt(), v.num_or("pwt", 0) != 0);
    EXPECT_EQ(e.is_pcd(), v.num_or("pcd", 0) != 0);
    EXPECT_EQ(e.is_accessed(), v.num_or("a", 0) != 0);
    EXPECT_EQ(e.is_dirty(), v.num_or("d", 0) != 0);
    EXPECT_EQ(e.is_page_size(), v.num_or("ps", 0) != 0);
    EXPECT_EQ(e.is_pat(Level::k4K), v.num_or("pat4k", 0) != 0);
    EXPECT_EQ(e.is_pat(Level::k2M), v.num_or("patl", 0) != 0);
    EXPECT_EQ(e.is_pat(Level::k1G), v.num_or("patl", 0) != 0);
    EXPECT_EQ(e.is_global(), v.num_or("g", 0) != 0);
    EXPECT_EQ(e.avail_low(), v.num_or("avl", 0));
    EXPECT_EQ(e.addr(), v.num_or("addr", 0));
    EXPECT_EQ(e.addr(Level::k4K), v.num_or("addr", 0));
    EXPECT_EQ(e.addr(Level::k2M), v.num_or("addr2m", 0));
    EXPECT_EQ(e.addr(Level::k1G), v.num_or("addr1g", 0));
    EXPECT_EQ(layout.key_of(e.addr()), KeyId{static_cast<uint16_t>(v.num_or("key", 0))});
    EXPECT_EQ(layout.strip_key(e.addr()), Hpa{v.num_or("hpa", 0)});
    EXPECT_EQ(e.avail_high(), v.num_or("avh", 0));
    EXPECT_EQ(e.is_nx(), v.num_or("nx", 0) != 0);

    const NptEntry rebuilt = NptEntry{}
                                 .with_present(e.is_present())
                                 .with_writable(e.is_writable())
                                 .with_user(e.is_user())
                                 .with_pwt(e.is_pwt())
                                 .with_pcd(e.is_pcd())
                                 .with_accessed(e.is_accessed())
                                 .with_dirty(e.is_dirty())
                                 .with_page_size(e.is_page_size())
                                 .with_global(e.is_global())
                                 .with_avail_low(v.num_or("avl", 0))
                                 .with_addr(v.num_or("addr", 0))
                                 .with_avail_high(v.num_or("avh", 0))
                                 .with_nx(e.is_nx());
    EXPECT_EQ(rebuilt.raw(), raw);
    v.expect_all_used();
  }
  report_checked("npt_entry_vectors", vectors.size());
}

TEST(NptEntry, PatMovesWithThePageSize) {
  EXPECT_EQ(NptEntry{}.with_pat(Level::k4K, true).raw(), 0x80u);
  EXPECT_EQ(NptEntry{}.with_pat(Level::k2M, true).raw(), 0x1000u);
  EXPECT_EQ(NptEntry{}.with_pat(Level::k1G, true).raw(), 0x1000u);
  // A large leaf's address never includes its PAT bit.
  const NptEntry large = NptEntry{}.with_addr(0x4060'0000).with_pat(Level::k2M, true);
  EXPECT_EQ(large.addr(Level::k2M), 0x4060'0000u);
}

TEST(NptEntry, SoftwareFieldsLiveOnlyInAvlBits) {
  using Low = BitField<11, 9>;
  using High = BitField<62, 52>;
  const NptEntry e = NptEntry{}.with_present(true).with_software<Low>(5).with_software<High>(0x3FF);
  EXPECT_EQ(e.raw(), 0x1 | (uint64_t{5} << 9) | (uint64_t{0x3FF} << 52));
  EXPECT_EQ(e.software<Low>(), 5u);
  EXPECT_EQ(e.software<High>(), 0x3FFu);
  EXPECT_EQ(NptEntry::ignored_bits_mask() & 0x1FF, 0u);
}

}  // namespace
}  // namespace tdxsim
