// The physical-memory leaves: TDH.PHYMEM.CACHE.WB, PAGE.RECLAIM, PAGE.WBINVD, PAGE.RDMD
// (intel/tdx-module src/vmm_dispatcher/api_calls/tdh_phymem_*.c).
#include "base/check.h"
#include "tdx_module/page_info.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {

namespace {

constexpr uint64_t kCacheWbStart = 0;
constexpr uint64_t kCacheWbResume = 1;

// The page-size output of RECLAIM and RDMD: 0 4K, 1 2M, 2 1G.
uint64_t size_code(Level l) { return PageInfo::to_tdx_level(l); }

}  // namespace

uint64_t TdxModule::phymem_cache_wb(LogicalCpu& cpu, SeamcallRegs& regs) {
  if (regs.rcx > kCacheWbResume) return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRcx);
  const unsigned pkg = cpu.package();
  TryLockGuard wb;
  if (!wb.try_lock(packages_[pkg].cache_wb_lock, /*exclusive=*/true)) {
    return with_operand(TdxStatus::kOperandBusy, TdxOperand::kWbcache);
  }
  TryLockGuard kot;
  if (!kot.try_lock(kot_lock_, /*exclusive=*/false)) {
    return with_operand(TdxStatus::kOperandBusy, TdxOperand::kKot);
  }
  // tdxsim writes the caches back in one step, never interrupted, so no session is ever
  // left to resume (the module's saved interruption point stays 0).
  if (regs.rcx == kCacheWbResume) return raw(TdxStatus::kWbcacheResumeError);
  static_assert(kCacheWbStart == 0);

  std::vector<uint16_t> flushed;
  for (uint32_t h = config_.first_private_hkid; h <= config_.last_private_hkid; ++h) {
    if (kot_[h].state == KotState::kFlushed) flushed.push_back(static_cast<uint16_t>(h));
  }
  if (flushed.empty()) return raw(TdxStatus::kNoHkidReadyToWbcache);
  const uint64_t bit = uint64_t{1} << pkg;
  for (uint16_t h : flushed) {
    // The platform's caches are not per package: writing back the key's lines everywhere is
    // a superset of what this package's WBNOINVD does, and harmless to repeat.
    platform_.memory().wbinvd_key(KeyId{h});
    // Other packages clear their own bits concurrently, under the KOT lock shared.
    kot_[h].wbinvd_bitmap.fetch_and(~bit, std::memory_order_relaxed);
  }
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::phymem_page_reclaim(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  const uint64_t page = regs.rcx;
  regs.rcx = regs.rdx = regs.r8 = regs.r9 = regs.r10 = regs.r11 = 0;
  if (const uint64_t s = check_hpa_format_and_range(page, TdxOperand::kRcx);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  std::expected<PamtLock, TryLockResult> entry =
      pamt_.lock(Hpa{page}.pfn(), Level::k4K, Requester::kHost, /*exclusive=*/true);
  if (!entry) return with_operand(TdxStatus::kOperandBusy, TdxOperand::kRcx);
  const PamtPageType type = entry->type();
  if (type == PamtPageType::kNda || type == PamtPageType::kRsvd) {
    return with_operand(TdxStatus::kPageMetadataIncorrect, TdxOperand::kRcx);
  }
  const Pfn owner = entry->owner();
  regs.rcx = static_cast<uint64_t>(type);
  regs.rdx = owner.hpa().raw();
  regs.r8 = size_code(entry->level());
  // The walk stopped at a large page: its HPA must be aligned to it.
  if (!Hpa{page}.is_aligned(entry->level())) {
    return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRcx);
  }

  if (type != PamtPageType::kTdr) {
    Check tdr = lock_implicit_tdr(owner, /*exclusive=*/false);
    if (!tdr) return tdr.error();
    Td* td = find_td(owner);
    TDXSIM_CHECK(td != nullptr, "owner {} of a {} page has no TD", owner, to_string(type));
    if (td->lifecycle != TdLifecycle::kTeardown) return raw(TdxStatus::kLifecycleStateIncorrect);
    td->child_count.fetch_sub(level_pages(entry->level()), std::memory_order_relaxed);
    entry->set_type(PamtPageType::kNda);
    if (type == PamtPageType::kTdvpr) erase_vcpu(entry->pfn());
    return raw(TdxStatus::kSuccess);
  }

  // The TDR itself, last: nothing else of the TD may remain.
  Td* td = &locked_td(*entry);
  if (td->lifecycle != TdLifecycle::kTeardown) return raw(TdxStatus::kLifecycleStateIncorrect);
  if (td->child_count.load(std::memory_order_relaxed) != 0) {
    return raw(TdxStatus::kTdAssociatedPagesExist);
  }
  entry->set_type(PamtPageType::kNda);
  // Holding the TDR exclusively: no other leaf can be using the Td.
  erase_td(entry->pfn());
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::phymem_page_wbinvd(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  // RCX carries the key in its HKID bits: the lines to write back are that key's.
  const KeyId key = layout().key_of(regs.rcx);
  const uint64_t page = regs.rcx & ~layout().keyid_mask();
  Check entry = check_page(page, PamtPageType::kNda, TdxOperand::kRcx, /*exclusive=*/false);
  if (!entry) return entry.error();
  platform_.memory().wbinvd_frame(entry->pfn(), key);
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::phymem_page_rdmd(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  const uint64_t page = regs.rcx;
  regs.rcx = regs.rdx = regs.r8 = regs.r9 = regs.r10 = regs.r11 = 0;
  if (const uint64_t s = check_hpa_format_and_range(page, TdxOperand::kRcx);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  std::expected<PamtLock, TryLockResult> entry =
      pamt_.lock(Hpa{page}.pfn(), Level::k4K, Requester::kHost, /*exclusive=*/false);
  if (!entry) return with_operand(TdxStatus::kOperandBusy, TdxOperand::kRcx);
  const PamtPageType type = entry->type();
  regs.rcx = static_cast<uint64_t>(type);
  regs.rdx = entry->owner().hpa().raw();
  regs.r8 = size_code(entry->level());
  if (type == PamtPageType::kReg || type == PamtPageType::kEpt) regs.r9 = entry->bepoch();
  return raw(TdxStatus::kSuccess);
}

}  // namespace tdxsim
