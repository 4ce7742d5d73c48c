#include "kvm/x86_emulate.h"

#include <utility>

#include "kvm/kvm_vm.h"
#include "kvm/vcpu.h"
#include "platform/logical_cpu.h"

namespace tdxsim {

namespace {

// -KVM_ENOSYS / -KVM_EINVAL as a hypercall's RAX (include/uapi/linux/kvm_para.h).
constexpr uint64_t kKvmEnosys = static_cast<uint64_t>(-1000);
constexpr uint64_t kKvmEinval = static_cast<uint64_t>(-22);

}  // namespace

int x86_tdp_page_fault(KvmVcpu& vcpu, X86Vcpu& v, X86ExitStats& stats, Gpa gpa,
                       uint64_t error_code) {
  const FaultResult r = vcpu.vm().mmu().page_fault(vcpu.mmu(), gpa, error_code);
  switch (r.ret) {
    case RetPf::kFixed:
    case RetPf::kSpurious:
    case RetPf::kRetry:
      return 1;
    case RetPf::kEmulate:
      return x86_emulate_mmio(vcpu, v, stats);
    default:
      break;
  }
  if (r.memory_fault) {
    vcpu.run_state().exit_reason = KvmExitReason::kMemoryFault;
    vcpu.run_state().memory_fault = *r.memory_fault;
  }
  return -static_cast<int>(r.error.value_or(Errno::kEfault));
}

int x86_emulate_mmio(KvmVcpu& vcpu, X86Vcpu& v, X86ExitStats& stats) {
  const GuestInsn& insn = v.exit.insn;
  KvmRun& run = vcpu.run_state();
  if (insn.kind != GuestInsnKind::kLoad && insn.kind != GuestInsnKind::kStore) {
    // An instruction fetch from MMIO (or a walk of guest tables there): the emulator fails.
    stats.unhandled_exits.add();
    run.exit_reason = KvmExitReason::kInternalError;
    run.internal.suberror = 1;  // KVM_INTERNAL_ERROR_EMULATION
    run.internal.ndata = 1;
    run.internal.data[0] = v.exit.gpa.raw();
    return 0;
  }
  stats.mmio_exits.add();
  run.exit_reason = KvmExitReason::kMmio;
  run.mmio = KvmRun::Mmio{.phys_addr = v.exit.gpa,
                          .data = insn.kind == GuestInsnKind::kStore ? insn.value : 0,
                          .len = 8,
                          .is_write = insn.kind == GuestInsnKind::kStore};
  if (insn.kind == GuestInsnKind::kLoad) {
    v.pending = X86Vcpu::Pending::kMmioRead;
    v.mmio_dest = insn.dest;
  } else {
    v.skip_instruction();
  }
  return 0;
}

int x86_emulate_hypercall(KvmVcpu& vcpu, X86Vcpu& v) {
  GuestRegs& g = v.regs.regs;
  const uint64_t nr = g[Gpr::kRax];
  if (nr != kKvmHcMapGpaRange || !has_private_mem(vcpu.kvm().type())) {
    // Unknown to this VM.
    g[Gpr::kRax] = kKvmEnosys;
    v.skip_instruction();
    return 1;
  }
  // KVM checks the range only; the attributes are userspace's to interpret.
  const uint64_t gpa = g[Gpr::kRbx], npages = g[Gpr::kRcx], attrs = g[Gpr::kRdx];
  if ((gpa & (kPageSize - 1)) != 0 || npages == 0 ||
      (gpa >> kPageShift) + npages <= (gpa >> kPageShift)) {
    g[Gpr::kRax] = kKvmEinval;
    v.skip_instruction();
    return 1;
  }
  KvmRun& run = vcpu.run_state();
  run.exit_reason = KvmExitReason::kHypercall;
  run.hypercall = KvmRun::Hypercall{.nr = nr,
                                    .args = {gpa, npages, attrs, 0, 0, 0},
                                    .ret = 0,
                                    .flags = kKvmExitHypercallLongMode};
  v.pending = X86Vcpu::Pending::kHypercall;
  return 0;
}

int x86_emulate_halt(KvmVcpu& vcpu, X86Vcpu& v, X86ExitStats& stats) {
  stats.hlt_exits.add();
  v.skip_instruction();
  vcpu.run_state().exit_reason = KvmExitReason::kHlt;
  return 0;
}

int x86_unexpected_exit(KvmVcpu& vcpu, uint32_t reason, X86ExitStats& stats) {
  stats.unhandled_exits.add();
  KvmRun& run = vcpu.run_state();
  run.exit_reason = KvmExitReason::kInternalError;
  run.internal.suberror = kKvmInternalErrorUnexpectedExitReason;
  run.internal.ndata = 2;
  run.internal.data[0] = reason;
  run.internal.data[1] = vcpu.cpu()->id();
  return 0;
}

int x86_complete_userspace_io(KvmVcpu& vcpu, X86Vcpu& v) {
  const KvmRun& run = vcpu.run_state();
  switch (std::exchange(v.pending, X86Vcpu::Pending::kNone)) {
    case X86Vcpu::Pending::kNone:
      return 1;
    case X86Vcpu::Pending::kMmioRead:
      v.regs.regs[v.mmio_dest] = run.mmio.data;
      v.skip_instruction();
      return 1;
    case X86Vcpu::Pending::kHypercall:
      v.regs.regs[Gpr::kRax] = run.hypercall.ret;
      v.skip_instruction();
      return 1;
  }
  return 1;
}

}  // namespace tdxsim
