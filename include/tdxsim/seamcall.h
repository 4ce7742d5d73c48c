// The host's SEAMCALL interface: one raw entry point, and a wrapper per leaf for KVM's use.
//
// The wrappers are named and shaped like Linux's (arch/x86/virt/vmx/tdx/tdx.c): each returns
// the 64-bit completion status (TDX_SUCCESS is 0; TdxStatus and its helpers are in
// tdxsim/tdx_module.h) and hands the leaf's output registers back through pointer
// out-parameters. An out-parameter left nullptr is not written; one given is written
// whatever the status, with what the register holds on return, as Linux's helpers copy them
// (on an S-EPT error the module's entry details, on most other errors 0 or the register's
// input value). Operands carry their ABI type: Hpa for a page, PageInfo for GPA | level,
// KeyId for an HKID. Linux passes a struct tdx_td or tdx_vp where tdxsim passes the TDR or
// TDVPR page's HPA, and the level inside page_info. The register use of each leaf:
// shared/spec/tdx-module-abi.md §1.2.
//
// Every call runs on `cpu`, the logical CPU the calling thread is bound to (Platform::bind),
// as SEAMCALL is a CPU-local instruction; the CPU matters to the leaves that act per LP or
// per package (LP.INIT, KEY.CONFIG, CACHE.WB, VP.ENTER, VP.FLUSH).
//
// The S-EPT leaves' `ext_err1`/`ext_err2` are RCX/RDX: on an S-EPT state error the
// architectural S-EPT entry and level | state << 8 (abi §1.1); after a successful
// PAGE.REMOVE, SEPT.REMOVE, PROMOTE or RELOCATE, RCX is the HPA of the page the TD gave up.
//
// Leaves tdxsim's module does not dispatch yet answer TDX_OPERAND_INVALID|RAX
// (0xC000010000000000), as the module does for a leaf it lacks; their wrappers are here so
// that callers need not change when the module gains them (docs/progress.md lists which).
#pragma once

#include <cstdint>

#include "base/addr.h"
#include "platform/key_id.h"
#include "platform/logical_cpu.h"
#include "platform/seamcall.h"
#include "tdx_module/page_info.h"
#include "tdx_module/seamcall_leaf.h"

namespace tdxsim {

// --- Raw entry point ---------------------------------------------------------------------
// SEAMCALL with the registers as given (RAX = leaf | version << 16). Returns RAX; the
// outputs are left in `regs`. A SEAMCALL instruction failure returns Linux's class-0xFF
// status (linux_status::*) and leaves `regs` alone.
inline uint64_t seamcall(LogicalCpu& cpu, SeamcallRegs& regs) {
  return host_seamcall(cpu, regs);
}
// The same, with RAX set from `leaf` and `version`.
uint64_t seamcall(LogicalCpu& cpu, SeamcallLeaf leaf, SeamcallRegs& regs, uint8_t version = 0);

// --- Platform bring-up (TDH.SYS.*) ---------------------------------------------------------
uint64_t tdh_sys_init(LogicalCpu& cpu, uint64_t attributes = 0);
uint64_t tdh_sys_lp_init(LogicalCpu& cpu);
// tdxsim's one TDMR covers all host memory: it reads neither the list nor its entries.
uint64_t tdh_sys_config(LogicalCpu& cpu, Hpa tdmr_info_list, uint64_t num_tdmrs,
                        KeyId global_private_hkid);
uint64_t tdh_sys_key_config(LogicalCpu& cpu);
// `next`: RDX, the address up to which the TDMR is initialised; call again until it is
// the TDMR's end.
uint64_t tdh_sys_tdmr_init(LogicalCpu& cpu, Hpa tdmr_base, uint64_t* next = nullptr);

// --- TD management (TDH.MNG.*) --------------------------------------------------------------
uint64_t tdh_mng_create(LogicalCpu& cpu, Hpa tdr, KeyId hkid);
uint64_t tdh_mng_key_config(LogicalCpu& cpu, Hpa tdr);
uint64_t tdh_mng_addcx(LogicalCpu& cpu, Hpa tdr, Hpa tdcs_page);
// `td_params`: a host page written with write_td_params(). `ext_err`: RCX (the failing CPUID
// leaf/subleaf on a CPUID configuration error).
uint64_t tdh_mng_init(LogicalCpu& cpu, Hpa tdr, Hpa td_params, uint64_t* ext_err = nullptr);
uint64_t tdh_mng_vpflushdone(LogicalCpu& cpu, Hpa tdr);
uint64_t tdh_mng_key_freeid(LogicalCpu& cpu, Hpa tdr);
uint64_t tdh_mng_key_reclaimid(LogicalCpu& cpu, Hpa tdr);
// `data`: R8. Not dispatched yet.
uint64_t tdh_mng_rd(LogicalCpu& cpu, Hpa tdr, uint64_t field, uint64_t* data);
// `old`: R8, the field's previous value. Not dispatched yet.
uint64_t tdh_mng_wr(LogicalCpu& cpu, Hpa tdr, uint64_t field, uint64_t data, uint64_t mask,
                    uint64_t* old = nullptr);

// --- vCPU management and entry (TDH.VP.*) ------------------------------------------------------
uint64_t tdh_vp_create(LogicalCpu& cpu, Hpa tdr, Hpa tdvpr);
uint64_t tdh_vp_addcx(LogicalCpu& cpu, Hpa tdvpr, Hpa tdcx_page);
// Version 0: the guest's initial RCX only.
uint64_t tdh_vp_init(LogicalCpu& cpu, Hpa tdvpr, uint64_t initial_rcx);
// Version 1, as Linux calls it: also the vCPU's x2APIC ID (R8).
uint64_t tdh_vp_init(LogicalCpu& cpu, Hpa tdvpr, uint64_t initial_rcx, uint32_t x2apic_id);
// `data`: R8. Field IDs: vp_field::* (tdx_module/tdx_module.h).
uint64_t tdh_vp_rd(LogicalCpu& cpu, Hpa tdvpr, uint64_t field, uint64_t* data);
// `old`: R8, the field's previous value.
uint64_t tdh_vp_wr(LogicalCpu& cpu, Hpa tdvpr, uint64_t field, uint64_t data, uint64_t mask,
                   uint64_t* old = nullptr);
uint64_t tdh_vp_flush(LogicalCpu& cpu, Hpa tdvpr);
// Enters the vCPU on `cpu` and returns at its TD exit. `regs` goes both ways, as Linux's
// struct tdx_module_args does: in, the values a TDG.VP.VMCALL the guest made gets back (the
// GPRs it selected); out, the TD exit (abi §1.4: for an asynchronous exit RCX = exit
// qualification, RDX = extended exit qualification, R8 = GPA, R9 = interruption info; for
// TDG.VP.VMCALL RCX = the GPR mask and the selected GPRs). The wrapper sets RAX and RCX.
// Returns: TDX_SUCCESS | the VMX exit reason in bits 31:0 (td_exit_reason()), or the
// entry's error.
uint64_t tdh_vp_enter(LogicalCpu& cpu, Hpa tdvpr, SeamcallRegs& regs);
// The VMX basic exit reason of a TD exit (KVM: (u16)vp_enter_ret).
constexpr uint16_t td_exit_reason(uint64_t vp_enter_status) {
  return static_cast<uint16_t>(vp_enter_status);
}

// --- Physical memory (TDH.PHYMEM.*) ------------------------------------------------------------
// RCX = 0 to start, 1 to resume after TDX_INTERRUPTED_RESUMABLE.
uint64_t tdh_phymem_cache_wb(LogicalCpu& cpu, bool resume);
// `page_type`, `owner`, `size`: RCX (PAMT page type), RDX (owner TDR HPA), R8 (0 4K, 1 2M,
// 2 1G).
uint64_t tdh_phymem_page_reclaim(LogicalCpu& cpu, Hpa page, uint64_t* page_type = nullptr,
                                 uint64_t* owner = nullptr, uint64_t* size = nullptr);
// RCX = `page` with `hkid` in its key ID bits (Linux's tdh_phymem_page_wbinvd_tdr passes the
// global private HKID and the TDR, tdh_phymem_page_wbinvd_hkid a TD's HKID and page).
uint64_t tdh_phymem_page_wbinvd(LogicalCpu& cpu, Hpa page, KeyId hkid);
// As RECLAIM's, and `bepoch`: R9 (PT_REG and PT_EPT pages).
uint64_t tdh_phymem_page_rdmd(LogicalCpu& cpu, Hpa page, uint64_t* page_type = nullptr,
                              uint64_t* owner = nullptr, uint64_t* size = nullptr,
                              uint64_t* bepoch = nullptr);

// --- Secure EPT and private memory (TDH.MEM.*, TDH.MR.*) -------------------------------------
// Version 0; TDH.MEM.SEPT.ADD version 1 (ALLOW_EXISTING, L2 pages) goes through seamcall().
uint64_t tdh_mem_sept_add(LogicalCpu& cpu, Hpa tdr, PageInfo page_info, Hpa sept_page,
                          uint64_t* ext_err1 = nullptr, uint64_t* ext_err2 = nullptr);
uint64_t tdh_mem_page_aug(LogicalCpu& cpu, Hpa tdr, PageInfo page_info, Hpa page,
                          uint64_t* ext_err1 = nullptr, uint64_t* ext_err2 = nullptr);
// `entry`, `level_state`: RCX (the architectural S-EPT entry) and RDX (level | state << 8).
uint64_t tdh_mem_sept_rd(LogicalCpu& cpu, Hpa tdr, PageInfo page_info, uint64_t* entry,
                         uint64_t* level_state);
uint64_t tdh_mem_range_block(LogicalCpu& cpu, Hpa tdr, PageInfo page_info,
                             uint64_t* ext_err1 = nullptr, uint64_t* ext_err2 = nullptr);
uint64_t tdh_mem_range_unblock(LogicalCpu& cpu, Hpa tdr, PageInfo page_info,
                               uint64_t* ext_err1 = nullptr, uint64_t* ext_err2 = nullptr);
uint64_t tdh_mem_track(LogicalCpu& cpu, Hpa tdr);
uint64_t tdh_mem_page_remove(LogicalCpu& cpu, Hpa tdr, PageInfo page_info,
                             uint64_t* ext_err1 = nullptr, uint64_t* ext_err2 = nullptr);
uint64_t tdh_mem_sept_remove(LogicalCpu& cpu, Hpa tdr, PageInfo page_info,
                             uint64_t* ext_err1 = nullptr, uint64_t* ext_err2 = nullptr);
// `gpa` travels as given (RCX; a 4K page, level 0). `source`: a host page copied into `page`.
uint64_t tdh_mem_page_add(LogicalCpu& cpu, Hpa tdr, Gpa gpa, Hpa page, Hpa source,
                          uint64_t* ext_err1 = nullptr, uint64_t* ext_err2 = nullptr);
// `gpa`: a 256-byte chunk of a MAPPED page (KVM calls it 16 times per 4K page).
uint64_t tdh_mr_extend(LogicalCpu& cpu, Hpa tdr, Gpa gpa, uint64_t* ext_err1 = nullptr,
                       uint64_t* ext_err2 = nullptr);
uint64_t tdh_mr_finalize(LogicalCpu& cpu, Hpa tdr);
// Not dispatched yet.
uint64_t tdh_mem_page_demote(LogicalCpu& cpu, Hpa tdr, PageInfo page_info, Hpa sept_page,
                             uint64_t* ext_err1 = nullptr, uint64_t* ext_err2 = nullptr);
// Not dispatched yet.
uint64_t tdh_mem_page_promote(LogicalCpu& cpu, Hpa tdr, PageInfo page_info,
                              uint64_t* ext_err1 = nullptr, uint64_t* ext_err2 = nullptr);
// `gpa` travels as given (a 4K page); `target` replaces the page mapped there. Not
// dispatched yet.
uint64_t tdh_mem_page_relocate(LogicalCpu& cpu, Hpa tdr, Gpa gpa, Hpa target,
                               uint64_t* ext_err1 = nullptr, uint64_t* ext_err2 = nullptr);
// Debug TDs only. `data`: R8, the 8 bytes at `gpa`. Not dispatched yet.
uint64_t tdh_mem_rd(LogicalCpu& cpu, Hpa tdr, Gpa gpa, uint64_t* data);
// Debug TDs only. `old`: R8, the previous 8 bytes. Not dispatched yet.
uint64_t tdh_mem_wr(LogicalCpu& cpu, Hpa tdr, Gpa gpa, uint64_t data, uint64_t* old = nullptr);

}  // namespace tdxsim
