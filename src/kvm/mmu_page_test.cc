#include "kvm/mmu_page.h"

#include <gtest/gtest.h>

#include "kvm/spte.h"

namespace tdxsim {
namespace {

HostMemory small_memory(uint64_t frames = 64) {
  return HostMemory(HostMemoryConfig{.bytes = frames * kPageSize});
}

TEST(MmuPageRole, ComparesEveryField) {
  const MmuPageRole direct{Level::k512G, false, false};
  EXPECT_EQ(direct, (MmuPageRole{Level::k512G, false, false}));
  // A mirror root never matches a direct one, nor an invalid root a valid one, nor levels.
  EXPECT_NE(direct, (MmuPageRole{Level::k512G, true, false}));
  EXPECT_NE(direct, (MmuPageRole{Level::k512G, false, true}));
  EXPECT_NE(direct, (MmuPageRole{Level::k256T, false, false}));
}

TEST(MmuPage, FreshTableReadsNonPresentEverywhere) {
  HostMemory mem = small_memory();
  auto page = MmuPage::create(mem, MmuPageRole{Level::k2M, false, false}, Gfn{0x40000});
  ASSERT_NE(page, nullptr);
  EXPECT_EQ(page->gfn(), Gfn{0x40000});
  EXPECT_EQ(page->level(), Level::k2M);
  EXPECT_FALSE(page->is_mirror());
  EXPECT_FALSE(page->external_spt().has_value());
  EXPECT_TRUE(mem.is_allocated(page->spt().pfn()));
  for (unsigned i = 0; i < kPtesPerTable; ++i) {
    EXPECT_EQ(page->sptep(i), page->spt() + i * 8);
    EXPECT_EQ(mem.load(page->sptep(i), kHostKey, std::memory_order_acquire),
              Spte::kNonPresentValue);
  }
}

TEST(MmuPage, FramesGoBackWhenThePageDies) {
  HostMemory mem = small_memory();
  const uint64_t free_before = mem.free_frame_count();
  {
    auto page = MmuPage::create(mem, MmuPageRole{Level::k4K, true, false}, Gfn{0x200}, true);
    ASSERT_NE(page, nullptr);
    ASSERT_TRUE(page->external_spt().has_value());
    EXPECT_NE(*page->external_spt(), page->spt());
    EXPECT_EQ(mem.free_frame_count(), free_before - 2);
  }
  EXPECT_EQ(mem.free_frame_count(), free_before);
}

TEST(MmuPage, LeakedExternalSptStaysAllocated) {
  HostMemory mem = small_memory();
  const uint64_t free_before = mem.free_frame_count();
  Hpa external;
  {
    auto page = MmuPage::create(mem, MmuPageRole{Level::k4K, true, false}, Gfn{0}, true);
    ASSERT_NE(page, nullptr);
    external = *page->external_spt();
    page->leak_external_spt();
    EXPECT_FALSE(page->external_spt().has_value());
  }
  EXPECT_EQ(mem.free_frame_count(), free_before - 1);
  EXPECT_TRUE(mem.is_allocated(external.pfn()));
}

TEST(MmuPage, OutOfMemoryLeaksNothing) {
  HostMemory mem = small_memory(3);
  std::vector<Pfn> taken;
  while (mem.free_frame_count() > 1) taken.push_back(*mem.alloc_frame());
  // One frame left: the table fits, its S-EPT page does not.
  EXPECT_EQ(MmuPage::create(mem, MmuPageRole{Level::k4K, true, false}, Gfn{0}, true), nullptr);
  EXPECT_EQ(mem.free_frame_count(), 1u);
  auto page = MmuPage::create(mem, MmuPageRole{Level::k4K, true, false}, Gfn{0});
  EXPECT_NE(page, nullptr);
  EXPECT_EQ(MmuPage::create(mem, MmuPageRole{Level::k4K, false, false}, Gfn{0}), nullptr);
}

TEST(MmuPage, InvalidIsPartOfTheRole) {
  HostMemory mem = small_memory();
  auto root = MmuPage::create_root(mem, MmuPageRole{Level::k512G, true, false}, 2);
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(root->gfn(), Gfn{0});
  EXPECT_FALSE(root->role().invalid);
  root->mark_invalid();
  EXPECT_EQ(root->role(), (MmuPageRole{Level::k512G, true, true}));
}

TEST(MmuPage, RootRefcount) {
  HostMemory mem = small_memory();
  auto root = MmuPage::create_root(mem, MmuPageRole{Level::k512G, false, false}, 2);
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(root->root_refcount(), 2u);
  EXPECT_TRUE(root->try_get_root());
  EXPECT_EQ(root->root_refcount(), 3u);
  EXPECT_FALSE(root->put_root());
  EXPECT_FALSE(root->put_root());
  EXPECT_TRUE(root->put_root());  // the last one: the caller frees the root
  // A root on its way out cannot be revived.
  EXPECT_FALSE(root->try_get_root());
  EXPECT_EQ(root->root_refcount(), 0u);
}

TEST(MmuPageDeathTest, RefusesInconsistentPages) {
  HostMemory mem = small_memory();
  EXPECT_DEATH(MmuPage::create(mem, MmuPageRole{Level::k2M, false, false}, Gfn{0x200}),
               "misaligned");
  EXPECT_DEATH(MmuPage::create(mem, MmuPageRole{Level::k4K, false, false}, Gfn{0}, true),
               "S-EPT page for a direct page");
  EXPECT_DEATH(MmuPage::create(mem, MmuPageRole{Level::k4K, false, true}, Gfn{0}),
               "created invalid");
  auto root = MmuPage::create_root(mem, MmuPageRole{Level::k512G, false, false}, 1);
  ASSERT_TRUE(root->put_root());
  EXPECT_DEATH((void)root->put_root(), "underflow");
}

}  // namespace
}  // namespace tdxsim
