#include "kvm/vmx/vmx.h"

#include "base/check.h"
#include "base/fault_injection.h"
#include "kvm/kvm_vm.h"
#include "kvm/vcpu.h"
#include "platform/eptp.h"
#include "platform/logical_cpu.h"
#include "platform/platform.h"

namespace tdxsim {

namespace {

// EPT-violation exit qualification (SDM Vol. 3 Table 28-7): the access, and what the entry
// allowed (any of bits 5:3 set: the GPA was mapped, just not for this access).
constexpr uint64_t kQualWrite = uint64_t{1} << 1;
constexpr uint64_t kQualFetch = uint64_t{1} << 2;
constexpr uint64_t kQualPresentMask = uint64_t{7} << 3;

VmxVcpu& vmx(KvmVcpu& vcpu) {
  return vcpu.vendor_as<VmxVcpu>();
}

}  // namespace

KvmResult<> VmxOps::vm_init(KvmVm& vm) {
  // TDs belong to TDX; VtOps never sends one here, but a host without TDX asks VMX directly.
  if (vm.kvm().type() == VmType::kTdx) return std::unexpected(Errno::kEinval);
  return {};
}

void VmxOps::vm_destroy(KvmVm&) {}

KvmResult<> VmxOps::vcpu_create(KvmVcpu& vcpu) {
  auto v = std::make_unique<VmxVcpu>();
  v->vmcs.mode = GuestMode::kVmx;
  v->vmcs.vpid = alloc_vpid();
  if (v->vmcs.vpid == 0) return std::unexpected(Errno::kEnospc);
  if (enable_pml_) {
    // vmx_vcpu_create's PML page, and init_vmcs: PML on, the index at the log's top.
    v->pml_pg = std::make_unique<PmlLog>();
    v->vmcs.enable_pml = true;
    v->vmcs.pml_address = v->pml_pg.get();
    v->vmcs.pml_index = kPmlEntries - 1;
  }
  vcpu.set_vendor(std::move(v));
  return {};
}

void VmxOps::vcpu_free(KvmVcpu& vcpu) {
  if (vcpu.vendor() != nullptr) free_vpid(vmx(vcpu).vmcs.vpid);
}

void VmxOps::vcpu_load(KvmVcpu& vcpu, LogicalCpu& cpu) {
  // vmx_vcpu_load_vmcs on a CPU the VMCS was not loaded on: that CPU may still hold
  // translations tagged with this VPID/EPTP from an earlier stay.
  if (vcpu.cpu() != &cpu) vcpu.make_request(KvmRequest::kTlbFlush);
}

void VmxOps::set_guest(KvmVcpu& vcpu, GuestProgram* program, uint32_t instruction_budget) {
  VmxVcpu& v = vmx(vcpu);
  v.program = program;
  v.vmcs.instruction_budget = instruction_budget;
}

void VmxOps::load_mmu_pgd(Kvm* kvm, int vcpu_id, Hpa root, Level level) {
  KvmVcpu* vcpu = kvm->vm()->vcpu(vcpu_id);
  TDXSIM_CHECK(vcpu != nullptr, "load_mmu_pgd for vCPU {} that does not exist", vcpu_id);
  vmx(*vcpu).vmcs.eptp = Eptp::make(root, level_num(level), /*ad_enabled=*/true);
  // hv_load_mmu_eptp. The host's table is shared with TDX on a TDX host, where its flush op
  // is TDX's: only Hyper-V's op means the L0 needs the root (seed 000). S0 restores the
  // check that took any op for Hyper-V's.
  const RemoteFlushHook hook = vcpu->vm().ops().remote_flush_hook();
  const bool on_hyperv = vcpu->vm().platform().faults().bug(BugId::S0)
                             ? hook != RemoteFlushHook::kNone
                             : hook == RemoteFlushHook::kHyperV;
  if (on_hyperv) KvmOnHyperV::track_root_tdp(*vcpu, root);
}

bool VmxOps::flush_remote_tlbs(Kvm* kvm) {
  return hv_ != nullptr && hv_->flush_remote_tlbs(*kvm);
}

bool VmxOps::flush_remote_tlbs_range(Kvm* kvm, Gfn gfn, uint64_t pages) {
  return hv_ != nullptr && hv_->flush_remote_tlbs_range(*kvm, gfn, pages);
}

void VmxOps::flush_tlb_all(KvmVcpu& vcpu) {
  // vmx_flush_tlb_all with EPT: every EPTP context on this CPU.
  vcpu.cpu()->invept(InveptType::kAllContext, Eptp{});
}

void VmxOps::flush_tlb_current(KvmVcpu& vcpu) {
  VmxVcpu& v = vmx(vcpu);
  vcpu.cpu()->invept(InveptType::kSingleContext, v.vmcs.eptp);
}

ExitFastpath VmxOps::vcpu_run(KvmVcpu& vcpu) {
  VmxVcpu& v = vmx(vcpu);
  LogicalCpu& cpu = *vcpu.cpu();
  if (v.program == nullptr) {
    // No guest code loaded: the CPU would execute whatever is at RIP; tdxsim's guests always
    // load a program first, so this is the VMM's mistake, reported as a halt.
    v.exit = VmExit{};
    v.exit.reason = static_cast<uint32_t>(VmxExitReason::kHlt);
    return ExitFastpath::kNone;
  }
  v.exit = cpu.run_guest(v.vmcs, v.regs, *v.program);
  if (enable_pml_) flush_pml_buffer(vcpu, v);
  // vmx_handle_nmi: only a real NMI exit (the entry always succeeds here: VMX entry failures
  // are not modelled) reaches the host's NMI handler.
  if (v.exit.is(VmxExitReason::kExceptionNmi) && v.exit.intr_info == kIntrInfoNmi) {
    cpu.handle_host_nmi();
  }
  return ExitFastpath::kNone;
}

int VmxOps::handle_exit(KvmVcpu& vcpu, ExitFastpath) {
  VmxVcpu& v = vmx(vcpu);
  switch (static_cast<VmxExitReason>(v.exit.reason)) {
    case VmxExitReason::kExceptionNmi:
    case VmxExitReason::kExternalInterrupt:
    case VmxExitReason::kPreemptionTimer:
      return 1;
    case VmxExitReason::kEptViolation:
      stats_.ept_violations.add();
      return handle_ept_violation(vcpu, v);
    case VmxExitReason::kEptMisconfig: {
      // handle_ept_misconfig: an MMIO SPTE; the MMU decides (emulate, or retry if stale).
      stats_.ept_misconfigs.add();
      return handle_ept_violation(vcpu, v);
    }
    case VmxExitReason::kVmcall:
      stats_.hypercalls.add();
      return x86_emulate_hypercall(vcpu, v);
    case VmxExitReason::kHlt:
      return x86_emulate_halt(vcpu, v, stats_);
    case VmxExitReason::kPmlFull:
      // handle_pml_full: the log was emptied at the exit; the write runs again.
      stats_.pml_full_exits.add();
      return 1;
    default:
      return x86_unexpected_exit(vcpu, v.exit.reason, stats_);
  }
}

int VmxOps::handle_ept_violation(KvmVcpu& vcpu, VmxVcpu& v) {
  uint64_t error_code = 0;
  if (v.exit.is(VmxExitReason::kEptViolation)) {
    if (v.exit.qualification & kQualWrite) error_code |= kPferrWrite;
    if (v.exit.qualification & kQualFetch) error_code |= kPferrFetch;
    if (v.exit.qualification & kQualPresentMask) error_code |= kPferrPresent;
  }
  return x86_tdp_page_fault(vcpu, v, stats_, v.exit.gpa, error_code);
}

unsigned VmxOps::cpu_dirty_log_size(Kvm*) {
  return enable_pml_ ? kPmlEntries : 0;
}

void VmxOps::flush_pml_buffer(KvmVcpu& vcpu, VmxVcpu& v) {
  uint16_t index = v.vmcs.pml_index;
  if (index == kPmlEntries - 1) return;  // nothing logged
  // The CPU decremented past entry 0 when the log filled: every entry is valid.
  index = index >= kPmlEntries ? 0 : static_cast<uint16_t>(index + 1);
  for (uint16_t i = index; i < kPmlEntries; ++i) {
    vcpu.kvm().mark_page_dirty(Gpa{v.pml_pg->gpa[i]}.gfn());
    stats_.pml_pages_logged.add();
  }
  v.vmcs.pml_index = kPmlEntries - 1;
}

int VmxOps::complete_userspace_io(KvmVcpu& vcpu) {
  if (vcpu.vendor() == nullptr) return 1;
  return x86_complete_userspace_io(vcpu, vmx(vcpu));
}

uint16_t VmxOps::alloc_vpid() {
  MutexLock l(vpid_mu_);
  // VPID 0 is the host's.
  for (size_t i = 1; i < vpid_used_.size(); ++i) {
    if (!vpid_used_[i]) {
      vpid_used_[i] = true;
      return static_cast<uint16_t>(i);
    }
  }
  return 0;
}

void VmxOps::free_vpid(uint16_t vpid) {
  MutexLock l(vpid_mu_);
  vpid_used_[vpid] = false;
}

}  // namespace tdxsim
