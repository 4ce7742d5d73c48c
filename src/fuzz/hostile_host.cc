#include "fuzz/hostile_host.h"

#include <array>
#include <iterator>
#include <memory>
#include <vector>

#include "fuzz/module_invariants.h"
#include "platform/scripted_guest.h"
#include "tdx_module/page_info.h"
#include "tdx_module/sept_entry.h"
#include "tdx_module/td_metadata.h"
#include "tdx_module/td_params.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim::fuzz {

namespace {

using Kind = HostileHost::Kind;
using L = SeamcallLeaf;

// The leaves the module dispatches; the memory leaves twice, as the S-EPT is where most of
// the module's state lives.
// clang-format off
constexpr std::array kLeaves = {
    L::kVpEnter, L::kMngAddcx, L::kMemPageAdd, L::kMemSeptAdd,
    L::kVpAddcx, L::kMemPageRelocate, L::kMemPageAug, L::kMemRangeBlock,
    L::kMngKeyConfig, L::kMngCreate, L::kVpCreate, L::kMngRd,
    L::kMemRd, L::kMngWr, L::kMemWr, L::kMemPageDemote,
    L::kMrExtend, L::kMrFinalize, L::kVpFlush, L::kMngVpflushdone,
    L::kMngKeyFreeid, L::kMngInit, L::kVpInit, L::kMemPagePromote,
    L::kPhymemPageRdmd, L::kMemSeptRd, L::kVpRd, L::kMngKeyReclaimid,
    L::kPhymemPageReclaim, L::kMemPageRemove, L::kMemSeptRemove, L::kSysKeyConfig,
    L::kSysInit, L::kSysLpInit, L::kSysTdmrInit, L::kMemTrack,
    L::kMemRangeUnblock, L::kPhymemCacheWb, L::kPhymemPageWbinvd, L::kVpWr,
    L::kSysConfig, L::kSysInfo, L::kSysRd, L::kSysLpShutdown,
    L::kMemSeptAdd, L::kMemPageAug, L::kMemRangeBlock, L::kMemRangeUnblock,
    L::kMemTrack, L::kMemPageRemove, L::kMemSeptRemove, L::kMemPageDemote,
    L::kMemPagePromote, L::kMemPageRelocate, L::kMemSeptRd, L::kPhymemPageReclaim};
// clang-format on

// Leaves defined but not dispatched, for the rare raw call that names one.
// clang-format off
constexpr std::array kOtherLeaves = {
    L::kMemSeptWr, L::kSysRdall, L::kServtdBind, L::kServtdPrebind,
    L::kSysShutdown, L::kSysUpdate, L::kPhymemPamtAdd, L::kPhymemPamtRemove,
    L::kExportMem, L::kImportMem, L::kMigStreamCreate};
// clang-format on

// What each register of a leaf expects (shared/spec/tdx-module-abi.md §1.2): RCX, RDX, R8, R9.
using Shape = std::array<Kind, 4>;
Shape shape_of(SeamcallLeaf leaf) {
  switch (leaf) {
    case L::kVpEnter:
    case L::kVpFlush:
      return {Kind::kTdvpr, Kind::kZero, Kind::kZero, Kind::kZero};
    case L::kMngAddcx:
    case L::kVpCreate:
      return {Kind::kFreshPage, Kind::kTdr, Kind::kZero, Kind::kZero};
    case L::kVpAddcx:
      return {Kind::kFreshPage, Kind::kTdvpr, Kind::kZero, Kind::kZero};
    case L::kMemPageAdd:
      return {Kind::kPageInfo, Kind::kTdr, Kind::kFreshPage, Kind::kFreshPage};
    case L::kMemSeptAdd:
    case L::kMemPageAug:
    case L::kMemPageDemote:
      return {Kind::kPageInfo, Kind::kTdr, Kind::kLeafPage, Kind::kZero};
    case L::kMemPageRelocate:
      return {Kind::kPageInfo, Kind::kTdr, Kind::kFreshPage, Kind::kZero};
    case L::kMemRangeBlock:
    case L::kMemRangeUnblock:
    case L::kMemPageRemove:
    case L::kMemSeptRemove:
    case L::kMemSeptRd:
    case L::kMemPagePromote:
      return {Kind::kPageInfo, Kind::kTdr, Kind::kZero, Kind::kZero};
    case L::kMemTrack:
    case L::kMrFinalize:
    case L::kMngKeyConfig:
    case L::kMngVpflushdone:
    case L::kMngKeyFreeid:
    case L::kMngKeyReclaimid:
      return {Kind::kTdr, Kind::kZero, Kind::kZero, Kind::kZero};
    case L::kMngCreate:
      return {Kind::kFreshPage, Kind::kHkid, Kind::kZero, Kind::kZero};
    case L::kMngInit:
      return {Kind::kTdr, Kind::kTdParams, Kind::kZero, Kind::kZero};
    case L::kMngRd:
    case L::kMngWr:
      return {Kind::kTdr, Kind::kField, Kind::kRandom, Kind::kRandom};
    case L::kVpRd:
    case L::kVpWr:
      return {Kind::kTdvpr, Kind::kField, Kind::kRandom, Kind::kRandom};
    case L::kVpInit:
      return {Kind::kTdvpr, Kind::kRandom, Kind::kSmall, Kind::kZero};
    case L::kMemRd:
    case L::kMemWr:
    case L::kMrExtend:
      return {Kind::kGpa, Kind::kTdr, Kind::kRandom, Kind::kZero};
    case L::kPhymemPageRdmd:
    case L::kPhymemPageReclaim:
      return {Kind::kModulePage, Kind::kZero, Kind::kZero, Kind::kZero};
    case L::kPhymemPageWbinvd:
      return {Kind::kKeyedPage, Kind::kZero, Kind::kZero, Kind::kZero};
    case L::kPhymemCacheWb:
      return {Kind::kSmall, Kind::kZero, Kind::kZero, Kind::kZero};
    case L::kSysConfig:
      return {Kind::kFreshPage, Kind::kSmall, Kind::kHkid, Kind::kZero};
    default:
      return {Kind::kZero, Kind::kZero, Kind::kZero, Kind::kZero};
  }
}

Gpa region_gpa(unsigned region) {
  return Gpa{(uint64_t{region} + 1) << 21};
}
constexpr unsigned kRegions = 8;
// Regions 0-1 get S-EPT tables down to 4K in the start states; the others stay for 2M pages
// (few tables: the census reads every entry of every table after each input).
constexpr unsigned k4kRegions = 2;
// Guest stores go to the upper half of a region and zero checks read the lower half, so that
// one vCPU's stores never land where another's zero check reads.
constexpr unsigned kStorePagesFrom = 256;

constexpr uint64_t kJunk = 0x5A5A'5A5A'5A5A'5A5A;
constexpr uint64_t kMapGpaMask = (1u << 10) | (1u << 11) | (1u << 12) | (1u << 13);

}  // namespace

void HostileHost::run() {
  start();
  for (unsigned n = 0; n < kMaxOps && !in_.exhausted(); ++n) step();
  check_module_invariants(world_);
}

void HostileHost::start() {
  const uint8_t state = in_.u8() % 4;
  if (state == 0) return;
  TdRecord* td = build_td();
  if (td == nullptr) return;
  const Hpa tdr = td->tdr;
  build_vcpu(*td);
  for (unsigned r = 0; r < k4kRegions; ++r) add_tables(*td, region_gpa(r), 1);
  add_tables(*td, region_gpa(k4kRegions), 2);
  page_add(*td, region_gpa(0) + 4 * kPageSize);
  page_add(*td, region_gpa(0) + 5 * kPageSize);
  if (state == 1) return;
  world_.call(L::kMrFinalize, tdr.raw());
  if (state == 2) return;
  td = world_.td_by_tdr(tdr.raw());
  if (td == nullptr || td->vcpus.empty()) return;
  aug(*td, region_gpa(0), 0);
  aug(*td, region_gpa(k4kRegions), 1);
  auto guest = world_.new_guest(tdr, td->vcpus.front().tdvpr);
  guest->add_accept_and_check(region_gpa(0), 0, region_gpa(0) + 8);
  guest->add_accept_and_check(region_gpa(k4kRegions), 1, region_gpa(k4kRegions) + 0x1000);
  world_.attach(td->vcpus.front().tdvpr, std::move(guest));
  enter_vcpu(*td, 0, 0);
}

void HostileHost::step() {
  const uint8_t op = in_.u8();
  if (op % 16 < 6) {
    raw_call();
    return;
  }
  if (op % 16 == 7) {
    build_td();
    return;
  }
  if (op % 16 == 15) {
    host_write();
    return;
  }
  TdRecord* td = pick_td();
  if (td == nullptr) return;
  switch (op % 16) {
    case 8:
      build_vcpu(*td);
      return;
    case 9: {
      const Gpa gpa = pick_gpa(td);
      add_tables(*td, gpa, in_.u8() % 3 + 1);
      return;
    }
    case 10: {
      const Gpa gpa = pick_gpa(td);
      aug(*td, gpa, in_.u8() % 4 == 0 ? 1 : 0);
      return;
    }
    case 11:
      page_add(*td, pick_gpa(td));
      return;
    case 12:
      enter(*td);
      return;
    case 6:
      remove(*td);
      return;
    case 13:
      steered(*td);
      return;
    case 14: {
      const uint8_t what = in_.u8() % 8;
      if (what < 5) {
        resize(*td);
      } else if (what < 7) {
        world_.call(L::kMrFinalize, td->tdr.raw());
      } else {
        teardown(*td);
      }
      return;
    }
    default:
      return;
  }
}

void HostileHost::raw_call() {
  const uint8_t l = in_.u8();
  SeamcallLeaf leaf = kLeaves[l % kLeaves.size()];
  uint16_t number = static_cast<uint16_t>(leaf);
  if (l >= 250) {
    number = l == 255 ? in_.u16() : static_cast<uint16_t>(in_.pick(kOtherLeaves));
    leaf = static_cast<SeamcallLeaf>(number);
  }
  const uint8_t v = in_.u8();
  const uint8_t version = v < 200 ? 0 : v < 250 ? 1 : v;
  SeamcallRegs regs;
  regs.rax = uint64_t{number} | uint64_t{version} << 16;
  if (v == 255) regs.rax |= in_.u64() << 24;
  const unsigned cpu = in_.u8() % kWorldCpus;

  const Shape shape = shape_of(leaf);
  uint64_t* const gprs[] = {&regs.rcx, &regs.rdx, &regs.r8, &regs.r9};
  for (size_t i = 0; i < std::size(gprs); ++i) {
    const uint8_t sel = in_.u8();
    // Most operands are what the leaf expects there; the rest any kind, and some of either
    // with one bit flipped.
    Kind k = shape[i];
    if (sel >= 150 && sel < 240)
      k = static_cast<Kind>((sel - 150) % static_cast<uint8_t>(Kind::kCount));
    uint64_t value = operand(k, regs);
    if (sel >= 240) value ^= uint64_t{1} << (in_.u8() % 64);
    *gprs[i] = value;
  }
  world_.call(cpu, regs);
  if (leaf == L::kVpEnter) check_accepted_zero(world_);
}

uint64_t HostileHost::operand(Kind k, const SeamcallRegs& so_far) {
  switch (k) {
    case Kind::kZero:
      return 0;
    case Kind::kTdr: {
      TdRecord* td = pick_td();
      return td != nullptr ? td->tdr.raw() : world_.fresh_page().raw();
    }
    case Kind::kTdvpr: {
      std::vector<Hpa> tdvprs;
      for (const TdRecord& td : world_.tds()) {
        for (const VcpuRecord& v : td.vcpus) tdvprs.push_back(v.tdvpr);
      }
      if (tdvprs.empty()) return world_.fresh_page().raw();
      return in_.pick(tdvprs).raw();
    }
    case Kind::kControlPage: {
      std::vector<Hpa> pages;
      for (const TdRecord& td : world_.tds()) {
        pages.insert(pages.end(), td.tdcs.begin(), td.tdcs.end());
        for (const VcpuRecord& v : td.vcpus)
          pages.insert(pages.end(), v.tdcx.begin(), v.tdcx.end());
      }
      if (pages.empty()) return world_.fresh_page().raw();
      return in_.pick(pages).raw();
    }
    case Kind::kFreshPage: {
      const uint8_t b = in_.u8();
      return (b < 160 ? world_.fresh_page() : world_.host_page(b)).raw();
    }
    case Kind::kLeafPage:
      if (PageInfo{so_far.rcx}.tdx_level() == 1) return world_.run_2m(in_.u8()).raw();
      return operand(Kind::kFreshPage, so_far);
    case Kind::kPage2m:
      return world_.run_2m(in_.u8()).raw();
    case Kind::kModulePage: {
      const std::vector<Hpa>& pages = world_.module_pages();
      if (pages.empty()) return world_.fresh_page().raw();
      return in_.pick(pages).raw();
    }
    case Kind::kAnyFrame:
      return Pfn{in_.u16() % world_.mem().total_frames()}.hpa().raw();
    case Kind::kKeyedPage: {
      const uint8_t b = in_.u8();
      const TdRecord* td = pick_td();
      const Hpa page = Hpa{operand(b % 2 == 0 ? Kind::kModulePage : Kind::kTdr, so_far)};
      KeyId key{kWorldGlobalHkid};
      if (b % 4 == 1 && td != nullptr) key = td->hkid;
      if (b % 4 == 3) key = KeyId{static_cast<uint16_t>(in_.u8() % 64)};
      return world_.layout().with_key(page, key);
    }
    case Kind::kPageInfo:
      return pick_page_info(pick_td());
    case Kind::kGpa: {
      const Gpa gpa = pick_gpa(pick_td());
      const uint8_t b = in_.u8();
      return (gpa + (b % 16) * 256 + (b >= 240 ? 8 : 0)).raw();
    }
    case Kind::kHkid: {
      const uint8_t b = in_.u8();
      return b < 200 ? kWorldGlobalHkid + b % 32 : in_.u8();
    }
    case Kind::kTdParams: {
      const Hpa page = world_.fresh_page();
      const uint8_t b = in_.u8();
      TdParams p;
      constexpr std::array<uint64_t, 4> kAttributes = {
          kTdAttrSeptVeDisable, kTdAttrSeptVeDisable | kTdAttrDebug, 0, kTdAttrDebug};
      p.attributes = b % 8 < 4 ? kAttributes[b % 4] : in_.u64();
      p.max_vcpus = static_cast<uint16_t>(b / 8 % 4 == 3 ? in_.u16() : b / 8 % 4 + 1);
      if (b / 32 % 4 == 1) p.eptp_controls = 6 | (4 << 3);  // 5-level
      if (b / 32 % 4 == 2) p.eptp_controls = in_.u64();
      if (b / 128 == 1) p.config_flags = in_.u8() % 8;
      write_td_params(world_.mem(), page, p);
      return page.raw();
    }
    case Kind::kField: {
      constexpr std::array<uint64_t, 4> kFields = {vp_field::kSharedEptp, td_field::kNotifyEnables,
                                                   td_field::kConfigFlags, td_field::kTdCtls};
      const uint8_t b = in_.u8();
      return b < 200 ? kFields[b % 4] : in_.u64();
    }
    case Kind::kSmall:
      return in_.u8() % 4;
    case Kind::kRandom:
    case Kind::kCount:
      return in_.u64();
  }
  return 0;
}

TdRecord* HostileHost::pick_td() {
  std::vector<TdRecord>& tds = world_.tds();
  if (tds.empty()) return nullptr;
  return &tds[in_.below(tds.size())];
}

Gpa HostileHost::pick_gpa(const TdRecord* td) {
  const unsigned gpaw = td != nullptr ? td->gpaw : 48;
  const uint8_t g = in_.u8();
  const Gpa region = region_gpa(g / 8 % kRegions);
  switch (g % 8) {
    case 4:
      return Gpa{static_cast<uint64_t>(g / 8 % 4) << 30};
    case 5:
      return region + (uint64_t{1} << (gpaw - 1));
    case 6:
      return region + (uint64_t{1} << (g < 128 ? gpaw : 52));
    case 7:
      return Gpa{in_.u64() &
                 (g < 128 ? ((uint64_t{1} << 52) - 1) & ~(kPageSize - 1) : ~uint64_t{0})};
    case 3:
      if (td != nullptr && !td->mapped.empty()) return PageInfo{in_.pick(td->mapped)}.gpa();
      [[fallthrough]];
    default: {
      const uint8_t p = in_.u8();
      return region + (p < 192 ? p % 8 : p) * kPageSize;
    }
  }
}

uint64_t HostileHost::page_info(Gpa gpa, unsigned tdx_level) const {
  return PageInfo::of(gpa.align_down(PageInfo::from_tdx_level(tdx_level)), tdx_level).raw();
}

uint64_t HostileHost::pick_page_info(const TdRecord* td) {
  const Gpa gpa = pick_gpa(td);
  const uint8_t b = in_.u8();
  constexpr std::array<uint8_t, 16> kLevels = {0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  unsigned level = kLevels[b % 16];
  if (level == 4) level = 4 + (b >> 4) % 4;
  const unsigned variant = b >> 4;
  if (level > 3) return gpa.raw() | level;
  // Mostly aligned as KVM passes it; sometimes unaligned or with reserved bits set.
  if (variant == 14) return (gpa + kPageSize).raw() | level;
  uint64_t pi = page_info(gpa, level);
  if (variant == 15)
    pi |= in_.u8() % 2 == 0 ? uint64_t{1} << (3 + in_.u8() % 9) : uint64_t{1} << 60;
  return pi;
}

TdRecord* HostileHost::build_td() {
  const uint8_t b = in_.u8();
  const uint16_t hkid = next_hkid_;
  next_hkid_ = next_hkid_ == kWorldLastHkid ? kWorldFirstTdHkid : next_hkid_ + 1;
  const Hpa tdr = world_.fresh_page();
  if (world_.call(L::kMngCreate, tdr.raw(), hkid) != 0) return nullptr;
  for (unsigned c = 0; c < kWorldCpus; ++c) world_.call(L::kMngKeyConfig, tdr.raw(), 0, 0, 0, c);
  for (unsigned i = 0; i < world_.module().config().tdcs_pages; ++i) {
    world_.call(L::kMngAddcx, world_.fresh_page().raw(), tdr.raw());
  }
  const Hpa params = world_.fresh_page();
  TdParams p;
  if (b % 4 == 1) p.attributes |= kTdAttrDebug;
  if (b % 4 == 2) p.attributes = 0;  // the guest gets #VE for pending pages
  p.max_vcpus = static_cast<uint16_t>(b / 4 % 4 + 1);
  write_td_params(world_.mem(), params, p);
  world_.call(L::kMngInit, tdr.raw(), params.raw());
  return world_.td_by_tdr(tdr.raw());
}

void HostileHost::build_vcpu(TdRecord& td) {
  const Hpa tdr = td.tdr;
  const Hpa tdvpr = world_.fresh_page();
  if (world_.call(L::kVpCreate, tdvpr.raw(), tdr.raw()) != 0) return;
  for (unsigned i = 1; i < world_.module().config().tdvps_pages; ++i) {
    world_.call(L::kVpAddcx, world_.fresh_page().raw(), tdvpr.raw());
  }
  SeamcallRegs regs;
  regs.rax = LeafAndVersion::of(L::kVpInit, 1).raw();
  regs.rcx = tdvpr.raw();
  regs.r8 = in_.u8();  // x2APIC ID
  world_.call(0, regs);
}

void HostileHost::add_tables(TdRecord& td, Gpa gpa, unsigned to_level) {
  const Hpa tdr = td.tdr;
  for (unsigned l = td.ept_levels - 1; l >= to_level && l > 0; --l) {
    world_.call(L::kMemSeptAdd, page_info(gpa, l), tdr.raw(), world_.fresh_page().raw());
  }
}

void HostileHost::aug(TdRecord& td, Gpa gpa, unsigned tdx_level) {
  const Hpa page = tdx_level == 1 ? world_.run_2m(in_.u8()) : world_.fresh_page();
  // The host's junk: ACCEPT must leave none of it for the guest.
  for (uint64_t i = 0; i < level_pages(PageInfo::from_tdx_level(tdx_level)); ++i) {
    world_.mem().fill(page.pfn() + i, kHostKey, kJunk);
  }
  world_.call(L::kMemPageAug, page_info(gpa, tdx_level), td.tdr.raw(), page.raw());
}

void HostileHost::page_add(TdRecord& td, Gpa gpa) {
  const Hpa tdr = td.tdr;
  const Hpa source = world_.fresh_page();
  // Contents that differ from page to page and word to word, cheaply: a fill and one word.
  const uint64_t seed = in_.u8();
  world_.mem().fill(source.pfn(), kHostKey, seed * 0x9E37'79B9'7F4A'7C15);
  world_.mem().write(source + (seed % 512) * 8, kHostKey, ~seed);
  if (world_.call(L::kMemPageAdd, page_info(gpa, 0), tdr.raw(), world_.fresh_page().raw(),
                  source.raw()) != 0) {
    return;
  }
  const unsigned chunks = in_.u8() % 17;
  for (unsigned c = 0; c < chunks; ++c) {
    world_.call(L::kMrExtend, (gpa.align_down(Level::k4K) + c * 256).raw(), tdr.raw());
  }
}

void HostileHost::enter(TdRecord& td) {
  if (td.vcpus.empty()) return;
  const Hpa tdr = td.tdr;
  const size_t vcpu = in_.below(td.vcpus.size());
  auto guest = world_.new_guest(tdr, td.vcpus[vcpu].tdvpr);
  const unsigned ops = in_.u8() % 6 + 1;
  for (unsigned i = 0; i < ops; ++i) {
    const uint8_t g = in_.u8();
    const Gpa region = region_gpa(g / 8 % kRegions);
    const uint8_t p = in_.u8();
    switch (g % 8) {
      case 0:
      case 1: {
        // A zero check reads the lower half of a region.
        const bool big = g % 2 == 1 && g / 8 % kRegions >= k4kRegions;
        const Gpa page = big ? region : region + (p % kStorePagesFrom) * kPageSize;
        const uint64_t word = big ? (p % kStorePagesFrom) * kPageSize + (p % 8) * 8 : p * 8;
        guest->add_accept_and_check(page, big ? 1 : 0, page + word);
        break;
      }
      case 2:
        guest->add_tdcall(LeafAndVersion::of(TdcallLeaf::kMemPageAccept).raw(),
                          pick_page_info(&td) & ~uint64_t{0xFF8});
        break;
      case 3:
        // The guest's own code: its accesses are aligned (the CPU model requires it).
        guest->add(ScriptedGuest::load(Gpa{pick_gpa(&td).raw() & ~uint64_t{7}}, Gpr::kRbx));
        break;
      case 4: {
        const Gpa at = region + (kStorePagesFrom + p % kStorePagesFrom) * kPageSize;
        const bool shared = in_.u8() % 4 == 0;
        guest->add(ScriptedGuest::store(shared ? at + td.shared_bit().raw() : at, in_.u64()));
        if (!shared) world_.disturb(td, at, kPageSize);
        break;
      }
      case 5:
        guest->add_tdcall(p % 28, pick_page_info(&td), in_.u64());
        break;
      case 6:
        guest->add(ScriptedGuest::mov(Gpr::kR10, 0));
        guest->add(ScriptedGuest::mov(Gpr::kR11, static_cast<uint64_t>(TdVmCall::kMapGpa)));
        guest->add(ScriptedGuest::mov(Gpr::kR12,
                                      (region + (p % 2 == 0 ? td.shared_bit().raw() : 0)).raw()));
        guest->add(ScriptedGuest::mov(Gpr::kR13, static_cast<uint64_t>(p % 4 + 1) * kPageSize));
        guest->add_tdcall(LeafAndVersion::of(TdcallLeaf::kVpVmcall).raw(), kMapGpaMask);
        break;
      default:
        guest->add(p % 2 == 0 ? ScriptedGuest::fetch_at(pick_gpa(&td))
                              : ScriptedGuest::op(GuestInsnKind::kPause));
        break;
    }
  }
  if (!world_.attach(td.vcpus[vcpu].tdvpr, std::move(guest))) return;
  const unsigned entries = in_.u8() % 3 + 1;
  const unsigned cpu = in_.u8() % kWorldCpus;
  for (unsigned e = 0; e < entries; ++e) {
    const TdRecord* still = world_.td_by_tdr(tdr.raw());
    if (still == nullptr || still->vcpus.size() <= vcpu) return;
    enter_vcpu(*still, vcpu, cpu);
  }
}

void HostileHost::enter_vcpu(const TdRecord& td, size_t vcpu, unsigned cpu) {
  world_.call(L::kVpEnter, td.vcpus[vcpu].tdvpr.raw(), 0, 0, 0, cpu);
  check_accepted_zero(world_);
}

void HostileHost::steered(TdRecord& td) {
  const Hpa tdr = td.tdr;
  uint64_t pi = 0;
  if (!td.mapped.empty() && in_.u8() % 4 != 0) {
    pi = in_.pick(td.mapped);
    // Often the page or table one level below what the host added.
    const uint8_t b = in_.u8();
    const unsigned level = PageInfo{pi}.tdx_level();
    if (b % 2 == 1 && level > 0 && level <= 3) {
      const Level below = PageInfo::from_tdx_level(level - 1);
      pi = page_info(PageInfo{pi}.gpa() + (b / 2 % 8) * level_bytes(below), level - 1);
    }
  } else {
    pi = pick_page_info(&td);
  }
  SeamcallRegs rd;
  const uint64_t s = world_.call(L::kMemSeptRd, pi, tdr.raw(), 0, 0, 0, &rd);
  if (s != 0 && (s >> 32) != (raw(TdxStatus::kEptWalkFailed) >> 32)) return;
  // The entry the walk reached, or where it stopped above the level asked for.
  const auto state = static_cast<SeptState>((rd.rdx >> 8) & 0xFF);
  const unsigned level = static_cast<unsigned>(rd.rdx & 7);
  const Gpa gpa = PageInfo{pi}.gpa();
  const uint64_t here = page_info(gpa, level);
  const uint8_t c = in_.u8();
  const bool runnable = world_.module().td_op_state(tdr) == TdOpState::kRunnable;
  switch (state) {
    case SeptState::kFree:
      if (level >= 2 || (level == 1 && c % 3 == 0)) {
        world_.call(L::kMemSeptAdd, here, tdr.raw(), world_.fresh_page().raw());
      } else if (!runnable) {
        page_add(td, gpa);
      } else {
        aug(td, gpa, level);
      }
      return;
    case SeptState::kMapped:
    case SeptState::kPending:
      if (c % 4 == 1 && state == SeptState::kPending && !td.vcpus.empty()) {
        const size_t vcpu = in_.below(td.vcpus.size());
        auto guest = world_.new_guest(tdr, td.vcpus[vcpu].tdvpr);
        const Gpa page = gpa.align_down(PageInfo::from_tdx_level(level));
        // Only the lower half of a 2M region is free of guest stores (see kStorePagesFrom).
        if (gpa.index(Level::k4K) < kStorePagesFrom || level > 0) {
          guest->add_accept_and_check(page, level, page);
        } else {
          guest->add_tdcall(LeafAndVersion::of(TdcallLeaf::kMemPageAccept).raw(), page.raw());
        }
        if (world_.attach(td.vcpus[vcpu].tdvpr, std::move(guest))) {
          enter_vcpu(td, vcpu, in_.u8() % kWorldCpus);
        }
      } else if (c % 4 == 2 && td.debug) {
        world_.call(c % 8 == 2 ? L::kMemRd : L::kMemWr, gpa.raw() & ~uint64_t{7}, tdr.raw(),
                    in_.u64());
      } else {
        world_.call(L::kMemRangeBlock, here, tdr.raw());
      }
      return;
    case SeptState::kBlocked:
    case SeptState::kPendingBlocked: {
      if (c % 8 != 0) world_.call(L::kMemTrack, tdr.raw(), 0, 0, 0, in_.u8() % kWorldCpus);
      const uint8_t how = in_.u8() % 8;
      if (how < 3) {
        world_.call(L::kMemPageRemove, here, tdr.raw());
      } else if (how < 5 && level == 1) {
        world_.call(L::kMemPageDemote, here, tdr.raw(), world_.fresh_page().raw());
      } else if (how < 7 && level == 0) {
        world_.call(L::kMemPageRelocate, gpa.align_down(Level::k4K).raw(), tdr.raw(),
                    world_.fresh_page().raw());
      } else {
        world_.call(L::kMemRangeUnblock, here, tdr.raw());
      }
      return;
    }
    case SeptState::kNlMapped:
      // Blocking the tables above 2M stops most of the TD; the host does it rarely.
      if (level <= 1 || c % 8 == 0) world_.call(L::kMemRangeBlock, here, tdr.raw());
      return;
    case SeptState::kNlBlocked: {
      if (c % 8 != 0) world_.call(L::kMemTrack, tdr.raw(), 0, 0, 0, in_.u8() % kWorldCpus);
      const uint8_t how = in_.u8() % 4;
      if (how == 0) {
        world_.call(L::kMemPagePromote, here, tdr.raw());
      } else if (how == 1) {
        world_.call(L::kMemSeptRemove, here, tdr.raw());
      } else {
        world_.call(L::kMemRangeUnblock, here, tdr.raw());
      }
      return;
    }
    default:
      return;
  }
}

void HostileHost::remove(TdRecord& td) {
  const Hpa tdr = td.tdr;
  const uint64_t pi = pick_page_info(&td);
  const uint8_t how = in_.u8() % 6;
  world_.call(L::kMemRangeBlock, pi, tdr.raw());
  if (how == 0) return;
  if (how == 1) {
    world_.call(L::kMemRangeUnblock, pi, tdr.raw());
    return;
  }
  world_.call(L::kMemTrack, tdr.raw(), 0, 0, 0, in_.u8() % kWorldCpus);
  if (how == 2) return;
  world_.call(how == 5 ? L::kMemSeptRemove : L::kMemPageRemove, pi, tdr.raw());
}

void HostileHost::resize(TdRecord& td) {
  const Hpa tdr = td.tdr;
  const Gpa gpa = pick_gpa(&td);
  const uint8_t how = in_.u8() % 3;
  const unsigned level = how == 2 ? 0 : 1;
  const uint64_t pi = page_info(gpa, level);
  world_.call(L::kMemRangeBlock, pi, tdr.raw());
  world_.call(L::kMemTrack, tdr.raw());
  switch (how) {
    case 0:
      world_.call(L::kMemPageDemote, pi, tdr.raw(), world_.fresh_page().raw());
      break;
    case 1:
      world_.call(L::kMemPagePromote, pi, tdr.raw());
      break;
    default:
      world_.call(L::kMemPageRelocate, gpa.align_down(Level::k4K).raw(), tdr.raw(),
                  world_.fresh_page().raw());
      break;
  }
  if (in_.u8() % 2 == 0) world_.call(L::kMemRangeUnblock, pi, tdr.raw());
}

void HostileHost::teardown(TdRecord& td) {
  const Hpa tdr = td.tdr;
  std::vector<Hpa> pages = td.tdcs;
  for (const VcpuRecord& v : td.vcpus) {
    for (unsigned c = 0; c < kWorldCpus; ++c) world_.call(L::kVpFlush, v.tdvpr.raw(), 0, 0, 0, c);
    pages.push_back(v.tdvpr);
    pages.insert(pages.end(), v.tdcx.begin(), v.tdcx.end());
  }
  world_.call(L::kMngVpflushdone, tdr.raw());
  for (unsigned c = 0; c < kWorldCpus; ++c) world_.call(L::kPhymemCacheWb, 0, 0, 0, 0, c);
  world_.call(L::kMngKeyFreeid, tdr.raw());
  const std::vector<Hpa> given = world_.module_pages();
  pages.insert(pages.end(), given.begin(), given.end());
  for (const Hpa p : pages) world_.call(L::kPhymemPageReclaim, p.raw());
  world_.call(L::kPhymemPageReclaim, tdr.raw());
  world_.call(L::kPhymemPageWbinvd, world_.layout().with_key(tdr, KeyId{kWorldGlobalHkid}));
}

void HostileHost::host_write() {
  constexpr std::array kTargets = {Kind::kTdr,        Kind::kTdvpr,     Kind::kControlPage,
                                   Kind::kModulePage, Kind::kFreshPage, Kind::kAnyFrame};
  const SeamcallRegs none;
  const Hpa page = Hpa{operand(in_.pick(kTargets), none)}.align_down(Level::k4K);
  const uint8_t how = in_.u8();
  const uint64_t value = in_.u64();
  // The host's own key only: HostMemory models every other key as some TD's.
  if (how % 4 == 0) {
    world_.mem().fill(page.pfn(), kHostKey, value);
  } else {
    world_.mem().write(page + (how % 2 == 0 ? 0 : in_.u16() % 512) * 8, kHostKey, value);
  }
}

}  // namespace tdxsim::fuzz
