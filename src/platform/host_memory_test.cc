#include "platform/host_memory.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

namespace tdxsim {
namespace {

constexpr KeyId kTd1{1};
constexpr KeyId kTd2{2};
constexpr uint64_t kMiB = uint64_t{1} << 20;

HostMemoryConfig small(ReusePolicy reuse = ReusePolicy::kLastFreedFirst,
                       ForeignReadResult foreign = ForeignReadResult::kCiphertext) {
  HostMemoryConfig c;
  c.bytes = 4 * kMiB;  // 1024 frames
  c.reuse = reuse;
  c.foreign_read = foreign;
  return c;
}

Hpa word_at(Pfn pfn, unsigned i) {
  return pfn.hpa() + uint64_t{i} * 8;
}

// A frame keyed to `key` and filled with `value` under it, as the module's PAGE.AUG/ADD does.
Pfn td_frame(HostMemory& mem, KeyId key, uint64_t value = 0) {
  const Pfn p = *mem.alloc_frame();
  mem.set_key(p, key);
  mem.fill(p, key, value);
  return p;
}

std::vector<MemViolationKind> kinds(const HostMemory& mem) {
  std::vector<MemViolationKind> out;
  for (const MemViolation& v : mem.violations()) out.push_back(v.kind);
  return out;
}

// --- Allocator through HostMemory ---

TEST(HostMemory, LastFreedFrameComesBackAtTheSameHpa) {
  HostMemory mem(small());
  const Pfn a = *mem.alloc_frame();
  const Pfn b = *mem.alloc_frame();
  EXPECT_EQ(a, Pfn{0});
  EXPECT_EQ(b, Pfn{1});
  mem.write(word_at(b, 3), kHostKey, 0xabc);
  mem.free_frame(b);
  EXPECT_FALSE(mem.is_allocated(b));
  const Pfn again = *mem.alloc_frame();
  EXPECT_EQ(again, b);
  // Handed out zero-filled, keyed to the host, with no trace of the old words.
  EXPECT_EQ(mem.read(word_at(again, 3), kHostKey), (MemWord{0, kHostKey}));
  EXPECT_EQ(mem.key(again), kHostKey);
}

TEST(HostMemory, PoliciesThroughHostMemory) {
  struct Case {
    ReusePolicy policy;
    std::vector<uint64_t> expect;  // after taking 0..5 and freeing 4, 1, 3
  };
  for (const Case& c : {Case{ReusePolicy::kLastFreedFirst, {3, 1, 4, 6}},
                        Case{ReusePolicy::kFirstFreedFirst, {6, 7, 8, 9}},
                        Case{ReusePolicy::kLowestFirst, {1, 3, 4, 6}}}) {
    HostMemory mem(small(c.policy));
    for (int i = 0; i < 6; ++i) EXPECT_EQ(mem.alloc_frame(), Pfn{static_cast<uint64_t>(i)});
    for (uint64_t p : {4, 1, 3}) mem.free_frame(Pfn{p});
    std::vector<uint64_t> got;
    for (int i = 0; i < 4; ++i) got.push_back(mem.alloc_frame()->raw());
    EXPECT_EQ(got, c.expect) << static_cast<int>(c.policy);
  }
}

TEST(HostMemory, RandomPolicyIsSeededAndCoversAllFrames) {
  HostMemoryConfig cfg = small(ReusePolicy::kRandom);
  cfg.seed = 7;
  HostMemory a(cfg);
  HostMemory b(cfg);
  std::vector<uint64_t> sa, sb;
  std::set<uint64_t> seen;
  for (uint64_t i = 0; i < a.total_frames(); ++i) {
    sa.push_back(a.alloc_frame()->raw());
    sb.push_back(b.alloc_frame()->raw());
    seen.insert(sa.back());
  }
  EXPECT_EQ(sa, sb);
  EXPECT_EQ(seen.size(), a.total_frames());
  EXPECT_FALSE(a.alloc_frame().has_value());
  EXPECT_FALSE(std::is_sorted(sa.begin(), sa.end()));
}

TEST(HostMemory, ExhaustionAndFreeCount) {
  HostMemory mem(small());
  EXPECT_EQ(mem.total_frames(), 1024u);
  EXPECT_EQ(mem.free_frame_count(), 1024u);
  std::vector<Pfn> all;
  while (std::optional<Pfn> p = mem.alloc_frame()) all.push_back(*p);
  EXPECT_EQ(all.size(), 1024u);
  EXPECT_EQ(mem.free_frame_count(), 0u);
  mem.free_frame(all[500]);
  EXPECT_EQ(mem.free_frame_count(), 1u);
  EXPECT_EQ(mem.alloc_frame(), all[500]);
  EXPECT_FALSE(mem.alloc_frame().has_value());
}

TEST(HostMemoryDeathTest, DoubleFreeDies) {
  HostMemory mem(small());
  const Pfn p = *mem.alloc_frame();
  mem.free_frame(p);
  EXPECT_DEATH(mem.free_frame(p), "free_frame: pfn:0x0 is not allocated \\(double free");
}

TEST(HostMemoryDeathTest, BadAddressesDie) {
  HostMemory mem(small());
  const Pfn p = *mem.alloc_frame();
  EXPECT_DEATH(mem.read(Hpa{4 * kMiB}, kHostKey), "read: hpa:0x400000 is outside host memory");
  EXPECT_DEATH(mem.write(Hpa{0x1004}, kHostKey, 1), "write: hpa:0x1004 is not 8-byte aligned");
  EXPECT_DEATH(mem.read(word_at(p, 0) + 3, kHostKey), "hpa:0x3 is not 8-byte aligned");
  EXPECT_DEATH(mem.fill(Pfn{1024}, kHostKey, 0), "fill: pfn:0x400 is outside host memory");
  EXPECT_DEATH(mem.set_key(Pfn{2000}, kTd1), "set_key: pfn:0x7d0 is outside host memory");
  EXPECT_DEATH(mem.free_frame(Pfn{5}), "free_frame: pfn:0x5 is not allocated");
  EXPECT_DEATH(mem.read(word_at(p, 0), KeyId{64}), "key ID 64 exceeds");
}

// --- Frames the allocator holds free (a hostile host's operands) ---

TEST(HostMemory, ContentAndKeyOpsWorkOnFramesNeverAllocated) {
  HostMemory mem(small());
  const Pfn p{700};
  const Pfn q{701};
  ASSERT_FALSE(mem.is_allocated(p));
  // Never written: zeros under the host key.
  EXPECT_EQ(mem.read(word_at(p, 3), kHostKey), (MemWord{0, kHostKey}));
  EXPECT_EQ(mem.key(p), kHostKey);
  mem.write(word_at(p, 3), kHostKey, 0x33);
  EXPECT_EQ(mem.read(word_at(p, 3), kHostKey).value, 0x33u);
  // What the module does with a page it takes: re-key, initialise, walk entries in it.
  mem.set_key(p, kTd1);
  mem.fill(p, kTd1, 0x44);
  mem.store(word_at(p, 9), kTd1, 0x1000, std::memory_order_release);
  uint64_t expected = 0x1000;
  EXPECT_TRUE(
      mem.compare_exchange(word_at(p, 9), kTd1, expected, 0x2000, std::memory_order_acq_rel));
  EXPECT_EQ(mem.fetch_or(word_at(p, 9), kTd1, 1, std::memory_order_acq_rel), 0x2000u);
  EXPECT_EQ(mem.exchange(word_at(p, 9), kTd1, 7, std::memory_order_acq_rel), 0x2001u);
  EXPECT_EQ(mem.load(word_at(p, 9), kTd1, std::memory_order_acquire), 7u);
  EXPECT_EQ(mem.read(word_at(p, 10), kTd1), (MemWord{0x44, kTd1}));
  EXPECT_TRUE(mem.has_dirty_lines(p));
  mem.wbinvd_frame(p, kTd1);
  EXPECT_FALSE(mem.has_dirty_lines(p));
  // A page copy, as TDH.MEM.PAGE.ADD makes it, and the digest.
  mem.set_key(q, kTd1);
  mem.copy_page(q, kTd1, p, kTd1);
  EXPECT_EQ(mem.page_hash(q, kTd1), mem.page_hash(p, kTd1));
  EXPECT_EQ(mem.read(word_at(q, 9), kTd1), (MemWord{7, kTd1}));
  EXPECT_TRUE(mem.violations().empty());
  // None of it allocated anything.
  EXPECT_FALSE(mem.is_allocated(p));
  EXPECT_FALSE(mem.is_allocated(q));
  EXPECT_EQ(mem.free_frame_count(), mem.total_frames());
}

TEST(HostMemory, FreedFrameReadsAsWhatItLastHeld) {
  HostMemory mem(small());
  const Pfn p = *mem.alloc_frame();
  mem.fill(p, kHostKey, 0x5);
  mem.write(word_at(p, 77), kHostKey, 0x77);
  mem.free_frame(p);
  EXPECT_EQ(mem.read(word_at(p, 77), kHostKey), (MemWord{0x77, kHostKey}));
  EXPECT_EQ(mem.read(word_at(p, 78), kHostKey), (MemWord{0x5, kHostKey}));
  mem.write(word_at(p, 78), kHostKey, 0x78);  // still memory
  EXPECT_EQ(mem.read(word_at(p, 78), kHostKey).value, 0x78u);
  // Handed out uncleared (for guest_memfd, which clears it itself): as it was.
  EXPECT_EQ(mem.alloc_frame(HostMemory::Clear::kNone), p);
  EXPECT_TRUE(mem.is_allocated(p));
  EXPECT_EQ(mem.read(word_at(p, 78), kHostKey).value, 0x78u);
  EXPECT_EQ(mem.read(word_at(p, 79), kHostKey), (MemWord{0x5, kHostKey}));
  mem.free_frame(p);
  // Handed out again: the host key holds it, so it comes cleared.
  EXPECT_EQ(mem.alloc_frame(), p);
  EXPECT_EQ(mem.read(word_at(p, 77), kHostKey), (MemWord{0, kHostKey}));
  EXPECT_EQ(mem.read(word_at(p, 78), kHostKey), (MemWord{0, kHostKey}));
  EXPECT_TRUE(mem.violations().empty());
}

// The module took a frame the host held free (a hostile TDH.MEM.PAGE.AUG, say); then the
// host's allocator hands it out and the host writes it as its own.
TEST(HostMemory, FrameTakenWhileFreeThenAllocatedIsPoisonedByTheHostsWrite) {
  HostMemory mem(small());
  const Pfn p{0};  // the allocator's next frame
  mem.set_key(p, kTd1);
  mem.fill(p, kTd1, 0x5ec);
  mem.write(word_at(p, 4), kTd1, 0x5ec4);
  ASSERT_EQ(mem.alloc_frame(), p);
  EXPECT_TRUE(mem.is_allocated(p));
  EXPECT_EQ(mem.key(p), kTd1);
  // The host reads ciphertext, never the TD's data, and nothing is recorded for it.
  EXPECT_NE(mem.read(word_at(p, 4), kHostKey).value, 0x5ec4u);
  EXPECT_NE(mem.read(word_at(p, 5), kHostKey).value, 0x5ecu);
  EXPECT_EQ(mem.read(word_at(p, 4), kTd1), (MemWord{0x5ec4, kTd1}));
  EXPECT_TRUE(mem.violations().empty());
  // The host's first write destroys the TD's page; the TD finds out at its next read.
  mem.write(word_at(p, 100), kHostKey, 0);
  mem.write(word_at(p, 101), kHostKey, 0);
  mem.read(word_at(p, 4), kTd1);
  const std::vector<MemViolation> v = mem.violations();
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].kind, MemViolationKind::kIntegrityPoison);
  EXPECT_EQ(v[0].hpa, word_at(p, 100));
  EXPECT_EQ(v[0].accessor, kHostKey);
  EXPECT_EQ(v[0].owner, kTd1);
  EXPECT_EQ(v[1].kind, MemViolationKind::kPoisonConsumed);
  EXPECT_EQ(v[1].hpa, word_at(p, 4));
  EXPECT_EQ(v[1].accessor, kTd1);
  // Had the TD's plaintext been copied out by the host (it cannot: it reads ciphertext),
  // it would be a leak; what the host copies is its own.
  const Pfn shared = *mem.alloc_frame();
  mem.copy_page(shared, kHostKey, p, kHostKey);
  EXPECT_EQ(mem.violation_count(), 2u);
}

TEST(HostMemory, AllocatorNeverHandsOutAnAllocatedFrame) {
  for (ReusePolicy policy : {ReusePolicy::kLastFreedFirst, ReusePolicy::kFirstFreedFirst,
                             ReusePolicy::kLowestFirst, ReusePolicy::kRandom}) {
    HostMemory mem(small(policy));
    std::set<uint64_t> held;
    for (int i = 0; i < 400; ++i) held.insert(mem.alloc_frame()->raw());
    // Free some; the module takes free frames, freed and never used alike, and writes them
    // word by word (so they carry word storage when the allocator hands them out).
    for (uint64_t pfn : std::vector<uint64_t>(held.begin(), held.end())) {
      if (pfn % 3 == 0) {
        mem.free_frame(Pfn{pfn});
        held.erase(pfn);
      }
    }
    for (uint64_t pfn = 0; pfn < mem.total_frames(); pfn += 5) {
      if (held.contains(pfn)) continue;
      mem.set_key(Pfn{pfn}, kTd1);
      mem.fill(Pfn{pfn}, kTd1, pfn);
      mem.write(word_at(Pfn{pfn}, 1), kTd1, pfn);
    }
    const uint64_t free_before = mem.free_frame_count();
    EXPECT_EQ(free_before, mem.total_frames() - held.size());
    uint64_t handed = 0;
    while (std::optional<Pfn> p = mem.alloc_frame()) {
      EXPECT_TRUE(held.insert(p->raw()).second) << "handed out twice: " << p->raw();
      ++handed;
    }
    EXPECT_EQ(handed, free_before) << static_cast<int>(policy);
    EXPECT_EQ(held.size(), mem.total_frames());
  }
}

// --- Contents ---

TEST(HostMemory, FillWordOverrideAndFillAgain) {
  HostMemory mem(small());
  const Pfn p = *mem.alloc_frame();
  EXPECT_EQ(mem.read(word_at(p, 511), kHostKey).value, 0u);
  mem.fill(p, kHostKey, 0x1111);
  EXPECT_EQ(mem.read(word_at(p, 0), kHostKey).value, 0x1111u);
  EXPECT_EQ(mem.read(word_at(p, 511), kHostKey).value, 0x1111u);
  mem.write(word_at(p, 70), kHostKey, 0x2222);
  EXPECT_EQ(mem.read(word_at(p, 70), kHostKey).value, 0x2222u);
  EXPECT_EQ(mem.read(word_at(p, 71), kHostKey).value, 0x1111u);  // same chunk, fill value
  EXPECT_EQ(mem.read(word_at(p, 69), kHostKey).value, 0x1111u);
  EXPECT_EQ(mem.read(word_at(p, 500), kHostKey).value, 0x1111u);  // other chunk
  mem.fill(p, kHostKey, 0x3333);
  for (unsigned i : {0u, 69u, 70u, 71u, 511u}) {
    EXPECT_EQ(mem.read(word_at(p, i), kHostKey).value, 0x3333u) << i;
  }
  EXPECT_TRUE(mem.violations().empty());
}

TEST(HostMemory, CopyPageCopiesFilledAndWordWrittenPages) {
  HostMemory mem(small());
  const Pfn src = *mem.alloc_frame();
  const Pfn dst = *mem.alloc_frame();
  mem.fill(src, kHostKey, 5);
  mem.write(word_at(dst, 9), kHostKey, 99);  // dst has word storage beforehand
  mem.copy_page(dst, kHostKey, src, kHostKey);
  EXPECT_EQ(mem.read(word_at(dst, 9), kHostKey).value, 5u);
  EXPECT_EQ(mem.page_hash(dst, kHostKey), mem.page_hash(src, kHostKey));
  for (unsigned i = 0; i < 512; i += 3) mem.write(word_at(src, i), kHostKey, i * 7);
  mem.copy_page(dst, kHostKey, src, kHostKey);
  for (unsigned i = 0; i < 512; ++i) {
    EXPECT_EQ(mem.read(word_at(dst, i), kHostKey).value, i % 3 == 0 ? i * 7 : 5u) << i;
  }
  EXPECT_EQ(mem.page_hash(dst, kHostKey), mem.page_hash(src, kHostKey));
  EXPECT_TRUE(mem.violations().empty());
}

TEST(HostMemory, PageHashIgnoresRepresentation) {
  HostMemory mem(small());
  const Pfn filled = *mem.alloc_frame();
  const Pfn written = *mem.alloc_frame();
  const Pfn partly = *mem.alloc_frame();
  mem.fill(filled, kHostKey, 0x77);
  for (unsigned i = 0; i < 512; ++i) mem.write(word_at(written, i), kHostKey, 0x77);
  mem.fill(partly, kHostKey, 0x77);
  mem.write(word_at(partly, 300), kHostKey, 0x77);
  EXPECT_EQ(mem.page_hash(filled, kHostKey), mem.page_hash(written, kHostKey));
  EXPECT_EQ(mem.page_hash(filled, kHostKey), mem.page_hash(partly, kHostKey));
  mem.write(word_at(written, 511), kHostKey, 0x78);
  EXPECT_NE(mem.page_hash(filled, kHostKey), mem.page_hash(written, kHostKey));
  // Position matters: swapping two different words changes the digest.
  const Pfn a = *mem.alloc_frame();
  const Pfn b = *mem.alloc_frame();
  mem.write(word_at(a, 1), kHostKey, 1);
  mem.write(word_at(b, 2), kHostKey, 1);
  EXPECT_NE(mem.page_hash(a, kHostKey), mem.page_hash(b, kHostKey));
  // Private pages compare under their key; another key sees something else.
  const Pfn t1 = td_frame(mem, kTd1, 0x77);
  EXPECT_EQ(mem.page_hash(t1, kTd1), mem.page_hash(filled, kHostKey));
  EXPECT_NE(mem.page_hash(t1, kHostKey), mem.page_hash(filled, kHostKey));
  EXPECT_TRUE(mem.violations().empty());
}

// --- Key rules ---

TEST(HostMemory, OwnerReadsPlaintextForeignReadsCiphertext) {
  HostMemory mem(small());
  const Pfn p = td_frame(mem, kTd1);
  const Pfn h = *mem.alloc_frame();
  std::set<uint64_t> ciphertexts;
  for (uint64_t i = 0; i < 20000; ++i) {
    const uint64_t v = i < 10000 ? i : i * 0x9e3779b97f4a7c15ull;
    const Hpa at = word_at(p, static_cast<unsigned>(i % 512));
    mem.write(at, kTd1, v);
    EXPECT_EQ(mem.read(at, kTd1), (MemWord{v, kTd1}));
    const MemWord host_view = mem.read(at, kHostKey);
    const MemWord other_td = mem.read(at, kTd2);
    ASSERT_NE(host_view.value, v) << i;
    ASSERT_NE(other_td.value, v) << i;
    EXPECT_NE(host_view.value, other_td.value);
    EXPECT_EQ(host_view.origin, kHostKey);
    EXPECT_EQ(other_td.origin, kHostKey);
    EXPECT_EQ(mem.load(at, kHostKey, std::memory_order_acquire), host_view.value);
    ciphertexts.insert(host_view.value);
    // A TD reading a host page with its private key sees ciphertext too.
    const Hpa hat = word_at(h, static_cast<unsigned>(i % 512));
    mem.write(hat, kHostKey, v);
    ASSERT_NE(mem.read(hat, kTd1).value, v);
  }
  // Deterministic, and a function of the address too: equal plaintexts differ per word.
  mem.fill(p, kTd1, 42);
  EXPECT_EQ(mem.read(word_at(p, 3), kHostKey), mem.read(word_at(p, 3), kHostKey));
  EXPECT_NE(mem.read(word_at(p, 3), kHostKey), mem.read(word_at(p, 4), kHostKey));
  EXPECT_GT(ciphertexts.size(), 19000u);
  EXPECT_TRUE(mem.violations().empty());
}

TEST(HostMemory, ForeignReadsReturnZerosWhenConfigured) {
  HostMemory mem(small(ReusePolicy::kLastFreedFirst, ForeignReadResult::kZeros));
  const Pfn p = td_frame(mem, kTd1, 0x5555);
  mem.write(word_at(p, 1), kTd1, 0x6666);
  EXPECT_EQ(mem.read(word_at(p, 0), kHostKey), (MemWord{0, kHostKey}));
  EXPECT_EQ(mem.read(word_at(p, 1), kTd2), (MemWord{0, kHostKey}));
  EXPECT_EQ(mem.read(word_at(p, 1), kTd1), (MemWord{0x6666, kTd1}));
}

TEST(HostMemory, ForeignWritePoisonsAndOwnerReadIsConsumed) {
  HostMemory mem(small());
  const Pfn p = td_frame(mem, kTd1, 0x10);
  mem.write(word_at(p, 5), kHostKey, 0xbad);
  ASSERT_EQ(mem.violation_count(), 1u);
  const MemViolation v = mem.violations()[0];
  EXPECT_EQ(v.kind, MemViolationKind::kIntegrityPoison);
  EXPECT_EQ(v.hpa, word_at(p, 5));
  EXPECT_EQ(v.accessor, kHostKey);
  EXPECT_EQ(v.owner, kTd1);
  // Further foreign writes add nothing: the owner's data is already lost.
  mem.write(word_at(p, 6), kTd2, 1);
  EXPECT_EQ(mem.violation_count(), 1u);

  // Any word of the frame, not only the written one, is garbage to the owner.
  const MemWord got = mem.read(word_at(p, 100), kTd1);
  EXPECT_NE(got.value, 0x10u);
  EXPECT_EQ(got.origin, kHostKey);
  EXPECT_EQ(mem.load(word_at(p, 100), kTd1, std::memory_order_acquire), got.value);
  EXPECT_EQ(kinds(mem), (std::vector<MemViolationKind>{MemViolationKind::kIntegrityPoison,
                                                       MemViolationKind::kPoisonConsumed,
                                                       MemViolationKind::kPoisonConsumed}));
  EXPECT_EQ(mem.violations()[1].hpa, word_at(p, 100));
  EXPECT_EQ(mem.violations()[1].accessor, kTd1);
  EXPECT_EQ(mem.violations()[1].owner, kTd1);

  // A word write by the owner does not clear poison; a whole-page write does.
  mem.write(word_at(p, 100), kTd1, 0x20);
  EXPECT_NE(mem.read(word_at(p, 100), kTd1).value, 0x20u);
  mem.fill(p, kTd1, 0x30);
  const uint64_t before = mem.violation_count();
  EXPECT_EQ(mem.read(word_at(p, 100), kTd1), (MemWord{0x30, kTd1}));
  EXPECT_EQ(mem.violation_count(), before);

  // set_key clears it too.
  mem.write(word_at(p, 0), kTd2, 1);
  EXPECT_EQ(mem.violations().back().kind, MemViolationKind::kIntegrityPoison);
  EXPECT_EQ(mem.violations().back().accessor, kTd2);
  mem.wbinvd_frame(p, kTd1);
  mem.set_key(p, kTd2);
  mem.fill(p, kTd2, 0x40);
  EXPECT_EQ(mem.read(word_at(p, 0), kTd2), (MemWord{0x40, kTd2}));
}

TEST(HostMemory, HostFramesHaveNoIntegrity) {
  HostMemory mem(small());
  const Pfn h = *mem.alloc_frame();
  mem.write(word_at(h, 0), kHostKey, 1);
  mem.write(word_at(h, 1), kTd1, 2);  // a leak (see below), but no poison
  EXPECT_EQ(mem.read(word_at(h, 0), kHostKey).value, 1u);
  EXPECT_EQ(kinds(mem), (std::vector<MemViolationKind>{MemViolationKind::kPlaintextLeak}));
}

TEST(HostMemory, PlaintextLeaks) {
  HostMemory mem(small());
  const Pfn secret = td_frame(mem, kTd1, 0x5ec);
  const Pfn shared = *mem.alloc_frame();
  const MemWord w = mem.read(word_at(secret, 0), kTd1);
  ASSERT_EQ(w.origin, kTd1);

  // The TD's plaintext written with the host key (a shared page): a leak.
  mem.write(word_at(shared, 0), kHostKey, w);
  ASSERT_EQ(mem.violation_count(), 1u);
  MemViolation v = mem.violations()[0];
  EXPECT_EQ(v.kind, MemViolationKind::kPlaintextLeak);
  EXPECT_EQ(v.hpa, word_at(shared, 0));
  EXPECT_EQ(v.accessor, kHostKey);
  EXPECT_EQ(v.owner, kTd1);

  // Plain values the host writes, and ciphertext it read, are host data.
  mem.write(word_at(shared, 1), kHostKey, 0x5ec);
  mem.write(word_at(shared, 2), kHostKey, mem.read(word_at(secret, 0), kHostKey));
  // The TD writing its own plaintext into its own frame, or into another TD's frame
  // keyed to that TD, is no leak to the host.
  const Pfn other = td_frame(mem, kTd1);
  mem.write(word_at(other, 0), kTd1, w);
  EXPECT_EQ(mem.violation_count(), 1u);

  // Its key on a host-keyed frame: stored as plaintext the host reads back.
  mem.write(word_at(shared, 3), kTd1, 0x123);
  EXPECT_EQ(mem.violation_count(), 2u);
  v = mem.violations()[1];
  EXPECT_EQ(v.kind, MemViolationKind::kPlaintextLeak);
  EXPECT_EQ(v.accessor, kTd1);
  EXPECT_EQ(v.owner, kTd1);

  // Page copies: out of the TD with its own key into host memory leaks once per page;
  // with the wrong source key, ciphertext is copied and nothing leaks.
  const Pfn dst = *mem.alloc_frame();
  mem.copy_page(dst, kHostKey, secret, kTd1);
  EXPECT_EQ(mem.violation_count(), 3u);
  EXPECT_EQ(mem.violations()[2].kind, MemViolationKind::kPlaintextLeak);
  EXPECT_EQ(mem.violations()[2].hpa, dst.hpa());
  EXPECT_EQ(mem.page_hash(dst, kHostKey), mem.page_hash(secret, kTd1));
  mem.copy_page(dst, kHostKey, secret, kHostKey);
  EXPECT_EQ(mem.violation_count(), 3u);
  EXPECT_EQ(mem.page_hash(dst, kHostKey), mem.page_hash(secret, kHostKey));
  EXPECT_NE(mem.read(word_at(dst, 7), kHostKey).value, 0x5ecu);
}

// Writes to words already stored take a shorter path (no change to the frame's state);
// the key rules still hold on it.
TEST(HostMemory, RulesHoldForWordsWrittenBefore) {
  HostMemory mem(small());
  const Pfn secret = td_frame(mem, kTd1, 0x5ec);
  const MemWord w = mem.read(word_at(secret, 0), kTd1);
  const Pfn shared = *mem.alloc_frame();
  mem.write(word_at(shared, 0), kHostKey, 1);
  mem.store(word_at(shared, 1), kHostKey, 2, std::memory_order_release);
  EXPECT_TRUE(mem.violations().empty());
  // The TD's plaintext into a host word stored before: still a leak.
  mem.write(word_at(shared, 1), kHostKey, w);
  EXPECT_EQ(kinds(mem), (std::vector<MemViolationKind>{MemViolationKind::kPlaintextLeak}));

  // The owner's second write of a word is plain; another key's write still poisons.
  const Pfn p = td_frame(mem, kTd2, 0);
  mem.store(word_at(p, 0), kTd2, 1, std::memory_order_release);
  uint64_t expected = 1;
  EXPECT_TRUE(mem.compare_exchange(word_at(p, 0), kTd2, expected, 3, std::memory_order_acq_rel));
  EXPECT_EQ(mem.violation_count(), 1u);
  mem.store(word_at(p, 1), kTd1, 9, std::memory_order_release);
  ASSERT_EQ(mem.violation_count(), 2u);
  EXPECT_EQ(mem.violations()[1].kind, MemViolationKind::kIntegrityPoison);
  expected = 3;
  mem.compare_exchange(word_at(p, 0), kTd2, expected, 4, std::memory_order_acq_rel);
  ASSERT_EQ(mem.violation_count(), 3u);
  EXPECT_EQ(mem.violations()[2].kind, MemViolationKind::kPoisonConsumed);
}

TEST(HostMemory, CopyPageIntoTdIsPageAdd) {
  HostMemory mem(small());
  const Pfn src = *mem.alloc_frame();
  for (unsigned i = 0; i < 512; ++i) mem.write(word_at(src, i), kHostKey, i);
  const Pfn dst = *mem.alloc_frame();
  mem.set_key(dst, kTd1);
  mem.copy_page(dst, kTd1, src, kHostKey);
  EXPECT_EQ(mem.read(word_at(dst, 77), kTd1), (MemWord{77, kTd1}));
  EXPECT_EQ(mem.page_hash(dst, kTd1), mem.page_hash(src, kHostKey));
  EXPECT_TRUE(mem.has_dirty_lines(dst));
  EXPECT_TRUE(mem.violations().empty());
}

// --- Caches ---

TEST(HostMemory, DirtyLinesAndWbinvd) {
  HostMemory mem(small());
  const Pfn p = *mem.alloc_frame();
  mem.set_key(p, kTd1);
  EXPECT_FALSE(mem.has_dirty_lines(p));
  mem.write(word_at(p, 0), kTd1, 1);
  EXPECT_TRUE(mem.has_dirty_lines(p));
  mem.wbinvd_frame(p, kTd2);  // another key's lines: nothing to do
  EXPECT_TRUE(mem.has_dirty_lines(p));
  mem.wbinvd_frame(p, kTd1);
  EXPECT_FALSE(mem.has_dirty_lines(p));
  mem.fetch_or(word_at(p, 1), kTd1, 4, std::memory_order_relaxed);
  EXPECT_TRUE(mem.has_dirty_lines(p));
  mem.wbinvd_key(kTd2);
  EXPECT_TRUE(mem.has_dirty_lines(p));
  mem.wbinvd_key(kTd1);
  EXPECT_FALSE(mem.has_dirty_lines(p));
  // Host writes leave no tracked lines.
  const Pfn h = *mem.alloc_frame();
  mem.write(word_at(h, 0), kHostKey, 1);
  EXPECT_FALSE(mem.has_dirty_lines(h));
  // Reclaim done right: write back, re-key, clear.
  mem.write(word_at(p, 0), kTd1, 1);
  mem.wbinvd_frame(p, kTd1);
  mem.set_key(p, kHostKey);
  mem.fill(p, kHostKey, 0);
  EXPECT_TRUE(mem.violations().empty());
}

TEST(HostMemory, RekeyWithDirtyLinesIsStaleReuse) {
  HostMemory mem(small());
  const Pfn p = td_frame(mem, kTd1, 3);
  mem.set_key(p, kTd1);  // same key: its own lines are fine
  EXPECT_TRUE(mem.violations().empty());
  mem.set_key(p, kHostKey);
  ASSERT_EQ(mem.violation_count(), 1u);
  const MemViolation v = mem.violations()[0];
  EXPECT_EQ(v.kind, MemViolationKind::kStaleCacheReuse);
  EXPECT_EQ(v.hpa, p.hpa());
  EXPECT_EQ(v.accessor, kHostKey);
  EXPECT_EQ(v.owner, kTd1);
  EXPECT_FALSE(mem.has_dirty_lines(p));  // reported once
  mem.write(word_at(p, 0), kHostKey, 1);
  EXPECT_EQ(mem.violation_count(), 1u);
}

TEST(HostMemory, TdFrameFreedWithoutResetIsPoisonedByTheHostsFirstWrite) {
  HostMemory mem(small());
  const Pfn p = td_frame(mem, kTd1, 3);
  mem.free_frame(p);  // no WBINVD, no reset to the host key
  EXPECT_EQ(mem.key(p), kTd1);
  EXPECT_TRUE(mem.has_dirty_lines(p));
  const Pfn again = *mem.alloc_frame();
  ASSERT_EQ(again, p);
  // The allocator re-keys nothing: the host got the TD's page, and reads its ciphertext.
  EXPECT_EQ(mem.key(p), kTd1);
  EXPECT_TRUE(mem.has_dirty_lines(p));
  EXPECT_NE(mem.read(word_at(p, 0), kHostKey).value, 3u);
  EXPECT_TRUE(mem.violations().empty());  // reads are no violation
  mem.write(word_at(p, 8), kHostKey, 1);
  ASSERT_EQ(mem.violation_count(), 1u);
  const MemViolation v = mem.violations()[0];
  EXPECT_EQ(v.kind, MemViolationKind::kIntegrityPoison);
  EXPECT_EQ(v.hpa, word_at(p, 8));
  EXPECT_EQ(v.accessor, kHostKey);
  EXPECT_EQ(v.owner, kTd1);
  // Resetting it now, still without WBINVD, is the stale reuse.
  mem.set_key(p, kHostKey);
  EXPECT_EQ(mem.violations().back().kind, MemViolationKind::kStaleCacheReuse);
  EXPECT_EQ(mem.violations().back().owner, kTd1);
  EXPECT_FALSE(mem.has_dirty_lines(p));
}

TEST(HostMemory, FreedDirtyFrameWrittenBackWhileFreeIsClean) {
  HostMemory mem(small());
  const Pfn p = td_frame(mem, kTd1, 3);
  mem.free_frame(p);
  mem.wbinvd_key(kTd1);  // TDH.PHYMEM.CACHE.WB at TD teardown reaches free frames too
  EXPECT_FALSE(mem.has_dirty_lines(p));
  const Pfn again = *mem.alloc_frame();
  ASSERT_EQ(again, p);
  mem.set_key(again, kHostKey);  // KVM's reset after reclaim: written back, so not stale
  mem.fill(again, kHostKey, 0);
  EXPECT_TRUE(mem.violations().empty());
}

TEST(HostMemory, WbinvdKeyReachesFramesNeverAllocated) {
  HostMemory mem(small());
  (void)*mem.alloc_frame();
  const Pfn far{900};  // far above anything the allocator handed out
  mem.set_key(far, kTd1);
  mem.fill(far, kTd1, 1);
  EXPECT_TRUE(mem.has_dirty_lines(far));
  mem.wbinvd_key(kTd1);
  EXPECT_FALSE(mem.has_dirty_lines(far));
}

TEST(HostMemory, ReallocatedDirtyFrameToTheSameTdIsNotStale) {
  HostMemory mem(small());
  const Pfn p = td_frame(mem, kTd1, 3);
  mem.free_frame(p);
  const Pfn again = *mem.alloc_frame();
  mem.set_key(again, kTd1);
  mem.fill(again, kTd1, 0);
  EXPECT_TRUE(mem.violations().empty());
}

TEST(HostMemory, SetKeyKeepsBytesNotMeaning) {
  HostMemory mem(small());
  const Pfn p = td_frame(mem, kTd1, 0x99);
  mem.write(word_at(p, 10), kTd1, 0x1234);
  const MemWord host_before = mem.read(word_at(p, 10), kHostKey);
  mem.wbinvd_frame(p, kTd1);
  mem.set_key(p, kHostKey);
  // What the host reads now is what it read before: the TD's ciphertext, not its data.
  EXPECT_EQ(mem.read(word_at(p, 10), kHostKey).value, host_before.value);
  EXPECT_NE(mem.read(word_at(p, 10), kHostKey).value, 0x1234u);
  EXPECT_NE(mem.read(word_at(p, 11), kHostKey).value, 0x99u);
  mem.fill(p, kHostKey, 0);  // KVM's tdx_quirk_reset_page
  EXPECT_EQ(mem.read(word_at(p, 10), kHostKey), (MemWord{0, kHostKey}));
  EXPECT_TRUE(mem.violations().empty());
}

// --- Atomic entry access ---

TEST(HostMemory, AtomicEntryOps) {
  HostMemory mem(small());
  const Pfn p = td_frame(mem, kTd1, 0);
  const Hpa e = word_at(p, 200);
  mem.store(e, kTd1, 0x1000, std::memory_order_release);
  EXPECT_EQ(mem.load(e, kTd1, std::memory_order_acquire), 0x1000u);

  uint64_t expected = 0x2000;
  EXPECT_FALSE(mem.compare_exchange(e, kTd1, expected, 0x3000, std::memory_order_acq_rel));
  EXPECT_EQ(expected, 0x1000u);
  EXPECT_TRUE(mem.compare_exchange(e, kTd1, expected, 0x3000, std::memory_order_acq_rel));
  EXPECT_EQ(expected, 0x1000u);
  EXPECT_EQ(mem.load(e, kTd1, std::memory_order_relaxed), 0x3000u);

  EXPECT_EQ(mem.exchange(e, kTd1, 0x4000, std::memory_order_acq_rel), 0x3000u);
  EXPECT_EQ(mem.fetch_or(e, kTd1, 0x60, std::memory_order_relaxed), 0x4000u);
  EXPECT_EQ(mem.read(e, kTd1), (MemWord{0x4060, kTd1}));

  // Entry ops on a filled word see the fill.
  mem.fill(p, kTd1, 0x7);
  EXPECT_EQ(mem.fetch_or(word_at(p, 3), kTd1, 0x8, std::memory_order_relaxed), 0x7u);
  EXPECT_EQ(mem.read(word_at(p, 3), kTd1).value, 0xfu);
  EXPECT_EQ(mem.read(word_at(p, 4), kTd1).value, 0x7u);
  EXPECT_TRUE(mem.violations().empty());
}

TEST(HostMemory, ForeignEntryOpsPoison) {
  HostMemory mem(small());
  const Pfn p = td_frame(mem, kTd1, 0);
  const Hpa e = word_at(p, 1);
  mem.store(e, kTd1, 0x55, std::memory_order_release);
  const uint64_t cipher = mem.load(e, kHostKey, std::memory_order_acquire);
  EXPECT_NE(cipher, 0x55u);
  EXPECT_TRUE(mem.violations().empty());  // a foreign load is harmless

  // A failed foreign CAS still writes the line: poisoned. It compares with what it reads.
  uint64_t expected = 0x55;
  EXPECT_FALSE(mem.compare_exchange(e, kHostKey, expected, 0x66, std::memory_order_acq_rel));
  EXPECT_EQ(expected, cipher);
  EXPECT_EQ(kinds(mem), (std::vector<MemViolationKind>{MemViolationKind::kIntegrityPoison}));
  EXPECT_TRUE(mem.compare_exchange(e, kHostKey, expected, 0x66, std::memory_order_acq_rel));

  for (auto op : {0, 1, 2}) {
    const Pfn q = td_frame(mem, kTd2, 0);
    const uint64_t n = mem.violation_count();
    if (op == 0) mem.store(word_at(q, 0), kTd1, 1, std::memory_order_release);
    if (op == 1) {
      EXPECT_NE(mem.exchange(word_at(q, 0), kHostKey, 1, std::memory_order_acq_rel), 0u);
    }
    if (op == 2) {
      EXPECT_NE(mem.fetch_or(word_at(q, 0), kHostKey, 1, std::memory_order_relaxed), 0u);
    }
    ASSERT_EQ(mem.violation_count(), n + 1) << op;
    EXPECT_EQ(mem.violations().back().kind, MemViolationKind::kIntegrityPoison);
    EXPECT_EQ(mem.violations().back().owner, kTd2);
    mem.load(word_at(q, 0), kTd2, std::memory_order_acquire);
    EXPECT_EQ(mem.violations().back().kind, MemViolationKind::kPoisonConsumed);
  }
}

// --- Violations and accounting ---

TEST(HostMemory, ViolationLogIsBounded) {
  HostMemory mem(small());
  const Pfn secret = td_frame(mem, kTd1, 1);
  const Pfn shared = *mem.alloc_frame();
  const MemWord w = mem.read(word_at(secret, 0), kTd1);
  for (int i = 0; i < 3000; ++i) mem.write(word_at(shared, i % 512), kHostKey, w);
  EXPECT_EQ(mem.violation_count(), 3000u);
  EXPECT_EQ(mem.violations().size(), 1024u);
  EXPECT_STREQ(to_string(MemViolationKind::kPlaintextLeak), "plaintext-leak");
  EXPECT_STREQ(to_string(MemViolationKind::kStaleCacheReuse), "stale-cache-reuse");
}

TEST(HostMemory, ModelBytesCountMetadataAndWordStorage) {
  HostMemoryConfig cfg;
  cfg.bytes = uint64_t{64} << 30;  // 64 GiB: metadata is reserved, not resident
  HostMemory mem(cfg);
  EXPECT_LT(mem.model_bytes(), 64 * 1024u);
  const Pfn p = *mem.alloc_frame();
  const uint64_t with_frame = mem.model_bytes();
  EXPECT_LE(with_frame, 64 * 1024u);
  mem.fill(p, kHostKey, 1);
  EXPECT_EQ(mem.model_bytes(), with_frame);  // a fill costs nothing
  mem.write(word_at(p, 0), kHostKey, 2);
  EXPECT_EQ(mem.model_bytes(), with_frame + 4096 + 512);  // slot page + one chunk
  mem.write(word_at(p, 511), kHostKey, 2);
  EXPECT_EQ(mem.model_bytes(), with_frame + 4096 + 1024);
  // Storage stays with the frame through free and reuse (see the header); the free adds a
  // page of the allocator's stack.
  mem.free_frame(p);
  EXPECT_EQ(mem.model_bytes(), with_frame + 2 * 4096 + 1024);
  EXPECT_EQ(mem.alloc_frame(), p);
  EXPECT_EQ(mem.read(word_at(p, 511), kHostKey), (MemWord{0, kHostKey}));
  EXPECT_EQ(mem.model_bytes(), with_frame + 2 * 4096 + 1024);
}

TEST(HostMemory, AllocatorListsCostOnlyWhatIsFreed) {
  HostMemoryConfig cfg;
  cfg.bytes = uint64_t{64} << 30;
  HostMemory mem(cfg);
  const Pfn p = *mem.alloc_frame();
  const uint64_t with_frame = mem.model_bytes();
  mem.free_frame(p);
  EXPECT_EQ(mem.model_bytes(), with_frame + 4096);  // one page of the LIFO stack
}

}  // namespace
}  // namespace tdxsim

namespace tdxsim {
namespace {

TEST(HostMemoryHugePool, TwoMegabytePagesAreAlignedRunsTheFourKAllocatorNeverSees) {
  HostMemory mem(HostMemoryConfig{.bytes = 4 * 1024 * kPageSize, .huge_2m_pages = 2});
  EXPECT_EQ(mem.free_huge_2m_count(), 2u);
  EXPECT_EQ(mem.free_frame_count(), 4u * 1024 - 2 * 512);
  // Every 4K frame lies below the pool.
  std::vector<Pfn> small;
  while (std::optional<Pfn> p = mem.alloc_frame()) {
    EXPECT_LT(p->raw(), 4u * 1024 - 2 * 512);
    small.push_back(*p);
  }
  const Pfn a = *mem.alloc_huge_2m();
  const Pfn b = *mem.alloc_huge_2m();
  EXPECT_FALSE(mem.alloc_huge_2m());
  EXPECT_TRUE(a.is_aligned(Level::k2M) && b.is_aligned(Level::k2M));
  EXPECT_NE(a, b);
  for (uint64_t i : {0u, 1u, 511u}) {
    EXPECT_TRUE(mem.is_allocated(a + i));
    EXPECT_EQ(mem.read((a + i).hpa() + 8, kHostKey).value, 0u);
  }
  mem.write((a + 3).hpa(), kHostKey, 7);
  mem.free_huge_2m(a);
  EXPECT_FALSE(mem.is_allocated(a + 3));
  // Last freed, first handed out; zeroed again.
  EXPECT_EQ(*mem.alloc_huge_2m(), a);
  EXPECT_EQ(mem.read((a + 3).hpa(), kHostKey).value, 0u);
  for (Pfn p : small) mem.free_frame(p);
}

TEST(HostMemoryHugePoolDeathTest, APoolFrameIsNotA4KFrame) {
  HostMemory mem(HostMemoryConfig{.bytes = 2048 * kPageSize, .huge_2m_pages = 1});
  const Pfn a = *mem.alloc_huge_2m();
  EXPECT_DEATH(mem.free_frame(a + 1), "belongs to a 2M page");
  EXPECT_DEATH(mem.free_huge_2m(a + 512 - 1024), "not a 2M page of the pool");
}

}  // namespace
}  // namespace tdxsim
