#include "kvm/memslot.h"

#include <gtest/gtest.h>

namespace tdxsim {
namespace {

Memslots::SlotPtr slot(uint16_t id, uint64_t base, uint64_t npages, bool log = false) {
  auto s = std::make_shared<Memslot>();
  s->id = id;
  s->base_gfn = Gfn{base};
  s->npages = npages;
  s->userspace_addr = 0x10000000 + base * kPageSize;
  if (log) {
    s->flags = kMemLogDirtyPages;
    s->dirty_bitmap =
        std::shared_ptr<AtomicWord[]>(new AtomicWord[Memslot::dirty_bitmap_words(npages)]);
  }
  return s;
}

TEST(Memslot, GeometryAndHva) {
  const Memslots::SlotPtr s = slot(3, 0x100, 16);
  EXPECT_EQ(s->end(), Gfn{0x110});
  EXPECT_TRUE(s->contains(Gfn{0x100}));
  EXPECT_TRUE(s->contains(Gfn{0x10f}));
  EXPECT_FALSE(s->contains(Gfn{0x110}));
  EXPECT_FALSE(s->contains(Gfn{0xff}));
  EXPECT_EQ(s->gfn_to_hva(Gfn{0x102}), s->userspace_addr + 2 * kPageSize);
  EXPECT_FALSE(s->can_be_private());
  EXPECT_FALSE(s->readonly());
}

TEST(Memslot, DirtyBitmapSetsTestsAndHarvests) {
  const Memslots::SlotPtr s = slot(0, 0x1000, 130, true);
  s->mark_page_dirty(Gfn{0x1000});
  s->mark_page_dirty(Gfn{0x1000 + 65});
  s->mark_page_dirty(Gfn{0x1000 + 129});
  EXPECT_TRUE(s->test_dirty(Gfn{0x1000 + 65}));
  EXPECT_FALSE(s->test_dirty(Gfn{0x1000 + 64}));
  EXPECT_EQ(s->get_and_clear_dirty_log(),
            (std::vector<uint64_t>{1, uint64_t{1} << 1, uint64_t{1} << 1}));
  EXPECT_FALSE(s->test_dirty(Gfn{0x1000}));
  EXPECT_EQ(s->get_and_clear_dirty_log(), (std::vector<uint64_t>{0, 0, 0}));
}

TEST(Memslot, NoBitmapMeansNoLogging) {
  const Memslots::SlotPtr s = slot(0, 0, 8);
  s->mark_page_dirty(Gfn{1});
  EXPECT_FALSE(s->test_dirty(Gfn{1}));
  EXPECT_TRUE(s->get_and_clear_dirty_log().empty());
}

TEST(Memslots, FindsTheSlotOfAGfn) {
  const Memslots set(0, 7, {slot(2, 0x200, 0x10), slot(0, 0, 0x10), slot(1, 0x100, 1)});
  EXPECT_EQ(set.generation(), 7u);
  EXPECT_EQ(set.size(), 3u);
  EXPECT_EQ(set.find(Gfn{0})->id, 0);
  EXPECT_EQ(set.find(Gfn{0xf})->id, 0);
  EXPECT_EQ(set.find(Gfn{0x10}), nullptr);
  EXPECT_EQ(set.find(Gfn{0x100})->id, 1);
  EXPECT_EQ(set.find(Gfn{0x101}), nullptr);
  EXPECT_EQ(set.find(Gfn{0x20f})->id, 2);
  EXPECT_EQ(set.find(Gfn{0x210}), nullptr);
  EXPECT_EQ(set.by_id(1)->base_gfn, Gfn{0x100});
  EXPECT_EQ(set.by_id(0, 2)->base_gfn, Gfn{0x200});
  EXPECT_EQ(set.by_id(1, 2), nullptr);
  EXPECT_EQ(set.by_id(9), nullptr);
  std::vector<uint16_t> order;
  for (const Memslot& s : set) order.push_back(s.id);
  EXPECT_EQ(order, (std::vector<uint16_t>{0, 1, 2}));
}

TEST(Memslots, RangeQueriesAndOverlap) {
  const Memslots set(0, 0, {slot(0, 0, 0x10), slot(1, 0x100, 1), slot(2, 0x200, 0x10)});
  auto ids = [&](uint64_t s, uint64_t e) {
    std::vector<uint16_t> out;
    for (const auto& p : set.in_gfn_range(Gfn{s}, Gfn{e})) out.push_back(p->id);
    return out;
  };
  EXPECT_EQ(ids(0, 0x1000), (std::vector<uint16_t>{0, 1, 2}));
  EXPECT_EQ(ids(0xf, 0x101), (std::vector<uint16_t>{0, 1}));
  EXPECT_EQ(ids(0x10, 0x100), (std::vector<uint16_t>{}));
  EXPECT_EQ(ids(0x20f, 0x210), (std::vector<uint16_t>{2}));
  EXPECT_EQ(ids(5, 5), (std::vector<uint16_t>{}));
  EXPECT_TRUE(set.overlaps(Gfn{0xff}, Gfn{0x101}, 0));
  EXPECT_FALSE(set.overlaps(Gfn{0x100}, Gfn{0x101}, 1));
}

TEST(Memslots, CopyOnWriteSharesUnchangedSlots) {
  const Memslots a(0, 1, {slot(0, 0, 0x10), slot(1, 0x100, 1)});
  const std::unique_ptr<Memslots> b = a.with(slot(1, 0x300, 2), 2);
  EXPECT_EQ(b->generation(), 2u);
  EXPECT_EQ(b->by_id(0), a.by_id(0));  // the same object
  EXPECT_EQ(b->by_id(1)->base_gfn, Gfn{0x300});
  EXPECT_EQ(a.by_id(1)->base_gfn, Gfn{0x100});
  const std::unique_ptr<Memslots> c = b->without(0, 3);
  EXPECT_EQ(c->size(), 1u);
  EXPECT_EQ(c->find(Gfn{0}), nullptr);
  const std::unique_ptr<Memslots> d = c->with(slot(5, 0x10, 1), 4);
  EXPECT_EQ(d->size(), 2u);
  EXPECT_EQ(d->find(Gfn{0x10})->id, 5);
}

}  // namespace
}  // namespace tdxsim
