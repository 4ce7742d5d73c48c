#include "fuzz/host_world.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "base/check.h"
#include "fuzz/module_invariants.h"
#include "tdx_module/page_info.h"
#include "tdx_module/td_params.h"
#include "tdx_module/tdx_status.h"

namespace tdxsim::fuzz {

namespace {

PlatformConfig platform_config() {
  PlatformConfig c;
  c.packages = kWorldCpus;
  c.cpus_per_package = 1;
  c.memory.bytes = kWorldMemoryBytes;
  return c;
}

TdxModuleConfig module_config() {
  TdxModuleConfig c;
  c.first_private_hkid = kWorldGlobalHkid;
  c.last_private_hkid = kWorldLastHkid;
  // One TDMR.INIT initialises everything: the bring-up is not what is fuzzed.
  c.tdmr_init_chunk_bytes = kWorldMemoryBytes;
  return c;
}

// A world remembers a bounded number of TDs; the oldest record goes first.
constexpr size_t kMaxTds = 16;
constexpr size_t kMaxModulePages = 256;
constexpr size_t kMaxMapped = 64;

}  // namespace

HostWorld::HostWorld()
    : platform_(platform_config(), faults_), module_(platform_, module_config()) {
  platform_.install_seam_module(&module_);
  for (unsigned c = 0; c < kWorldCpus; ++c) {
    stale_subscriptions_.push_back(
        platform_.cpu(c).stale_use.attach([this](const StaleUse& use) { on_stale_use(use); }));
  }
  bring_up();
}

HostWorld::~HostWorld() = default;

void HostWorld::bring_up() {
  const auto ok = [](const char* step, uint64_t s) {
    TDXSIM_CHECK(s == 0, "fuzz world: {} answered {}", step, describe_status(s));
  };
  ok("TDH.SYS.INIT", call(SeamcallLeaf::kSysInit));
  for (unsigned c = 0; c < kWorldCpus; ++c)
    ok("TDH.SYS.LP.INIT", call(SeamcallLeaf::kSysLpInit, 0, 0, 0, 0, c));
  ok("TDH.SYS.CONFIG", call(SeamcallLeaf::kSysConfig, 0, 1, kWorldGlobalHkid));
  // One CPU a package.
  for (unsigned c = 0; c < kWorldCpus; ++c)
    ok("TDH.SYS.KEY.CONFIG", call(SeamcallLeaf::kSysKeyConfig, 0, 0, 0, 0, c));
  ok("TDH.SYS.TDMR.INIT", call(SeamcallLeaf::kSysTdmrInit));
  TDXSIM_CHECK(module_.tdmr_initialized(), "fuzz world: the TDMR is not initialised");
}

uint64_t HostWorld::call(unsigned cpu, SeamcallRegs& regs) {
  const SeamcallRegs in = regs;
  uint64_t status;
  {
    CpuBinding b = platform_.bind(cpu % kWorldCpus);
    status = host_seamcall(b.cpu(), regs);
    b.cpu().handle_interrupts();
  }
  const LeafAndVersion lv{in.rax};
  if (status == 0 && lv.reserved_zero()) observe(lv.seamcall_leaf(), in);
  return status;
}

uint64_t HostWorld::call(SeamcallLeaf leaf, uint64_t rcx, uint64_t rdx, uint64_t r8, uint64_t r9,
                         unsigned cpu, SeamcallRegs* out) {
  SeamcallRegs regs;
  regs.rax = LeafAndVersion::of(leaf).raw();
  regs.rcx = rcx;
  regs.rdx = rdx;
  regs.r8 = r8;
  regs.r9 = r9;
  const uint64_t s = call(cpu, regs);
  if (out != nullptr) *out = regs;
  return s;
}

Hpa HostWorld::fresh_page() {
  return host_page(next_fresh_++);
}

TdRecord* HostWorld::td_by_tdr(uint64_t tdr) {
  for (TdRecord& td : tds_) {
    if (td.tdr.raw() == tdr) return &td;
  }
  return nullptr;
}

std::unique_ptr<FuzzGuest> HostWorld::new_guest(Hpa tdr, Hpa tdvpr) const {
  uint64_t first = 0;
  if (const std::optional<GuestState> gs = module_.vcpu_guest_state(tdvpr)) {
    if (gs->rip < FuzzGuest::kVeHandlerRip) first = gs->rip;
    for (const uint64_t r : gs->exception_stack) first = std::max(first, r);
  }
  return std::make_unique<FuzzGuest>(tdr, first);
}

bool HostWorld::attach(Hpa tdvpr, std::unique_ptr<FuzzGuest> program) {
  if (!module_.attach_guest(tdvpr, program.get(), /*instruction_budget=*/64)) return false;
  guests_.push_back(std::move(program));
  return true;
}

void HostWorld::disturb(TdRecord& td, Gpa gpa, uint64_t bytes) {
  for (MeasuredPage& m : td.measured) {
    if (m.gpa.raw() >= gpa.raw() && m.gpa.raw() - gpa.raw() < bytes) m.disturbed = true;
  }
}

void HostWorld::remember_mapped(TdRecord& td, uint64_t page_info) {
  if (td.mapped.size() >= kMaxMapped) td.mapped.erase(td.mapped.begin());
  td.mapped.push_back(page_info);
}

void HostWorld::on_stale_use(const StaleUse& use) {
  if (use.served.key.is_host()) return;  // shared memory: the host's own tables
  const Pfn frame = use.served.hpa.pfn();
  const Pamt& pamt = module_.pamt();
  bool held = false;
  for (const Level l : {Level::k4K, Level::k2M, Level::k1G}) {
    held = held || pamt.peek_type(frame.align_down(l), l) == PamtPageType::kReg;
  }
  held = held && mem().key(frame) == use.served.key;
  if (held) return;
  stale_private_.push_back(fmt::format(
      "CPU {} used a stale translation of {} to frame {} (key {}), which is PAMT {} under key "
      "{}",
      use.cpu, use.gpa, use.served.hpa, use.served.key.raw(),
      to_string(pamt.peek_type(frame, Level::k4K)), mem().key(frame).raw()));
}

void HostWorld::given(uint64_t page) {
  if (module_pages_.size() >= kMaxModulePages) module_pages_.erase(module_pages_.begin());
  module_pages_.push_back(Hpa{page});
}

void HostWorld::observe(SeamcallLeaf leaf, const SeamcallRegs& in) {
  const PageInfo page_info{in.rcx};
  switch (leaf) {
    case SeamcallLeaf::kMngCreate: {
      std::erase_if(tds_, [&](const TdRecord& td) { return td.tdr.raw() == in.rcx; });
      if (tds_.size() >= kMaxTds) tds_.erase(tds_.begin());
      TdRecord td;
      td.tdr = Hpa{in.rcx};
      td.hkid = KeyId{static_cast<uint16_t>(in.rdx)};
      tds_.push_back(std::move(td));
      given(in.rcx);
      return;
    }
    case SeamcallLeaf::kMngAddcx:
      if (TdRecord* td = td_by_tdr(in.rdx)) td->tdcs.push_back(Hpa{in.rcx});
      given(in.rcx);
      return;
    case SeamcallLeaf::kMngInit:
      if (TdRecord* td = td_by_tdr(in.rcx)) {
        // What the host wrote into TD_PARAMS is what the module accepted.
        const Hpa params = Hpa{in.rdx};
        const uint64_t eptp = mem().read(params + td_params_offset::kEptpControls, kHostKey).value;
        const uint64_t flags = mem().read(params + td_params_offset::kConfigFlags, kHostKey).value;
        const uint64_t attributes =
            mem().read(params + td_params_offset::kAttributes, kHostKey).value;
        td->initialized = true;
        td->ept_levels = static_cast<unsigned>((eptp >> 3) & 7) + 1;
        td->gpaw = (flags & 1) != 0 ? 52 : 48;
        td->debug = (attributes & kTdAttrDebug) != 0;
      }
      return;
    case SeamcallLeaf::kVpCreate:
      if (TdRecord* td = td_by_tdr(in.rdx)) td->vcpus.push_back(VcpuRecord{Hpa{in.rcx}, {}});
      given(in.rcx);
      return;
    case SeamcallLeaf::kVpAddcx:
      for (TdRecord& td : tds_) {
        for (VcpuRecord& v : td.vcpus) {
          if (v.tdvpr.raw() == in.rdx) v.tdcx.push_back(Hpa{in.rcx});
        }
      }
      given(in.rcx);
      return;
    case SeamcallLeaf::kMemSeptAdd: {
      if (TdRecord* td = td_by_tdr(in.rdx & ~uint64_t{1})) remember_mapped(*td, in.rcx);
      // The module ignores R8's bit 63, and with ALLOW_EXISTING on an entry already mapped
      // it succeeds without reading R8 at all: the page is the module's only if it became
      // an S-EPT page.
      const Hpa page{in.r8 & ~(uint64_t{1} << 63)};
      if (page.is_aligned(Level::k4K) && mem().contains(page) &&
          module_.pamt().peek_type(page.pfn(), Level::k4K) == PamtPageType::kEpt) {
        given(page.raw());
      }
      return;
    }
    case SeamcallLeaf::kMemPageAug:
      if (TdRecord* td = td_by_tdr(in.rdx & ~uint64_t{1})) remember_mapped(*td, in.rcx);
      given(in.r8);
      return;
    case SeamcallLeaf::kMemPageDemote:
    case SeamcallLeaf::kMemPageRelocate:
      given(in.r8);
      return;
    case SeamcallLeaf::kMemPageAdd:
      given(in.r8);
      if (TdRecord* td = td_by_tdr(in.rdx)) {
        remember_mapped(*td, in.rcx);
        check_page_add_copy(mem(), Hpa{in.r8}, td->hkid, in.r9);
        const Gpa gpa = page_info.gpa();
        std::erase_if(td->measured, [&](const MeasuredPage& m) { return m.gpa == gpa; });
        td->measured.push_back(MeasuredPage{gpa, mem().page_hash(Hpa{in.r8}.pfn(), td->hkid)});
      }
      return;
    case SeamcallLeaf::kMemPageRemove:
      if (TdRecord* td = td_by_tdr(in.rdx); td != nullptr && page_info.tdx_level() <= 2) {
        disturb(*td, page_info.gpa(), level_bytes(page_info.level()));
      }
      return;
    case SeamcallLeaf::kMemWr:
      if (TdRecord* td = td_by_tdr(in.rdx))
        disturb(*td, Gpa{in.rcx}.align_down(Level::k4K), kPageSize);
      return;
    default:
      return;
  }
}

}  // namespace tdxsim::fuzz
