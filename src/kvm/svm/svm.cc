#include "kvm/svm/svm.h"

#include "base/check.h"
#include "base/fault_injection.h"
#include "kvm/kvm_vm.h"
#include "kvm/page_fault.h"
#include "platform/logical_cpu.h"
#include "platform/platform.h"

namespace tdxsim {

namespace {

SvmVcpu& svm(KvmVcpu& vcpu) {
  return vcpu.vendor_as<SvmVcpu>();
}

// The #NPF error code bits KVM defines for itself (PFERR_SYNTHETIC_MASK): hardware never
// reports them, and KVM drops any that collide before calling the MMU.
constexpr uint64_t kPferrSyntheticMask = kPferrPrivateAccess;

}  // namespace

SvmOps::SvmOps(Platform& platform, const SvmConfig& config) : faults_(platform.faults()) {
  TDXSIM_CHECK(config.nr_asids >= 2, "{} ASIDs leave none for guests", config.nr_asids);
  // The VMCB's ASID field is 32 bits, the platform's TLB tags 16.
  TDXSIM_CHECK(config.nr_asids <= 65536, "{} ASIDs beyond the TLB's 16-bit tags", config.nr_asids);
  // svm_cpu_init / svm_hardware_setup: max_asid from CPUID, next_asid past it so that the
  // first new_asid starts generation 2 with a full flush.
  SvmCpuData sd;
  sd.max_asid = config.nr_asids - 1;
  sd.next_asid = sd.max_asid + 1;
  cpu_data_.assign(platform.cpu_count(), sd);
}

KvmResult<> SvmOps::vm_init(KvmVm& vm) {
  // TDX is Intel's; an AMD host runs plain and software-protected VMs (SEV is not modelled).
  if (vm.kvm().type() == VmType::kTdx) return std::unexpected(Errno::kEinval);
  return {};
}

void SvmOps::vm_destroy(KvmVm&) {}

KvmResult<> SvmOps::vcpu_create(KvmVcpu& vcpu) {
  auto v = std::make_unique<SvmVcpu>();
  v->vmcb.mode = GuestMode::kSvm;
  v->vmcb.npt_levels = 4;
  // No ASID until the first pre_svm_run (ASID 0 is the host's and VMRUN refuses it).
  v->vmcb.asid = 0;
  vcpu.set_vendor(std::move(v));
  return {};
}

void SvmOps::vcpu_free(KvmVcpu&) {}

void SvmOps::vcpu_load(KvmVcpu&, LogicalCpu&) {
  // svm_vcpu_load has nothing TLB-related to do: pre_svm_run sees the move (the VMCB's cpu)
  // and takes a fresh ASID on the new CPU, so no flush request is needed.
}

void SvmOps::set_guest(KvmVcpu& vcpu, GuestProgram* program, uint32_t instruction_budget) {
  SvmVcpu& v = svm(vcpu);
  v.program = program;
  v.vmcb.instruction_budget = instruction_budget;
}

void SvmOps::load_mmu_pgd(Kvm* kvm, int vcpu_id, Hpa root, Level level) {
  KvmVcpu* vcpu = kvm->vm()->vcpu(vcpu_id);
  TDXSIM_CHECK(vcpu != nullptr, "load_mmu_pgd for vCPU {} that does not exist", vcpu_id);
  SvmVcpu& v = svm(*vcpu);
  // control.nested_cr3 (no SME C-bit: memory encryption is not modelled).
  v.vmcb.ncr3 = root;
  v.vmcb.npt_levels = level_num(level);
  hv_track_root_tdp(*vcpu, root);
}

bool SvmOps::flush_remote_tlbs(Kvm* kvm) {
  return hv_ != nullptr && hv_->flush_remote_tlbs(*kvm);
}

bool SvmOps::flush_remote_tlbs_range(Kvm* kvm, Gfn gfn, uint64_t pages) {
  return hv_ != nullptr && hv_->flush_remote_tlbs_range(*kvm, gfn, pages);
}

void SvmOps::flush_tlb_asid(SvmVcpu& v) {
  // svm_flush_tlb_asid with FLUSHBYASID: the next VMRUN flushes this ASID. A pending
  // flush of every ASID (new_asid's) already covers it and must not be narrowed.
  if (v.vmcb.tlb_control != SvmTlbControl::kFlushAll)
    v.vmcb.tlb_control = SvmTlbControl::kFlushAsid;
}

void SvmOps::flush_tlb_current(KvmVcpu& vcpu) {
  // svm_flush_tlb_current: the ASID holds only this VM's translations for the current root.
  // With the enlightened NPT TLB the ASID flush leaves the L0's GPA translations of the root
  // alone, so the root is flushed by hypercall too (seed 003's fix; S3 is the code before it).
  SvmVcpu& v = svm(vcpu);
  if (hv_ != nullptr && vcpu.mmu().root != nullptr && !faults_.bug(BugId::S3)) {
    stats_.hv_root_flushes.add();
    hv_->flush_guest_mapping(v.vmcb.ncr3);
  }
  flush_tlb_asid(v);
}

void SvmOps::flush_tlb_all(KvmVcpu& vcpu) {
  // svm_flush_tlb_all: an ASID holds one vCPU's translations, so flushing it is a full flush
  // for the vCPU. With the enlightened NPT TLB remote flushes go to Hyper-V, never here: a
  // request-based flush means KVM's own bug or a failed hypercall. Upstream WARNs and flushes
  // through Hyper-V to recover; so does this (counted).
  if (hv_ != nullptr) {
    stats_.hv_flush_all_warnings.add();
    hv_->flush_remote_tlbs(vcpu.kvm());
  }
  flush_tlb_asid(svm(vcpu));
}

void SvmOps::new_asid(SvmVcpu& v, SvmCpuData& sd) {
  stats_.new_asids.add();
  if (sd.next_asid > sd.max_asid) {
    // Out of ASIDs: a new generation invalidates every vCPU's ASID on this CPU, and the
    // flush of every ASID makes the numbers safe to hand out again.
    stats_.asid_rollovers.add();
    ++sd.asid_generation;
    sd.next_asid = sd.min_asid;
    v.vmcb.tlb_control = SvmTlbControl::kFlushAll;
  }
  v.asid_generation = sd.asid_generation;
  v.vmcb.asid = static_cast<uint16_t>(sd.next_asid++);
}

void SvmOps::pre_svm_run(KvmVcpu& vcpu, SvmVcpu& v) {
  const LogicalCpu& cpu = *vcpu.cpu();
  SvmCpuData& sd = cpu_data_.at(cpu.id());
  // ASIDs are per logical CPU: one from another CPU means nothing here.
  if (v.vmcb_cpu != static_cast<int>(cpu.id())) {
    v.asid_generation = 0;
    v.vmcb_cpu = static_cast<int>(cpu.id());
  }
  if (v.asid_generation != sd.asid_generation) new_asid(v, sd);
}

ExitFastpath SvmOps::vcpu_run(KvmVcpu& vcpu) {
  SvmVcpu& v = svm(vcpu);
  LogicalCpu& cpu = *vcpu.cpu();
  if (v.program == nullptr) {
    // No guest code loaded: the VMM's mistake, reported as a halt (as VmxOps does).
    v.exit = VmExit{};
    v.exit.mode = GuestMode::kSvm;
    v.exit.reason = static_cast<uint32_t>(SvmExitCode::kHlt);
    return ExitFastpath::kNone;
  }
  pre_svm_run(vcpu, v);
  v.exit = cpu.run_guest(v.vmcb, v.regs, *v.program);
  // svm_vcpu_run: only a real NMI exit reaches the host's NMI handler.
  if (v.exit.is(SvmExitCode::kNmi)) cpu.handle_host_nmi();
  return ExitFastpath::kNone;
}

int SvmOps::handle_exit(KvmVcpu& vcpu, ExitFastpath) {
  SvmVcpu& v = svm(vcpu);
  switch (static_cast<SvmExitCode>(v.exit.reason)) {
    case SvmExitCode::kIntr:
    case SvmExitCode::kNmi:
      return 1;
    case SvmExitCode::kNpf:
      return npf_interception(vcpu, v);
    case SvmExitCode::kVmmcall:
      stats_.hypercalls.add();
      return x86_emulate_hypercall(vcpu, v);
    case SvmExitCode::kHlt:
      return x86_emulate_halt(vcpu, v, stats_);
  }
  return x86_unexpected_exit(vcpu, v.exit.reason, stats_);
}

int SvmOps::npf_interception(KvmVcpu& vcpu, SvmVcpu& v) {
  stats_.npf_exits.add();
  // EXITINFO1 is the #PF-style error code (P, W, U, RSVD, FETCH, and bits 32/33 saying
  // whether the guest's final access or its own page walk faulted); EXITINFO2 the GPA.
  const uint64_t error_code = v.exit.qualification & ~kPferrSyntheticMask;
  if ((error_code & kPferrRsvd) != 0) stats_.npf_rsvd.add();
  return x86_tdp_page_fault(vcpu, v, stats_, v.exit.gpa, error_code);
}

int SvmOps::complete_userspace_io(KvmVcpu& vcpu) {
  if (vcpu.vendor() == nullptr) return 1;
  return x86_complete_userspace_io(vcpu, svm(vcpu));
}

}  // namespace tdxsim
