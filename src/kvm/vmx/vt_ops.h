// VtOps: the one vendor table of an Intel host (vmx/main.c's vt_* wrappers). Every entry
// looks at the VM (or the vCPU's VM) and forwards to VMX or to TDX, so plain VMX VMs,
// software-protected VMs and TDs run side by side on one host with one table — which is
// what seed 000 is about: a VMX decision that looks at "the" table's hooks sees TDX's.
//
// Thread safety: stateless; each forwarded entry keeps its own contract.
#pragma once

#include "kvm/kvm.h"
#include "kvm/kvm_vm.h"
#include "kvm/x86_ops.h"

namespace tdxsim {

class VtOps final : public KvmX86Ops {
 public:
  // `tdx` is null when the host has no TDX (enable_tdx=0): TDs are then refused.
  // REQUIRES: both outlive the table.
  VtOps(KvmX86Ops& vmx, KvmX86Ops* tdx) : vmx_(vmx), tdx_(tdx) {}

  bool has_tdx() const { return tdx_ != nullptr; }

  // With TDX the table's flush op is vt_flush_remote_tlbs, whatever VMX would install: the
  // op seed 000 is about.
  RemoteFlushHook remote_flush_hook() const override {
    return tdx_ != nullptr ? RemoteFlushHook::kVt : vmx_.remote_flush_hook();
  }

  // --- KvmX86Ops ----------------------------------------------------------------------------
  KvmResult<> vm_init(KvmVm& vm) override;
  void vm_pre_destroy(KvmVm& vm) override { of(vm).vm_pre_destroy(vm); }
  void vm_destroy(KvmVm& vm) override { of(vm).vm_destroy(vm); }
  KvmResult<> vcpu_create(KvmVcpu& vcpu) override { return of(vcpu).vcpu_create(vcpu); }
  void vcpu_free(KvmVcpu& vcpu) override { of(vcpu).vcpu_free(vcpu); }
  void vcpu_load(KvmVcpu& vcpu, LogicalCpu& cpu) override { of(vcpu).vcpu_load(vcpu, cpu); }
  KvmResult<> vcpu_pre_run(KvmVcpu& vcpu) override { return of(vcpu).vcpu_pre_run(vcpu); }
  ExitFastpath vcpu_run(KvmVcpu& vcpu) override { return of(vcpu).vcpu_run(vcpu); }
  int handle_exit(KvmVcpu& vcpu, ExitFastpath fp) override {
    return of(vcpu).handle_exit(vcpu, fp);
  }
  int complete_userspace_io(KvmVcpu& vcpu) override { return of(vcpu).complete_userspace_io(vcpu); }
  void flush_tlb_all(KvmVcpu& vcpu) override { of(vcpu).flush_tlb_all(vcpu); }
  void flush_tlb_current(KvmVcpu& vcpu) override { of(vcpu).flush_tlb_current(vcpu); }
  using KvmX86Ops::flush_tlb_current;
  void set_guest(KvmVcpu& vcpu, GuestProgram* program, uint32_t budget) override {
    of(vcpu).set_guest(vcpu, program, budget);
  }

  // --- MmuVendorOps -------------------------------------------------------------------------
  KvmResult<> link_external_spt(Kvm* kvm, Gfn gfn, Level level, Hpa spt) override {
    return of(kvm).link_external_spt(kvm, gfn, level, spt);
  }
  KvmResult<> set_external_spte(Kvm* kvm, Gfn gfn, Level level, Pfn pfn) override {
    return of(kvm).set_external_spte(kvm, gfn, level, pfn);
  }
  KvmResult<> free_external_spt(Kvm* kvm, Gfn gfn, Level level, Hpa spt) override {
    return of(kvm).free_external_spt(kvm, gfn, level, spt);
  }
  KvmResult<> remove_external_spte(Kvm* kvm, Gfn gfn, Level level, Pfn pfn) override {
    return of(kvm).remove_external_spte(kvm, gfn, level, pfn);
  }
  bool flush_remote_tlbs(Kvm* kvm) override { return of(kvm).flush_remote_tlbs(kvm); }
  bool flush_remote_tlbs_range(Kvm* kvm, Gfn gfn, uint64_t pages) override {
    return of(kvm).flush_remote_tlbs_range(kvm, gfn, pages);
  }
  void load_mmu_pgd(Kvm* kvm, int vcpu_id, Hpa root, Level level) override {
    of(kvm).load_mmu_pgd(kvm, vcpu_id, root, level);
  }
  Level private_max_mapping_level(Kvm* kvm, Pfn pfn) override {
    return of(kvm).private_max_mapping_level(kvm, pfn);
  }
  unsigned cpu_dirty_log_size(Kvm* kvm) override { return of(kvm).cpu_dirty_log_size(kvm); }

 private:
  // is_td(kvm): vm_init refused TDs without TDX, so tdx_ is set whenever one exists.
  KvmX86Ops& of(const Kvm* kvm) const { return kvm->type() == VmType::kTdx ? *tdx_ : vmx_; }
  KvmX86Ops& of(const KvmVm& vm) const { return of(&vm.kvm()); }
  KvmX86Ops& of(const KvmVcpu& vcpu) const { return of(&vcpu.kvm()); }

  KvmX86Ops& vmx_;
  KvmX86Ops* tdx_;
};

}  // namespace tdxsim
