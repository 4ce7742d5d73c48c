// The vCPU leaves: TDH.VP.CREATE, ADDCX, INIT, RD, WR, FLUSH (intel/tdx-module
// src/vmm_dispatcher/api_calls/tdh_vp_*.c). A vCPU's leaves lock its TDVPR explicitly and
// the owner TDR implicitly (shared), through the TDVPR's PAMT owner, as the module does.
#include "base/check.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {

namespace {

// The shared-EPTP bits TDH.VP.WR lets the host write: the root's address. The module
// supplies the memory type, walk length and A/D control from the TD's own EPTP.
constexpr uint64_t kSharedEptpWritable = Eptp::Root::kMask;

}  // namespace

uint64_t TdxModule::vp_begin(uint64_t tdvpr, TdxOperand operand, bool tdvpr_exclusive,
                             std::initializer_list<TdOpState> allowed, VpOp& op) {
  Check page = check_page(tdvpr, PamtPageType::kTdvpr, operand, tdvpr_exclusive);
  if (!page) return page.error();
  op.tdvpr.emplace(std::move(*page));
  Check tdr = lock_implicit_tdr(op.tdvpr->owner(), /*exclusive=*/false);
  if (!tdr) return tdr.error();
  op.tdr.emplace(std::move(*tdr));
  op.td = &locked_td(*op.tdr);
  op.vcpu = &locked_vcpu(*op.tdvpr);
  return check_td_state(*op.td, /*lock_exclusive=*/false, allowed, op.op_state);
}

uint64_t TdxModule::vp_create(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  Check tdr = check_page(regs.rdx, PamtPageType::kTdr, TdxOperand::kRdx, /*exclusive=*/false);
  if (!tdr) return tdr.error();
  Td* td = &locked_td(*tdr);
  TryLockGuard op_state;
  if (const uint64_t s = check_td_state(*td, /*lock_exclusive=*/false, {TdOpState::kInitialized},
                                        op_state);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Check tdvpr = check_page(regs.rcx, PamtPageType::kNda, TdxOperand::kRcx, /*exclusive=*/true);
  if (!tdvpr) return tdvpr.error();

  take_page(tdvpr->pfn(), td->hkid, 0);
  // CHLDCNT: the TDR is held shared, so concurrent VP.CREATEs add atomically.
  td->child_count.fetch_add(1, std::memory_order_relaxed);
  tdvpr->set_type(PamtPageType::kTdvpr);
  tdvpr->set_owner(td->tdr);
  add_vcpu(std::make_unique<Vcpu>(tdvpr->pfn(), td->tdr));
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::vp_addcx(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  VpOp op;
  if (const uint64_t s = vp_begin(regs.rdx, TdxOperand::kRdx, /*tdvpr_exclusive=*/true,
                                  {TdOpState::kInitialized}, op);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Td* td = op.td;
  Vcpu* vcpu = op.vcpu;
  if (vcpu->state != VcpuState::kCreated) return raw(TdxStatus::kVcpuStateIncorrect);
  if (vcpu->tdcx_pages.size() + 1 >= config_.tdvps_pages) return raw(TdxStatus::kTdcxNumIncorrect);
  Check page = check_page(regs.rcx, PamtPageType::kNda, TdxOperand::kRcx, /*exclusive=*/true);
  if (!page) return page.error();

  take_page(page->pfn(), td->hkid, 0);
  vcpu->tdcx_pages.push_back(page->pfn());
  td->child_count.fetch_add(1, std::memory_order_relaxed);
  page->set_type(PamtPageType::kTdcx);
  page->set_owner(td->tdr);
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::vp_init(LogicalCpu& /*cpu*/, SeamcallRegs& regs, uint8_t version) {
  VpOp op;
  if (const uint64_t s = vp_begin(regs.rcx, TdxOperand::kRcx, /*tdvpr_exclusive=*/true,
                                  {TdOpState::kInitialized}, op);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Td* td = op.td;
  Vcpu* vcpu = op.vcpu;
  // The TDVPS must be complete before its fields can be initialised (module map_tdvps).
  if (vcpu->tdcx_pages.size() + 1 < config_.tdvps_pages) return raw(TdxStatus::kTdcxNumIncorrect);
  if (vcpu->state != VcpuState::kCreated) return raw(TdxStatus::kVcpuStateIncorrect);
  // The vCPU index: an atomic increment bounded by MAX_VCPUS, undone when over.
  const uint64_t index = td->num_vcpus.fetch_add(1, std::memory_order_relaxed);
  if (index >= td->max_vcpus) {
    td->num_vcpus.fetch_sub(1, std::memory_order_relaxed);
    return raw(TdxStatus::kMaxVcpusExceeded);
  }

  vcpu->vcpu_index = static_cast<uint32_t>(index);
  if (version >= 1) vcpu->x2apic_id = static_cast<uint32_t>(regs.r8);
  vcpu->guest_state = GuestState{};
  vcpu->guest_state.regs[Gpr::kRcx] = regs.rdx;
  GuestContext& ctx = vcpu->context;
  ctx = GuestContext{};
  ctx.mode = GuestMode::kTd;
  ctx.secure_eptp = td->secure_eptp;
  ctx.sept_key = td->hkid;
  ctx.shared_bit = shared_bit(td->gpaw);
  // The TD VMCS always enables EPT-violation #VE; SEPT_VE_DISABLE decides, per access, only
  // whether a PENDING page gives a #VE (a later layer).
  ctx.ve_enabled = true;
  ctx.ve_info = &vcpu->ve_info;
  vcpu->state = VcpuState::kReady;
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::vp_rd_wr(LogicalCpu& /*cpu*/, SeamcallRegs& regs, bool write) {
  VpOp op;
  if (const uint64_t s = vp_begin(regs.rcx, TdxOperand::kRcx, /*tdvpr_exclusive=*/write,
                                  {TdOpState::kInitialized, TdOpState::kRunnable}, op);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Td* td = op.td;
  Vcpu* vcpu = op.vcpu;
  if (vcpu->tdcx_pages.size() + 1 < config_.tdvps_pages) return raw(TdxStatus::kTdcxNumIncorrect);
  if (regs.rdx != vp_field::kSharedEptp) {
    regs.r8 = 0;
    return raw(TdxStatus::kMetadataFieldIdIncorrect);
  }
  const uint64_t old_value = vcpu->context.eptp.raw();
  if (write) {
    const uint64_t mask = regs.r9 & kSharedEptpWritable;
    const uint64_t root = (old_value & ~mask) | (regs.r8 & mask);
    vcpu->context.eptp =
        Eptp::make(Hpa{root & kSharedEptpWritable}, td->ept_levels,
                   td->secure_eptp.is_ad_enabled());
  }
  regs.r8 = old_value;
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::vp_flush(LogicalCpu& cpu, SeamcallRegs& regs) {
  Check tdvpr = check_page(regs.rcx, PamtPageType::kTdvpr, TdxOperand::kRcx, /*exclusive=*/true);
  if (!tdvpr) return tdvpr.error();
  Check tdr = lock_implicit_tdr(tdvpr->owner(), /*exclusive=*/false);
  if (!tdr) return tdr.error();
  Td* td = &locked_td(*tdr);
  Vcpu* vcpu = &locked_vcpu(*tdvpr);
  if (td->lifecycle != TdLifecycle::kKeysConfigured) return raw(TdxStatus::kTdKeysNotConfigured);
  if (vcpu->tdcx_pages.size() + 1 < config_.tdvps_pages) return raw(TdxStatus::kTdcxNumIncorrect);
  // A vCPU never entered, or flushed already, is associated with no LP: also "not here"
  // (module: ASSOC_LPID is -1, never equal to an LP id). KVM treats this status as done.
  if (vcpu->assoc_lp.load(std::memory_order_acquire) != cpu.id()) {
    return raw(TdxStatus::kVcpuNotAssociated);
  }

  // The TD's translations cached on this LP are tagged with its secure EPTP.
  cpu.invept(InveptType::kSingleContext, td->secure_eptp);
  vcpu->assoc_lp.store(kNoLp, std::memory_order_release);
  td->num_assoc_vcpus.fetch_sub(1, std::memory_order_relaxed);
  LpState& lp = lps_[cpu.id()];
  if (lp.last_vcpu == vcpu->tdvpr) lp.last_vcpu = Pfn{0};
  return raw(TdxStatus::kSuccess);
}

}  // namespace tdxsim
