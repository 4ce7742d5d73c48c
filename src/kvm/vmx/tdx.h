// TdxOps: KVM's TDX vendor code (arch/x86/kvm/vmx/tdx.c) — a TD built, run and torn down
// through SEAMCALLs — with its per-VM (struct kvm_tdx) and per-vCPU (struct vcpu_tdx) state.
//
// VtOps forwards every TD to this table. The KVM_MEMORY_ENCRYPT_OP ioctls (KVM_TDX_INIT_VM,
// KVM_TDX_INIT_VCPU, KVM_TDX_INIT_MEM_REGION, KVM_TDX_FINALIZE_VM) are members the VMM calls
// with the VM or vCPU; like every other entry they issue their SEAMCALLs on the CPU the
// calling thread is bound to (this_cpu()), and abort when there is none.
//
// The S-EPT follows the mirror (kvm-tdx-mmu.md §2.3–2.5): link → TDH.MEM.SEPT.ADD; set →
// TDH.MEM.PAGE.AUG once the TD is runnable, before that only nr_premapped++ (the page is
// TDH.MEM.PAGE.ADDed by init_mem_region); remove → BLOCK, TRACK, kick, REMOVE, WBINVD, clear,
// with one retry of a BUSY SEAMCALL while no vCPU may enter (wait_for_sept_zap); free →
// RECLAIM once the HKID is released. Teardown follows kvm_vm.h's order (§2.9).
//
// Thread safety: the MMU hooks run under mmu_lock as mmu_vendor_ops.h says; the vCPU entries
// on the vCPU's thread; the ioctls are serialised by the caller as KVM's (kvm->lock,
// vcpu->mutex). Per-VM fields that vCPU threads read while others write (state, HKID,
// wait_for_sept_zap, nr_premapped) are atomics.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

#include "base/atomic.h"
#include "base/trace.h"
#include "kvm/kvm_vm.h"
#include "kvm/vcpu.h"
#include "kvm/vmx/tdx_host.h"
#include "kvm/x86_ops.h"
#include "platform/seamcall.h"
#include "tdx_module/seamcall_leaf.h"
#include "tdx_module/td_params.h"

namespace tdxsim {

// enum kvm_tdx_state.
enum class TdState : uint8_t { kUninitialized, kInitialized, kRunnable };
// enum vcpu_tdx_state.
enum class VcpuTdState : uint8_t { kUninitialized, kInitialized };

inline constexpr size_t kNumSeamcallLeaves = 128;

// What a TD's SEAMCALLs did, per leaf (index: the leaf number), for tests and reports.
struct TdxStats {
  std::array<Counter, kNumSeamcallLeaves> calls;
  // TDX_OPERAND_BUSY answers, and the retries made with vCPU entry blocked.
  std::array<Counter, kNumSeamcallLeaves> busy;
  std::array<Counter, kNumSeamcallLeaves> busy_retries;
  // Every other status that is not SUCCESS (its class, bits 63:32: VP.ENTER's exits are
  // SUCCESS with the exit reason below).
  std::array<Counter, kNumSeamcallLeaves> errors;
  Counter sept_zap_waits;       // times wait_for_sept_zap was raised
  Counter entries_skipped;      // vcpu_run returned without TDH.VP.ENTER (zap in progress)
  Counter local_fault_retries;  // private EPT violations retried inside KVM
  Counter pages_leaked;         // pages KVM could not reclaim (left to the TD's key)
  Counter host_nmis;            // NMI exits handed to the host's handler

  uint64_t count(SeamcallLeaf leaf) const { return calls[static_cast<size_t>(leaf)].value(); }
  uint64_t busy_count(SeamcallLeaf leaf) const { return busy[static_cast<size_t>(leaf)].value(); }
  uint64_t error_count(SeamcallLeaf leaf) const {
    return errors[static_cast<size_t>(leaf)].value();
  }
  uint64_t retries(SeamcallLeaf leaf) const {
    return busy_retries[static_cast<size_t>(leaf)].value();
  }
};

// One SEAMCALL KVM's TDX code made (emitted on TdxOps::seamcall_trace).
struct TdxSeamcallEvent {
  Hpa tdr;  // the TD's
  SeamcallLeaf leaf;
  uint64_t status;
  Gfn gfn;  // the GPA operand's gfn for the memory leaves, else 0
  unsigned cpu;
};

// The exit handlers that act on a TD exit's information (its exit reason and registers).
enum class TdxExitHandler : uint8_t { kNmi, kTdvmcall, kEptViolation };

// A TD exit handed to one of them (emitted on TdxOps::exit_dispatch_trace at the dispatch,
// on the vCPU's thread), with the whole status TDH.VP.ENTER returned: a checker decodes it
// itself rather than trusting the decoding that chose the handler (seed 002).
struct TdxExitDispatchEvent {
  Hpa tdr;  // the TD's
  int vcpu_id;
  TdxExitHandler handler;
  uint64_t vp_enter_ret;
  Gpa gpa;  // an EPT violation's faulting GPA (shared bit included), else 0
};

const char* to_string(TdxExitHandler h);

// struct kvm_tdx.
class TdxVm final : public VendorVm {
 public:
  explicit TdxVm(KvmVm& vm) : vm_(vm) {}

  KvmVm& vm() const { return vm_; }
  TdState state() const { return state_.load(std::memory_order_acquire); }
  // The TD's HKID, kHostKey when none is assigned (before INIT_VM, after release).
  KeyId hkid() const { return KeyId{hkid_.load(std::memory_order_acquire)}; }
  bool hkid_assigned() const { return !hkid().is_host(); }
  Hpa tdr() const { return tdr_; }
  const std::vector<Hpa>& tdcs() const { return tdcs_; }
  int64_t nr_premapped() const { return nr_premapped_.load(std::memory_order_acquire); }
  bool wait_for_sept_zap() const { return wait_for_sept_zap_.load(std::memory_order_acquire); }
  const TdxStats& stats() const { return stats_; }

 private:
  friend class TdxOps;

  KvmVm& vm_;
  std::atomic<TdState> state_{TdState::kUninitialized};
  std::atomic<uint16_t> hkid_{0};
  Hpa tdr_;
  bool has_tdr_ = false;     // tdr_ is allocated (frame 0 is a frame like any other)
  bool td_created_ = false;  // TDH.MNG.CREATE succeeded: the TDR is the module's
  std::vector<Hpa> tdcs_;    // added by TDH.MNG.ADDCX
  std::atomic<int64_t> nr_premapped_{0};
  // Written under mmu_lock for write; read by vCPUs about to enter.
  std::atomic<bool> wait_for_sept_zap_{false};
  TdxStats stats_;
};

// A TDVMCALL whose completion waits for userspace (vcpu->arch.complete_userspace_io).
enum class TdxPendingIo : uint8_t { kNone, kMapGpa, kMmioRead, kMmioWrite };

// struct vcpu_tdx.
class TdxVcpu final : public VendorVcpu {
 public:
  explicit TdxVcpu(KvmVcpu& vcpu) : vcpu_(vcpu) {}

  VcpuTdState state() const { return state_; }
  Hpa tdvpr() const { return tdvpr_; }
  // The whole 64-bit TDH.VP.ENTER status of the last entry (vp_enter_ret).
  uint64_t vp_enter_ret() const { return vp_enter_ret_; }
  // The VMX exit reason of the last exit, or kInvalidExitReason when there was none.
  uint32_t exit_reason() const { return exit_reason_; }
  // The registers of the last TD exit, and what the next TDH.VP.ENTER passes in.
  const SeamcallRegs& regs() const { return regs_; }
  // The logical CPU the TD vCPU is associated with (cpu_list), nullptr when none.
  LogicalCpu* associated_cpu() const { return assoc_cpu_; }
  Gpa map_gpa_next() const { return map_gpa_next_; }
  Gpa map_gpa_end() const { return map_gpa_end_; }

  static constexpr uint32_t kInvalidExitReason = ~uint32_t{0};

 private:
  friend class TdxOps;

  KvmVcpu& vcpu_;
  VcpuTdState state_ = VcpuTdState::kUninitialized;
  Hpa tdvpr_;
  bool vp_created_ = false;
  std::vector<Hpa> tdcx_;
  uint64_t vp_enter_ret_ = 0;
  uint32_t exit_reason_ = kInvalidExitReason;
  SeamcallRegs regs_;  // vp_enter_args: in for a TDVMCALL's outputs, out for the exit
  LogicalCpu* assoc_cpu_ = nullptr;
  unsigned last_entry_cpu_ = 0;
  Gpa map_gpa_next_;
  Gpa map_gpa_end_;
  TdxPendingIo pending_ = TdxPendingIo::kNone;
  // set_guest before the TDVPR exists: attached at KVM_TDX_INIT_VCPU.
  GuestProgram* program_ = nullptr;
  uint32_t budget_ = 0;
  bool program_set_ = false;
};

class TdxOps final : public KvmX86Ops {
 public:
  // REQUIRES: `host` outlives the table.
  explicit TdxOps(TdxHost& host) : host_(host) {}

  TdxHost& host() const { return host_; }
  static TdxVm& to_tdx(const KvmVm& vm) { return vm.vendor_as<TdxVm>(); }
  static TdxVm& to_tdx(const Kvm* kvm);
  static TdxVcpu& to_tdx(const KvmVcpu& vcpu) { return vcpu.vendor_as<TdxVcpu>(); }

  // Every SEAMCALL the TDX code makes for any TD, on the calling thread.
  Tracepoint<TdxSeamcallEvent> seamcall_trace;
  // The same events for the SEAMCALLs that build, change or track a TD's S-EPT (SEPT.ADD,
  // PAGE.ADD, AUG, BLOCK, UNBLOCK, TRACK, REMOVE, SEPT.REMOVE, MR.FINALIZE): what checkers
  // follow without paying for a listener on every TDH.VP.ENTER.
  Tracepoint<TdxSeamcallEvent> sept_seamcall_trace;
  // Every TD exit that reached the NMI, TDVMCALL or EPT-violation handling.
  Tracepoint<TdxExitDispatchEvent> exit_dispatch_trace;

  // --- KVM_MEMORY_ENCRYPT_OP ioctls ------------------------------------------------------------
  // KVM_TDX_INIT_VM (tdx_td_init): HKID, TDR, MNG.CREATE, KEY.CONFIG on every package, ADDCX,
  // MNG.INIT with `params`. EINVAL when already initialised, after a vCPU exists, or when the
  // module refuses the parameters (`hw_error`, when given, gets its status); EAGAIN without a
  // free HKID; ENOMEM; EIO on another module error (the TD is torn down again).
  KvmResult<> init_vm(KvmVm& vm, const TdParams& params, uint64_t* hw_error = nullptr);
  // KVM_TDX_INIT_VCPU (tdx_vcpu_init): VP.CREATE, VP.ADDCX, VP.INIT with the vCPU id as the
  // x2APIC ID. EINVAL unless the TD is initialised and the vCPU not yet.
  KvmResult<> init_vcpu(KvmVcpu& vcpu, uint64_t initial_rcx = 0);
  // KVM_TDX_INIT_MEM_REGION (tdx_vcpu_init_mem_region): one guest page per source page from
  // `gpa` on, each mapped in the mirror through the private fault path and then
  // TDH.MEM.PAGE.ADDed with its source, extended into MRTD when `measure`. Returns: the
  // pages done before an error (the region's progress), or EINVAL (state, alignment, a
  // shared GPA), EBUSY, EIO, or the fault's error.
  KvmResult<> init_mem_region(KvmVcpu& vcpu, Gpa gpa, std::span<const Hpa> sources, bool measure,
                              uint64_t* pages_done = nullptr);
  // KVM_TDX_FINALIZE_VM (tdx_td_finalize): TDH.MR.FINALIZE, then RUNNABLE. EINVAL unless
  // initialised and not runnable, or while pre-mapped pages were never added.
  KvmResult<> finalize_vm(KvmVm& vm);

  // --- KvmX86Ops ---------------------------------------------------------------------------------
  KvmResult<> vm_init(KvmVm& vm) override;
  void vm_pre_destroy(KvmVm& vm) override;
  void vm_destroy(KvmVm& vm) override;
  KvmResult<> vcpu_create(KvmVcpu& vcpu) override;
  void vcpu_free(KvmVcpu& vcpu) override;
  void vcpu_load(KvmVcpu& vcpu, LogicalCpu& cpu) override;
  KvmResult<> vcpu_pre_run(KvmVcpu& vcpu) override;
  ExitFastpath vcpu_run(KvmVcpu& vcpu) override;
  int handle_exit(KvmVcpu& vcpu, ExitFastpath fastpath) override;
  int complete_userspace_io(KvmVcpu& vcpu) override;
  void flush_tlb_all(KvmVcpu& vcpu) override;
  void flush_tlb_current(KvmVcpu& vcpu) override;
  using KvmX86Ops::flush_tlb_current;
  void set_guest(KvmVcpu& vcpu, GuestProgram* program, uint32_t instruction_budget) override;

  // --- MmuVendorOps ------------------------------------------------------------------------------
  KvmResult<> link_external_spt(Kvm* kvm, Gfn gfn, Level level, Hpa external_spt) override;
  KvmResult<> set_external_spte(Kvm* kvm, Gfn gfn, Level level, Pfn pfn) override;
  KvmResult<> free_external_spt(Kvm* kvm, Gfn gfn, Level level, Hpa external_spt) override;
  KvmResult<> remove_external_spte(Kvm* kvm, Gfn gfn, Level level, Pfn pfn) override;
  bool flush_remote_tlbs(Kvm* kvm) override;
  bool flush_remote_tlbs_range(Kvm* kvm, Gfn gfn, uint64_t pages) override;
  void load_mmu_pgd(Kvm* kvm, int vcpu_id, Hpa root, Level level) override;
  Level private_max_mapping_level(Kvm* kvm, Pfn pfn) override;

 private:
  // The CPU the calling thread is bound to; aborts naming `what` when none.
  static LogicalCpu& current_cpu(const char* what);
  // Counts and traces one SEAMCALL's status; `cpu`: where it ran when not this_cpu() (an
  // IPI's handler run for an idle CPU).
  uint64_t note(TdxVm& td, SeamcallLeaf leaf, uint64_t status, Gfn gfn = Gfn{0},
                const LogicalCpu* cpu = nullptr);
  // tdh_do_no_vcpus: `call` once; on TDX_OPERAND_BUSY once more with every vCPU kept out of
  // the guest. REQUIRES: mmu_lock held for write.
  template <class Call>
  uint64_t no_vcpus_retry(TdxVm& td, SeamcallLeaf leaf, Gfn gfn, Call&& call);
  // tdx_track: TDH.MEM.TRACK and a kick of every vCPU. REQUIRES: mmu_lock held for write.
  KvmResult<> track(TdxVm& td);
  // tdx_reclaim_page: RECLAIM, then the page back on the host key and cleared (MOVDIR64B).
  // `wbinvd_key`: the key whose lines to write back first (the TDR's global HKID); none when
  // CACHE.WB already did. Returns false (the page leaked) when the module refused.
  bool reclaim_page(TdxVm& td, LogicalCpu& cpu, Hpa page, std::optional<KeyId> wbinvd_key);
  // tdx_clear_page: the frame back on the host key, zeroed.
  void clear_page(Pfn pfn);
  // tdx_mmu_release_hkid.
  void release_hkid(KvmVm& vm);
  // tdx_reclaim_td_control_pages, and freeing frames never given to the module.
  void free_td_control_pages(KvmVm& vm);
  // The page the VMM gave back to host memory.
  void free_frame(Hpa page);
  std::optional<Hpa> alloc_page();
  // tdx_flush_vp on the vCPU's associated CPU. Returns the VP.FLUSH status.
  uint64_t flush_vp(TdxVm& td, TdxVcpu& tdx);

  // Exit handling (tdx_exit.cc).
  void trace_dispatch(KvmVcpu& vcpu, TdxExitHandler handler, Gpa gpa = Gpa{0});
  int handle_ept_violation(KvmVcpu& vcpu);
  int unhandled_exit(KvmVcpu& vcpu);
  // TDVMCALLs (tdx_tdvmcall.cc): returns as handle_exit.
  int handle_tdvmcall(KvmVcpu& vcpu);
  int map_gpa(KvmVcpu& vcpu);
  int map_gpa_next_chunk(KvmVcpu& vcpu);
  int complete_map_gpa(KvmVcpu& vcpu);
  int emulate_mmio(KvmVcpu& vcpu);
  void set_vmcall_status(TdxVcpu& tdx, TdVmCallStatus status);

  TdxHost& host_;
};

}  // namespace tdxsim
