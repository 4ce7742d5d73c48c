// TDH.VP.ENTER: TD entry, the vCPU's run in guest mode on the calling logical CPU, and the
// TD exit (TDX module src/td_transitions/tdh_vp_enter.c, td_exit.c, td_ept_violation.c;
// shared/spec/tdx-module-abi.md §1.4, §5, §6; rules A13, A14).
//
// Entry, in the module's order: the TDVPR (shared) and its owner TDR (shared, implicit);
// the TD's lifecycle and op_state (RUNNABLE, else TDX_OP_STATE_INCORRECT: rules A13); the
// TDVPS complete; the association with this LP (TDX_VCPU_ASSOCIATED when another LP has
// it); the vCPU READY; the TD epoch, sampled under the epoch lock held shared (BUSY|
// TD_EPOCH against a TRACK), with REFCOUNT[epoch & 1] counting this vCPU in; the zero-step
// filter when armed (the S-EPT tree lock exclusively, BUSY|SEPT_TREE, and a faked
// EPT-violation exit while a recorded GPA would still fault); INVEPT of the TD's EPTs when
// the epoch moved since this vCPU last entered here, or this LP last ran another vCPU —
// which is what makes BLOCK → TRACK → kick sufficient. Every error before the guest runs
// leaves the output registers as they were (the low 32 bits of RAX are then 0, which is not
// an exit reason: KVM must look at the status first, seed 002).
//
// In guest mode the module handles what the guest cannot see the host for: TDCALLs other
// than TDG.VP.VMCALL (tdcall_leaves.cc), #VE injection for PENDING pages, and re-entry. Only
// a real TD exit returns: RAX = status | VMX exit reason, RCX/RDX/R8/R9 as abi §1.4,
// every other GPR 0 — or, for TDG.VP.VMCALL, the GPRs the guest chose to expose.
//
// tdxsim's choices where the sheets are silent (docs/abi.md): a guest HLT instruction
// reaches the host as the Linux guest's TDG.VP.VMCALL<Instruction.HLT>; the guest's
// instruction budget (the stand-in for the host's timer tick) ends in an
// external-interrupt exit; a vCPU with no guest program attached runs one that halts.
#include <atomic>

#include "base/check.h"
#include "platform/ve_delivery.h"
#include "tdx_module/tdx_module.h"
#include "tdx_module/td_exit.h"

namespace tdxsim {

namespace {

// RCX bits of TDH.VP.ENTER besides the TDVPR address (abi §1.2 leaf 0).
constexpr uint64_t kHostRecoverabilityHint = uint64_t{1} << 52;
constexpr uint64_t kResumeL1 = uint64_t{1} << 53;

}  // namespace

uint64_t TdxModule::vp_enter(LogicalCpu& cpu, SeamcallRegs& regs) {
  VpOp op;
  if (const uint64_t s = vp_begin(regs.rcx & ~(kHostRecoverabilityHint | kResumeL1),
                                  TdxOperand::kRcx, /*tdvpr_exclusive=*/false,
                                  {TdOpState::kRunnable}, op);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Td& td = *op.td;
  Vcpu& vcpu = *op.vcpu;
  if (vcpu.tdcx_pages.size() + 1 < config_.tdvps_pages) return raw(TdxStatus::kTdcxNumIncorrect);

  // The association is what gives this SEAMCALL the TDVPS (td.h): claim it first.
  uint32_t assoc = kNoLp;
  const bool newly_associated =
      vcpu.assoc_lp.compare_exchange_strong(assoc, cpu.id(), std::memory_order_acq_rel);
  if (!newly_associated && assoc != cpu.id()) return raw(TdxStatus::kVcpuAssociated);
  const auto dissociate_new = [&] {
    if (newly_associated) vcpu.assoc_lp.store(kNoLp, std::memory_order_release);
  };
  if (vcpu.state != VcpuState::kReady) {
    dissociate_new();
    return raw(TdxStatus::kVcpuStateIncorrect);
  }
  // This LP's TSC reads below what the vCPU last saw (a host that let it go back, across a
  // suspend say): no entry, and the output registers keep the previous exit's values.
  if (platform_.faults().take(EnvFaultKind::kTscRollback, vcpu.vcpu_index)) {
    dissociate_new();
    return raw(TdxStatus::kTscRollback);
  }

  uint64_t epoch = 0;
  {
    TryLockGuard epoch_lock;
    if (!epoch_lock.try_lock(td.epoch_lock, /*exclusive=*/false)) {
      dissociate_new();
      return with_operand(TdxStatus::kOperandBusy, TdxOperand::kTdEpoch);
    }
    epoch = td.td_epoch.load(std::memory_order_acquire);
    td.refcount[epoch & 1].fetch_add(1, std::memory_order_acq_rel);
  }
  if (newly_associated) td.num_assoc_vcpus.fetch_add(1, std::memory_order_relaxed);

  if (std::optional<uint64_t> gpa = platform_.faults().take(EnvFaultKind::kArmZeroStep,
                                                            vcpu.vcpu_index)) {
    vcpu.zero_step.force(Gpa{*gpa});
  }
  if (vcpu.zero_step.armed()) {
    TryLockGuard tree;
    if (!tree.try_lock(td.sept_lock, /*exclusive=*/true)) {
      td.refcount[epoch & 1].fetch_sub(1, std::memory_order_acq_rel);
      return with_operand(TdxStatus::kOperandBusy, TdxOperand::kSeptTree);
    }
    locks_held.emit_lazy([&] { return LocksHeld{SeamcallLeaf::kVpEnter, td.tdr.hpa()}; });
    for (const Gpa gpa : vcpu.zero_step.gpas()) {
      const std::optional<bool> mapped = private_gpa_host_mapped(td, gpa);
      if (!mapped) {
        td.refcount[epoch & 1].fetch_sub(1, std::memory_order_acq_rel);
        td_fatal_exit(td, regs);
        return regs.rax;
      }
      if (*mapped) continue;
      // The host has not mapped what the guest keeps faulting on: do not let the guest
      // run a single instruction (that is the step the attacker wanted to observe).
      td.refcount[epoch & 1].fetch_sub(1, std::memory_order_acq_rel);
      regs = SeamcallRegs{};
      set_async_td_exit(regs, VmxExitReason::kEptViolation, kEptQualDataWrite,
                        ExtExitQualType::kNone, 0, gpa, 0);
      return regs.rax;
    }
  }

  LpState& lp = lps_[cpu.id()];
  if ((!newly_associated && vcpu.vcpu_epoch != epoch) || lp.last_vcpu != vcpu.tdvpr) {
    cpu.invept(InveptType::kSingleContext, td.secure_eptp);
  }
  vcpu.vcpu_epoch = epoch;
  lp.last_vcpu = vcpu.tdvpr;
  vcpu.state = VcpuState::kActive;

  vcpu.context.instruction_budget = vcpu.instruction_budget;
  GuestState& gs = vcpu.guest_state;
  if (vcpu.in_vmcall) {
    // TDG.VP.VMCALL completes: the host's values of the exposed GPRs, RAX = TDX_SUCCESS.
    for (unsigned i = 0; i < 16; ++i) {
      if ((vcpu.vmcall_gpr_mask >> i) & 1) gs.regs[static_cast<Gpr>(i)] = *seamcall_gpr(regs, i);
    }
    gs.regs[Gpr::kRax] = raw(TdxStatus::kSuccess);
    vcpu.in_vmcall = false;
  }
  run_td_guest(cpu, td, vcpu, regs);

  // The TD exit: this vCPU no longer holds translations of the epoch it entered in.
  td.refcount[vcpu.vcpu_epoch & 1].fetch_sub(1, std::memory_order_acq_rel);
  vcpu.state = VcpuState::kReady;
  return regs.rax;
}

void TdxModule::run_td_guest(LogicalCpu& cpu, Td& td, Vcpu& vcpu, SeamcallRegs& regs) {
  GuestState& gs = vcpu.guest_state;
  GuestProgram& program = vcpu.program != nullptr ? *vcpu.program : idle_program_;
  const uint64_t budget = vcpu.context.instruction_budget;
  const uint64_t retired_at_entry = gs.retired;
  for (;;) {
    const VmExit x = cpu.run_guest(vcpu.context, gs, program);
    bool exited = true;
    if (x.is(VmxExitReason::kTdcall)) {
      exited = handle_tdcall(td, vcpu, x, regs);
    } else if (x.is(VmxExitReason::kEptViolation) && !vcpu.context.is_shared(x.gpa)) {
      exited = handle_private_ept_violation(td, vcpu, program, x, regs);
    } else if (x.is(VmxExitReason::kExceptionNmi) && x.intr_info == kIntrInfoMachineCheck) {
      // The CPU's walk of the S-EPT consumed poison: the TD cannot go on.
      td_fatal_exit(td, regs);
    } else if (x.is(VmxExitReason::kHlt)) {
      // The Linux guest's idle: TDG.VP.VMCALL<Instruction.HLT>, interrupts not blocked.
      retire_guest_insn(gs, x.insn);
      enter_vmcall_exit(vcpu, regs, (1u << 10) | (1u << 11) | (1u << 12));
      regs.r10 = 0;
      regs.r11 = static_cast<uint64_t>(TdVmCall::kHlt);
      regs.r12 = 0;
    } else {
      const bool timer = x.is(VmxExitReason::kPreemptionTimer);
      set_async_td_exit(regs,
                        timer ? VmxExitReason::kExternalInterrupt
                              : static_cast<VmxExitReason>(x.reason),
                        x.qualification, ExtExitQualType::kNone, 0, x.gpa, x.intr_info);
    }
    // Another of the TD's vCPUs, or this one, found the TD fatal: no vCPU of it runs on.
    if (td.fatal.load(std::memory_order_acquire) != 0) {
      td_fatal_exit(td, regs);
      break;
    }
    if (exited) break;
    if (budget != 0 && gs.retired - retired_at_entry >= budget) {
      set_async_td_exit(regs, VmxExitReason::kExternalInterrupt, 0, ExtExitQualType::kNone, 0,
                        Gpa{0}, 0);
      break;
    }
  }
  vcpu.zero_step.on_exit(gs.rip);
}

bool TdxModule::handle_private_ept_violation(Td& td, Vcpu& vcpu, GuestProgram& program,
                                             const VmExit& x, SeamcallRegs& regs) {
  // Every S-EPT entry suppresses #VE in hardware; the module decides by the entry's state
  // (read without its lock, as the module does: the host may change it right after).
  const SeptWalkResult w = sept_walk(platform_.memory(), layout(), td.sept_root().hpa(),
                                     td.ept_levels, td.hkid, x.gpa, Level::k4K);
  if (w.machine_check) {
    td_fatal_exit(td, regs);
    return true;
  }
  const bool pending = w.entry.is_leaf() && w.entry.state() == SeptState::kPending;
  if (pending && !td.sept_ve_disable() &&
      deliver_ve(vcpu.ve_info, vcpu.guest_state, program,
                 static_cast<uint32_t>(VmxExitReason::kEptViolation), x.qualification,
                 x.insn.gpa.raw(), x.gpa)) {
    return false;
  }
  vcpu.zero_step.on_private_ept_exit(vcpu.guest_state.rip, x.gpa);
  set_async_td_exit(regs, VmxExitReason::kEptViolation, x.qualification,
                    pending ? ExtExitQualType::kPendingEptViolation : ExtExitQualType::kNone, 0,
                    x.gpa, 0);
  return true;
}

std::optional<bool> TdxModule::private_gpa_host_mapped(Td& td, Gpa gpa) {
  const SeptWalkResult w = sept_walk(platform_.memory(), layout(), td.sept_root().hpa(),
                                     td.ept_levels, td.hkid, gpa, Level::k4K);
  if (w.machine_check) {
    td_machine_check(td);
    return std::nullopt;
  }
  if (!w.entry.is_leaf()) return false;
  const SeptState s = w.entry.state();
  return s == SeptState::kMapped || s == SeptState::kPending;
}

void TdxModule::enter_vmcall_exit(Vcpu& vcpu, SeamcallRegs& regs, uint16_t gpr_mask) {
  const GuestRegs& g = vcpu.guest_state.regs;
  regs = SeamcallRegs{};
  regs.rax = static_cast<uint64_t>(VmxExitReason::kTdcall);
  regs.rcx = gpr_mask;
  for (unsigned i = 0; i < 16; ++i) {
    if (((gpr_mask >> i) & 1) != 0) *seamcall_gpr(regs, i) = g[static_cast<Gpr>(i)];
  }
  vcpu.in_vmcall = true;
  vcpu.vmcall_gpr_mask = gpr_mask;
}

// --- Introspection ---------------------------------------------------------------------------

std::optional<uint32_t> TdxModule::vcpu_assoc_lp(Hpa tdvpr) const {
  const Vcpu* vcpu = find_vcpu(tdvpr.pfn());
  if (vcpu == nullptr) return std::nullopt;
  return vcpu->assoc_lp.load(std::memory_order_acquire);
}

std::optional<Hpa> TdxModule::td_sept_root(Hpa tdr) const {
  const Td* td = find_td(tdr.pfn());
  if (td == nullptr || td->tdcs_pages.size() <= kTdcsSeptRootPageIndex) return std::nullopt;
  return td->sept_root().hpa();
}

std::optional<uint64_t> TdxModule::td_refcount(Hpa tdr, unsigned parity) const {
  const Td* td = find_td(tdr.pfn());
  if (td == nullptr) return std::nullopt;
  return td->refcount[parity & 1].load(std::memory_order_acquire);
}

}  // namespace tdxsim
