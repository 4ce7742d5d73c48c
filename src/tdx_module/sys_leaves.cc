// The TDH.SYS.* leaves that bring the module up (tdx_module.h lists the sequence).
//
// Choices where the module's exact behaviour was not checked (report to the lead):
//   - TDH.SYS.LP.INIT before TDH.SYS.INIT answers TDX_SYS_STATE_INCORRECT.
//   - TDH.SYS.TDMR.INIT on a fully initialised TDMR succeeds again with RDX = its end.
#include "base/check.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {

uint64_t TdxModule::sys_init(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  TryLockGuard sys;
  if (!sys.try_lock(sys_lock_, /*exclusive=*/true)) return raw(TdxStatus::kSysBusy);
  if (sys_phase_.load(std::memory_order_relaxed) != static_cast<uint64_t>(SysPhase::kInitPending)) {
    return raw(TdxStatus::kSysInitNotPending);
  }
  // RCX: the SYS.INIT attributes; 1.5.01 defines none.
  if (regs.rcx != 0) return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRcx);
  sys_phase_.store(static_cast<uint64_t>(SysPhase::kLpInit), std::memory_order_release);
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::sys_lp_init(LogicalCpu& cpu, SeamcallRegs& /*regs*/) {
  if (sys_phase_.load(std::memory_order_acquire) == static_cast<uint64_t>(SysPhase::kInitPending)) {
    return raw(TdxStatus::kSysStateIncorrect);
  }
  LpState& lp = lps_[cpu.id()];
  // Only this LP's own SEAMCALLs write its flag: no lock needed; CONFIG reads it.
  if (lp.lp_init.load(std::memory_order_relaxed) != 0) return raw(TdxStatus::kSysLpInitDone);
  lp.lp_init.store(1, std::memory_order_release);
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::sys_config(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  TryLockGuard sys;
  if (!sys.try_lock(sys_lock_, /*exclusive=*/true)) return raw(TdxStatus::kSysBusy);
  if (sys_phase_.load(std::memory_order_relaxed) != static_cast<uint64_t>(SysPhase::kLpInit)) {
    return raw(TdxStatus::kSysConfigNotPending);
  }
  for (const LpState& lp : lps_) {
    if (lp.lp_init.load(std::memory_order_acquire) == 0) return raw(TdxStatus::kSysLpInitNotDone);
  }
  // RDX: the number of TDMRs in the list at RCX. tdxsim's single TDMR is all of memory.
  if (regs.rdx == 0) return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRdx);
  // R8: the global private HKID, which the module keeps for its own structures.
  if (!is_private_hkid(regs.r8)) return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kR8);
  {
    TryLockGuard kot;
    if (!kot.try_lock(kot_lock_, /*exclusive=*/true)) {
      return with_operand(TdxStatus::kOperandBusy, TdxOperand::kKot);
    }
    kot_[regs.r8].state = KotState::kReserved;
  }
  global_hkid_.store(regs.r8, std::memory_order_release);
  sys_phase_.store(static_cast<uint64_t>(SysPhase::kConfigured), std::memory_order_release);
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::sys_key_config(LogicalCpu& cpu, SeamcallRegs& /*regs*/) {
  TryLockGuard sys;
  if (!sys.try_lock(sys_lock_, /*exclusive=*/true)) return raw(TdxStatus::kSysBusy);
  if (sys_phase_.load(std::memory_order_relaxed) != static_cast<uint64_t>(SysPhase::kConfigured)) {
    return raw(TdxStatus::kSysKeyConfigNotPending);
  }
  const uint64_t bit = uint64_t{1} << cpu.package();
  if ((sys_key_config_bitmap_ & bit) != 0) return raw(TdxStatus::kKeyConfigured);
  sys_key_config_bitmap_ |= bit;
  if (sys_key_config_bitmap_ == all_packages_mask()) {
    sys_phase_.store(static_cast<uint64_t>(SysPhase::kReady), std::memory_order_release);
  }
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::sys_tdmr_init(LogicalCpu& /*cpu*/, SeamcallRegs& regs) {
  // RCX: the TDMR's base; tdxsim's only TDMR starts at 0.
  if (regs.rcx != 0) return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRcx);
  TryLockGuard tdmr;
  if (!tdmr.try_lock(tdmr_lock_, /*exclusive=*/true)) {
    return with_operand(TdxStatus::kOperandBusy, TdxOperand::kTdmr);
  }
  const uint64_t end = platform_.memory().total_frames() * kPageSize;
  const uint64_t done = tdmr_initialized_bytes_.load(std::memory_order_relaxed);
  const uint64_t next = end - done <= config_.tdmr_init_chunk_bytes
                            ? end
                            : done + config_.tdmr_init_chunk_bytes;
  // The PAMT entries of the chunk are already PT_NDA (Pamt starts so); publishing the new
  // bound is what makes them usable.
  tdmr_initialized_bytes_.store(next, std::memory_order_release);
  regs.rdx = next;
  return raw(TdxStatus::kSuccess);
}

}  // namespace tdxsim
