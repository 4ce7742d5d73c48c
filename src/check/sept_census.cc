#include "check/sept_census.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "base/addr.h"
#include "base/lock.h"
#include "base/rcu.h"
#include "kvm/kvm_vm.h"
#include "kvm/mmu.h"
#include "kvm/vmx/tdx.h"
#include "tdx_module/page_info.h"
#include "tdx_module/sept_entry.h"
#include "tdx_module/tdx_status.h"
#include "tdxsim/seamcall.h"

namespace tdxsim {

namespace {

// The S-EPT's root holds 512G entries (GPAW 48, 4 levels); private GPAs lie below the
// shared bit (47), in the root's lower half.
constexpr Level kRootEntryLevel = Level::k512G;
constexpr uint64_t kPrivateRootEntries = 256;
constexpr uint64_t kEntriesPerTable = 512;
// SEPT.RD's architectural leaf view: the page's HPA in bits 51:12 (HKID bits cleared).
constexpr uint64_t kArchAddrMask = 0x000F'FFFF'FFFF'F000;

struct Leaf {
  Gfn gfn;
  Level level;
  Pfn pfn;
  SeptState state = SeptState::kMapped;  // the S-EPT's; kMapped for the mirror's
};

bool is_blocked_leaf(SeptState s) {
  return s == SeptState::kBlocked || s == SeptState::kPendingBlocked;
}

class Census {
 public:
  Census(LogicalCpu& cpu, Hpa tdr, SeptCensus& out) : cpu_(cpu), tdr_(tdr), out_(out) {}

  void mismatch(std::string what) {
    ++mismatches_;
    if (out_.mismatches.size() < SeptCensus::kMaxEvidence)
      out_.mismatches.push_back(std::move(what));
  }
  uint64_t mismatches() const { return mismatches_; }

  // Reads the entries of the table whose entries are at `level`, covering GPAs from `base`.
  void table(Level level, Gpa base, uint64_t entries) {
    ++out_.tables[level_num(level) - 1];
    for (uint64_t i = 0; i < entries; ++i) {
      const Gpa gpa = base + i * level_bytes(level);
      uint64_t entry = 0, detail = 0;
      ++out_.sept_reads;
      const uint64_t s = tdh_mem_sept_rd(cpu_, tdr_, PageInfo::of(gpa, level), &entry, &detail);
      if (s != raw(TdxStatus::kSuccess)) {
        mismatch(fmt::format("TDH.MEM.SEPT.RD of {} at {} failed: {}", gpa, level_name(level),
                             describe_status(s)));
        continue;
      }
      const auto state = static_cast<SeptState>((detail >> 8) & 0xFF);
      switch (state) {
        case SeptState::kFree:
        case SeptState::kRemoved:
          break;
        case SeptState::kNlMapped:
        case SeptState::kNlBlocked:
          if (level == Level::k4K) {
            mismatch(fmt::format("S-EPT non-leaf entry at 4K level for {}", gpa));
            break;
          }
          table(level_down(level), gpa, kEntriesPerTable);
          break;
        default:
          if (level_num(level) > level_num(Level::k1G)) {
            mismatch(fmt::format("S-EPT leaf above 1G at {}", gpa));
            break;
          }
          ++out_.leaves[level_num(level) - 1];
          leaves_.push_back(
              Leaf{gpa.gfn(), level, Pfn{(entry & kArchAddrMask) >> kPageShift}, state});
          break;
      }
    }
  }

  std::vector<Leaf>& leaves() { return leaves_; }

 private:
  LogicalCpu& cpu_;
  Hpa tdr_;
  SeptCensus& out_;
  std::vector<Leaf> leaves_;
  uint64_t mismatches_ = 0;
};

std::string describe(const Leaf& l) {
  return fmt::format("{} {}", level_name(l.level), l.pfn);
}

}  // namespace

SeptCensus take_sept_census(KvmVm& vm, LogicalCpu& cpu) {
  SeptCensus out;
  if (vm.kvm().type() != VmType::kTdx || vm.vendor() == nullptr) return out;
  const TdxVm& td = TdxOps::to_tdx(vm);
  if (td.state() == TdState::kUninitialized || !td.hkid_assigned()) return out;
  PrivateMemPath* path = vm.mmu().private_path();
  if (path == nullptr) return out;

  RcuThread rcu_reader;  // the mirror's tables are freed after grace periods
  std::vector<Leaf> mirror;
  {
    ReadLock l(vm.kvm().mmu_lock());
    path->for_each_leaf([&](Gfn gfn, Level level, Spte s) {
      mirror.push_back(Leaf{gfn, level, s.pfn()});
    });
  }
  out.mirror_leaves = mirror.size();

  Census census(cpu, td.tdr(), out);
  census.table(kRootEntryLevel, Gpa{0}, kPrivateRootEntries);
  std::vector<Leaf>& sept = census.leaves();

  // Both lists are in GPA order (pre-order walks): merge them.
  const auto by_gfn = [](const Leaf& a, const Leaf& b) { return a.gfn < b.gfn; };
  std::ranges::sort(mirror, by_gfn);
  std::ranges::sort(sept, by_gfn);
  size_t m = 0, s = 0;
  while (m < mirror.size() || s < sept.size()) {
    if (s == sept.size() || (m < mirror.size() && mirror[m].gfn < sept[s].gfn)) {
      census.mismatch(fmt::format("mirror maps {} ({}), the S-EPT has no leaf there",
                                  mirror[m].gfn.gpa(), describe(mirror[m])));
      ++m;
    } else if (m == mirror.size() || sept[s].gfn < mirror[m].gfn) {
      census.mismatch(fmt::format("the S-EPT maps {} ({}, {}), the mirror has no leaf there",
                                  sept[s].gfn.gpa(), describe(sept[s]), to_string(sept[s].state)));
      ++s;
    } else {
      const Leaf& a = mirror[m];
      const Leaf& b = sept[s];
      if (a.level != b.level || a.pfn != b.pfn) {
        census.mismatch(fmt::format("at {} the mirror maps {}, the S-EPT {}", a.gfn.gpa(),
                                    describe(a), describe(b)));
      } else if (is_blocked_leaf(b.state)) {
        census.mismatch(fmt::format("at {} the mirror maps {}, the S-EPT leaf is {}", a.gfn.gpa(),
                                    describe(a), to_string(b.state)));
      }
      ++m;
      ++s;
    }
  }
  if (census.mismatches() > out.mismatches.size()) {
    out.mismatches.push_back(
        fmt::format("… and {} more", census.mismatches() - out.mismatches.size()));
  }
  return out;
}

}  // namespace tdxsim
