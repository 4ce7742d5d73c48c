// A TD vCPU: creation (KVM_TDX_INIT_VCPU), its association with one logical CPU at a time,
// TD entry, and its pages' reclaim (kvm-tdx-mmu.md §2.5, §2.6, §2.8, §2.9).
#include "base/check.h"
#include "base/fault_injection.h"
#include "kvm/vmx/tdx.h"
#include "tdx_module/td_exit.h"
#include "tdx_module/tdx_status.h"
#include "tdxsim/seamcall.h"

namespace tdxsim {

namespace {

// The statuses after which RAX's low half is a real VMX exit reason (tdx_to_vmx_exit_reason):
// the guest ran, and left through a TD exit.
bool status_has_exit_reason(uint64_t ret) {
  switch (status_of(ret)) {
    case TdxStatus::kSuccess:
    case TdxStatus::kNonRecoverableVcpu:
    case TdxStatus::kNonRecoverableTd:
    case TdxStatus::kNonRecoverableTdNonAccessible:
    case TdxStatus::kNonRecoverableTdWrongApicMode:
      return true;
    default:
      return false;
  }
}

// VM-exit interruption information: valid, type NMI (2).
bool is_nmi(uint64_t intr_info) {
  return (intr_info & 0x8000'0700) == 0x8000'0200;
}

}  // namespace

KvmResult<> TdxOps::vcpu_create(KvmVcpu& vcpu) {
  // tdx_vcpu_create: the TD's configuration (KVM_TDX_INIT_VM) comes first.
  if (to_tdx(vcpu.vm()).state() != TdState::kInitialized) return std::unexpected(Errno::kEinval);
  vcpu.set_vendor(std::make_unique<TdxVcpu>(vcpu));
  return {};
}

KvmResult<> TdxOps::init_vcpu(KvmVcpu& vcpu, uint64_t initial_rcx) {
  TdxVm& td = to_tdx(vcpu.vm());
  TdxVcpu& tdx = to_tdx(vcpu);
  if (td.state() != TdState::kInitialized || tdx.state_ != VcpuTdState::kUninitialized ||
      tdx.vp_created_) {
    return std::unexpected(Errno::kEinval);
  }
  LogicalCpu& cpu = current_cpu("KVM_TDX_INIT_VCPU");
  const std::optional<Hpa> tdvpr = alloc_page();
  if (!tdvpr) return std::unexpected(Errno::kEnomem);
  std::vector<Hpa> tdcx;
  const auto free_unused = [&] {
    for (Hpa p : tdcx) free_frame(p);
  };
  for (unsigned i = 1; i < host_.module().config().tdvps_pages; ++i) {
    const std::optional<Hpa> p = alloc_page();
    if (!p) {
      free_unused();
      free_frame(*tdvpr);
      return std::unexpected(Errno::kEnomem);
    }
    tdcx.push_back(*p);
  }
  if (note(td, SeamcallLeaf::kVpCreate, tdh_vp_create(cpu, td.tdr_, *tdvpr)) != 0) {
    free_unused();
    free_frame(*tdvpr);
    return std::unexpected(Errno::kEio);
  }
  tdx.tdvpr_ = *tdvpr;
  tdx.vp_created_ = true;
  // From here on the pages are the TD's: vcpu_free reclaims what was added.
  while (!tdcx.empty()) {
    if (note(td, SeamcallLeaf::kVpAddcx, tdh_vp_addcx(cpu, tdx.tdvpr_, tdcx.front())) != 0) {
      free_unused();
      return std::unexpected(Errno::kEio);
    }
    tdx.tdcx_.push_back(tdcx.front());
    tdcx.erase(tdcx.begin());
  }
  const uint64_t s =
      note(td, SeamcallLeaf::kVpInit,
           tdh_vp_init(cpu, tdx.tdvpr_, initial_rcx, static_cast<uint32_t>(vcpu.id())));
  if (s != 0) return std::unexpected(Errno::kEio);
  if (tdx.program_set_) host_.module().attach_guest(tdx.tdvpr_, tdx.program_, tdx.budget_);
  tdx.state_ = VcpuTdState::kInitialized;
  return {};
}

void TdxOps::set_guest(KvmVcpu& vcpu, GuestProgram* program, uint32_t instruction_budget) {
  TdxVcpu& tdx = to_tdx(vcpu);
  tdx.program_ = program;
  tdx.budget_ = instruction_budget;
  tdx.program_set_ = true;
  if (tdx.vp_created_) {
    TDXSIM_CHECK(host_.module().attach_guest(tdx.tdvpr_, program, instruction_budget),
                 "the module has no vCPU at TDVPR {}", tdx.tdvpr_);
  }
}

void TdxOps::vcpu_free(KvmVcpu& vcpu) {
  if (vcpu.vendor() == nullptr) return;
  TdxVm& td = to_tdx(vcpu.vm());
  TdxVcpu& tdx = to_tdx(vcpu);
  if (!tdx.vp_created_) return;
  if (td.hkid_assigned()) {
    // The TD's key may still have lines of these pages cached: leak them, as upstream.
    td.stats_.pages_leaked.add(tdx.tdcx_.size() + 1);
  } else {
    LogicalCpu& cpu = current_cpu("tdx_vcpu_free");
    for (Hpa p : tdx.tdcx_) {
      if (reclaim_page(td, cpu, p, std::nullopt)) free_frame(p);
    }
    if (reclaim_page(td, cpu, tdx.tdvpr_, std::nullopt)) free_frame(tdx.tdvpr_);
  }
  tdx.tdcx_.clear();
  tdx.vp_created_ = false;
  tdx.state_ = VcpuTdState::kUninitialized;
}

// tdx_vcpu_load.
void TdxOps::vcpu_load(KvmVcpu& vcpu, LogicalCpu& cpu) {
  TdxVcpu& tdx = to_tdx(vcpu);
  if (tdx.assoc_cpu_ == &cpu) return;
  if (tdx.assoc_cpu_ != nullptr) {
    // A TD vCPU is associated with one CPU at a time: flush it out of the old one.
    const uint64_t s = flush_vp(to_tdx(vcpu.vm()), tdx);
    vcpu.kvm().bug_on(s != 0 && status_of(s) != TdxStatus::kVcpuNotAssociated,
                      "TDH.VP.FLUSH on the vCPU's old CPU failed");
  }
  tdx.assoc_cpu_ = &cpu;
}

KvmResult<> TdxOps::vcpu_pre_run(KvmVcpu& vcpu) {
  if (to_tdx(vcpu).state_ != VcpuTdState::kInitialized ||
      to_tdx(vcpu.vm()).state() != TdState::kRunnable) {
    return std::unexpected(Errno::kEinval);
  }
  return {};
}

// tdx_vcpu_run + tdx_vcpu_enter_exit.
ExitFastpath TdxOps::vcpu_run(KvmVcpu& vcpu) {
  TdxVm& td = to_tdx(vcpu.vm());
  TdxVcpu& tdx = to_tdx(vcpu);
  // A removal is retrying a BUSY SEAMCALL and wants no vCPU in the TD.
  if (td.wait_for_sept_zap()) {
    td.stats_.entries_skipped.add();
    return ExitFastpath::kExitHandled;
  }
  if (vcpu.kvm().vm_bugged()) {
    tdx.vp_enter_ret_ = raw(TdxStatus::kNonRecoverableVcpu);
    tdx.exit_reason_ = TdxVcpu::kInvalidExitReason;
    return ExitFastpath::kNone;
  }
  LogicalCpu& cpu = current_cpu("tdx_vcpu_run");
  tdx.last_entry_cpu_ = cpu.id();
  tdx.vp_enter_ret_ = note(td, SeamcallLeaf::kVpEnter, tdh_vp_enter(cpu, tdx.tdvpr_, tdx.regs_));
  // Seed 002: the low bits are an exit reason only after a real TD exit. A failed entry —
  // a module error, or the SEAMCALL instruction itself failing (class 0xFF, whose low 16
  // bits read 0, "exception or NMI") — has no exit to decode, and the output registers
  // still hold the previous exit's information. S2 restores the decoding that took the low
  // 32 bits whatever the status.
  tdx.exit_reason_ =
      status_has_exit_reason(tdx.vp_enter_ret_) || host_.platform().faults().bug(BugId::S2)
          ? static_cast<uint32_t>(tdx.vp_enter_ret_)
          : TdxVcpu::kInvalidExitReason;
  if (tdx.exit_reason_ != TdxVcpu::kInvalidExitReason &&
      static_cast<uint16_t>(tdx.exit_reason_) ==
          static_cast<uint16_t>(VmxExitReason::kExceptionNmi) &&
      is_nmi(tdx.regs_.r9)) {
    trace_dispatch(vcpu, TdxExitHandler::kNmi);
    td.stats_.host_nmis.add();
    cpu.handle_host_nmi();
  }
  // BUSY (zero-step mitigation's S-EPT lock, or TRACK's epoch): leave the fastpath so a
  // waiting kicker's IPI gets through, and enter again.
  if (status_of(tdx.vp_enter_ret_) == TdxStatus::kOperandBusy) return ExitFastpath::kExitHandled;
  return ExitFastpath::kNone;
}

}  // namespace tdxsim
