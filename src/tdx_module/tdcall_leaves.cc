// The guest's side of the module: TDCALLs a TD makes while TDH.VP.ENTER runs it (TDX module
// src/td_dispatcher/tdx_td_dispatcher.c and vm_exits/tdg_*.c; shared/spec/
// tdx-module-abi.md §1.5, §8; tdx-module-rules.md §1 ACCEPT row, A10-A12, A14).
//
// Dispatch: RAX = leaf | version, checked as the TD dispatcher does (reserved bits, version,
// defined leaf: else TDX_OPERAND_INVALID|RAX back to the guest). The status goes to the
// guest's RAX and the TDCALL retires — except TDG.VP.VMCALL, which is a TD exit, and an
// ACCEPT the host must serve first (an EPT-violation TD exit with the ACCEPT extended
// qualification; RIP stays, so the TDCALL runs again on re-entry).
//
// Modelled: TDG.VP.VMCALL, TDG.VP.INFO, TDG.VP.VEINFO.GET, TDG.MEM.PAGE.ACCEPT. The other
// defined leaves (measurement registers, reports, metadata, L2 VMs) answer
// TDX_OPERAND_INVALID|RAX, as a module that does not dispatch them would (docs/abi.md).
#include "base/check.h"
#include "tdx_module/sept_entry_lock.h"
#include "tdx_module/td_exit.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {

namespace {

// TDG.VP.VMCALL RCX: bits 15:0 select GPRs, 31:16 XMM registers (tdxsim has none to pass);
// the rest is reserved. RAX, RCX and RSP can never be exposed (abi §1.5).
constexpr uint64_t kVmcallReservedMask = 0xFFFF'FFFF'0000'0000;
constexpr uint16_t kVmcallForbiddenGprs = (1u << 0) | (1u << 1) | (1u << 4);

// RDX info of an ACCEPT TD exit (module tdaccept_vmx_eeq_info_t; rules §1): requested
// level (2:0), level where the walk stopped (5:3), that entry's state (13:6), is-leaf (14).
uint32_t accept_eeq_info(Level requested, const SeptWalkResult& w) {
  return sept_level_abi(requested) | (uint32_t{sept_level_abi(w.level)} << 3) |
         (uint32_t{static_cast<uint8_t>(w.entry.state())} << 6) |
         (uint32_t{w.entry.is_leaf()} << 14);
}

}  // namespace

bool TdxModule::handle_tdcall(Td& td, Vcpu& vcpu, const VmExit& x, SeamcallRegs& regs) {
  GuestState& gs = vcpu.guest_state;
  GuestRegs& g = gs.regs;
  const LeafAndVersion lv{g[Gpr::kRax]};
  if (const uint64_t s = lv.check_tdcall(); s != raw(TdxStatus::kSuccess)) {
    g[Gpr::kRax] = s;
    retire_guest_insn(gs, x.insn);
    return false;
  }
  uint64_t status = with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRax);
  switch (lv.tdcall_leaf()) {
    case TdcallLeaf::kVpVmcall: {
      const uint64_t rcx = g[Gpr::kRcx];
      if ((rcx & kVmcallReservedMask) != 0 || (rcx & kVmcallForbiddenGprs) != 0) {
        status = with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRcx);
        break;
      }
      retire_guest_insn(gs, x.insn);
      enter_vmcall_exit(vcpu, regs, static_cast<uint16_t>(rcx));
      regs.rcx = rcx;
      return true;
    }
    case TdcallLeaf::kVpInfo:
      g[Gpr::kRcx] = static_cast<uint64_t>(td.gpaw);
      g[Gpr::kRdx] = td.attributes;
      g[Gpr::kR8] = td.num_vcpus.load(std::memory_order_relaxed) | (uint64_t{td.max_vcpus} << 32);
      g[Gpr::kR9] = vcpu.vcpu_index;
      g[Gpr::kR10] = 0;  // no optional TDCALLs beyond 1.5.01's base set
      g[Gpr::kR11] = 0;
      status = raw(TdxStatus::kSuccess);
      break;
    case TdcallLeaf::kVpVeinfoGet: {
      VeInfoArea& ve = vcpu.ve_info;
      if (ve.busy != VeInfoArea::kBusy) {
        status = raw(TdxStatus::kNoValidVeInfo);
        break;
      }
      g[Gpr::kRcx] = ve.exit_reason;
      g[Gpr::kRdx] = ve.qualification;
      g[Gpr::kR8] = ve.gla;
      g[Gpr::kR9] = ve.gpa;
      g[Gpr::kR10] = 0;  // instruction length and information: not modelled
      // Reading it is what lets the CPU deliver the next #VE.
      ve.busy = 0;
      status = raw(TdxStatus::kSuccess);
      break;
    }
    case TdcallLeaf::kMemPageAccept: {
      std::optional<uint64_t> s = tdg_mem_page_accept(td, vcpu, regs);
      if (!s) return true;  // the ACCEPT TD exit: RIP stays on the TDCALL
      status = *s;
      break;
    }
    default:
      break;
  }
  g[Gpr::kRax] = status;
  retire_guest_insn(gs, x.insn);
  return false;
}

std::optional<uint64_t> TdxModule::tdg_mem_page_accept(Td& td, Vcpu& vcpu, SeamcallRegs& regs) {
  const PageInfo page_info{vcpu.guest_state.regs[Gpr::kRcx]};
  if (const uint64_t s = page_info.validate_private(LevelRange{0, 1}, td.gpaw);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  const Level level = page_info.level();
  const Gpa gpa = page_info.gpa();
  HostMemory& mem = platform_.memory();
  const SeptWalkResult w =
      sept_walk(mem, layout(), td.sept_root().hpa(), td.ept_levels, td.hkid, gpa, level);
  if (w.machine_check) {
    td_fatal_exit(td, regs);
    return std::nullopt;
  }
  const auto accept_exit = [&](const SeptWalkResult& at) -> std::optional<uint64_t> {
    set_async_td_exit(regs, VmxExitReason::kEptViolation, kEptQualDataWrite,
                      ExtExitQualType::kAccept, accept_eeq_info(level, at), gpa, 0);
    return std::nullopt;
  };
  if (!w.reached) {
    // Stopped above the level: inside a page the guest already accepted, or not there yet.
    if (w.entry.is_leaf() && w.entry.state() == SeptState::kMapped) {
      return with_details(TdxStatus::kPageAlreadyAccepted, sept_level_abi(w.level));
    }
    return accept_exit(w);
  }
  SeptEntryLock entry(mem, td.hkid, w.entry_hpa);
  switch (entry.try_lock_guest(w.entry)) {
    case SeptEntryLock::Result::kAcquired:
      break;
    case SeptEntryLock::Result::kBusy:
      return with_operand(TdxStatus::kOperandBusy, TdxOperand::kRcx);
    case SeptEntryLock::Result::kBusyHostPriority:
      return with_operand(TdxStatus::kOperandBusyHostPriority, TdxOperand::kRcx);
  }
  const SeptEntry e = entry.value();
  switch (e.state()) {
    case SeptState::kNlMapped:
    case SeptState::kNlBlocked:
      return with_details(TdxStatus::kPageSizeMismatch, sept_level_abi(level));
    case SeptState::kMapped:
      return with_details(TdxStatus::kPageAlreadyAccepted, sept_level_abi(level));
    case SeptState::kPending: {
      // The page becomes the guest's only now, and only as zeros written with its key:
      // nothing the host put there before AUG survives.
      const Pfn first = e.hpa(layout()).pfn();
      for (uint64_t i = 0; i < level_pages(level); ++i) mem.fill(first + i, td.hkid, 0);
      entry.commit(e.with_state(SeptState::kMapped));
      page_accepted.emit_lazy([&] { return PageAccepted{td.tdr.hpa(), gpa, level}; });
      return raw(TdxStatus::kSuccess);
    }
    default: {
      SeptWalkResult at = w;
      at.entry = e;
      entry.commit(e);
      return accept_exit(at);
    }
  }
}

}  // namespace tdxsim
