// A hostile host against a running TD: ≥ 100,000 SEAMCALLs whose leaves and operands are
// drawn from valid handles and addresses of this TD, of a second (debug) TD, of a third
// still being built, and of host memory, mixed with random values — while the TD's vCPU
// keeps entering and reading its private pages. Run under ASan+UBSan and TSan too.
//
// Half the calls are blind: a random leaf, operands from the pools or random. The other half
// are steered: the host reads an entry with TDH.MEM.SEPT.RD (as any host may) and throws
// the leaf that entry's state admits — with its own choice of frames, and TRACKs it does not
// always follow with a kick. That is what takes the S-EPT through every state, so that
// every memory leaf succeeds ≥ 1,000 times.
//
// What must hold: the module answers every call (no abort, no sanitizer report); the TD's
// private pages — measured into it with PAGE.ADD before it ran — still hold exactly their
// content wherever the S-EPT still maps them for the guest; no TD plaintext ever reached
// host-readable memory (HostMemory's leak check).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "base/mix.h"
#include "tdx_module/sept_walk.h"
#include "tdx_module/vcpu_harness.h"

namespace tdxsim {
namespace {

using SG = ScriptedGuest;
using test::kOk;

constexpr unsigned kCalls = 400'000;
constexpr unsigned kRegions = 8;         // 2M regions of GPAs per TD
constexpr unsigned k4kRegions = 4;       // 0-3: 4K pages under a table; 4-7: 2M pages
constexpr unsigned kPagesPerRegion = 4;  // the 4K GPAs the host aims at in each
constexpr unsigned kMeasured = 16;       // PAGE.ADD pages of TDs A and B
constexpr uint64_t kMinSuccesses = 1'000;
// How long the host goes on past kCalls while a memory leaf has fewer than kMinSuccesses:
// how many succeed depends on the interleaving with TD A's vCPU (PAGE.PROMOTE, the rarest,
// ended a run at 998), so the run is sized by what it must show, not by a count that
// usually suffices. A leaf that cannot succeed still fails the check at the cap.
constexpr unsigned kMaxCalls = 4 * kCalls;

Gpa region_gpa(unsigned region) { return Gpa{(uint64_t{region} + 1) << 21}; }
uint64_t pi(Gpa gpa, unsigned level) {
  return PageInfo::of(gpa.align_down(PageInfo::from_tdx_level(level)), level).raw();
}

// The memory leaves the acceptance counts, and every other leaf the host may throw in.
constexpr std::array kMemoryLeaves = {
    SeamcallLeaf::kMemSeptAdd,      SeamcallLeaf::kMemPageAug,      SeamcallLeaf::kMemRangeBlock,
    SeamcallLeaf::kMemRangeUnblock, SeamcallLeaf::kMemTrack,        SeamcallLeaf::kMemPageRemove,
    SeamcallLeaf::kMemSeptRemove,   SeamcallLeaf::kMemSeptRd,       SeamcallLeaf::kMemPageAdd,
    SeamcallLeaf::kMrExtend,        SeamcallLeaf::kMemPageRelocate, SeamcallLeaf::kMemPageDemote,
    SeamcallLeaf::kMemPagePromote,  SeamcallLeaf::kMemRd,           SeamcallLeaf::kMemWr,
};
constexpr std::array kOtherLeaves = {
    SeamcallLeaf::kVpEnter,           SeamcallLeaf::kMngAddcx,       SeamcallLeaf::kVpAddcx,
    SeamcallLeaf::kMngKeyConfig,      SeamcallLeaf::kMngCreate,      SeamcallLeaf::kVpCreate,
    SeamcallLeaf::kMngRd,             SeamcallLeaf::kMngWr,          SeamcallLeaf::kMrFinalize,
    SeamcallLeaf::kVpFlush,           SeamcallLeaf::kMngVpflushdone, SeamcallLeaf::kMngKeyFreeid,
    SeamcallLeaf::kMngInit,           SeamcallLeaf::kVpInit,         SeamcallLeaf::kPhymemPageRdmd,
    SeamcallLeaf::kVpRd,              SeamcallLeaf::kPhymemPageReclaim, SeamcallLeaf::kPhymemCacheWb,
    SeamcallLeaf::kPhymemPageWbinvd,  SeamcallLeaf::kVpWr,           SeamcallLeaf::kSysInit,
    SeamcallLeaf::kSysConfig,         SeamcallLeaf::kSysTdmrInit,    SeamcallLeaf::kMemSeptWr,
    SeamcallLeaf::kMngKeyReclaimid,
};

struct Target {
  Hpa tdr;
  std::vector<Hpa> tdvprs;
  KeyId hkid;
  std::vector<Gpa> measured;  // PAGE.ADD pages
};

// The host: a bound CPU, frame pools, call counts, and the two ways of choosing a call.
class HostileHost {
 public:
  HostileHost(LogicalCpu& cpu, LogicalCpu& vcpu_cpu, std::vector<uint64_t> frames,
              std::vector<uint64_t> frames_2m, std::vector<Target> tds)
      : cpu_(cpu), vcpu_cpu_(vcpu_cpu), frames_(std::move(frames)),
        frames_2m_(std::move(frames_2m)), tds_(std::move(tds)) {}

  uint64_t calls() const { return calls_; }
  const std::map<SeamcallLeaf, std::array<uint64_t, 2>>& counts() const { return counts_; }

  // One SEAMCALL, counted; frames the module hands back join the pools.
  uint64_t call(SeamcallLeaf leaf, SeamcallRegs& r, unsigned level = 0) {
    const uint64_t status = host_seamcall(cpu_, r);
    ++calls_;
    auto& count = counts_[leaf];
    ++count[0];
    if (status != kOk) return status;
    ++count[1];
    const bool gives_back = leaf == SeamcallLeaf::kMemPageRemove ||
                            leaf == SeamcallLeaf::kMemSeptRemove ||
                            leaf == SeamcallLeaf::kMemPageRelocate ||
                            leaf == SeamcallLeaf::kMemPagePromote;
    if (gives_back && r.rcx != 0) (level == 1 ? frames_2m_ : frames_).push_back(r.rcx);
    return status;
  }
  uint64_t call(SeamcallLeaf leaf, uint64_t rcx, uint64_t rdx = 0, uint64_t r8 = 0,
                uint64_t r9 = 0, unsigned level = 0) {
    SeamcallRegs r;
    r.rax = LeafAndVersion::of(leaf).raw();
    r.rcx = rcx;
    r.rdx = rdx;
    r.r8 = r8;
    r.r9 = r9;
    return call(leaf, r, level);
  }

  // A frame from a pool, taken out of it: a hostile host may still hand it out twice, and
  // does, through the blind calls.
  uint64_t take(bool big) {
    auto& pool = big ? frames_2m_ : frames_;
    if (pool.empty()) return rng_();
    const size_t i = rng_() % pool.size();
    const uint64_t f = pool[i];
    pool[i] = pool.back();
    pool.pop_back();
    return f;
  }
  void give(uint64_t frame, bool big) { (big ? frames_2m_ : frames_).push_back(frame); }

  // TRACK, then the kick that lets removals pass — usually.
  void track(const Target& td) {
    if (call(SeamcallLeaf::kMemTrack, td.tdr.raw()) == kOk && coin(90)) {
      vcpu_cpu_.run_on([](LogicalCpu&) {}, &cpu_);
    }
  }

  // Reads the entry for (gpa, level) and throws the leaf its state admits.
  void steered() {
    const Target& td = tds_[rng_() % tds_.size()];
    const bool runnable = &td != &tds_[2];
    // TD C is still being built: PAGE.ADD and MR.EXTEND need its 4K tables.
    const bool big_region = runnable && coin(50);
    const unsigned region = big_region ? k4kRegions + rng_() % (kRegions - k4kRegions)
                                       : rng_() % k4kRegions;
    // The 2M regions are worked at 2M only: their tables hold either nothing (SEPT.ADD's)
    // or what a DEMOTE split, which PROMOTE merges again.
    const unsigned aimed = big_region ? 1 : 0;
    Gpa gpa = region_gpa(region);
    if (aimed == 0) gpa = gpa + (rng_() % kPagesPerRegion) * kPageSize;
    // TD B's measured pages are what MEM.RD/WR read and write; TD A's are what the content
    // check watches, so the host goes after them too (BLOCK, RELOCATE, REMOVE, …).
    if (&td == &tds_[1] && coin(80)) gpa = td.measured[rng_() % td.measured.size()];
    // It moves them (RELOCATE) and blocks them, but does not remove them itself, so that
    // there is content left to compare at the end (blind calls still may).
    bool keep = false;
    if (&td == &tds_[0] && !big_region && coin(10)) {
      gpa = td.measured[rng_() % td.measured.size()];
      keep = true;
    }
    const uint64_t tdr = td.tdr.raw();

    SeamcallRegs rd;
    rd.rax = LeafAndVersion::of(SeamcallLeaf::kMemSeptRd).raw();
    rd.rcx = pi(gpa, aimed);
    rd.rdx = tdr;
    const uint64_t s = call(SeamcallLeaf::kMemSeptRd, rd);
    if (s != kOk && !is_status(s, TdxStatus::kEptWalkFailed)) return;
    // Act on the entry the walk reached — or stopped at, above: a missing or blocked table
    // on the way is what the host must deal with first.
    const auto state = static_cast<SeptState>((rd.rdx >> 8) & 0xFF);
    const unsigned level = static_cast<unsigned>(rd.rdx & 7);
    switch (state) {
      case SeptState::kFree: {
        if (level >= 2 || (level == 1 && !big_region)) {
          const uint64_t page = take(false);
          if (call(SeamcallLeaf::kMemSeptAdd, pi(gpa, level), tdr, page) != kOk) {
            give(page, false);
          }
          return;
        }
        if (!runnable) {
          const uint64_t page = take(false);
          if (call(SeamcallLeaf::kMemPageAdd, pi(gpa, 0), tdr, page, source_) != kOk) {
            give(page, false);
          }
          return;
        }
        if (level == 1 && (coin(30) || frames_2m_.empty())) {
          const uint64_t page = take(false);
          if (call(SeamcallLeaf::kMemSeptAdd, pi(gpa, 1), tdr, page) != kOk) give(page, false);
          return;
        }
        const bool big = level == 1;
        const uint64_t page = take(big);
        if (call(SeamcallLeaf::kMemPageAug, pi(gpa, level), tdr, page, 0, level) != kOk) {
          give(page, big);
        }
        return;
      }
      case SeptState::kMapped:
      case SeptState::kPending:
        if (!runnable) {
          if (coin(70)) {
            call(SeamcallLeaf::kMrExtend, gpa.raw() + (rng_() % 16) * 256, tdr);
          } else {
            call(SeamcallLeaf::kMemPageRemove, pi(gpa, 0), tdr);
          }
          return;
        }
        if (&td == &tds_[1] && state == SeptState::kMapped && coin(90)) {
          const uint64_t at = gpa.raw() + (rng_() % 512) * 8;
          if (coin(50)) {
            call(SeamcallLeaf::kMemRd, at, tdr);
          } else {
            call(SeamcallLeaf::kMemWr, at, tdr, rng_());
          }
          return;
        }
        call(SeamcallLeaf::kMemRangeBlock, pi(gpa, level), tdr);
        return;
      case SeptState::kBlocked:
      case SeptState::kPendingBlocked: {
        track(td);
        const unsigned pick = static_cast<unsigned>(rng_() % 100);
        if (level == 1 && pick < 65) {
          const uint64_t page = take(false);
          if (call(SeamcallLeaf::kMemPageDemote, pi(gpa, 1), tdr, page) == kOk) {
            demoted_.insert({tdr, gpa.raw()});
          } else {
            give(page, false);
          }
        } else if (level == 0 && (pick < 45 || (keep && pick < 70)) && &td != &tds_[1]) {
          const uint64_t page = take(false);
          if (call(SeamcallLeaf::kMemPageRelocate, pi(gpa, 0), tdr, page) != kOk) {
            give(page, false);
          }
        } else if (pick < (level == 1 ? 85u : 70u) && &td != &tds_[1] && !keep) {
          call(SeamcallLeaf::kMemPageRemove, pi(gpa, level), tdr, 0, 0, level);
        } else {
          call(SeamcallLeaf::kMemRangeUnblock, pi(gpa, level), tdr);
        }
        return;
      }
      case SeptState::kNlMapped:
        // Only the 2M regions' tables: blocking the 1G table would stop everything.
        if (runnable && level == 1 && big_region) {
          call(SeamcallLeaf::kMemRangeBlock, pi(gpa, level), tdr);
        }
        return;
      case SeptState::kNlBlocked: {
        track(td);
        const unsigned pick = static_cast<unsigned>(rng_() % 100);
        if (level >= 2 || !big_region) {
          // A table a blind call blocked: give it back, the 4K pages below are the work.
          call(SeamcallLeaf::kMemRangeUnblock, pi(gpa, level), tdr);
        } else if (pick < 85) {
          // The host remembers which tables a DEMOTE filled (PROMOTE merges them) and which
          // it added empty (SEPT.REMOVE takes them out); a blind call may have spoilt either.
          const auto key = std::make_pair(tdr, gpa.raw());
          const bool demoted = demoted_.contains(key);
          if (call(demoted ? SeamcallLeaf::kMemPagePromote : SeamcallLeaf::kMemSeptRemove,
                   pi(gpa, level), tdr) == kOk) {
            demoted_.erase(key);
          }
        } else {
          call(SeamcallLeaf::kMemRangeUnblock, pi(gpa, level), tdr);
        }
        return;
      }
      default:
        return;
    }
  }

  // A random leaf with operands from the pools, or random.
  void blind() {
    const SeamcallLeaf leaf = coin(85) ? pick(kMemoryLeaves) : pick(kOtherLeaves);
    // A host that finalizes or tears down TD B or C ends what the test can learn from them
    // (PAGE.ADD, MR.EXTEND, MEM.RD/WR): those leaves go to TD A, running and refusing them.
    const bool teardown = leaf == SeamcallLeaf::kMrFinalize ||
                          leaf == SeamcallLeaf::kMngVpflushdone ||
                          leaf == SeamcallLeaf::kMngKeyFreeid;
    const Target& td = teardown ? tds_[0] : tds_[rng_() % tds_.size()];
    unsigned level = coin(80) ? 0 : 1;
    if (coin(3)) level = static_cast<unsigned>(rng_() % 5);
    // 4K GPAs in the 4K regions: a blind hit on a DEMOTE's child would leave its table
    // neither promotable nor empty for good, which only starves the steered host.
    Gpa gpa = region_gpa(static_cast<unsigned>(rng_() % (level == 0 ? k4kRegions : kRegions)));
    if (level == 0) gpa = gpa + (coin(95) ? rng_() % kPagesPerRegion : rng_() % 512) * kPageSize;
    const uint64_t page_info = level <= 2 ? pi(gpa, level) : PageInfo::of(Gpa{0}, level).raw();
    const auto handle = [&]() -> uint64_t {
      if (coin(3)) return rng_();
      if (teardown) return td.tdr.raw();
      if (coin(5)) return frame(false);
      return coin(10) ? pick(td.tdvprs).raw() : td.tdr.raw();
    };
    SeamcallRegs r;
    r.rax = LeafAndVersion::of(leaf, coin(2) ? 1 : 0).raw();
    if (coin(1)) r.rax = rng_();
    switch (leaf) {
      case SeamcallLeaf::kMemTrack:
      case SeamcallLeaf::kMrFinalize:
      case SeamcallLeaf::kMngKeyConfig:
      case SeamcallLeaf::kMngVpflushdone:
      case SeamcallLeaf::kMngKeyFreeid:
      case SeamcallLeaf::kMngKeyReclaimid:
        r.rcx = handle();
        break;
      case SeamcallLeaf::kMrExtend:
      case SeamcallLeaf::kMemRd:
      case SeamcallLeaf::kMemWr:
        r.rcx = coin(5) ? rng_() : gpa.raw() + (rng_() % 16) * 256;
        r.rdx = handle();
        r.r8 = rng_();
        break;
      case SeamcallLeaf::kPhymemPageRdmd:
      case SeamcallLeaf::kPhymemPageReclaim:
      case SeamcallLeaf::kPhymemPageWbinvd:
      case SeamcallLeaf::kVpFlush:
      case SeamcallLeaf::kVpEnter:
        r.rcx = coin(50) ? frame(false) : handle();
        break;
      case SeamcallLeaf::kMngCreate:
        r.rcx = frame(false);
        r.rdx = rng_() % 70;
        break;
      case SeamcallLeaf::kMngAddcx:
      case SeamcallLeaf::kVpCreate:
      case SeamcallLeaf::kVpAddcx:
      case SeamcallLeaf::kVpInit:
      case SeamcallLeaf::kMngInit:
      case SeamcallLeaf::kVpRd:
      case SeamcallLeaf::kVpWr:
      case SeamcallLeaf::kMngRd:
      case SeamcallLeaf::kMngWr:
        r.rcx = coin(50) ? frame(false) : handle();
        r.rdx = coin(50) ? handle() : rng_() % 0x4000;
        r.r8 = rng_();
        r.r9 = rng_();
        break;
      default:  // GPA leaves: page info, TDR, a page, a source
        r.rcx = coin(4) ? rng_() : page_info;
        r.rdx = handle();
        r.r8 = frame(level == 1 && leaf == SeamcallLeaf::kMemPageAug);
        r.r9 = frame(false);
        break;
    }
    if (coin(1)) r.rcx ^= uint64_t{1} << (rng_() % 64);
    const uint64_t status = call(leaf, r, level);
    if (leaf == SeamcallLeaf::kMemTrack && status == kOk && coin(70)) {
      vcpu_cpu_.run_on([](LogicalCpu&) {}, &cpu_);
    }
  }

  void set_source(uint64_t source) { source_ = source; }

 private:
  bool coin(unsigned percent) { return rng_() % 100 < percent; }
  template <typename V>
  typename V::value_type pick(const V& v) {
    return v[rng_() % v.size()];
  }
  // Any frame: a pool's (left in it), a TD's control page, or a random value.
  uint64_t frame(bool big) {
    if (coin(3)) return rng_();
    if (coin(5)) return pick(tds_).tdr.raw();
    const auto& pool = big ? frames_2m_ : frames_;
    return pool.empty() ? rng_() : pick(pool);
  }

  LogicalCpu& cpu_;
  LogicalCpu& vcpu_cpu_;
  std::vector<uint64_t> frames_;
  std::vector<uint64_t> frames_2m_;
  std::vector<Target> tds_;
  uint64_t source_ = 0;
  std::set<std::pair<uint64_t, uint64_t>> demoted_;  // (TDR, 2M GPA) split by a DEMOTE
  std::mt19937_64 rng_{20261126};
  uint64_t calls_ = 0;
  std::map<SeamcallLeaf, std::array<uint64_t, 2>> counts_;  // calls, successes
};

class HostileHostStress : public test::VcpuHarness {
 protected:
  // Builds a TD (MNG.CREATE … VP.INIT, the upper tables for the first 1G and a 4K table in
  // each 4K region) without finalizing it, with `measured` PAGE.ADD pages beside the GPAs
  // the host aims at (so that some of them survive it).
  Target build_td(uint16_t hkid, uint64_t attributes, bool measured) {
    test::TdSpec spec;
    spec.hkid = hkid;
    spec.params.attributes = attributes;
    spec.vcpus = 1;
    const test::BuiltTd built = ModuleHarness::build_td(spec);
    tdr_ = built.tdr;
    tdvprs_ = {built.vcpus.at(0).front()};
    for (unsigned l = 3; l >= 2; --l) {
      EXPECT_EQ(call(SeamcallLeaf::kMemSeptAdd, pi(region_gpa(0), l), tdr_.raw(), page().raw()),
                kOk);
    }
    for (unsigned r = 0; r < k4kRegions; ++r) {
      EXPECT_EQ(call(SeamcallLeaf::kMemSeptAdd, pi(region_gpa(r), 1), tdr_.raw(), page().raw()),
                kOk);
    }
    Target t{tdr_, tdvprs_, KeyId{hkid}, {}};
    for (unsigned i = 0; measured && i < kMeasured; ++i) {
      const Gpa gpa =
          region_gpa(i % k4kRegions) + (kPagesPerRegion + i / k4kRegions) * kPageSize;
      const Hpa src = page();
      for (uint64_t w = 0; w < kPageSize; w += 8) {
        mem().write(src + w, kHostKey, mix64(gpa.raw() + w));
      }
      SeamcallRegs r;
      r.rcx = pi(gpa, 0);
      r.rdx = tdr_.raw();
      r.r8 = page().raw();
      r.r9 = src.raw();
      EXPECT_EQ(call(0, SeamcallLeaf::kMemPageAdd, r), kOk);
      t.measured.push_back(gpa);
    }
    return t;
  }

  // The content hash of every measured GPA whose 4K leaf is still its page (MAPPED or
  // BLOCKED, under tables that may be blocked: an UNBLOCK gives it back to the guest), read
  // with the TD's key; 0 for one the host took away.
  std::map<uint64_t, uint64_t> measured_hashes(const Target& td) {
    std::map<uint64_t, uint64_t> out;
    for (const Gpa gpa : td.measured) {
      SeptWalkResult w =
          sept_walk(mem(), layout(), *module_.td_sept_root(td.tdr), 4, td.hkid, gpa, Level::k4K);
      while (!w.reached && w.entry.state() == SeptState::kNlBlocked) {
        w.level = level_down(w.level);
        w.entry_hpa = w.entry.hpa(layout()) + 8 * gpa.index(w.level);
        w.entry = SeptEntry{mem().read(w.entry_hpa, td.hkid).value};
        w.reached = w.level == Level::k4K;
      }
      uint64_t h = 0;
      if (w.reached && (w.entry.state() == SeptState::kMapped ||
                        w.entry.state() == SeptState::kBlocked)) {
        h = mem().page_hash(w.entry.hpa(layout()).pfn(), td.hkid) | 1;
      }
      out[gpa.raw()] = h;
    }
    return out;
  }
};

TEST_F(HostileHostStress, HostileSeamcallsAgainstARunningTd) {
  init_sys();
  const Target a = build_td(33, kTdAttrSeptVeDisable, /*measured=*/true);
  ASSERT_EQ(call(SeamcallLeaf::kMrFinalize, a.tdr.raw()), kOk);
  const Target b = build_td(34, kTdAttrSeptVeDisable | kTdAttrDebug, /*measured=*/true);
  ASSERT_EQ(call(SeamcallLeaf::kMrFinalize, b.tdr.raw()), kOk);
  const Target c = build_td(35, kTdAttrSeptVeDisable, false);  // stays INITIALIZED
  const std::map<uint64_t, uint64_t> before = measured_hashes(a);

  // Frame pools: host frames not yet given to the module, and 2M-aligned runs.
  std::vector<uint64_t> frames;
  for (unsigned i = 0; i < 3072; ++i) frames.push_back(page().raw());
  // And frames the host's allocator never handed out: the module may use any frame.
  const uint64_t top = mem().total_frames();
  for (uint64_t pfn = top - 256; pfn < top; ++pfn) {
    ASSERT_FALSE(mem().is_allocated(Pfn{pfn}));
    frames.push_back(Pfn{pfn}.hpa().raw());
  }
  std::vector<uint64_t> frames_2m;
  for (unsigned i = 0; i < 8; ++i) {
    Hpa first = page();
    while (!first.is_aligned(Level::k2M)) first = page();
    for (uint64_t j = 1; j < 512; ++j) page();
    frames_2m.push_back(first.raw());
  }
  const Hpa source = page();

  // TD A's vCPU keeps running: short entries that read the measured pages.
  std::vector<GuestInsn> code;
  for (const Gpa gpa : a.measured) code.push_back(SG::load(gpa, Gpr::kRbx));
  code.push_back(SG::op(GuestInsnKind::kPause));
  SG reader(code);
  ASSERT_TRUE(module_.attach_guest(a.tdvprs[0], &reader, 64));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> entries{0};
  std::thread vcpu([&] {
    CpuBinding bind = platform_.bind(0);
    while (!stop.load(std::memory_order_acquire)) {
      SeamcallRegs r;
      r.rax = LeafAndVersion::of(SeamcallLeaf::kVpEnter).raw();
      r.rcx = a.tdvprs[0].raw();
      host_seamcall(bind.cpu(), r);
      bind.cpu().handle_interrupts();
      entries.fetch_add(1, std::memory_order_relaxed);
    }
  });

  // The vCPU is associated (inside or between entries) before the host starts: a TD with
  // no associated vCPU may be torn down by a hostile TDH.MNG.VPFLUSHDONE, and TD A must
  // stay up for the test to say anything about it.
  while (entries.load(std::memory_order_acquire) == 0) std::this_thread::yield();
  std::map<SeamcallLeaf, std::array<uint64_t, 2>> counts;
  uint64_t calls = 0;
  {
    CpuBinding host = platform_.bind(1);
    HostileHost h(host.cpu(), platform_.cpu(0), frames, frames_2m, {a, b, c});
    h.set_source(source.raw());
    const auto short_of_successes = [&] {
      const auto& so_far = h.counts();
      return std::ranges::any_of(kMemoryLeaves, [&](SeamcallLeaf leaf) {
        const auto it = so_far.find(leaf);
        return it == so_far.end() || it->second[1] < kMinSuccesses;
      });
    };
    for (unsigned n = 0; h.calls() < kCalls || (h.calls() < kMaxCalls && short_of_successes());
         ++n) {
      if (n % 2 == 0) {
        h.steered();
      } else {
        h.blind();
      }
    }
    stop.store(true, std::memory_order_release);
    platform_.cpu(0).run_on([](LogicalCpu&) {}, &host.cpu());
    counts = h.counts();
    calls = h.calls();
  }
  vcpu.join();

  std::printf("%llu SEAMCALLs; TD A entries: %llu\n", static_cast<unsigned long long>(calls),
              static_cast<unsigned long long>(entries.load()));
  std::printf("%-28s %8s %8s\n", "leaf", "calls", "success");
  for (const auto& [leaf, n] : counts) {
    std::printf("%-28s %8llu %8llu\n", to_string(leaf), static_cast<unsigned long long>(n[0]),
                static_cast<unsigned long long>(n[1]));
  }
  EXPECT_GE(calls, kCalls);
  for (SeamcallLeaf leaf : kMemoryLeaves) {
    EXPECT_GE(counts[leaf][1], kMinSuccesses) << to_string(leaf);
  }

  const std::map<uint64_t, uint64_t> after = measured_hashes(a);
  unsigned still_mapped = 0;
  for (const auto& [gpa, h] : after) {
    if (h == 0) continue;
    ++still_mapped;
    EXPECT_EQ(h, before.at(gpa)) << "measured GPA " << std::hex << gpa;
  }
  std::printf("measured pages still mapped: %u of %u\n", still_mapped, kMeasured);
  EXPECT_GT(still_mapped, 0u) << "nothing left to compare: the content check proved nothing";
  for (const MemViolation& v : mem().violations()) {
    EXPECT_NE(v.kind, MemViolationKind::kPlaintextLeak) << v.hpa.raw();
  }
}

}  // namespace
}  // namespace tdxsim
