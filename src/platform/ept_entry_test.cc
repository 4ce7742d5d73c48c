#include "platform/ept_entry.h"

#include <gtest/gtest.h>

#include "platform/eptp.h"
#include "platform/vector_file_for_test.h"

namespace tdxsim {
namespace {

using testing::read_vectors;
using testing::report_checked;

TEST(EptEntry, DecodesEveryBitPerTheSdm) {
  const PhysAddrLayout layout{};  // MAXPHYADDR 52, key ID bits 51:46: what the file assumes
  const auto vectors = read_vectors("ept_entry_vectors.txt");
  for (const auto& v : vectors) {
    SCOPED_TRACE(v.where());
    const uint64_t raw = v.num("raw");
    const EptEntry e{raw};
    EXPECT_EQ(e.is_read(), v.num_or("r", 0) != 0);
    EXPECT_EQ(e.is_write(), v.num_or("w", 0) != 0);
    EXPECT_EQ(e.is_exec(), v.num_or("x", 0) != 0);
    EXPECT_EQ(e.mem_type_raw(), v.num_or("mt", 0));
    EXPECT_EQ(static_cast<uint64_t>(e.mem_type()), v.num_or("mt", 0));
    EXPECT_EQ(!is_valid_ept_mem_type(e.mem_type_raw()), v.num_or("mtbad", 0) != 0);
    EXPECT_EQ(e.is_ignore_pat(), v.num_or("ipat", 0) != 0);
    EXPECT_EQ(e.is_page_size(), v.num_or("ps", 0) != 0);
    EXPECT_EQ(e.is_accessed(), v.num_or("a", 0) != 0);
    EXPECT_EQ(e.is_dirty(), v.num_or("d", 0) != 0);
    EXPECT_EQ(e.is_user_exec(), v.num_or("ux", 0) != 0);
    EXPECT_EQ(e.software<EptEntry::SoftwareLow>(), v.num_or("sw11", 0));
    EXPECT_EQ(e.addr(), v.num_or("addr", 0));
    EXPECT_EQ(e.key(layout), KeyId{static_cast<uint16_t>(v.num_or("key", 0))});
    EXPECT_EQ(e.hpa(layout), Hpa{v.num_or("hpa", 0)});
    EXPECT_EQ(e.software<EptEntry::SoftwareHigh>(), v.num_or("swhi", 0));
    EXPECT_EQ(e.is_suppress_ve(), v.num_or("sve", 0) != 0);
    EXPECT_EQ(e.is_present(/*mbec=*/false), v.num_or("present", 0) != 0);
    EXPECT_EQ(e.is_present(/*mbec=*/true), v.num_or("present_mbec", 0) != 0);

    // The builders put every field back where the decoders found it.
    const EptEntry rebuilt = EptEntry{}
                                 .with_read(e.is_read())
                                 .with_write(e.is_write())
                                 .with_exec(e.is_exec())
                                 .with_mem_type_raw(v.num_or("mt", 0))
                                 .with_ignore_pat(e.is_ignore_pat())
                                 .with_page_size(e.is_page_size())
                                 .with_accessed(e.is_accessed())
                                 .with_dirty(e.is_dirty())
                                 .with_user_exec(e.is_user_exec())
                                 .with_software<EptEntry::SoftwareLow>(v.num_or("sw11", 0))
                                 .with_addr(v.num_or("addr", 0))
                                 .with_software<EptEntry::SoftwareHigh>(v.num_or("swhi", 0))
                                 .with_suppress_ve(v.num_or("sve", 0) != 0);
    EXPECT_EQ(rebuilt.raw(), raw);
    v.expect_all_used();
  }
  report_checked("ept_entry_vectors", vectors.size());
}

TEST(EptEntry, BuildersClearAsWellAsSet) {
  const EptEntry all{~uint64_t{0}};
  EXPECT_EQ(all.with_read(false).raw(), ~uint64_t{1});
  EXPECT_EQ(all.with_mem_type(EptMemType::kWB).mem_type(), EptMemType::kWB);
  EXPECT_EQ(all.with_mem_type(EptMemType::kUC).raw() & 0x38, 0u);
  EXPECT_EQ(all.with_addr(0).raw(), ~uint64_t{0x000F'FFFF'FFFF'F000});
  EXPECT_EQ(all.with_suppress_ve(false).raw(), ~(uint64_t{1} << 63));
  // Bits of a new address outside 51:12 are dropped, not ORed into the flags.
  EXPECT_EQ(EptEntry{}.with_addr(0xFFF0'0000'1234'5FFF).raw(), 0x0000'0000'1234'5000u);
}

TEST(EptEntry, SoftwareFieldsLiveOnlyInIgnoredBits) {
  // KVM's EPT SPTE flags: MMU-present (11), host-writable (57), MMU-writable (58).
  using MmuPresent = Bit<11>;
  using HostWritable = Bit<57>;
  using MmuWritable = Bit<58>;
  using Generation = BitField<62, 59>;
  const EptEntry e = EptEntry{}
                         .with_read(true)
                         .with_software<MmuPresent>(1)
                         .with_software<HostWritable>(1)
                         .with_software<Generation>(0xA);
  EXPECT_EQ(e.raw(), 0x1 | (uint64_t{1} << 11) | (uint64_t{1} << 57) | (uint64_t{0xA} << 59));
  EXPECT_EQ(e.software<MmuPresent>(), 1u);
  EXPECT_EQ(e.software<MmuWritable>(), 0u);
  EXPECT_EQ(e.software<Generation>(), 0xAu);
  EXPECT_EQ(e.with_software<Generation>(0).software<HostWritable>(), 1u);
  EXPECT_EQ(EptEntry::ignored_bits_mask() & 0x7FF, 0u);
}

TEST(EptMemType, OnlyTheFiveArchitecturalTypesAreValid) {
  for (uint64_t t = 0; t < 8; ++t) {
    EXPECT_EQ(is_valid_ept_mem_type(t), t != 2 && t != 3 && t != 7) << t;
  }
}

TEST(Eptp, DecodesAndChecksPerTheSdm) {
  const auto vectors = read_vectors("eptp_vectors.txt");
  for (const auto& v : vectors) {
    SCOPED_TRACE(v.where());
    PhysAddrLayout layout;
    layout.maxphyaddr = static_cast<unsigned>(v.num_or("maxpa", 52));
    const Eptp p{v.num("raw")};
    EXPECT_EQ(static_cast<uint64_t>(p.mem_type()), v.num_or("mt", 0));
    EXPECT_EQ(p.levels(), v.num_or("levels", 0));
    EXPECT_EQ(p.is_ad_enabled(), v.num_or("ad", 0) != 0);
    EXPECT_EQ(p.root(), Hpa{v.num_or("root", 0)});
    EXPECT_EQ(p.is_valid(layout), v.num_or("valid", 0) != 0);
    v.expect_all_used();
  }
  report_checked("eptp_vectors", vectors.size());
}

TEST(Eptp, WalkContextCarriesRootLevelsAdAndTableKey) {
  const Eptp p = Eptp::make(Hpa{0x7000}, 5, true);
  EXPECT_TRUE(p.is_valid(PhysAddrLayout{}));
  const WalkContext c = p.walk_context(KeyId{9});
  EXPECT_EQ(c.format, PagingFormat::kEpt);
  EXPECT_EQ(c.root, Hpa{0x7000});
  EXPECT_EQ(c.levels, 5u);
  EXPECT_TRUE(c.ad_enabled);
  EXPECT_EQ(c.table_key, KeyId{9});
  EXPECT_FALSE(c.mbec);
  EXPECT_TRUE(c.execute_only);
  EXPECT_EQ(c.root_level(), Level::k256T);
  EXPECT_EQ(c.gpa_width(), 57u);
  const WalkContext c4 = Eptp::make(Hpa{0x7000}, 4, false).walk_context(kHostKey);
  EXPECT_FALSE(c4.ad_enabled);
  EXPECT_EQ(c4.gpa_width(), 48u);
}

}  // namespace
}  // namespace tdxsim
