// TDG.VP.VMCALL handling (handle_tdvmcall; kvm-tdx-mmu.md §2.7). The guest's exposed GPRs
// arrive in the TD exit's registers; KVM answers by writing R10 (the status) and R11+ in the
// same registers, which the next TDH.VP.ENTER hands back to the guest.
#include <algorithm>

#include "base/check.h"
#include "kvm/vmx/tdx.h"
#include "tdx_module/td_exit.h"

namespace tdxsim {

namespace {

// TDX_MAP_GPA_MAX_LEN: MapGPA goes to userspace 2 MiB at a time, so a long conversion does
// not hold off the vCPU's interrupts.
constexpr uint64_t kMapGpaMaxLen = uint64_t{2} << 20;
// The TD's GPA width (GPAW 48 with 4-level S-EPT).
constexpr unsigned kGpaBits = 48;

bool legal_gpa(uint64_t gpa) {
  return (gpa >> kGpaBits) == 0;
}

}  // namespace

void TdxOps::set_vmcall_status(TdxVcpu& tdx, TdVmCallStatus status) {
  tdx.regs_.r10 = static_cast<uint64_t>(status);
}

int TdxOps::handle_tdvmcall(KvmVcpu& vcpu) {
  TdxVcpu& tdx = to_tdx(vcpu);
  // R10 != 0: a KVM hypercall (tdx_emulate_vmcall); tdxsim's KVM implements none.
  if (tdx.regs_.r10 != 0) {
    set_vmcall_status(tdx, TdVmCallStatus::kSubfuncUnsupported);
    return 1;
  }
  switch (static_cast<TdVmCall>(tdx.regs_.r11)) {
    case TdVmCall::kMapGpa:
      return map_gpa(vcpu);
    case TdVmCall::kEptViolation:
      return emulate_mmio(vcpu);
    case TdVmCall::kHlt:
      // kvm_emulate_halt_noskip without an in-kernel LAPIC to wake it: userspace waits.
      set_vmcall_status(tdx, TdVmCallStatus::kSuccess);
      vcpu.run_state().exit_reason = KvmExitReason::kHlt;
      return 0;
    case TdVmCall::kReportFatalError: {
      KvmRun::SystemEvent& ev = vcpu.run_state().system_event;
      ev.type = kKvmSystemEventTdxFatal;
      ev.ndata = 16;
      ev.data = {};
      for (unsigned i = 0; i < 16; ++i) {
        if (const uint64_t* r = seamcall_gpr(tdx.regs_, i); r != nullptr) ev.data[i] = *r;
      }
      ev.data[0] = tdx.vp_enter_ret_;
      vcpu.run_state().exit_reason = KvmExitReason::kSystemEvent;
      return 0;
    }
    default:
      set_vmcall_status(tdx, TdVmCallStatus::kSubfuncUnsupported);
      return 1;
  }
}

// tdx_map_gpa.
int TdxOps::map_gpa(KvmVcpu& vcpu) {
  TdxVcpu& tdx = to_tdx(vcpu);
  const uint64_t gpa = tdx.regs_.r12;
  const uint64_t size = tdx.regs_.r13;
  const uint64_t shared = vcpu.vm().mmu().gfn_direct_bits().gpa().raw();
  if (gpa + size <= gpa || !legal_gpa(gpa) || !legal_gpa(gpa + size - 1) ||
      ((gpa & shared) != 0) != (((gpa + size - 1) & shared) != 0)) {
    set_vmcall_status(tdx, TdVmCallStatus::kInvalidOperand);
    tdx.regs_.r11 = gpa;
    return 1;
  }
  if (!Gpa{gpa}.is_aligned(Level::k4K) || (size & (kPageSize - 1)) != 0) {
    set_vmcall_status(tdx, TdVmCallStatus::kAlignError);
    tdx.regs_.r11 = gpa;
    return 1;
  }
  tdx.map_gpa_next_ = Gpa{gpa};
  tdx.map_gpa_end_ = Gpa{gpa + size};
  return map_gpa_next_chunk(vcpu);
}

// __tdx_map_gpa: one chunk to userspace as KVM_HC_MAP_GPA_RANGE.
int TdxOps::map_gpa_next_chunk(KvmVcpu& vcpu) {
  TdxVcpu& tdx = to_tdx(vcpu);
  const uint64_t gpa = tdx.map_gpa_next_.raw();
  const uint64_t size = std::min(tdx.map_gpa_end_.raw() - gpa, kMapGpaMaxLen);
  const uint64_t shared = vcpu.vm().mmu().gfn_direct_bits().gpa().raw();
  KvmRun::Hypercall& hc = vcpu.run_state().hypercall;
  hc = {};
  hc.nr = kKvmHcMapGpaRange;
  hc.args[0] = gpa & ~shared;
  hc.args[1] = size / kPageSize;
  hc.args[2] = (gpa & shared) != 0 ? kKvmMapGpaRangeDecrypted : kKvmMapGpaRangeEncrypted;
  hc.flags = kKvmExitHypercallLongMode;
  hc.ret = 0;
  vcpu.run_state().exit_reason = KvmExitReason::kHypercall;
  tdx.pending_ = TdxPendingIo::kMapGpa;
  return 0;
}

// tdx_complete_vmcall_map_gpa.
int TdxOps::complete_map_gpa(KvmVcpu& vcpu) {
  TdxVcpu& tdx = to_tdx(vcpu);
  if (vcpu.run_state().hypercall.ret != 0) {
    set_vmcall_status(tdx, TdVmCallStatus::kInvalidOperand);
    tdx.regs_.r11 = tdx.map_gpa_next_.raw();
    return 1;
  }
  const uint64_t size = std::min(tdx.map_gpa_end_.raw() - tdx.map_gpa_next_.raw(), kMapGpaMaxLen);
  tdx.map_gpa_next_ = tdx.map_gpa_next_ + size;
  if (tdx.map_gpa_next_ >= tdx.map_gpa_end_) {
    set_vmcall_status(tdx, TdVmCallStatus::kSuccess);
    return 1;
  }
  // Let the guest take its pending events between chunks (kvm_vcpu_has_events): it calls
  // again from R11.
  if (vcpu.has_requests()) {
    set_vmcall_status(tdx, TdVmCallStatus::kRetry);
    tdx.regs_.r11 = tdx.map_gpa_next_.raw();
    return 1;
  }
  return map_gpa_next_chunk(vcpu);
}

// tdx_emulate_mmio: #VE.RequestMMIO — R12 size, R13 direction (1: write), R14 GPA, R15 value.
int TdxOps::emulate_mmio(KvmVcpu& vcpu) {
  TdxVcpu& tdx = to_tdx(vcpu);
  const uint64_t size = tdx.regs_.r12;
  const uint64_t write = tdx.regs_.r13;
  const uint64_t gpa = tdx.regs_.r14;
  const uint64_t shared = vcpu.vm().mmu().gfn_direct_bits().gpa().raw();
  if ((size != 1 && size != 2 && size != 4 && size != 8) || write > 1 || (gpa & shared) == 0 ||
      ((gpa + size - 1) & shared) == 0 || !legal_gpa(gpa + size - 1)) {
    set_vmcall_status(tdx, TdVmCallStatus::kInvalidOperand);
    return 1;
  }
  KvmRun::Mmio& mmio = vcpu.run_state().mmio;
  mmio.phys_addr = Gpa{gpa & ~shared};
  mmio.len = static_cast<uint32_t>(size);
  mmio.is_write = write != 0;
  mmio.data = write != 0 ? tdx.regs_.r15 : 0;
  vcpu.run_state().exit_reason = KvmExitReason::kMmio;
  tdx.pending_ = write != 0 ? TdxPendingIo::kMmioWrite : TdxPendingIo::kMmioRead;
  return 0;
}

int TdxOps::complete_userspace_io(KvmVcpu& vcpu) {
  if (vcpu.vendor() == nullptr) return 1;
  TdxVcpu& tdx = to_tdx(vcpu);
  const TdxPendingIo pending = std::exchange(tdx.pending_, TdxPendingIo::kNone);
  switch (pending) {
    case TdxPendingIo::kNone:
      return 1;
    case TdxPendingIo::kMapGpa:
      return complete_map_gpa(vcpu);
    case TdxPendingIo::kMmioRead: {
      const KvmRun::Mmio& mmio = vcpu.run_state().mmio;
      const uint64_t mask = mmio.len == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * mmio.len)) - 1;
      tdx.regs_.r11 = mmio.data & mask;
      set_vmcall_status(tdx, TdVmCallStatus::kSuccess);
      return 1;
    }
    case TdxPendingIo::kMmioWrite:
      set_vmcall_status(tdx, TdVmCallStatus::kSuccess);
      return 1;
  }
  return 1;
}

}  // namespace tdxsim
