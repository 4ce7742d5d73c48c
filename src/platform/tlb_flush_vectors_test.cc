// The flush-reach vectors of testdata/tlb_flush_vectors.txt, checked against the TLB and
// the Hyper-V L0 that the logical CPUs use.
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "platform/hyperv_l0.h"
#include "platform/tlb.h"

namespace tdxsim {
namespace {

Level parse_level(const std::string& s) {
  if (s == "4K") return Level::k4K;
  if (s == "2M") return Level::k2M;
  if (s == "1G") return Level::k1G;
  ADD_FAILURE() << "bad level " << s;
  return Level::k4K;
}

uint64_t num(const std::string& s) {
  return std::stoull(s, nullptr, 0);
}

struct Vectors {
  std::vector<std::pair<std::string, TlbEntry>> entries;
  std::vector<std::pair<std::string, L0Translation>> l0;
  struct Flush {
    int line;
    std::vector<std::string> op;
    std::set<std::string> tlb_survivors, l0_survivors;
  };
  std::vector<Flush> flushes;
};

std::set<std::string> labels(std::istringstream& in) {
  std::set<std::string> out;
  for (std::string w; in >> w && w != "|";)
    if (w != "-") out.insert(w);
  return out;
}

Vectors load() {
  Vectors v;
  std::ifstream f(std::string(TDXSIM_TESTDATA) + "/tlb_flush_vectors.txt");
  EXPECT_TRUE(f.good()) << "cannot read tlb_flush_vectors.txt";
  std::string line;
  for (int n = 1; std::getline(f, line); ++n) {
    std::istringstream in(line);
    std::string kind;
    if (!(in >> kind) || kind[0] == '#') continue;
    if (kind == "entry") {
      std::string label, k, vpid, pcid, ep4ta, page, level, root;
      in >> label >> k >> vpid >> pcid >> ep4ta >> page >> level >> root;
      TlbEntry e;
      e.tag.kind = k == "comb"  ? TlbEntryKind::kCombined
                   : k == "gpa" ? TlbEntryKind::kGuestPhysical
                                : TlbEntryKind::kAsid;
      e.tag.vpid_or_asid = static_cast<uint16_t>(num(vpid));
      e.tag.pcid = static_cast<uint16_t>(num(pcid));
      e.tag.ep4ta = num(ep4ta);
      e.page = num(page);
      e.level = parse_level(level);
      e.source_root = Hpa{num(root)};
      e.gpa = Gpa{e.page};
      e.hpa = Hpa{0x100000000 + e.page};
      e.perms = Perms{true, true, true, true};
      v.entries.emplace_back(label, e);
    } else if (kind == "l0") {
      std::string label, root, asid, gpa, level;
      in >> label >> root >> asid >> gpa >> level;
      L0Translation t;
      t.root = Hpa{num(root)};
      t.asid = static_cast<uint16_t>(num(asid));
      t.gpa = Gpa{num(gpa)};
      t.level = parse_level(level);
      t.hpa = Hpa{0x200000000 + t.gpa.raw()};
      t.perms = Perms{true, true, true, true};
      v.l0.emplace_back(label, t);
    } else if (kind == "flush") {
      Vectors::Flush fl{n, {}, {}, {}};
      for (std::string w; in >> w && w != "->";) fl.op.push_back(w);
      fl.tlb_survivors = labels(in);
      fl.l0_survivors = labels(in);
      v.flushes.push_back(fl);
    } else {
      ADD_FAILURE() << "tlb_flush_vectors.txt:" << n << ": unknown record " << kind;
    }
  }
  return v;
}

std::string join(const std::set<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += (out.empty() ? "" : " ") + x;
  return out.empty() ? "-" : out;
}

// Applies one flush; returns false for an unknown op.
bool apply(const std::vector<std::string>& op, Tlb& tlb, HyperVL0& l0) {
  const std::string& o = op[0];
  auto arg = [&](size_t i) { return num(op.at(i)); };
  auto u16 = [&](size_t i) { return static_cast<uint16_t>(arg(i)); };
  if (o == "invept-single")
    tlb.invept(InveptType::kSingleContext, arg(1));
  else if (o == "invept-all")
    tlb.invept(InveptType::kAllContext, 0);
  else if (o == "invvpid-addr")
    tlb.invvpid(InvvpidType::kIndividualAddress, u16(1), arg(2));
  else if (o == "invvpid-single")
    tlb.invvpid(InvvpidType::kSingleContext, u16(1), 0);
  else if (o == "invvpid-single-globals")
    tlb.invvpid(InvvpidType::kSingleContextRetainingGlobals, u16(1), 0);
  else if (o == "invvpid-all")
    tlb.invvpid(InvvpidType::kAllContext, 0, 0);
  else if (o == "fault-ept")
    tlb.invalidate_on_fault(TlbTag{TlbEntryKind::kCombined, 0, 0, arg(1)}, arg(2));
  else if (o == "asid" || o == "l0-asid" || o == "l0-enlightened-asid") {
    tlb.flush_asid(u16(1));
    if (o != "asid") l0.on_asid_flush(u16(1), false);
  } else if (o == "asid-all" || o == "l0-asid-all" || o == "l0-enlightened-asid-all") {
    tlb.flush_all_asids();
    if (o != "asid-all") l0.on_asid_flush(0, true);
  } else if (o == "invlpga")
    tlb.invlpga(u16(1), arg(2));
  else if (o == "fault-npt")
    tlb.invalidate_on_fault(TlbTag{TlbEntryKind::kAsid, u16(1), 0, 0}, arg(2));
  else if (o == "l0-invept-single") {
    tlb.invept(InveptType::kSingleContext, arg(1));
    l0.on_invept(false, arg(1));
  } else if (o == "l0-invept-all") {
    tlb.invept(InveptType::kAllContext, 0);
    l0.on_invept(true, 0);
  } else if (o == "hv-space" || o == "l0-enlightened-hv-space") {
    EXPECT_EQ(l0.flush_guest_physical_address_space(Hpa{arg(1)}), HvStatus::kSuccess);
  } else if (o == "hv-list") {
    const HvGpaPageRange r = HvGpaPageRange::pages(Gpa{arg(2)}.gfn(), arg(3));
    EXPECT_EQ(l0.flush_guest_physical_address_list(Hpa{arg(1)}, {&r, 1}), HvStatus::kSuccess);
  } else {
    return false;
  }
  return true;
}

TEST(TlbFlushVectors, EveryFlushHasItsExactReach) {
  const Vectors v = load();
  ASSERT_GE(v.entries.size(), 10u);
  ASSERT_GE(v.flushes.size(), 30u);
  for (const auto& fl : v.flushes) {
    SCOPED_TRACE("tlb_flush_vectors.txt:" + std::to_string(fl.line) + ": " + fl.op[0]);
    Tlb tlb(TlbConfig{});
    Tlb* tlbs[] = {&tlb};
    const bool enlightened = fl.op[0].starts_with("l0-enlightened");
    HyperVL0 l0(HyperVConfig{enlightened}, tlbs);
    for (const auto& [label, e] : v.entries) tlb.insert(e);
    for (const auto& [label, t] : v.l0) l0.insert(t, l0.generation());
    ASSERT_TRUE(apply(fl.op, tlb, l0)) << "unknown flush op";

    std::set<std::string> tlb_left, l0_left;
    for (const auto& [label, e] : v.entries)
      if (tlb.lookup(e.tag, e.page)) tlb_left.insert(label);
    for (const auto& [label, t] : v.l0)
      if (l0.lookup(t.root, t.gpa)) l0_left.insert(label);
    EXPECT_EQ(join(tlb_left), join(fl.tlb_survivors)) << "TLB survivors";
    EXPECT_EQ(join(l0_left), join(fl.l0_survivors)) << "L0 survivors";
  }
  std::cout << "tlb_flush_vectors: " << v.flushes.size() << " flushes over " << v.entries.size()
            << " TLB entries and " << v.l0.size() << " L0 translations checked\n";
  RecordProperty("tlb_flush_vectors", static_cast<int>(v.flushes.size()));
}

TEST(Tlb, BoundedCapacityEvictsSeeded) {
  auto fill = [](uint64_t seed) {
    Tlb tlb(TlbConfig{8, seed});
    for (uint64_t i = 0; i < 64; ++i) {
      TlbEntry e;
      e.tag = TlbTag{TlbEntryKind::kCombined, 1, 0, 0x1000};
      e.page = i << 12;
      e.gpa = Gpa{e.page};
      tlb.insert(e);
    }
    EXPECT_EQ(tlb.size(), 8u);
    EXPECT_EQ(tlb.stats().evictions.value(), 56u);
    std::set<uint64_t> pages;
    for (const auto& e : tlb.entries()) pages.insert(e.page);
    return pages;
  };
  EXPECT_EQ(fill(7), fill(7)) << "same seed, same survivors";
  EXPECT_NE(fill(7), fill(8)) << "the seed decides eviction";
}

TEST(Tlb, UnboundedNeverEvicts) {
  Tlb tlb(TlbConfig{});
  for (uint64_t i = 0; i < 10000; ++i) {
    TlbEntry e;
    e.tag = TlbTag{TlbEntryKind::kCombined, 1, 0, 0x1000};
    e.page = i << 12;
    tlb.insert(e);
  }
  EXPECT_EQ(tlb.size(), 10000u);
  EXPECT_EQ(tlb.stats().evictions.value(), 0u);
}

TEST(Tlb, LookupFindsEveryPageSize) {
  Tlb tlb(TlbConfig{});
  TlbEntry e;
  e.tag = TlbTag{TlbEntryKind::kCombined, 1, 0, 0x1000};
  e.page = 0x40000000;
  e.level = Level::k1G;
  e.hpa = Hpa{0x80000000};
  tlb.insert(e);
  auto hit = tlb.lookup(e.tag, 0x40000000 + 0x12345678);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->hpa_of(0x40000000 + 0x12345678), Hpa{0x80000000 + 0x12345678});
  EXPECT_FALSE(tlb.lookup(TlbTag{TlbEntryKind::kCombined, 2, 0, 0x1000}, 0x40000000));
}

// The paging-structure cache: each flush drops exactly the PSC entries the manuals say.
PscEntry psc_entry(TlbTag tag, uint64_t region, Hpa root = Hpa{0x5000}) {
  PscEntry e;
  e.tag = tag;
  e.region = region;
  e.table = Hpa{0x9000};
  e.source_root = root;
  return e;
}

TEST(TlbPsc, LookupSharesGuestPhysicalEntriesByEp4ta) {
  Tlb tlb(TlbConfig{});
  const TlbTag combined{TlbEntryKind::kCombined, 3, 4, 0x1000};
  tlb.psc_insert(psc_entry(Tlb::psc_tag(combined), 0x20'0000));
  // Any address of the 2M region, from a combined or a guest-physical access.
  EXPECT_TRUE(tlb.psc_lookup(combined, 0x20'0000 + 0x1f'f000));
  EXPECT_TRUE(tlb.psc_lookup(TlbTag{TlbEntryKind::kGuestPhysical, 0, 0, 0x1000}, 0x20'1000));
  EXPECT_FALSE(tlb.psc_lookup(combined, 0x40'0000));
  EXPECT_FALSE(tlb.psc_lookup(TlbTag{TlbEntryKind::kCombined, 3, 4, 0x2000}, 0x20'0000));
  EXPECT_FALSE(tlb.psc_lookup(TlbTag{TlbEntryKind::kAsid, 3, 0, 0}, 0x20'0000));
  EXPECT_EQ(tlb.stats().psc_hits.value(), 2u);
}

TEST(TlbPsc, EachFlushDropsWhatItReaches) {
  const TlbTag ept_a{TlbEntryKind::kGuestPhysical, 0, 0, 0x1000};
  const TlbTag ept_b{TlbEntryKind::kGuestPhysical, 0, 0, 0x2000};
  const TlbTag asid1{TlbEntryKind::kAsid, 1, 0, 0};
  const TlbTag asid2{TlbEntryKind::kAsid, 2, 0, 0};
  const auto fresh = [&] {
    auto tlb = std::make_unique<Tlb>(TlbConfig{});
    tlb->psc_insert(psc_entry(ept_a, 0x0, Hpa{0x1000}));
    tlb->psc_insert(psc_entry(ept_a, 0x20'0000, Hpa{0x1000}));
    tlb->psc_insert(psc_entry(ept_b, 0x0, Hpa{0x2000}));
    tlb->psc_insert(psc_entry(asid1, 0x0, Hpa{0x3000}));
    tlb->psc_insert(psc_entry(asid2, 0x0, Hpa{0x3000}));
    return tlb;
  };
  const auto left = [](Tlb& tlb) { return tlb.psc_entries().size(); };

  auto t = fresh();
  t->invept(InveptType::kSingleContext, 0x1000);
  EXPECT_EQ(left(*t), 3u);
  EXPECT_FALSE(t->psc_lookup(ept_a, 0x0));
  t = fresh();
  t->invept(InveptType::kAllContext, 0);
  EXPECT_EQ(left(*t), 2u) << "INVEPT leaves ASID-tagged entries";
  t = fresh();
  t->invvpid(InvvpidType::kAllContext, 0, 0);
  EXPECT_EQ(left(*t), 5u) << "INVVPID never reaches guest-physical structures";
  t = fresh();
  t->invalidate_on_fault(TlbTag{TlbEntryKind::kCombined, 7, 0, 0x1000}, 0x20'0123);
  EXPECT_EQ(left(*t), 4u);
  EXPECT_FALSE(t->psc_lookup(ept_a, 0x20'0000));
  t = fresh();
  t->psc_invalidate(asid1, 0x1000);
  EXPECT_EQ(left(*t), 4u);
  EXPECT_FALSE(t->psc_lookup(asid1, 0x0));
  t = fresh();
  t->flush_asid(2);
  EXPECT_EQ(left(*t), 4u);
  EXPECT_FALSE(t->psc_lookup(asid2, 0x0));
  t = fresh();
  t->flush_all_asids();
  EXPECT_EQ(left(*t), 3u);
  // The L0's list flush: by source root, any overlap of the 2M region.
  t = fresh();
  t->flush_source_root(Hpa{0x1000}, Gpa{0x3f'f000}, kPageSize);
  EXPECT_EQ(left(*t), 4u);
  EXPECT_FALSE(t->psc_lookup(ept_a, 0x20'0000));
  t = fresh();
  t->flush_source_root(Hpa{0x1000}, Gpa{0x40'0000}, kPageSize);
  EXPECT_EQ(left(*t), 5u) << "a range past the region leaves it";
  t = fresh();
  t->flush_source_root(Hpa{0x3000}, Gpa{0}, 0);
  EXPECT_EQ(left(*t), 3u) << "the space flush drops every entry of the root";
}

TEST(TlbPsc, BoundedCapacityEvicts) {
  Tlb tlb(TlbConfig{2, 1});
  const TlbTag tag{TlbEntryKind::kGuestPhysical, 0, 0, 0x1000};
  for (uint64_t i = 0; i < 5; ++i) tlb.psc_insert(psc_entry(tag, i << 21));
  EXPECT_EQ(tlb.psc_entries().size(), 2u);
  EXPECT_EQ(tlb.stats().evictions.value(), 3u);
}

}  // namespace
}  // namespace tdxsim
