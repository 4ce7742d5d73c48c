// The acceptance bound on platform state: a 64 GiB guest whose every page was filled stays
// within 512 MiB resident. This test measures HostMemory's share (later layers add their
// page tables to it): the frames of a 64 GiB guest, each filled with its own value.
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>

#include "platform/host_memory.h"
#include "platform/table_builder.h"

namespace tdxsim {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

// Resident set size of this process (/proc/self/statm, second field, in pages).
uint64_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0;
  uint64_t resident = 0;
  statm >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

TEST(HostMemoryRss, SixtyFourGiBGuestFilledStaysSmall) {
  constexpr uint64_t kGuestFrames = 64 * kGiB / kPageSize;  // 16,777,216
  const uint64_t before = rss_bytes();
  HostMemoryConfig cfg;
  cfg.bytes = 65 * kGiB;  // the guest plus host headroom
  HostMemory mem(cfg);
  constexpr KeyId kTd{1};
  for (uint64_t i = 0; i < kGuestFrames; ++i) {
    const std::optional<Pfn> p = mem.alloc_frame();
    ASSERT_TRUE(p.has_value()) << i;
    // Each page its own contents, as a guest that touched every page would leave them; a
    // sixteenth are private TD pages.
    if (i % 16 == 0) {
      mem.set_key(*p, kTd);
      mem.fill(*p, kTd, i * 0x9e3779b97f4a7c15ull);
    } else {
      mem.fill(*p, kHostKey, i * 0x9e3779b97f4a7c15ull);
    }
  }
  const uint64_t growth = rss_bytes() - before;
  const uint64_t model = mem.model_bytes();
  std::printf("HostMemory for a filled 64 GiB guest: RSS growth %.1f MiB, model_bytes %.1f MiB\n",
              static_cast<double>(growth) / kMiB, static_cast<double>(model) / kMiB);
  RecordProperty("rss_growth_bytes", std::to_string(growth));
  RecordProperty("model_bytes", std::to_string(model));
  EXPECT_EQ(mem.free_frame_count(), mem.total_frames() - kGuestFrames);
  EXPECT_EQ(mem.read(Pfn{12345}.hpa() + 8, kHostKey).value, 12345 * 0x9e3779b97f4a7c15ull);
  EXPECT_EQ(mem.read(Pfn{4096}.hpa(), kTd).value, 4096 * 0x9e3779b97f4a7c15ull);
  EXPECT_TRUE(mem.violations().empty());
  // HostMemory's budget within the 512 MiB: 16 bytes a frame is 256 MiB.
  EXPECT_LE(growth, 300 * kMiB);
  EXPECT_LE(model, 260 * kMiB);
}

// The whole acceptance bound: the same guest, now also mapped page by page (4K leaves) by a
// 4-level EPT in host memory, as KVM's tables will map it: ≤ 512 MiB of platform state.
TEST(PlatformRss, SixtyFourGiBGuestMappedAt4KAndFilledFitsIn512MiB) {
  constexpr uint64_t kGuestFrames = 64 * kGiB / kPageSize;
  const uint64_t before = rss_bytes();
  HostMemoryConfig cfg;
  cfg.bytes = 65 * kGiB;
  HostMemory mem(cfg);
  TableBuilder ept(mem, PagingFormat::kEpt, 4);
  constexpr Perms kRwx{true, true, true, true};
  for (uint64_t i = 0; i < kGuestFrames; ++i) {
    const std::optional<Pfn> p = mem.alloc_frame();
    ASSERT_TRUE(p.has_value()) << i;
    mem.fill(*p, kHostKey, i ^ 0x5a5a5a5a5a5a5a5aull);
    ept.map(Gfn{i}.gpa(), p->hpa(), Level::k4K, kRwx);
  }
  const uint64_t growth = rss_bytes() - before;
  std::printf("Platform state for a filled 64 GiB guest mapped at 4K: RSS growth %.1f MiB "
              "(%zu EPT table pages), model_bytes %.1f MiB\n",
              static_cast<double>(growth) / kMiB, ept.tables().size(),
              static_cast<double>(mem.model_bytes()) / kMiB);
  RecordProperty("platform_rss_growth_bytes", std::to_string(growth));
  // 1 PML4 + 1 PDPT + 64 PD + 32768 PT pages.
  EXPECT_EQ(ept.tables().size(), 1u + 1u + 64u + 32768u);
  EXPECT_LE(growth, 512 * kMiB);
}

}  // namespace
}  // namespace tdxsim
