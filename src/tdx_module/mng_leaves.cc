// The TD management leaves: TDH.MNG.CREATE, KEY.CONFIG, ADDCX, INIT, VPFLUSHDONE,
// KEY.FREEID. Each follows its module handler's check order (intel/tdx-module
// src/vmm_dispatcher/api_calls/tdh_mng_*.c): the explicit TDR operand first (locked as the
// handler locks it), then the TD's state, then the other operands.
#include "base/check.h"
#include "platform/ept_entry.h"
#include "tdx_module/sept_entry.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {

namespace {

constexpr uint64_t kSupportedAttributes = kTdAttrDebug | kTdAttrSeptVeDisable;
constexpr uint64_t kConfigFlagGpaw = uint64_t{1} << 0;
constexpr uint64_t kSupportedConfigFlags = 0x7;
constexpr uint64_t kEptpMemTypeWb = 6;

}  // namespace

uint64_t TdxModule::mng_create(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  // RDX: the HKID in bits 15:0, the rest reserved.
  if ((regs.rdx >> 16) != 0 || !is_private_hkid(regs.rdx)) {
    return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRdx);
  }
  const KeyId hkid{static_cast<uint16_t>(regs.rdx)};
  Check tdr = check_page(regs.rcx, PamtPageType::kNda, TdxOperand::kRcx, /*exclusive=*/true);
  if (!tdr) return tdr.error();
  TryLockGuard kot;
  if (!kot.try_lock(kot_lock_, /*exclusive=*/true)) {
    return with_operand(TdxStatus::kOperandBusy, TdxOperand::kKot);
  }
  KotEntry& entry = kot_[hkid.raw()];
  if (entry.state != KotState::kFree) return raw(TdxStatus::kHkidNotFree);

  // The TDR is the module's own structure: it lives under the global private key.
  take_page(tdr->pfn(), global_hkid(), 0);
  entry.state = KotState::kAssigned;
  tdr->set_type(PamtPageType::kTdr);
  tdr->set_owner(Pfn{0});  // a TDR has no owner (module: owner = 0)
  add_td(std::make_unique<Td>(tdr->pfn(), hkid));
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mng_key_config(LogicalCpu& cpu, SeamcallRegs& regs) {
  Check tdr = check_page(regs.rcx, PamtPageType::kTdr, TdxOperand::kRcx, /*exclusive=*/true);
  if (!tdr) return tdr.error();
  Td* td = &locked_td(*tdr);
  if (td->lifecycle != TdLifecycle::kHkidAssigned) return raw(TdxStatus::kLifecycleStateIncorrect);
  const uint64_t bit = uint64_t{1} << cpu.package();
  if ((td->pkg_config_bitmap & bit) != 0) return raw(TdxStatus::kKeyConfigured);
  // PCONFIG of the package's key table happens here; tdxsim's keys need no programming.
  td->pkg_config_bitmap |= bit;
  if (td->pkg_config_bitmap == all_packages_mask()) td->lifecycle = TdLifecycle::kKeysConfigured;
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mng_addcx(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  Check tdr = check_page(regs.rdx, PamtPageType::kTdr, TdxOperand::kRdx, /*exclusive=*/true);
  if (!tdr) return tdr.error();
  Td* td = &locked_td(*tdr);
  if (td->lifecycle != TdLifecycle::kKeysConfigured) return raw(TdxStatus::kTdKeysNotConfigured);
  const size_t index = td->tdcs_pages.size();
  if (index >= config_.tdcs_pages) return raw(TdxStatus::kTdcxNumIncorrect);
  Check page = check_page(regs.rcx, PamtPageType::kNda, TdxOperand::kRcx, /*exclusive=*/true);
  if (!page) return page.error();

  // The module's initial contents: MSR exits on for every MSR, an S-EPT root of FREE
  // entries, zeros elsewhere.
  uint64_t fill = 0;
  if (index == kTdcsMsrBitmapsPageIndex) fill = ~uint64_t{0};
  if (index == kTdcsSeptRootPageIndex) fill = SeptEntry::free().raw();
  take_page(page->pfn(), td->hkid, fill);
  td->tdcs_pages.push_back(page->pfn());
  td->child_count.fetch_add(1, std::memory_order_relaxed);
  page->set_type(PamtPageType::kTdcx);
  page->set_owner(td->tdr);
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mng_init(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  Check tdr = check_page(regs.rcx, PamtPageType::kTdr, TdxOperand::kRcx, /*exclusive=*/true);
  if (!tdr) return tdr.error();
  Td* td = &locked_td(*tdr);
  TryLockGuard op_state;
  if (const uint64_t s = check_td_state(*td, /*lock_exclusive=*/true, {TdOpState::kUninitialized},
                                        op_state);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }

  // RDX: TD_PARAMS in shared (host-keyed) memory, allocated by the host or not: the module
  // reads what is there. tdxsim refuses only an address past the end of the memory it
  // models, where hardware would read whatever the platform returns for it.
  HostMemory& mem = platform_.memory();
  const Hpa params{regs.rdx};
  if ((regs.rdx % kTdParamsAlign) != 0 || (regs.rdx & layout().keyid_mask()) != 0 ||
      (regs.rdx >> layout().maxphyaddr) != 0 || !mem.contains(params)) {
    return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRdx);
  }
  const auto field = [&](uint64_t offset) { return mem.read(params + offset, kHostKey).value; };
  const uint64_t attributes = field(td_params_offset::kAttributes);
  const uint16_t max_vcpus = static_cast<uint16_t>(field(td_params_offset::kMaxVcpus));
  const uint64_t eptp_controls = field(td_params_offset::kEptpControls);
  const uint64_t config_flags = field(td_params_offset::kConfigFlags);

  // The module checks each field against what it supports, in the struct's order.
  if ((attributes & ~kSupportedAttributes) != 0) {
    return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kAttributes);
  }
  if (max_vcpus == 0) return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kMaxVcpus);
  const uint64_t pwl = (eptp_controls >> 3) & 0x7;
  if ((eptp_controls & 0x7) != kEptpMemTypeWb || (pwl != 3 && pwl != 4) || (eptp_controls >> 6) != 0) {
    return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kEptpControls);
  }
  if ((config_flags & ~kSupportedConfigFlags) != 0) {
    return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kExecControls);
  }
  const bool gpaw52 = (config_flags & kConfigFlagGpaw) != 0;
  // A 52-bit GPA space needs the 5-level S-EPT (abi §7.4).
  if (gpaw52 && pwl != 4) return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kEptpControls);

  td->attributes = attributes;
  td->max_vcpus = max_vcpus;
  td->gpaw = gpaw52 ? Gpaw::k52 : Gpaw::k48;
  td->config_flags = config_flags;
  td->td_ctls = (attributes & kTdAttrSeptVeDisable) != 0 ? kTdCtlsPendingVeDisable : 0;
  td->notify_enables.store(0, std::memory_order_relaxed);
  td->ept_levels = static_cast<unsigned>(pwl) + 1;
  td->secure_eptp = Eptp::make(td->sept_root().hpa(), td->ept_levels, /*ad_enabled=*/false);
  // TD_EPOCH starts at 1 (module tdh_mng_init.c), so BEPOCH 0 of a fresh AUG is tracked.
  td->td_epoch.store(1, std::memory_order_relaxed);
  td->refcount[0].store(0, std::memory_order_relaxed);
  td->refcount[1].store(0, std::memory_order_relaxed);
  td->measurement = TdMeasurement();
  td->op_state = TdOpState::kInitialized;
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mng_vpflushdone(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  Check tdr = check_page(regs.rcx, PamtPageType::kTdr, TdxOperand::kRcx, /*exclusive=*/true);
  if (!tdr) return tdr.error();
  Td* td = &locked_td(*tdr);
  TryLockGuard kot;
  if (!kot.try_lock(kot_lock_, /*exclusive=*/true)) {
    return with_operand(TdxStatus::kOperandBusy, TdxOperand::kKot);
  }
  if (td->lifecycle != TdLifecycle::kKeysConfigured && td->lifecycle != TdLifecycle::kHkidAssigned) {
    return raw(TdxStatus::kLifecycleStateIncorrect);
  }
  // With the TDR held exclusively no vCPU can become associated meanwhile; a TD whose TDCS
  // was never completed or initialised has no vCPUs.
  if (td->tdcs_pages.size() >= config_.tdcs_pages && td->op_state != TdOpState::kUninitialized &&
      td->num_assoc_vcpus.load(std::memory_order_relaxed) != 0) {
    return raw(TdxStatus::kFlushvpNotDone);
  }
  KotEntry& entry = kot_[td->hkid.raw()];
  TDXSIM_CHECK(entry.state == KotState::kAssigned, "HKID {} of a live TD is not assigned",
               td->hkid.raw());
  entry.wbinvd_bitmap.store(all_packages_mask(), std::memory_order_relaxed);
  entry.state = KotState::kFlushed;
  td->lifecycle = TdLifecycle::kBlocked;
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mng_key_freeid(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  Check tdr = check_page(regs.rcx, PamtPageType::kTdr, TdxOperand::kRcx, /*exclusive=*/true);
  if (!tdr) return tdr.error();
  Td* td = &locked_td(*tdr);
  if (td->lifecycle != TdLifecycle::kBlocked) return raw(TdxStatus::kLifecycleStateIncorrect);
  TryLockGuard kot;
  if (!kot.try_lock(kot_lock_, /*exclusive=*/true)) {
    return with_operand(TdxStatus::kOperandBusy, TdxOperand::kKot);
  }
  KotEntry& entry = kot_[td->hkid.raw()];
  TDXSIM_CHECK(entry.state == KotState::kFlushed, "HKID {} of a blocked TD is not flushed",
               td->hkid.raw());
  if (entry.wbinvd_bitmap.load(std::memory_order_relaxed) != 0) {
    return raw(TdxStatus::kWbcacheNotComplete);
  }
  entry.state = KotState::kFree;
  td->lifecycle = TdLifecycle::kTeardown;
  return raw(TdxStatus::kSuccess);
}

}  // namespace tdxsim
