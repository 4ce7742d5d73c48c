// Builds TDP page tables for tests the way the MMU will: an MmuPage per table, entries made
// with the Spte builders and published with release stores. Unlike platform/table_builder.h
// (hardware-format tables with no KVM bits), the tables here are what TdpIter and the MMU
// walk: non-leaf entries carry SPTE_MMU_PRESENT, fresh tables read SHADOW_NONPRESENT_VALUE.
#pragma once

#include <memory>
#include <vector>

#include "base/addr.h"
#include "base/check.h"
#include "kvm/mmu_page.h"
#include "kvm/spte.h"
#include "platform/host_memory.h"

namespace tdxsim::testing {

class TestTdpTables {
 public:
  // `gfn_bits`: where this root maps gfns (a TD's shared bit for its direct root, else 0).
  TestTdpTables(HostMemory& mem, Level root_level, bool mirror = false, Gfn gfn_bits = Gfn{0},
                SpteFormat format = SpteFormat::kEpt)
      : mem_(mem), mirror_(mirror), gfn_bits_(gfn_bits), format_(format) {
    pages_.push_back(MmuPage::create_root(mem, MmuPageRole{root_level, mirror, false}, 2));
    TDXSIM_CHECK(pages_.back() != nullptr, "out of memory for a root");
  }

  const MmuPage& root() const { return *pages_.front(); }
  Gfn gfn_bits() const { return gfn_bits_; }
  size_t table_count() const { return pages_.size(); }

  // Maps `gfn` (no direct bits) to `pfn` with a leaf at `level`, creating tables on the way.
  // Returns the leaf's address.
  Hpa map(Gfn gfn, Pfn pfn, Level level, const SpteLeafAttrs& attrs = {}) {
    const Hpa sptep = entry(gfn, level);
    set_at(sptep, Spte::make_leaf(format_, pfn, level, attrs));
    return sptep;
  }

  // The address of gfn's entry at `level`, creating the tables above it as needed.
  // REQUIRES: no leaf above `level` maps gfn.
  Hpa entry(Gfn gfn, Level level) {
    const MmuPage* table = pages_.front().get();
    for (Level l = table->level(); l > level; l = level_down(l)) {
      const Hpa sptep = slot(*table, gfn, l);
      const Spte e = get_at(sptep);
      if (e.is_shadow_present()) {
        TDXSIM_CHECK(!e.is_last(l), "a {} leaf already maps {}", level_name(l), gfn);
        table = find(e.child_table());
        continue;
      }
      const Level child_level = level_down(l);
      const Gfn base = gfn.align_down(l);  // the span of one entry at l
      pages_.push_back(MmuPage::create(mem_, MmuPageRole{child_level, mirror_, false}, base,
                                       /*with_external_spt=*/mirror_));
      TDXSIM_CHECK(pages_.back() != nullptr, "out of memory for a table");
      table = pages_.back().get();
      set_at(sptep, Spte::make_nonleaf(format_, table->spt()));
    }
    return slot(*table, gfn, level);
  }

  // Writes gfn's entry at `level` (the tables above must exist or are created).
  void set(Gfn gfn, Level level, Spte value) { set_at(entry(gfn, level), value); }
  Spte get(Gfn gfn, Level level) { return get_at(entry(gfn, level)); }

  void set_at(Hpa sptep, Spte value) {
    mem_.store(sptep, kHostKey, value.raw(), std::memory_order_release);
  }
  Spte get_at(Hpa sptep) const {
    return Spte{mem_.load(sptep, kHostKey, std::memory_order_acquire)};
  }

 private:
  Hpa slot(const MmuPage& table, Gfn gfn, Level level) const {
    return table.sptep(Gfn{gfn.raw() | gfn_bits_.raw()}.index(level));
  }
  const MmuPage* find(Hpa spt) const {
    for (const auto& p : pages_) {
      if (p->spt() == spt) return p.get();
    }
    TDXSIM_CHECK(false, "no table at {}", spt);
    return nullptr;
  }

  HostMemory& mem_;
  bool mirror_;
  Gfn gfn_bits_;
  SpteFormat format_;
  std::vector<std::unique_ptr<MmuPage>> pages_;
};

}  // namespace tdxsim::testing
