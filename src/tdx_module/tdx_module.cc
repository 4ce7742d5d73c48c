#include "tdx_module/tdx_module.h"

#include <algorithm>
#include <bit>
#include <utility>

#include "base/check.h"

namespace tdxsim {

TdxModule::TdxModule(Platform& platform, const TdxModuleConfig& config)
    : platform_(platform),
      config_(config),
      pamt_(platform.memory().total_frames()),
      control_objects_(platform.memory().total_frames()),
      kot_(size_t{platform.memory().layout().max_keyid()} + 1),
      packages_(platform.package_count()),
      lps_(platform.cpu_count()) {
  TDXSIM_CHECK(config_.first_private_hkid >= 1 &&
                   config_.first_private_hkid <= config_.last_private_hkid &&
                   config_.last_private_hkid <= layout().max_keyid(),
               "private HKIDs {}..{} outside key IDs 1..{}", config_.first_private_hkid,
               config_.last_private_hkid, layout().max_keyid());
  TDXSIM_CHECK(config_.tdcs_pages > kTdcsSeptRootPageIndex && config_.tdvps_pages >= 1,
               "{} TDCS pages / {} TDVPS pages", config_.tdcs_pages, config_.tdvps_pages);
  TDXSIM_CHECK(config_.tdmr_init_chunk_bytes >= kPageSize &&
                   config_.tdmr_init_chunk_bytes % kPageSize == 0,
               "TDMR init chunk {} bytes", config_.tdmr_init_chunk_bytes);
  TDXSIM_CHECK(platform.package_count() <= 64, "{} packages", platform.package_count());
}

TdxModule::~TdxModule() = default;

uint64_t TdxModule::all_packages_mask() const {
  const unsigned n = platform_.package_count();
  return n == 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
}

bool TdxModule::is_private_hkid(uint64_t hkid) const {
  return hkid >= config_.first_private_hkid && hkid <= config_.last_private_hkid;
}

// --- Dispatcher -------------------------------------------------------------------------------

// The leaves the dispatcher lets through before the module is READY (abi §1.1).
bool TdxModule::allowed_before_ready(SeamcallLeaf leaf) {
  switch (leaf) {
    case SeamcallLeaf::kSysInfo:
    case SeamcallLeaf::kSysRd:
    case SeamcallLeaf::kSysRdall:
    case SeamcallLeaf::kSysInit:
    case SeamcallLeaf::kSysLpInit:
    case SeamcallLeaf::kSysConfig:
    case SeamcallLeaf::kSysKeyConfig:
    case SeamcallLeaf::kSysLpShutdown:
    case SeamcallLeaf::kSysUpdate:
      return true;
    default:
      return false;
  }
}

// An environment fault (EnvFaultKind::kForceOperandBusy, key: the leaf number, param: the
// operand ID) makes a memory leaf lose its lock race without running: what a host sees when
// a vCPU's TDH.VP.ENTER or another CPU's SEAMCALL holds the S-EPT or the epoch.
std::optional<uint64_t> TdxModule::forced_busy(SeamcallLeaf leaf) {
  switch (leaf) {
    case SeamcallLeaf::kMemSeptAdd:
    case SeamcallLeaf::kMemPageAug:
    case SeamcallLeaf::kMemPageAdd:
    case SeamcallLeaf::kMemRangeBlock:
    case SeamcallLeaf::kMemRangeUnblock:
    case SeamcallLeaf::kMemTrack:
    case SeamcallLeaf::kMemPageRemove:
    case SeamcallLeaf::kMemSeptRemove:
    case SeamcallLeaf::kMemPageDemote:
    case SeamcallLeaf::kMemPagePromote:
    case SeamcallLeaf::kMemPageRelocate:
      return platform_.faults().take(EnvFaultKind::kForceOperandBusy,
                                     static_cast<uint64_t>(leaf));
    default:
      return std::nullopt;
  }
}

void TdxModule::seamcall(LogicalCpu& cpu, SeamcallRegs& regs) {
  cpu.assert_current();
  const LeafAndVersion lv{regs.rax};
  uint64_t status = lv.check_seamcall_format();
  if (status == raw(TdxStatus::kSuccess)) {
    if (!sys_ready() && !allowed_before_ready(lv.seamcall_leaf())) {
      status = raw(TdxStatus::kSysNotReady);
    } else if (const std::optional<uint64_t> op = forced_busy(lv.seamcall_leaf())) {
      status = raw(TdxStatus::kOperandBusy) | static_cast<uint32_t>(*op);
    } else {
      status = dispatch(cpu, regs, lv);
    }
  }
  regs.rax = status;
}

uint64_t TdxModule::dispatch(LogicalCpu& cpu, SeamcallRegs& regs, LeafAndVersion lv) {
  switch (lv.seamcall_leaf()) {
    case SeamcallLeaf::kSysInit: return sys_init(cpu, regs);
    case SeamcallLeaf::kSysLpInit: return sys_lp_init(cpu, regs);
    case SeamcallLeaf::kSysConfig: return sys_config(cpu, regs);
    case SeamcallLeaf::kSysKeyConfig: return sys_key_config(cpu, regs);
    case SeamcallLeaf::kSysTdmrInit: return sys_tdmr_init(cpu, regs);
    case SeamcallLeaf::kMngCreate: return mng_create(cpu, regs);
    case SeamcallLeaf::kMngKeyConfig: return mng_key_config(cpu, regs);
    case SeamcallLeaf::kMngAddcx: return mng_addcx(cpu, regs);
    case SeamcallLeaf::kMngInit: return mng_init(cpu, regs);
    case SeamcallLeaf::kMngVpflushdone: return mng_vpflushdone(cpu, regs);
    case SeamcallLeaf::kMngKeyFreeid: return mng_key_freeid(cpu, regs);
    // Kept for backward compatibility; 1.5.01 does nothing and succeeds (abi §1.2).
    case SeamcallLeaf::kMngKeyReclaimid: return raw(TdxStatus::kSuccess);
    case SeamcallLeaf::kVpCreate: return vp_create(cpu, regs);
    case SeamcallLeaf::kVpAddcx: return vp_addcx(cpu, regs);
    case SeamcallLeaf::kVpInit: return vp_init(cpu, regs, lv.version());
    case SeamcallLeaf::kVpRd: return vp_rd_wr(cpu, regs, /*write=*/false);
    case SeamcallLeaf::kVpWr: return vp_rd_wr(cpu, regs, /*write=*/true);
    case SeamcallLeaf::kVpFlush: return vp_flush(cpu, regs);
    case SeamcallLeaf::kVpEnter: return vp_enter(cpu, regs);
    case SeamcallLeaf::kPhymemCacheWb: return phymem_cache_wb(cpu, regs);
    case SeamcallLeaf::kPhymemPageReclaim: return phymem_page_reclaim(cpu, regs);
    case SeamcallLeaf::kPhymemPageWbinvd: return phymem_page_wbinvd(cpu, regs);
    case SeamcallLeaf::kPhymemPageRdmd: return phymem_page_rdmd(cpu, regs);
    case SeamcallLeaf::kMemSeptAdd: return mem_sept_add(cpu, regs, lv.version());
    case SeamcallLeaf::kMemPageAug: return mem_page_aug(cpu, regs);
    case SeamcallLeaf::kMemSeptRd: return mem_sept_rd(cpu, regs);
    case SeamcallLeaf::kMemRangeBlock: return mem_range_block(cpu, regs);
    case SeamcallLeaf::kMemRangeUnblock: return mem_range_unblock(cpu, regs);
    case SeamcallLeaf::kMemTrack: return mem_track(cpu, regs);
    case SeamcallLeaf::kMemPageRemove: return mem_page_remove(cpu, regs);
    case SeamcallLeaf::kMemSeptRemove: return mem_sept_remove(cpu, regs);
    case SeamcallLeaf::kMemPageAdd: return mem_page_add(cpu, regs);
    case SeamcallLeaf::kMrExtend: return mr_extend(cpu, regs);
    case SeamcallLeaf::kMrFinalize: return mr_finalize(cpu, regs);
    case SeamcallLeaf::kMemPageDemote: return mem_page_demote(cpu, regs);
    case SeamcallLeaf::kMemPagePromote: return mem_page_promote(cpu, regs, lv.version());
    case SeamcallLeaf::kMemPageRelocate: return mem_page_relocate(cpu, regs);
    case SeamcallLeaf::kMemRd: return mem_rd_wr(cpu, regs, /*write=*/false);
    case SeamcallLeaf::kMemWr: return mem_rd_wr(cpu, regs, /*write=*/true);
    case SeamcallLeaf::kMngRd: return mng_rd_wr(cpu, regs, /*write=*/false, lv.version());
    case SeamcallLeaf::kMngWr: return mng_rd_wr(cpu, regs, /*write=*/true, lv.version());
    default:
      // Undefined leaves, and the ones tdxsim does not dispatch yet: the module's default.
      return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRax);
  }
}

// --- Helpers ----------------------------------------------------------------------------------

uint64_t TdxModule::check_hpa_format_and_range(uint64_t raw_hpa, TdxOperand op) const {
  const Hpa hpa{raw_hpa};
  // No HKID bits and below MAX_PA: every bit above the frame mask clear.
  if ((raw_hpa & (~layout().frame_mask() | (kPageSize - 1))) != 0) {
    return with_operand(TdxStatus::kOperandInvalid, op);
  }
  // The TDMR ends at the end of memory; TDH.SYS.TDMR.INIT may not have reached it yet.
  if (!platform_.memory().contains(hpa) ||
      raw_hpa >= tdmr_initialized_bytes_.load(std::memory_order_acquire)) {
    return with_operand(TdxStatus::kOperandAddrRangeError, op);
  }
  return raw(TdxStatus::kSuccess);
}

TdxModule::Check TdxModule::check_page(uint64_t raw_hpa, PamtPageType expected, TdxOperand op,
                                       bool exclusive) {
  // Format and range first (Pamt::check_hpa_operand's steps 1 and 2, with the range cut at
  // what TDMR.INIT has initialised); then the PAMT's own walk, lock and type check.
  if (const uint64_t s = check_hpa_format_and_range(raw_hpa, op); s != raw(TdxStatus::kSuccess)) {
    return std::unexpected(s);
  }
  return pamt_.lock_hpa_operand(Hpa{raw_hpa}, Level::k4K, expected, op, Requester::kHost,
                                exclusive);
}

TdxModule::Check TdxModule::lock_implicit_tdr(Pfn tdr, bool exclusive) {
  std::expected<PamtLock, TryLockResult> l = pamt_.lock(tdr, Level::k4K, Requester::kHost, exclusive);
  if (!l) return std::unexpected(with_operand(TdxStatus::kOperandBusy, TdxOperand::kTdr));
  // The owner field of a TDVPR/TDCX page only ever names a live TDR: the TDR cannot be
  // reclaimed while it has children.
  TDXSIM_CHECK(l->type() == PamtPageType::kTdr && l->level() == Level::k4K,
               "owner {} of a TD page is a {} page", tdr, to_string(l->type()));
  return std::move(*l);
}

uint64_t TdxModule::check_td_state(Td& td, bool lock_exclusive,
                                   std::initializer_list<TdOpState> allowed,
                                   TryLockGuard& op_state_guard) {
  if (td.lifecycle != TdLifecycle::kKeysConfigured) return raw(TdxStatus::kTdKeysNotConfigured);
  if (td.tdcs_pages.size() < config_.tdcs_pages) return raw(TdxStatus::kTdcsNotAllocated);
  if (td.fatal.load(std::memory_order_acquire) != 0) return raw(TdxStatus::kTdFatal);
  if (!op_state_guard.try_lock(td.op_state_lock, lock_exclusive)) {
    return with_operand(TdxStatus::kOperandBusy, TdxOperand::kOpState);
  }
  if (std::find(allowed.begin(), allowed.end(), td.op_state) == allowed.end()) {
    op_state_guard.release();
    return raw(TdxStatus::kOpStateIncorrect);
  }
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::td_machine_check(Td& td) {
  td.fatal.store(1, std::memory_order_release);
  return raw(TdxStatus::kTdFatal);
}

void TdxModule::td_fatal_exit(Td& td, SeamcallRegs& regs) {
  td_machine_check(td);
  regs = SeamcallRegs{};
  regs.rax = raw(TdxStatus::kNonRecoverableTd);
}

void TdxModule::take_page(Pfn pfn, KeyId key, uint64_t fill) {
  HostMemory& mem = platform_.memory();
  // The module's MOVDIR64B initialisation: the new key's view of the page is defined only
  // after a whole-page write with it.
  mem.set_key(pfn, key);
  mem.fill(pfn, key, fill);
}

std::expected<PamtLock, uint64_t> TdxModule::lock_mapped(SeptEntry e, Level level,
                                                         bool exclusive) {
  const bool leaf = e.is_leaf();
  const Level page_level = leaf ? level : Level::k4K;
  std::expected<PamtLock, TryLockResult> page =
      pamt_.lock(e.hpa(layout()).pfn(), page_level, Requester::kHost, exclusive);
  if (!page) return std::unexpected(with_operand(TdxStatus::kOperandBusy, TdxOperand::kRcx));
  const PamtPageType want = leaf ? PamtPageType::kReg : PamtPageType::kEpt;
  TDXSIM_CHECK(page->type() == want && page->level() == page_level,
               "S-EPT {} at {} maps a {} {} page", leaf ? "leaf" : "non-leaf", level_name(level),
               level_name(page->level()), to_string(page->type()));
  return std::move(*page);
}

Td* TdxModule::find_td(Pfn tdr) const {
  MutexLock l(registry_mu_);
  auto it = tds_.find(tdr.raw());
  return it == tds_.end() ? nullptr : it->second.get();
}

Vcpu* TdxModule::find_vcpu(Pfn tdvpr) const {
  MutexLock l(registry_mu_);
  auto it = vcpus_.find(tdvpr.raw());
  return it == vcpus_.end() ? nullptr : it->second.get();
}

// The control object of a frame the caller holds locked: the PAMT lock's acquire orders the
// pointer's store (made under the same lock held exclusively, when the page was assigned).
Td& TdxModule::locked_td(const PamtLock& tdr) const {
  Td* td = std::bit_cast<Td*>(
      AtomicWordRef(control_objects_[tdr.pfn().raw()]).load(std::memory_order_relaxed));
  TDXSIM_CHECK(td != nullptr, "PT_TDR page {} with no TD", tdr.pfn());
  return *td;
}

Vcpu& TdxModule::locked_vcpu(const PamtLock& tdvpr) const {
  Vcpu* vcpu = std::bit_cast<Vcpu*>(
      AtomicWordRef(control_objects_[tdvpr.pfn().raw()]).load(std::memory_order_relaxed));
  TDXSIM_CHECK(vcpu != nullptr, "PT_TDVPR page {} with no vCPU", tdvpr.pfn());
  return *vcpu;
}

Td& TdxModule::add_td(std::unique_ptr<Td> td) {
  MutexLock l(registry_mu_);
  const uint64_t key = td->tdr.raw();
  auto [it, inserted] = tds_.emplace(key, std::move(td));
  TDXSIM_CHECK(inserted, "a second TD at TDR pfn {:#x}", key);
  set_control_object(key, it->second.get());
  return *it->second;
}

Vcpu& TdxModule::add_vcpu(std::unique_ptr<Vcpu> vcpu) {
  MutexLock l(registry_mu_);
  const uint64_t key = vcpu->tdvpr.raw();
  auto [it, inserted] = vcpus_.emplace(key, std::move(vcpu));
  TDXSIM_CHECK(inserted, "a second vCPU at TDVPR pfn {:#x}", key);
  set_control_object(key, it->second.get());
  return *it->second;
}

void TdxModule::set_control_object(uint64_t pfn, const void* object) {
  control_objects_.note_touched(pfn);
  AtomicWordRef(control_objects_[pfn]).store(std::bit_cast<uint64_t>(object),
                                             std::memory_order_relaxed);
}

void TdxModule::erase_td(Pfn tdr) {
  MutexLock l(registry_mu_);
  set_control_object(tdr.raw(), nullptr);
  TDXSIM_CHECK(tds_.erase(tdr.raw()) == 1, "no TD at {}", tdr);
}

void TdxModule::erase_vcpu(Pfn tdvpr) {
  MutexLock l(registry_mu_);
  set_control_object(tdvpr.raw(), nullptr);
  TDXSIM_CHECK(vcpus_.erase(tdvpr.raw()) == 1, "no vCPU at {}", tdvpr);
}

// --- Simulation hooks and introspection ---------------------------------------------------------

bool TdxModule::attach_guest(Hpa tdvpr, GuestProgram* program, uint32_t instruction_budget) {
  Vcpu* v = find_vcpu(tdvpr.pfn());
  if (v == nullptr) return false;
  v->program = program;
  v->instruction_budget = instruction_budget;
  return true;
}

std::optional<GuestState> TdxModule::vcpu_guest_state(Hpa tdvpr) const {
  const Vcpu* v = find_vcpu(tdvpr.pfn());
  if (v == nullptr) return std::nullopt;
  return v->guest_state;
}

bool TdxModule::sys_ready() const {
  return sys_phase_.load(std::memory_order_acquire) == static_cast<uint64_t>(SysPhase::kReady);
}

bool TdxModule::tdmr_initialized() const {
  return tdmr_initialized_bytes_.load(std::memory_order_acquire) >=
         platform_.memory().total_frames() * kPageSize;
}

std::optional<TdLifecycle> TdxModule::td_lifecycle(Hpa tdr) const {
  const Td* td = find_td(tdr.pfn());
  if (td == nullptr) return std::nullopt;
  return td->lifecycle;
}

std::optional<TdOpState> TdxModule::td_op_state(Hpa tdr) const {
  const Td* td = find_td(tdr.pfn());
  if (td == nullptr) return std::nullopt;
  return td->op_state;
}

std::optional<uint64_t> TdxModule::td_child_count(Hpa tdr) const {
  const Td* td = find_td(tdr.pfn());
  if (td == nullptr) return std::nullopt;
  return td->child_count.load(std::memory_order_relaxed);
}

std::optional<bool> TdxModule::td_fatal(Hpa tdr) const {
  const Td* td = find_td(tdr.pfn());
  if (td == nullptr) return std::nullopt;
  return td->fatal.load(std::memory_order_acquire) != 0;
}

std::optional<VcpuState> TdxModule::vcpu_state(Hpa tdvpr) const {
  const Vcpu* v = find_vcpu(tdvpr.pfn());
  if (v == nullptr) return std::nullopt;
  return v->state;
}

size_t TdxModule::td_count() const {
  MutexLock l(registry_mu_);
  return tds_.size();
}

size_t TdxModule::vcpu_count() const {
  MutexLock l(registry_mu_);
  return vcpus_.size();
}

}  // namespace tdxsim
