// TdxModule: the emulated Intel TDX module (1.5.01) behind SEAMCALL.
//
// The dispatcher (module src/vmm_dispatcher/tdx_vmm_dispatcher.c), in its order:
//   1. RAX: bits 63:24 zero and a version the leaf has       else OPERAND_INVALID|RAX
//   2. system state: every leaf but the SYS ones below answers TDX_SYS_NOT_READY
//      (0xC000050500000000) until TDH.SYS.KEY.CONFIG has run on every package
//   3. the leaf's handler; a leaf tdxsim does not dispatch     OPERAND_INVALID|RAX
//
// The SYS sequence (abi §1.2; Linux arch/x86/virt/vmx/tdx/tdx.c drives it in this order):
//   TDH.SYS.INIT (33)        once; RCX (attributes) must be 0
//   TDH.SYS.LP.INIT (35)     on every logical CPU
//   TDH.SYS.CONFIG (45)      once, after LP.INIT on every LP. RCX = TDMR-info list (1.5.01
//                            reads it; tdxsim has one TDMR covering all host memory and reads
//                            nothing), RDX = number of TDMRs (≥ 1), R8 = the global private
//                            HKID (one of the private HKIDs: reserved for the module's own
//                            structures, TDRs)
//   TDH.SYS.KEY.CONFIG (31)  once per package (TDX_KEY_CONFIGURED info on a repeat); after
//                            the last package the module is READY
//   TDH.SYS.TDMR.INIT (36)   RCX = TDMR base (0); initialises the PAMT a chunk per call
//                            (config tdmr_init_chunk_bytes) and returns RDX = the address up
//                            to which the TDMR is initialised; call again until RDX = end.
//                            Until then an explicit HPA operand not below RDX is outside
//                            the TDMR: TDX_OPERAND_ADDR_RANGE_ERROR|operand.
//
// Pages given to the module: the TDR is re-keyed to the global private HKID, TDCS, TDVPR
// and TDCX pages to the TD's HKID, and filled with that key (HostMemory::set_key, fill),
// so the host reads only ciphertext. RECLAIM returns a page to PT_NDA and leaves its key
// and dirty lines alone, as hardware does: the host must TDH.PHYMEM.PAGE.WBINVD (or the TD's
// CACHE.WB must have run) before reusing it, else the platform records the stale reuse.
//
// Thread safety: seamcall() may run on every logical CPU at once. The module never blocks
// or spins: contention answers TDX_OPERAND_BUSY|operand at once. Locks, as the module's:
// PAMT entry locks (TDR, TDVPR, the page operands; see td.h for what they guard), the KOT
// lock (TryLock, BUSY|KOT), a per-package CACHE.WB lock (BUSY|WBCACHE), the SYS lock
// (TDX_SYS_BUSY) and the TDMR lock (BUSY|TDMR). The registries (Td by TDR frame, Vcpu by
// TDVPR frame) are a map under registry_mu_, held only for the lookup itself; an object
// found is used only while its PAMT lock is held, which is what keeps it alive.
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <initializer_list>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/addr.h"
#include "base/atomic.h"
#include "base/lock.h"
#include "base/trace.h"
#include "base/try_lock.h"
#include "platform/key_id.h"
#include "platform/lazy_words.h"
#include "platform/logical_cpu.h"
#include "platform/platform.h"
#include "platform/scripted_guest.h"
#include "platform/seamcall.h"
#include "tdx_module/pamt.h"
#include "tdx_module/seamcall_leaf.h"
#include "tdx_module/sept_entry_lock.h"
#include "tdx_module/sept_walk.h"
#include "tdx_module/td.h"
#include "tdx_module/tdx_status.h"
#include "tdx_module/try_lock_guard.h"

namespace tdxsim {

// Metadata field IDs tdxsim's TDH.VP.RD/WR know (Linux arch/x86/kvm/vmx/tdx_arch.h:
// TDVPS_VMCS(field) = class 0 << 56 | the VMCS encoding). ABI values.
namespace vp_field {
// TD VMCS SHARED_EPT_POINTER (VMCS encoding 0x203C): KVM writes the shared EPT root here.
inline constexpr uint64_t kSharedEptp = 0x203C;
}  // namespace vp_field

// A leaf holds the locks it needs and is about to act (emitted on `TdxModule::locks_held`).
// Tests attach here to issue a conflicting SEAMCALL from another CPU at exactly this point,
// which makes the module's BUSY answers deterministic to provoke.
struct LocksHeld {
  SeamcallLeaf leaf;
  Hpa tdr;
};

// TDG.MEM.PAGE.ACCEPT succeeded: the page (4K or 2M at `gpa`) is the TD's, all zeros.
// Emitted on the vCPU's thread before the TDCALL returns to the guest.
struct PageAccepted {
  Hpa tdr;
  Gpa gpa;
  Level level;
};

struct TdxModuleConfig {
  // The private HKIDs (IA32_TME_ACTIVATE's TDX key range); the global private HKID that
  // TDH.SYS.CONFIG names is one of them. REQUIRES: 1 <= first <= last <= layout max.
  uint16_t first_private_hkid = 32;
  uint16_t last_private_hkid = 63;
  // TDCS pages a TD needs (TDH.SYS.RD TDCS_BASE_SIZE / 4K): 1.5.01's MIN_NUM_TDCS_PAGES is
  // 6 (9 with three L2 VMs, not modelled), so 6 is both the minimum and the maximum.
  unsigned tdcs_pages = 6;
  // TDVPS pages a vCPU needs: the TDVPR plus tdvps_pages - 1 TDCX pages (1.5.01
  // MIN_TDVPS_PAGES = 6 without L2 VMs).
  unsigned tdvps_pages = 6;
  // Bytes TDH.SYS.TDMR.INIT initialises per call (the module: 1 GiB).
  uint64_t tdmr_init_chunk_bytes = uint64_t{1} << 30;
};

class TdxModule : public SeamModule {
 public:
  // REQUIRES: config's HKID range inside the platform's key ID layout (checked).
  explicit TdxModule(Platform& platform, const TdxModuleConfig& config = {});
  ~TdxModule() override;
  TdxModule(const TdxModule&) = delete;
  TdxModule& operator=(const TdxModule&) = delete;

  // SEAM mode: decodes RAX, runs the leaf, leaves the status in RAX and outputs in GPRs.
  void seamcall(LogicalCpu& cpu, SeamcallRegs& regs) override;

  // --- Simulation hooks (not ABI) -------------------------------------------------------------
  // Attaches the guest code a vCPU runs from its next TDH.VP.ENTER on (nullptr: a program
  // that halts at once), and how many instructions it may retire per entry before an
  // external-interrupt exit stands in for the host's timer tick (0: until something else
  // makes it exit — a kick, an exit the host must handle).
  // REQUIRES: no SEAMCALL on that vCPU in flight (the fields are the TDVPR lock's).
  // Returns: false when no vCPU has that TDVPR.
  bool attach_guest(Hpa tdvpr, GuestProgram* program, uint32_t instruction_budget = 4096);

  // --- Read-only introspection for tests ------------------------------------------------------
  // Snapshots taken without the module's PAMT locks. REQUIRES: no SEAMCALL on that TD (or
  // vCPU) in flight; nullopt when no TD has that TDR (no vCPU that TDVPR).
  const Pamt& pamt() const { return pamt_; }
  const TdxModuleConfig& config() const { return config_; }
  bool sys_ready() const;
  bool tdmr_initialized() const;
  std::optional<TdLifecycle> td_lifecycle(Hpa tdr) const;
  std::optional<TdOpState> td_op_state(Hpa tdr) const;
  std::optional<uint64_t> td_child_count(Hpa tdr) const;
  // Whether the TD is FATAL (Td::fatal).
  std::optional<bool> td_fatal(Hpa tdr) const;
  std::optional<VcpuState> vcpu_state(Hpa tdvpr) const;
  // The guest's registers and RIP, as the TDVPS holds them between entries.
  std::optional<GuestState> vcpu_guest_state(Hpa tdvpr) const;
  // TD_EPOCH, and MRTD once TDH.MR.FINALIZE ran (nullopt before; mem_leaves.cc).
  std::optional<uint64_t> td_epoch(Hpa tdr) const;
  std::optional<Sha384Digest> td_mrtd(Hpa tdr) const;
  // The LP a vCPU is associated with (kNoLp: none), and REFCOUNT[parity] of a TD.
  std::optional<uint32_t> vcpu_assoc_lp(Hpa tdvpr) const;
  std::optional<uint64_t> td_refcount(Hpa tdr, unsigned parity) const;
  // The S-EPT root page (TDCS page 3), once TDH.MNG.ADDCX added it.
  std::optional<Hpa> td_sept_root(Hpa tdr) const;
  size_t td_count() const;
  size_t vcpu_count() const;
  // See LocksHeld. Emitted by the memory leaves once their prefix holds the TDR, op_state and
  // tree locks (mem_begin), by TDH.MEM.TRACK holding the epoch lock exclusively, and by
  // TDH.VP.ENTER holding the zero-step tree lock.
  Tracepoint<LocksHeld> locks_held;
  Tracepoint<PageAccepted> page_accepted;

  KeyId global_hkid() const {
    return KeyId{static_cast<uint16_t>(global_hkid_.load(std::memory_order_acquire))};
  }

 private:
  // Key ownership table entry (module kot_entry_t): state, and the packages whose caches
  // still hold the HKID's lines after VPFLUSHDONE (WBINVD_BITMAP).
  enum class KotState : uint8_t { kFree, kAssigned, kFlushed, kReserved };
  struct KotEntry {
    KotState state = KotState::kFree;  // guarded by kot_lock_
    AtomicWord wbinvd_bitmap;          // bits cleared by CACHE.WB under kot_lock_ shared
  };
  // Per package: CACHE.WB's lock (module wbt_entries[pkg].entry_lock).
  struct PackageState {
    TryLock cache_wb_lock;
  };
  // Per logical CPU; touched only by SEAMCALLs on that LP, except lp_init (read by CONFIG).
  struct LpState {
    AtomicWord lp_init;  // TDH.SYS.LP.INIT done
    Pfn last_vcpu;       // TDVPR of the vCPU last run here (0: none)
  };
  // The SYS phase (module sysinit state), advanced under sys_lock_.
  enum class SysPhase : uint64_t { kInitPending = 0, kLpInit = 1, kConfigured = 2, kReady = 3 };

  using Check = std::expected<PamtLock, uint64_t>;

  uint64_t dispatch(LogicalCpu& cpu, SeamcallRegs& regs, LeafAndVersion lv);
  // The operand of a forced TDX_OPERAND_BUSY armed for `leaf` (consumed), if any.
  std::optional<uint64_t> forced_busy(SeamcallLeaf leaf);
  static bool allowed_before_ready(SeamcallLeaf leaf);

  // SYS leaves (sys_leaves.cc).
  uint64_t sys_init(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t sys_lp_init(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t sys_config(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t sys_key_config(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t sys_tdmr_init(LogicalCpu& cpu, SeamcallRegs& regs);
  // TD management (mng_leaves.cc).
  uint64_t mng_create(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mng_key_config(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mng_addcx(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mng_init(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mng_vpflushdone(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mng_key_freeid(LogicalCpu& cpu, SeamcallRegs& regs);
  // vCPU management (vp_leaves.cc).
  uint64_t vp_create(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t vp_addcx(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t vp_init(LogicalCpu& cpu, SeamcallRegs& regs, uint8_t version);
  uint64_t vp_rd_wr(LogicalCpu& cpu, SeamcallRegs& regs, bool write);
  uint64_t vp_flush(LogicalCpu& cpu, SeamcallRegs& regs);
  // What a vCPU leaf holds once its prefix passed: the TDVPR, the owner TDR (shared), and
  // the op_state lock (shared).
  struct VpOp {
    std::optional<PamtLock> tdvpr;
    std::optional<PamtLock> tdr;
    Td* td = nullptr;
    Vcpu* vcpu = nullptr;
    TryLockGuard op_state;
  };
  // The prefix the vCPU leaves share, in the module's order: the TDVPR operand (format,
  // range, PAMT type, locked as asked), its owner TDR implicitly and shared, then the TD's
  // state with op_state in `allowed` (check_td_state). Returns: raw(kSuccess) with `op`
  // filled, or the status (what `op` holds is released with it).
  uint64_t vp_begin(uint64_t tdvpr, TdxOperand operand, bool tdvpr_exclusive,
                    std::initializer_list<TdOpState> allowed, VpOp& op);
  // TD entry and exit (vp_enter.cc).
  uint64_t vp_enter(LogicalCpu& cpu, SeamcallRegs& regs);
  // Runs the entered vCPU until a TD exit, whose registers it leaves in `regs`.
  void run_td_guest(LogicalCpu& cpu, Td& td, Vcpu& vcpu, SeamcallRegs& regs);
  // A private-GPA EPT violation: a #VE for a PENDING page (unless SEPT_VE_DISABLE), else a
  // TD exit the zero-step detector counts. Returns: true for a TD exit (regs filled).
  bool handle_private_ept_violation(Td& td, Vcpu& vcpu, GuestProgram& program, const VmExit& x,
                                    SeamcallRegs& regs);
  // Whether the host has done its part for `gpa`: a MAPPED or PENDING leaf (a walk, no
  // lock). A PENDING page no longer gives the host a fault to resolve: the guest takes a
  // #VE, or KVM sees the fatal PENDING exit. Chosen where the sheets are silent (abi.md).
  // Returns: nullopt when the walk consumed poison (the TD is then fatal).
  std::optional<bool> private_gpa_host_mapped(Td& td, Gpa gpa);
  // The exit of TDG.VP.VMCALL: RAX = 77, RCX = the mask, the guest's exposed GPRs.
  void enter_vmcall_exit(Vcpu& vcpu, SeamcallRegs& regs, uint16_t gpr_mask);
  // The guest's TDCALLs (tdcall_leaves.cc). handle_tdcall returns true for a TD exit.
  bool handle_tdcall(Td& td, Vcpu& vcpu, const VmExit& x, SeamcallRegs& regs);
  // Returns: the status for the guest's RAX, or nullopt for the ACCEPT TD exit (in regs).
  std::optional<uint64_t> tdg_mem_page_accept(Td& td, Vcpu& vcpu, SeamcallRegs& regs);
  // Physical memory (phymem_leaves.cc).
  uint64_t phymem_cache_wb(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t phymem_page_reclaim(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t phymem_page_wbinvd(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t phymem_page_rdmd(LogicalCpu& cpu, SeamcallRegs& regs);
  // S-EPT memory leaves (mem_leaves.cc).
  uint64_t mem_sept_add(LogicalCpu& cpu, SeamcallRegs& regs, uint8_t version);
  uint64_t mem_sept_add_body(SeamcallRegs& regs, uint8_t version, bool allow_existing,
                             const std::array<uint64_t, 4>& pages,
                             std::array<uint64_t, 4>& flagged);
  uint64_t mem_page_aug(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mem_sept_rd(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mem_range_block(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mem_range_unblock(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mem_track(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mem_page_remove(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mem_sept_remove(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mem_page_add(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mr_extend(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mr_finalize(LogicalCpu& cpu, SeamcallRegs& regs);
  // Splitting, merging and moving private pages (mem_resize_leaves.cc).
  uint64_t mem_page_demote(LogicalCpu& cpu, SeamcallRegs& regs);
  uint64_t mem_page_promote(LogicalCpu& cpu, SeamcallRegs& regs, uint8_t version);
  uint64_t mem_page_relocate(LogicalCpu& cpu, SeamcallRegs& regs);
  // A debug TD's private memory and a TD's metadata (debug_leaves.cc).
  uint64_t mem_rd_wr(LogicalCpu& cpu, SeamcallRegs& regs, bool write);
  uint64_t mng_rd_wr(LogicalCpu& cpu, SeamcallRegs& regs, bool write, uint8_t version);

  // What a GPA leaf holds once its common prefix (mem_begin) passed: the TDR, the
  // op_state lock, the S-EPT tree lock in the leaf's mode, and the walk's result; after
  // mem_begin_entry also the walked entry's lock. Members release in reverse order: the
  // entry first, the TDR last.
  struct MemOp {
    std::optional<PamtLock> tdr;
    Td* td = nullptr;
    TryLockGuard op_state;
    TryLockGuard tree;
    PageInfo page_info;
    SeptWalkResult walk;
    std::optional<SeptEntryLock> entry;
  };
  enum class TreeLock : uint8_t { kNone, kShared, kExclusive };
  // The prefix every host GPA leaf shares (rules §1, A1), in the module's order: RCX/RDX
  // cleared; RDX, the TD handle (format, then PT_TDR locked); the TD's state and op_state;
  // RCX, the page info (format and level range, then private GPA); the tree lock; the walk
  // to the requested level. On EPT_WALK_FAILED, RCX/RDX hold the stopping entry's details.
  // Returns: raw(kSuccess) with `op` filled, or the status (what `op` holds is released
  // when it is destroyed, before the leaf returns).
  uint64_t mem_begin(SeamcallRegs& regs, SeamcallLeaf leaf, bool handle_has_flag,
                     bool tdr_exclusive, std::initializer_list<TdOpState> allowed, TreeLock tree,
                     MemOp& op);
  // The prefix of every host leaf that locks the entry it acts on, TDR shared and op_state
  // INITIALIZED or RUNNABLE: mem_begin (`handle_has_flag`: RDX bit 0 is the leaf's flag,
  // SEPT.ADD and DEMOTE); then the host-side entry lock into op.entry (taken: BUSY|RCX with
  // the entry as walked, having asked for host priority); then the leaf's row of the S-EPT
  // state table (refused: EPT_ENTRY_STATE_INCORRECT|RCX with the entry's details).
  // `if_blocked` (RANGE.BLOCK): an entry already in a blocked state answers it, with
  // details, before the table (rules A16).
  // Returns: raw(kSuccess) with op.entry holding the lock, or the status.
  uint64_t mem_begin_entry(SeamcallRegs& regs, SeamcallLeaf leaf, MemOp& op,
                           TreeLock tree = TreeLock::kShared, bool handle_has_flag = false,
                           std::optional<TdxStatus> if_blocked = std::nullopt);

  // --- Helpers (tdx_module.cc) ------------------------------------------------------------
  // The PAMT entry of what S-EPT entry `e` at `level` maps — the page at the leaf's size, or
  // a non-leaf's child S-EPT page — locked in the asked mode. The S-EPT and the PAMT agree
  // by construction: a page of another type there is a simulator bug (checked).
  // Returns: the lock, or BUSY|RCX.
  std::expected<PamtLock, uint64_t> lock_mapped(SeptEntry e, Level level, bool exclusive);
  // What PAGE.REMOVE, SEPT.REMOVE, RELOCATE, DEMOTE and PROMOTE do after the prefix: lock
  // what the locked entry maps (lock_mapped), then require it blocked and its block tracked
  // while the TD may run (check_blocked_and_tracked, mem_leaf_checks.h).
  // Returns: the lock, or the status (RCX/RDX set as that check sets them).
  std::expected<PamtLock, uint64_t> lock_blocked_and_tracked(SeamcallRegs& regs, const MemOp& op,
                                                             bool exclusive);
  // An explicit 4K HPA operand (module check_and_lock_explicit_4k_private_hpa): format,
  // inside the initialised TDMR, PAMT walk/lock, type `expected`.
  Check check_page(uint64_t hpa, PamtPageType expected, TdxOperand op, bool exclusive);
  // The first two of those checks alone (RECLAIM, RDMD walk to whatever page is there):
  // 4K aligned, no HKID bits, below MAX_PA (else OPERAND_INVALID|op), then inside the
  // initialised TDMR (else OPERAND_ADDR_RANGE_ERROR|op). Returns: raw(kSuccess) or the error.
  uint64_t check_hpa_format_and_range(uint64_t hpa, TdxOperand op) const;
  // The owner TDR of a locked TDVPR/TDCX page (module lock_and_map_implicit_tdr).
  // Returns: the lock, or BUSY|TDR.
  Check lock_implicit_tdr(Pfn tdr, bool exclusive);
  // The TD-state checks every TDCS leaf starts with (module check_state_map_tdcs_and_lock):
  // lifecycle KEYS_CONFIGURED, TDCS pages all added, op_state_lock in the asked mode, then
  // op_state in `allowed`. On success `op_state_guard` holds op_state_lock.
  uint64_t check_td_state(Td& td, bool lock_exclusive, std::initializer_list<TdOpState> allowed,
                          TryLockGuard& op_state_guard);
  // The module consumed poison in one of `td`'s pages (a SeptWalkResult::machine_check, or a
  // page HostMemory::consumes_poison says its read would): the machine check kills the TD.
  // Returns: TDX_TD_FATAL, what the leaf answers.
  uint64_t td_machine_check(Td& td);
  // The same while one of its vCPUs runs: the TD exit that reports it, in `regs`
  // (TDX_NON_RECOVERABLE_TD, what TDH.VP.ENTER returns for a TD marked fatal).
  void td_fatal_exit(Td& td, SeamcallRegs& regs);
  // Re-keys a frame the module takes over and initialises it with that key.
  void take_page(Pfn pfn, KeyId key, uint64_t fill);
  Td* find_td(Pfn tdr) const;
  Vcpu* find_vcpu(Pfn tdvpr) const;
  // The TD / vCPU of a PT_TDR / PT_TDVPR page the caller holds locked: the PAMT type says
  // it exists, so a missing one is a simulator bug (checked).
  Td& locked_td(const PamtLock& tdr) const;
  Vcpu& locked_vcpu(const PamtLock& tdvpr) const;
  Td& add_td(std::unique_ptr<Td> td);
  Vcpu& add_vcpu(std::unique_ptr<Vcpu> vcpu);
  void erase_td(Pfn tdr);
  void erase_vcpu(Pfn tdvpr);
  bool is_private_hkid(uint64_t hkid) const;
  uint64_t all_packages_mask() const;
  // Inline: every memory leaf asks for it several times.
  const PhysAddrLayout& layout() const { return platform_.memory().layout(); }

  Platform& platform_;
  const TdxModuleConfig config_;
  Pamt pamt_;
  LazyWords control_objects_;  // see set_control_object

  TryLock sys_lock_;
  AtomicWord sys_phase_;                // SysPhase; release-stored under sys_lock_
  AtomicWord global_hkid_;              // set by TDH.SYS.CONFIG
  uint64_t sys_key_config_bitmap_ = 0;  // guarded by sys_lock_
  TryLock tdmr_lock_;
  AtomicWord tdmr_initialized_bytes_;  // release-stored under tdmr_lock_

  TryLock kot_lock_;
  std::vector<KotEntry> kot_;  // indexed by HKID
  std::vector<PackageState> packages_;
  std::vector<LpState> lps_;

  // What a vCPU with no program attached runs: HLT at once.
  ScriptedGuest idle_program_{{}};

  // The Td or Vcpu of each PT_TDR / PT_TDVPR frame, by frame number: what the module finds
  // in the page itself. Read by locked_td/locked_vcpu holding the page's PAMT lock, which
  // orders them after the store, made under the same lock when the page was assigned or
  // reclaimed; so every leaf finds its TD without a shared lock of its own.
  void set_control_object(uint64_t pfn, const void* object);

  mutable Mutex registry_mu_{"tdx_module.registry"};
  std::unordered_map<uint64_t, std::unique_ptr<Td>> tds_ TDXSIM_GUARDED_BY(registry_mu_);
  std::unordered_map<uint64_t, std::unique_ptr<Vcpu>> vcpus_ TDXSIM_GUARDED_BY(registry_mu_);
};

}  // namespace tdxsim
