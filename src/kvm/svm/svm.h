// SvmOps: KVM's SVM vendor code (arch/x86/kvm/svm/svm.c) for ordinary and software-protected
// VMs on the TDP MMU with NPT-format SPTEs (spte_format() = kNpt): the VMCB (a GuestContext
// in SVM mode: nested_cr3 from load_mmu_pgd, an ASID, TLB_CONTROL), VMRUN through the logical
// CPU, and the exits — #NPF into the MMU with EXITINFO1 as the error code (PFERR_RSVD: one
// of KVM's MMIO SPTEs), MMIO emulated out to userspace, VMMCALL hypercalls, HLT; the
// emulation is shared with VMX (x86_emulate.h). TDs are not SVM's: vm_init refuses them.
//
// ASIDs, as upstream: each logical CPU hands out ASIDs min_asid..max_asid in generations
// (svm_cpu_data). Before every VMRUN (pre_svm_run) a vCPU whose VMCB last ran on another
// CPU, or whose ASID is from an older generation of this CPU's, takes the CPU's next ASID
// (new_asid); when they run out the generation moves on, numbering restarts at min_asid and
// the VMRUN flushes every ASID (TLB_CONTROL_FLUSH_ALL_ASID). So an ASID is fresh on its CPU
// for as long as its generation lasts, and a vCPU that moves needs no flush of its own.
//
// TLB: svm_flush_tlb_asid sets TLB_CONTROL to flush the vCPU's ASID, which the next VMRUN does
// (flush_tlb_current and flush_tlb_all both). On bare metal there is no remote-flush hook:
// the MMU falls back to KVM_REQ_TLB_FLUSH on every vCPU.
//
// Nested on Hyper-V with the enlightened NPT TLB (svm_hv_hardware_setup; enable_hyperv_flush),
// remote flushes are the L0's GPA-flush hypercalls and every loaded root is tracked for them.
// The enlightenment changes what an ASID flush does: the L0 then drops only GVA-derived
// entries, not the GPA translations it derived from nested_cr3. So flush_tlb_current — which
// kvm_mmu_load relies on for every newly loaded root, including a freed root's page reused as
// a new root — must also ask the L0 to flush the root's GPA mappings (seed 003; bug S3 leaves
// that out).
//
// Thread safety: the vCPU state belongs to the vCPU's thread; a CPU's svm_cpu_data belongs to
// the thread bound to that CPU (pre_svm_run runs bound, before VMRUN).
#pragma once

#include <cstdint>
#include <vector>

#include "base/fault_injection.h"
#include "kvm/hyperv/kvm_onhyperv.h"
#include "kvm/vcpu.h"
#include "kvm/x86_emulate.h"
#include "kvm/x86_ops.h"
#include "platform/guest_context.h"

namespace tdxsim {

class Platform;

struct SvmConfig {
  // CPUID Fn8000_000A EBX: the ASIDs a logical CPU has, ASID 0 the host's (max_asid is one
  // less). Small values make generation rollovers easy to provoke in tests.
  uint32_t nr_asids = 32768;
};

// struct svm_cpu_data: one logical CPU's ASID allocator.
struct SvmCpuData {
  uint64_t asid_generation = 1;
  uint32_t max_asid = 0;
  uint32_t next_asid = 0;  // max_asid + 1 at start: the first new_asid rolls over (and flushes)
  uint32_t min_asid = 1;   // max_sev_asid + 1; SEV is not modelled
};

// struct vcpu_svm: the registers, program, last exit and pending completion are X86Vcpu's.
struct SvmVcpu : X86Vcpu {
  GuestContext vmcb;
  // svm->current_vmcb->asid_generation (0: none yet) and ->cpu (-1: never run).
  uint64_t asid_generation = 0;
  int vmcb_cpu = -1;
};

// mmio_exits, hypercalls, hlt_exits, unhandled_exits: X86ExitStats.
struct SvmStats : X86ExitStats {
  Counter npf_exits, npf_rsvd, new_asids, asid_rollovers;
  Counter hv_root_flushes;        // flush_tlb_current's hyperv_flush_guest_mapping (seed 003)
  Counter hv_flush_all_warnings;  // svm_flush_tlb_all reached with the enlightened TLB on
};

class SvmOps final : public KvmX86Ops {
 public:
  // One svm_cpu_data per logical CPU of `platform`. REQUIRES: 2 <= config.nr_asids <= 65536.
  explicit SvmOps(Platform& platform, const SvmConfig& config = {});

  const SvmStats& stats() const { return stats_; }
  // The ASID allocator of logical CPU `cpu`. REQUIRES: no vCPU runs there meanwhile.
  const SvmCpuData& cpu_data(unsigned cpu) const { return cpu_data_.at(cpu); }

  // svm_hv_hardware_setup on Hyper-V with HV_X64_NESTED_ENLIGHTENED_TLB (and
  // svm_hv_init_vmcb's enlightened_npt_tlb in every VMCB): installs hv_flush_remote_tlbs.
  // REQUIRES: before any VM exists; `hv` outlives the ops.
  void enable_hyperv_flush(KvmOnHyperV* hv) { hv_ = hv; }
  RemoteFlushHook remote_flush_hook() const override {
    return hv_ != nullptr ? RemoteFlushHook::kHyperV : RemoteFlushHook::kNone;
  }
  bool flush_remote_tlbs(Kvm* kvm) override;
  bool flush_remote_tlbs_range(Kvm* kvm, Gfn gfn, uint64_t pages) override;

  SpteFormat spte_format() const override { return SpteFormat::kNpt; }
  KvmResult<> vm_init(KvmVm& vm) override;
  void vm_destroy(KvmVm& vm) override;
  KvmResult<> vcpu_create(KvmVcpu& vcpu) override;
  void vcpu_free(KvmVcpu& vcpu) override;
  void vcpu_load(KvmVcpu& vcpu, LogicalCpu& cpu) override;
  ExitFastpath vcpu_run(KvmVcpu& vcpu) override;
  int handle_exit(KvmVcpu& vcpu, ExitFastpath fastpath) override;
  int complete_userspace_io(KvmVcpu& vcpu) override;
  void flush_tlb_all(KvmVcpu& vcpu) override;
  void flush_tlb_current(KvmVcpu& vcpu) override;
  using KvmX86Ops::flush_tlb_current;
  void set_guest(KvmVcpu& vcpu, GuestProgram* program, uint32_t instruction_budget) override;

  // svm_load_mmu_pgd: the root into the VMCB's nested_cr3 (with its level count).
  void load_mmu_pgd(Kvm* kvm, int vcpu_id, Hpa root, Level level) override;

 private:
  // pre_svm_run: a fresh ASID for a VMCB that moved CPUs or whose generation is stale.
  void pre_svm_run(KvmVcpu& vcpu, SvmVcpu& v);
  void new_asid(SvmVcpu& v, SvmCpuData& sd);
  // svm_flush_tlb_asid.
  static void flush_tlb_asid(SvmVcpu& v);
  // npf_interception.
  int npf_interception(KvmVcpu& vcpu, SvmVcpu& v);

  SvmStats stats_;
  std::vector<SvmCpuData> cpu_data_;
  FaultInjection& faults_;
  KvmOnHyperV* hv_ = nullptr;
};

}  // namespace tdxsim
