#include "tdxsim/seamcall.h"

#include "platform/platform.h"

namespace tdxsim {

namespace {

// The operand registers a wrapper fills; the rest go in as zero.
struct In {
  uint64_t rcx = 0, rdx = 0, r8 = 0, r9 = 0;
};

// Which output register feeds an out-parameter.
enum class Out : uint8_t { kRcx, kRdx, kR8, kR9 };

uint64_t call(LogicalCpu& cpu, SeamcallLeaf leaf, const In& in, SeamcallRegs& regs,
              uint8_t version = 0) {
  regs.rcx = in.rcx;
  regs.rdx = in.rdx;
  regs.r8 = in.r8;
  regs.r9 = in.r9;
  return seamcall(cpu, leaf, regs, version);
}

void put(const SeamcallRegs& regs, Out reg, uint64_t* out) {
  if (out == nullptr) return;
  switch (reg) {
    case Out::kRcx:
      *out = regs.rcx;
      break;
    case Out::kRdx:
      *out = regs.rdx;
      break;
    case Out::kR8:
      *out = regs.r8;
      break;
    case Out::kR9:
      *out = regs.r9;
      break;
  }
}

uint64_t call(LogicalCpu& cpu, SeamcallLeaf leaf, const In& in) {
  SeamcallRegs regs;
  return call(cpu, leaf, in, regs);
}

// A leaf whose only outputs are RCX and RDX (the S-EPT leaves' extended error).
uint64_t call_rcx_rdx(LogicalCpu& cpu, SeamcallLeaf leaf, const In& in, uint64_t* rcx,
                      uint64_t* rdx) {
  SeamcallRegs regs;
  const uint64_t status = call(cpu, leaf, in, regs);
  put(regs, Out::kRcx, rcx);
  put(regs, Out::kRdx, rdx);
  return status;
}

uint64_t call_r8(LogicalCpu& cpu, SeamcallLeaf leaf, const In& in, uint64_t* r8) {
  SeamcallRegs regs;
  const uint64_t status = call(cpu, leaf, in, regs);
  put(regs, Out::kR8, r8);
  return status;
}

}  // namespace

uint64_t seamcall(LogicalCpu& cpu, SeamcallLeaf leaf, SeamcallRegs& regs, uint8_t version) {
  regs.rax = LeafAndVersion::of(leaf, version).raw();
  return host_seamcall(cpu, regs);
}

// --- TDH.SYS.* ---

uint64_t tdh_sys_init(LogicalCpu& cpu, uint64_t attributes) {
  return call(cpu, SeamcallLeaf::kSysInit, {.rcx = attributes});
}

uint64_t tdh_sys_lp_init(LogicalCpu& cpu) {
  return call(cpu, SeamcallLeaf::kSysLpInit, {});
}

uint64_t tdh_sys_config(LogicalCpu& cpu, Hpa tdmr_info_list, uint64_t num_tdmrs,
                        KeyId global_private_hkid) {
  return call(cpu, SeamcallLeaf::kSysConfig,
              {.rcx = tdmr_info_list.raw(), .rdx = num_tdmrs, .r8 = global_private_hkid.raw()});
}

uint64_t tdh_sys_key_config(LogicalCpu& cpu) {
  return call(cpu, SeamcallLeaf::kSysKeyConfig, {});
}

uint64_t tdh_sys_tdmr_init(LogicalCpu& cpu, Hpa tdmr_base, uint64_t* next) {
  SeamcallRegs regs;
  const uint64_t status = call(cpu, SeamcallLeaf::kSysTdmrInit, {.rcx = tdmr_base.raw()}, regs);
  put(regs, Out::kRdx, next);
  return status;
}

// --- TDH.MNG.* ---

uint64_t tdh_mng_create(LogicalCpu& cpu, Hpa tdr, KeyId hkid) {
  return call(cpu, SeamcallLeaf::kMngCreate, {.rcx = tdr.raw(), .rdx = hkid.raw()});
}

uint64_t tdh_mng_key_config(LogicalCpu& cpu, Hpa tdr) {
  return call(cpu, SeamcallLeaf::kMngKeyConfig, {.rcx = tdr.raw()});
}

uint64_t tdh_mng_addcx(LogicalCpu& cpu, Hpa tdr, Hpa tdcs_page) {
  return call(cpu, SeamcallLeaf::kMngAddcx, {.rcx = tdcs_page.raw(), .rdx = tdr.raw()});
}

uint64_t tdh_mng_init(LogicalCpu& cpu, Hpa tdr, Hpa td_params, uint64_t* ext_err) {
  SeamcallRegs regs;
  const uint64_t status =
      call(cpu, SeamcallLeaf::kMngInit, {.rcx = tdr.raw(), .rdx = td_params.raw()}, regs);
  put(regs, Out::kRcx, ext_err);
  return status;
}

uint64_t tdh_mng_vpflushdone(LogicalCpu& cpu, Hpa tdr) {
  return call(cpu, SeamcallLeaf::kMngVpflushdone, {.rcx = tdr.raw()});
}

uint64_t tdh_mng_key_freeid(LogicalCpu& cpu, Hpa tdr) {
  return call(cpu, SeamcallLeaf::kMngKeyFreeid, {.rcx = tdr.raw()});
}

uint64_t tdh_mng_key_reclaimid(LogicalCpu& cpu, Hpa tdr) {
  return call(cpu, SeamcallLeaf::kMngKeyReclaimid, {.rcx = tdr.raw()});
}

uint64_t tdh_mng_rd(LogicalCpu& cpu, Hpa tdr, uint64_t field, uint64_t* data) {
  return call_r8(cpu, SeamcallLeaf::kMngRd, {.rcx = tdr.raw(), .rdx = field}, data);
}

uint64_t tdh_mng_wr(LogicalCpu& cpu, Hpa tdr, uint64_t field, uint64_t data, uint64_t mask,
                    uint64_t* old) {
  return call_r8(cpu, SeamcallLeaf::kMngWr,
                 {.rcx = tdr.raw(), .rdx = field, .r8 = data, .r9 = mask}, old);
}

// --- TDH.VP.* ---

uint64_t tdh_vp_create(LogicalCpu& cpu, Hpa tdr, Hpa tdvpr) {
  return call(cpu, SeamcallLeaf::kVpCreate, {.rcx = tdvpr.raw(), .rdx = tdr.raw()});
}

uint64_t tdh_vp_addcx(LogicalCpu& cpu, Hpa tdvpr, Hpa tdcx_page) {
  return call(cpu, SeamcallLeaf::kVpAddcx, {.rcx = tdcx_page.raw(), .rdx = tdvpr.raw()});
}

uint64_t tdh_vp_init(LogicalCpu& cpu, Hpa tdvpr, uint64_t initial_rcx) {
  return call(cpu, SeamcallLeaf::kVpInit, {.rcx = tdvpr.raw(), .rdx = initial_rcx});
}

uint64_t tdh_vp_init(LogicalCpu& cpu, Hpa tdvpr, uint64_t initial_rcx, uint32_t x2apic_id) {
  SeamcallRegs regs;
  return call(cpu, SeamcallLeaf::kVpInit, {.rcx = tdvpr.raw(), .rdx = initial_rcx, .r8 = x2apic_id},
              regs, /*version=*/1);
}

uint64_t tdh_vp_rd(LogicalCpu& cpu, Hpa tdvpr, uint64_t field, uint64_t* data) {
  return call_r8(cpu, SeamcallLeaf::kVpRd, {.rcx = tdvpr.raw(), .rdx = field}, data);
}

uint64_t tdh_vp_wr(LogicalCpu& cpu, Hpa tdvpr, uint64_t field, uint64_t data, uint64_t mask,
                   uint64_t* old) {
  return call_r8(cpu, SeamcallLeaf::kVpWr,
                 {.rcx = tdvpr.raw(), .rdx = field, .r8 = data, .r9 = mask}, old);
}

uint64_t tdh_vp_flush(LogicalCpu& cpu, Hpa tdvpr) {
  return call(cpu, SeamcallLeaf::kVpFlush, {.rcx = tdvpr.raw()});
}

uint64_t tdh_vp_enter(LogicalCpu& cpu, Hpa tdvpr, SeamcallRegs& regs) {
  regs.rcx = tdvpr.raw();
  return seamcall(cpu, SeamcallLeaf::kVpEnter, regs);
}

// --- TDH.PHYMEM.* ---

uint64_t tdh_phymem_cache_wb(LogicalCpu& cpu, bool resume) {
  return call(cpu, SeamcallLeaf::kPhymemCacheWb, {.rcx = resume ? 1u : 0u});
}

uint64_t tdh_phymem_page_reclaim(LogicalCpu& cpu, Hpa page, uint64_t* page_type, uint64_t* owner,
                                 uint64_t* size) {
  SeamcallRegs regs;
  const uint64_t status = call(cpu, SeamcallLeaf::kPhymemPageReclaim, {.rcx = page.raw()}, regs);
  put(regs, Out::kRcx, page_type);
  put(regs, Out::kRdx, owner);
  put(regs, Out::kR8, size);
  return status;
}

uint64_t tdh_phymem_page_wbinvd(LogicalCpu& cpu, Hpa page, KeyId hkid) {
  const PhysAddrLayout& layout = cpu.platform().memory().layout();
  return call(cpu, SeamcallLeaf::kPhymemPageWbinvd, {.rcx = layout.with_key(page, hkid)});
}

uint64_t tdh_phymem_page_rdmd(LogicalCpu& cpu, Hpa page, uint64_t* page_type, uint64_t* owner,
                              uint64_t* size, uint64_t* bepoch) {
  SeamcallRegs regs;
  const uint64_t status = call(cpu, SeamcallLeaf::kPhymemPageRdmd, {.rcx = page.raw()}, regs);
  put(regs, Out::kRcx, page_type);
  put(regs, Out::kRdx, owner);
  put(regs, Out::kR8, size);
  put(regs, Out::kR9, bepoch);
  return status;
}

// --- TDH.MEM.*, TDH.MR.* ---

uint64_t tdh_mem_sept_add(LogicalCpu& cpu, Hpa tdr, PageInfo page_info, Hpa sept_page,
                          uint64_t* ext_err1, uint64_t* ext_err2) {
  return call_rcx_rdx(cpu, SeamcallLeaf::kMemSeptAdd,
                      {.rcx = page_info.raw(), .rdx = tdr.raw(), .r8 = sept_page.raw()}, ext_err1,
                      ext_err2);
}

uint64_t tdh_mem_page_aug(LogicalCpu& cpu, Hpa tdr, PageInfo page_info, Hpa page,
                          uint64_t* ext_err1, uint64_t* ext_err2) {
  return call_rcx_rdx(cpu, SeamcallLeaf::kMemPageAug,
                      {.rcx = page_info.raw(), .rdx = tdr.raw(), .r8 = page.raw()}, ext_err1,
                      ext_err2);
}

uint64_t tdh_mem_sept_rd(LogicalCpu& cpu, Hpa tdr, PageInfo page_info, uint64_t* entry,
                         uint64_t* level_state) {
  return call_rcx_rdx(cpu, SeamcallLeaf::kMemSeptRd, {.rcx = page_info.raw(), .rdx = tdr.raw()},
                      entry, level_state);
}

uint64_t tdh_mem_range_block(LogicalCpu& cpu, Hpa tdr, PageInfo page_info, uint64_t* ext_err1,
                             uint64_t* ext_err2) {
  return call_rcx_rdx(cpu, SeamcallLeaf::kMemRangeBlock, {.rcx = page_info.raw(), .rdx = tdr.raw()},
                      ext_err1, ext_err2);
}

uint64_t tdh_mem_range_unblock(LogicalCpu& cpu, Hpa tdr, PageInfo page_info, uint64_t* ext_err1,
                               uint64_t* ext_err2) {
  return call_rcx_rdx(cpu, SeamcallLeaf::kMemRangeUnblock,
                      {.rcx = page_info.raw(), .rdx = tdr.raw()}, ext_err1, ext_err2);
}

uint64_t tdh_mem_track(LogicalCpu& cpu, Hpa tdr) {
  return call(cpu, SeamcallLeaf::kMemTrack, {.rcx = tdr.raw()});
}

uint64_t tdh_mem_page_remove(LogicalCpu& cpu, Hpa tdr, PageInfo page_info, uint64_t* ext_err1,
                             uint64_t* ext_err2) {
  return call_rcx_rdx(cpu, SeamcallLeaf::kMemPageRemove, {.rcx = page_info.raw(), .rdx = tdr.raw()},
                      ext_err1, ext_err2);
}

uint64_t tdh_mem_sept_remove(LogicalCpu& cpu, Hpa tdr, PageInfo page_info, uint64_t* ext_err1,
                             uint64_t* ext_err2) {
  return call_rcx_rdx(cpu, SeamcallLeaf::kMemSeptRemove, {.rcx = page_info.raw(), .rdx = tdr.raw()},
                      ext_err1, ext_err2);
}

uint64_t tdh_mem_page_add(LogicalCpu& cpu, Hpa tdr, Gpa gpa, Hpa page, Hpa source,
                          uint64_t* ext_err1, uint64_t* ext_err2) {
  return call_rcx_rdx(cpu, SeamcallLeaf::kMemPageAdd,
                      {.rcx = gpa.raw(), .rdx = tdr.raw(), .r8 = page.raw(), .r9 = source.raw()},
                      ext_err1, ext_err2);
}

uint64_t tdh_mr_extend(LogicalCpu& cpu, Hpa tdr, Gpa gpa, uint64_t* ext_err1, uint64_t* ext_err2) {
  return call_rcx_rdx(cpu, SeamcallLeaf::kMrExtend, {.rcx = gpa.raw(), .rdx = tdr.raw()}, ext_err1,
                      ext_err2);
}

uint64_t tdh_mr_finalize(LogicalCpu& cpu, Hpa tdr) {
  return call(cpu, SeamcallLeaf::kMrFinalize, {.rcx = tdr.raw()});
}

uint64_t tdh_mem_page_demote(LogicalCpu& cpu, Hpa tdr, PageInfo page_info, Hpa sept_page,
                             uint64_t* ext_err1, uint64_t* ext_err2) {
  return call_rcx_rdx(cpu, SeamcallLeaf::kMemPageDemote,
                      {.rcx = page_info.raw(), .rdx = tdr.raw(), .r8 = sept_page.raw()}, ext_err1,
                      ext_err2);
}

uint64_t tdh_mem_page_promote(LogicalCpu& cpu, Hpa tdr, PageInfo page_info, uint64_t* ext_err1,
                              uint64_t* ext_err2) {
  return call_rcx_rdx(cpu, SeamcallLeaf::kMemPagePromote,
                      {.rcx = page_info.raw(), .rdx = tdr.raw()}, ext_err1, ext_err2);
}

uint64_t tdh_mem_page_relocate(LogicalCpu& cpu, Hpa tdr, Gpa gpa, Hpa target, uint64_t* ext_err1,
                               uint64_t* ext_err2) {
  return call_rcx_rdx(cpu, SeamcallLeaf::kMemPageRelocate,
                      {.rcx = gpa.raw(), .rdx = tdr.raw(), .r8 = target.raw()}, ext_err1, ext_err2);
}

uint64_t tdh_mem_rd(LogicalCpu& cpu, Hpa tdr, Gpa gpa, uint64_t* data) {
  return call_r8(cpu, SeamcallLeaf::kMemRd, {.rcx = gpa.raw(), .rdx = tdr.raw()}, data);
}

uint64_t tdh_mem_wr(LogicalCpu& cpu, Hpa tdr, Gpa gpa, uint64_t data, uint64_t* old) {
  return call_r8(cpu, SeamcallLeaf::kMemWr, {.rcx = gpa.raw(), .rdx = tdr.raw(), .r8 = data}, old);
}

}  // namespace tdxsim
