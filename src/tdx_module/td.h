// The TDX module's per-TD and per-vCPU state: what the module keeps in a TD's TDR and TDCS
// pages and in a vCPU's TDVPS (TDX module src/common/data_structures/td_control_structures.h,
// tdx_td_control_structures / tdvps; shared/spec/tdx-module-abi.md §7).
//
// tdxsim keeps these fields in C++ objects, not in the pages the host hands over: the pages
// are re-keyed and filled so the host sees only ciphertext (tdx_module.h), and their
// plaintext content is modelled here. A Td lives from TDH.MNG.CREATE until its TDR is
// reclaimed; a Vcpu from TDH.VP.CREATE until its TDVPR is reclaimed.
//
// Thread safety. The module's discipline, field by field:
//   - TDR fields (lifecycle, pkg_config_bitmap, tdcs_pages) are guarded by the TDR's PAMT
//     entry lock: read holding it in either mode, written holding it exclusively. Every
//     leaf that touches a TD takes that lock first (explicitly through an HPA operand, or
//     implicitly through the PAMT owner of a TDVPR/TDCX page), so the Td object itself is
//     only reached under it — RECLAIM of the TDR destroys it holding the lock exclusively.
//   - child_count: atomic (relaxed); VP.CREATE and VP.ADDCX add, RECLAIM subtracts, under
//     the TDR lock held *shared* (the module's lock xadd).
//   - TDCS configuration (attributes … td_ctls, secure_eptp) is written once by TDH.MNG.INIT
//     with the TDR held exclusively and op_state still UNINITIALIZED; every later reader holds
//     the TDR lock and has seen op_state ≥ INITIALIZED under it, so it reads a published value.
//   - op_state: written holding the TDR lock exclusively and op_state_lock exclusively;
//     read holding the TDR lock (either mode) and, where the module does, op_state_lock.
//   - num_vcpus, num_assoc_vcpus: atomic (relaxed): the bounded increment of TDH.VP.INIT
//     and the association count of VP.ENTER/VP.FLUSH happen under the TDR lock shared.
//   - notify_enables: atomic (relaxed): the host reads it (TDH.MNG.RD) while the guest may
//     write it.
//   - fatal: atomic; set by whichever leaf or TD exit consumed the poison, under the TDR lock
//     (either mode), read under it.
//   - td_epoch and refcount[2]: atomic; written under epoch_lock (MEM.TRACK exclusive,
//     VP.ENTER shared) — a later layer's leaves.
//   - sept_lock: the S-EPT tree lock (memory leaves, a later layer).
//   - measurement: written only with the TDR held exclusively (PAGE.ADD, MR.EXTEND,
//     MR.FINALIZE), as the module serialises them.
//   - Vcpu fields are guarded by the TDVPR's PAMT entry lock, as the TDR's are; the
//     owner Td is reached through it. TDH.VP.ENTER holds the TDVPR only *shared* (so that
//     TDH.VP.RD works on a running vCPU) and gets the rest of the TDVPS from the
//     association: assoc_lp is claimed by compare-and-swap, and only the SEAMCALL on the
//     associated LP goes on to touch state, guest_state, context, the VMCALL hand-off and
//     the zero-step detector. Leaves that write those hold the TDVPR exclusively, which
//     excludes a running entry.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "base/addr.h"
#include "base/atomic.h"
#include "base/try_lock.h"
#include "platform/eptp.h"
#include "platform/guest_context.h"
#include "platform/guest_program.h"
#include "platform/key_id.h"
#include "tdx_module/measurement.h"
#include "tdx_module/page_info.h"
#include "tdx_module/td_params.h"
#include "tdx_module/zero_step.h"

namespace tdxsim {

// TDR.LIFECYCLE_STATE (module td_lifecycle_state_t). ABI values.
enum class TdLifecycle : uint8_t {
  kHkidAssigned = 0,
  kKeysConfigured = 1,
  kBlocked = 2,
  kTeardown = 3,
};

// TDCS.OP_STATE (module include/auto_gen/op_state_lookup.h); 3-10 are migration states,
// not modelled. ABI values.
enum class TdOpState : uint8_t {
  kUninitialized = 0,
  kInitialized = 1,
  kRunnable = 2,
};

// TDVPS.MANAGEMENT.STATE: created by VP.CREATE (the module's VCPU_UNINITIALIZED), READY
// after VP.INIT, ACTIVE while in the guest, DISABLED after a non-recoverable error.
enum class VcpuState : uint8_t { kCreated = 0, kReady = 1, kActive = 2, kDisabled = 3 };

const char* to_string(TdLifecycle s);
const char* to_string(TdOpState s);
const char* to_string(VcpuState s);

// TDCS.TD_CTLS bit 0, PENDING_VE_DISABLE: TDH.MNG.INIT copies ATTRIBUTES.SEPT_VE_DISABLE
// into it (abi §8.3).
inline constexpr uint64_t kTdCtlsPendingVeDisable = uint64_t{1} << 0;

// TDCS page indices (module 1.5 td_control_structures.h, tdcs_page_index_t): ADDCX fills
// the MSR-bitmap page with ones and the S-EPT root with FREE entries, the others with 0.
inline constexpr size_t kTdcsMsrBitmapsPageIndex = 2;
inline constexpr size_t kTdcsSeptRootPageIndex = 3;

// TDVPS.ASSOC_LPID of a vCPU associated with no logical CPU (module VCPU_NO_LP, (uint32)-1).
inline constexpr uint32_t kNoLp = 0xFFFF'FFFF;

struct Td {
  Td(Pfn tdr_pfn, KeyId td_hkid) : tdr(tdr_pfn), hkid(td_hkid) {}
  Td(const Td&) = delete;
  Td& operator=(const Td&) = delete;

  const Pfn tdr;

  // --- TDR --------------------------------------------------------------------------------
  TdLifecycle lifecycle = TdLifecycle::kHkidAssigned;
  const KeyId hkid;               // the TD's private (ephemeral) HKID
  uint64_t pkg_config_bitmap = 0;  // bit p: TDH.MNG.KEY.CONFIG done on package p
  std::vector<Pfn> tdcs_pages;     // TDCX pages, in TDH.MNG.ADDCX order
  AtomicWord child_count;          // 4K pages the TD owns besides the TDR (CHLDCNT)

  // --- TDCS ----------------------------------------------------------------------------------
  TdOpState op_state = TdOpState::kUninitialized;
  TryLock op_state_lock;
  uint64_t attributes = 0;
  uint16_t max_vcpus = 0;
  Gpaw gpaw = Gpaw::k48;
  uint64_t config_flags = 0;  // TD_PARAMS.CONFIG_FLAGS as TDH.MNG.INIT accepted them
  uint64_t td_ctls = 0;       // TD_CTLS (kTdCtlsPendingVeDisable)
  unsigned ept_levels = 4;  // 4 or 5 (EPTP_CONTROLS.PWL + 1)
  Eptp secure_eptp;         // root = tdcs_pages[kTdcsSeptRootPageIndex]
  AtomicWord num_vcpus;      // vCPUs initialised by TDH.VP.INIT
  AtomicWord td_epoch;       // TD_EPOCH: 1 from TDH.MNG.INIT
  std::array<AtomicWord, 2> refcount;  // REFCOUNT[epoch & 1]: vCPUs in the TD per epoch parity
  TryLock epoch_lock;
  TryLock sept_lock;  // the S-EPT tree lock
  TdMeasurement measurement;
  AtomicWord num_assoc_vcpus;  // vCPUs associated with some LP
  AtomicWord notify_enables;   // NOTIFY_ENABLES: the guest's to write (TDG.VM.WR), 0 at start
  // FATAL: the module consumed poison in one of the TD's pages — a host wrote its S-EPT or
  // private memory with another key, and the read that followed was a machine check on
  // hardware. Set once (release), never cleared; check_td_state refuses every leaf that
  // would use the TD's memory or run it, the teardown leaves still work.
  AtomicWord fatal;

  bool sept_ve_disable() const { return (attributes & kTdAttrSeptVeDisable) != 0; }
  bool debug() const { return (attributes & kTdAttrDebug) != 0; }
  // REQUIRES: the TDCS pages up to the root were added (checked).
  Pfn sept_root() const;
};

struct Vcpu {
  Vcpu(Pfn tdvpr_pfn, Pfn owner_tdr) : tdvpr(tdvpr_pfn), tdr(owner_tdr) {}
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  const Pfn tdvpr;
  const Pfn tdr;  // the owner TD (also the TDVPR's PAMT owner)

  std::vector<Pfn> tdcx_pages;  // TDVPS pages after the TDVPR, in VP.ADDCX order
  VcpuState state = VcpuState::kCreated;
  std::atomic<uint32_t> assoc_lp{kNoLp};  // the LP whose caches may hold its TD context
  uint64_t vcpu_epoch = 0;    // the TD_EPOCH of the vCPU's last entry
  uint32_t vcpu_index = 0;    // order of TDH.VP.INIT among the TD's vCPUs
  uint32_t x2apic_id = 0;     // TDH.VP.INIT version 1, R8

  GuestState guest_state;  // initial RCX from TDH.VP.INIT's RDX
  GuestContext context;    // the TD VMCS: shared EPTP (TDH.VP.WR), S-EPTP, #VE controls
  VeInfoArea ve_info;
  GuestProgram* program = nullptr;  // attached by the simulation (TdxModule::attach_guest)
  uint32_t instruction_budget = 4096;  // per entry; see TdxModule::attach_guest

  // The last TD exit was TDG.VP.VMCALL: the next TDH.VP.ENTER hands the host's values of
  // the GPRs in this mask (RCX bits 15:0 of the call) back to the guest.
  bool in_vmcall = false;
  uint16_t vmcall_gpr_mask = 0;
  ZeroStepDetector zero_step;
};

}  // namespace tdxsim
