#include "kvm/host_mm.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace tdxsim {
namespace {

HostMemory small_memory(uint64_t frames = 64) {
  return HostMemory(HostMemoryConfig{.bytes = frames * kPageSize});
}

// Records every callback, and at invalidate_range_start whether the frames the test named
// were still allocated (they must be: nothing may be freed before the notifier ran).
class RecordingNotifier : public MmuNotifier {
 public:
  struct Event {
    std::string what;
    uint64_t start;
    uint64_t end;
  };
  explicit RecordingNotifier(HostMemory& mem) : mem_(mem) {}

  void invalidate_range_start(uint64_t s, uint64_t e) override {
    events.push_back({"start", s, e});
    for (Pfn p : watched) watched_allocated_at_start &= mem_.is_allocated(p);
  }
  void invalidate_range_end(uint64_t s, uint64_t e) override { events.push_back({"end", s, e}); }
  bool clear_young(uint64_t s, uint64_t e) override {
    events.push_back({"clear_young", s, e});
    return young;
  }
  bool test_young(uint64_t s, uint64_t e) override {
    events.push_back({"test_young", s, e});
    return young;
  }
  void release() override { events.push_back({"release", 0, 0}); }

  std::vector<Event> events;
  std::vector<Pfn> watched;
  bool watched_allocated_at_start = true;
  bool young = false;

 private:
  HostMemory& mem_;
};

TEST(HostMm, MmapHandsOutFreshAlignedRanges) {
  HostMemory mem = small_memory();
  HostMm mm(mem);
  const uint64_t a = mm.mmap(3 * kPageSize);
  const uint64_t b = mm.mmap(1);
  EXPECT_EQ(a % kPageSize, 0u);
  EXPECT_GE(b, a + 3 * kPageSize);
  ASSERT_TRUE(mm.munmap(a, 3 * kPageSize));
  EXPECT_GT(mm.mmap(kPageSize), b);  // never reused
}

TEST(HostMm, FirstTouchAllocatesZeroedFrames) {
  HostMemory mem = small_memory();
  HostMm mm(mem);
  const uint64_t free_before = mem.free_frame_count();
  const uint64_t hva = mm.mmap(2 * kPageSize);
  EXPECT_EQ(mm.resident_pages(), 0u);
  EXPECT_EQ(mm.read(hva + 8), 0u);
  ASSERT_TRUE(mm.write(hva + kPageSize + 16, 0x1234));
  EXPECT_EQ(mm.resident_pages(), 2u);
  EXPECT_EQ(mem.free_frame_count(), free_before - 2);
  const KvmResult<Pfn> pfn = mm.get_user_page(hva + kPageSize, true);
  ASSERT_TRUE(pfn);
  EXPECT_EQ(mem.read(pfn->hpa() + 16, kHostKey).value, 0x1234u);
  EXPECT_EQ(mm.get_user_page(hva + kPageSize + 8, false), pfn);
}

TEST(HostMm, UnmappedAddressesFault) {
  HostMemory mem = small_memory();
  HostMm mm(mem);
  const uint64_t hva = mm.mmap(kPageSize);
  EXPECT_EQ(mm.get_user_page(hva + kPageSize, false).error(), Errno::kEfault);
  EXPECT_EQ(mm.read(hva - 8).error(), Errno::kEfault);
  ASSERT_TRUE(mm.munmap(hva, kPageSize));
  EXPECT_EQ(mm.write(hva, 1).error(), Errno::kEfault);
  EXPECT_EQ(mm.munmap(hva + 1, kPageSize).error(), Errno::kEinval);
  EXPECT_EQ(mm.munmap(hva, 0).error(), Errno::kEinval);
}

TEST(HostMm, RunsOutOfMemory) {
  HostMemory mem = small_memory(2);
  HostMm mm(mem);
  const uint64_t hva = mm.mmap(8 * kPageSize);
  KvmResult<Pfn> last;
  for (int i = 0; i < 8 && (last = mm.get_user_page(hva + i * kPageSize, true)); ++i) {
  }
  EXPECT_EQ(last.error(), Errno::kEnomem);
}

TEST(HostMm, MunmapNotifiesThenFreesAndSplitsTheMapping) {
  HostMemory mem = small_memory();
  HostMm mm(mem);
  RecordingNotifier n(mem);
  mm.register_notifier(&n);
  const uint64_t hva = mm.mmap(4 * kPageSize);
  const Pfn middle = *mm.get_user_page(hva + kPageSize, true);
  ASSERT_TRUE(mm.get_user_page(hva + 3 * kPageSize, true));
  n.watched = {middle};
  ASSERT_TRUE(mm.munmap(hva + kPageSize, 2 * kPageSize));
  ASSERT_EQ(n.events.size(), 2u);
  EXPECT_EQ(n.events[0].what, "start");
  EXPECT_EQ(n.events[0].start, hva + kPageSize);
  EXPECT_EQ(n.events[0].end, hva + 3 * kPageSize);
  EXPECT_EQ(n.events[1].what, "end");
  EXPECT_TRUE(n.watched_allocated_at_start);
  EXPECT_FALSE(mem.is_allocated(middle));
  // Both ends of the old mapping survive.
  EXPECT_TRUE(mm.get_user_page(hva, false));
  EXPECT_TRUE(mm.get_user_page(hva + 3 * kPageSize, false));
  EXPECT_EQ(mm.get_user_page(hva + 2 * kPageSize, false).error(), Errno::kEfault);
  mm.unregister_notifier(&n);
}

TEST(HostMm, ReclaimMovesContentsToNewFramesAfterNotifying) {
  HostMemory mem = small_memory();
  HostMm mm(mem);
  RecordingNotifier n(mem);
  mm.register_notifier(&n);
  const uint64_t hva = mm.mmap(2 * kPageSize);
  ASSERT_TRUE(mm.write(hva + 24, 0xfeed));
  const Pfn old = *mm.resident_pfn(hva);
  const uint64_t free_before = mem.free_frame_count();
  n.watched = {old};
  mm.reclaim(hva, 2 * kPageSize);
  ASSERT_EQ(n.events.size(), 2u);
  EXPECT_EQ(n.events[0].what, "start");
  EXPECT_EQ(n.events[1].what, "end");
  EXPECT_TRUE(n.watched_allocated_at_start);
  const Pfn fresh = *mm.resident_pfn(hva);
  EXPECT_NE(fresh, old);
  EXPECT_FALSE(mem.is_allocated(old));
  EXPECT_EQ(mem.free_frame_count(), free_before);  // one page resident before and after
  EXPECT_EQ(mm.read(hva + 24), 0xfeedu);
  EXPECT_EQ(mm.get_user_page(hva, false), fresh);
  mm.unregister_notifier(&n);
}

TEST(HostMm, AgingClearsYoungBitsAndAsksNotifiers) {
  HostMemory mem = small_memory();
  HostMm mm(mem);
  RecordingNotifier n(mem);
  mm.register_notifier(&n);
  const uint64_t hva = mm.mmap(kPageSize);
  ASSERT_TRUE(mm.get_user_page(hva, false));
  EXPECT_TRUE(mm.test_young(hva, kPageSize));
  EXPECT_TRUE(mm.age(hva, kPageSize));
  EXPECT_FALSE(mm.test_young(hva, kPageSize));
  EXPECT_FALSE(mm.age(hva, kPageSize));
  n.young = true;  // a secondary mapping was used since
  EXPECT_TRUE(mm.test_young(hva, kPageSize));
  EXPECT_TRUE(mm.age(hva, kPageSize));
  EXPECT_EQ(n.events.back().what, "clear_young");
  EXPECT_TRUE(std::ranges::any_of(n.events, [](const auto& e) { return e.what == "test_young"; }));
  mm.unregister_notifier(&n);
}

TEST(HostMm, ExitReleasesNotifiersAndFreesEverything) {
  HostMemory mem = small_memory();
  const uint64_t free_before = mem.free_frame_count();
  RecordingNotifier n(mem);
  {
    HostMm mm(mem);
    mm.register_notifier(&n);
    const uint64_t hva = mm.mmap(2 * kPageSize);
    ASSERT_TRUE(mm.write(hva, 1));
    mm.exit();
    EXPECT_EQ(mem.free_frame_count(), free_before);
    EXPECT_EQ(mm.get_user_page(hva, false).error(), Errno::kEfault);
    mm.unregister_notifier(&n);  // after exit: a no-op
  }
  ASSERT_EQ(n.events.size(), 1u);
  EXPECT_EQ(n.events[0].what, "release");
}

}  // namespace
}  // namespace tdxsim

namespace tdxsim {
namespace {

constexpr uint64_t k2M = level_bytes(Level::k2M);

TEST(HostMmThp, FirstTouchTakesA2MPageAndTheRangeMigratesWhole) {
  HostMemory mem(HostMemoryConfig{.bytes = 2048 * kPageSize, .huge_2m_pages = 2});
  HostMm mm(mem);
  const uint64_t hva = mm.mmap(2 * k2M, Level::k2M);
  EXPECT_EQ(hva % k2M, 0u);
  ASSERT_TRUE(mm.write(hva + 7 * kPageSize, 42));
  EXPECT_EQ(mm.mapping_level(hva), Level::k2M);
  EXPECT_EQ(mm.resident_pages(), 512u);
  EXPECT_EQ(*mm.resident_pfn(hva + 7 * kPageSize), *mm.resident_pfn(hva) + 7);
  RecordingNotifier n(mem);
  mm.register_notifier(&n);
  const Pfn before = *mm.resident_pfn(hva);
  mm.reclaim(hva + kPageSize, kPageSize);
  ASSERT_FALSE(n.events.empty());
  EXPECT_EQ(n.events[0].start, hva);  // widened to the whole 2M page
  EXPECT_EQ(n.events[0].end, hva + k2M);
  EXPECT_NE(*mm.resident_pfn(hva), before);
  EXPECT_EQ(*mm.read(hva + 7 * kPageSize), 42u);
  // Cutting the 2M page is refused; unmapping all of it frees it.
  EXPECT_EQ(mm.munmap(hva, kPageSize).error(), Errno::kEinval);
  ASSERT_TRUE(mm.munmap(hva, k2M));
  EXPECT_EQ(mem.free_huge_2m_count(), 2u);
  mm.unregister_notifier(&n);
}

TEST(HostMmThp, AnEmptyPoolFallsBackTo4KPages) {
  HostMemory mem(HostMemoryConfig{.bytes = 1024 * kPageSize, .huge_2m_pages = 1});
  HostMm mm(mem);
  const uint64_t a = mm.mmap(k2M, Level::k2M);
  const uint64_t b = mm.mmap(k2M, Level::k2M);
  ASSERT_TRUE(mm.write(a, 1));
  ASSERT_TRUE(mm.write(b, 2));
  EXPECT_EQ(mm.mapping_level(a), Level::k2M);
  EXPECT_EQ(mm.mapping_level(b), Level::k4K);
  EXPECT_EQ(mm.resident_pages(), 513u);
  mm.exit();
  EXPECT_EQ(mem.free_huge_2m_count(), 1u);
  EXPECT_EQ(mem.free_frame_count(), 512u);
}

}  // namespace
}  // namespace tdxsim
