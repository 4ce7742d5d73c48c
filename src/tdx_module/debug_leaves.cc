// The host's windows into a TD: TDH.MEM.RD / TDH.MEM.WR (8 bytes of a debug TD's private
// memory, with the TD's key) and TDH.MNG.RD / TDH.MNG.WR (TDCS metadata by field ID,
// td_metadata.h). Module handlers: intel/tdx-module src/vmm_dispatcher/api_calls/
// tdh_mem_rd_wr.c, tdh_mng_rd_wr.c; what the sheets leave open: docs/abi.md.
//
// Locking: the TDR shared and the op_state lock shared; MEM.RD/WR also the S-EPT tree lock
// shared and the host-side lock of the leaf entry, which keeps the page mapped (no BLOCK,
// REMOVE or RELOCATE can change the entry) while its word is accessed.
#include <atomic>
#include <optional>

#include "base/check.h"
#include "tdx_module/mem_leaf_checks.h"
#include "tdx_module/page_info.h"
#include "tdx_module/sept_entry_lock.h"
#include "tdx_module/sept_state.h"
#include "tdx_module/td_metadata.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {

uint64_t TdxModule::mem_rd_wr(LogicalCpu& /*cpu*/, SeamcallRegs& regs, bool write) {
  const Gpa gpa{regs.rcx};
  const TdHandle handle{regs.rdx};
  const uint64_t value = regs.r8;
  regs.rcx = regs.rdx = regs.r8 = 0;
  if (const uint64_t s = handle.check(/*leaf_has_flag=*/false, layout());
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  Check tdr = check_page(handle.tdr().raw(), PamtPageType::kTdr, TdxOperand::kRdx,
                         /*exclusive=*/false);
  if (!tdr) return tdr.error();
  Td& td = locked_td(*tdr);
  TryLockGuard op_state;
  if (const uint64_t s = check_td_state(td, /*lock_exclusive=*/false,
                                        {TdOpState::kInitialized, TdOpState::kRunnable}, op_state);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  // Only a TD built to be debugged lets the host see its plaintext.
  if (!td.debug()) return raw(TdxStatus::kTdNonDebug);
  // RCX is a bare GPA: 8-byte alignment here, the private-GPA rule only under the tree
  // lock, with the walk (module check_and_walk_private_gpa_to_leaf).
  if (gpa.raw() % 8 != 0) return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRcx);
  TryLockGuard tree;
  if (!tree.try_lock(td.sept_lock, /*exclusive=*/false)) {
    return with_operand(TdxStatus::kOperandBusy, TdxOperand::kSeptTree);
  }
  if (!is_valid_private_gpa(gpa, td.gpaw)) {
    return with_operand(TdxStatus::kOperandInvalid, TdxOperand::kRcx);
  }
  HostMemory& mem = platform_.memory();
  // The walk goes to whatever leaf maps the GPA; it fails on a non-leaf (FREE, NL_BLOCKED)
  // and on a leaf the guest could not access either (RWX = 0: PENDING, BLOCKED, ...).
  const SeptWalkResult w = sept_walk(mem, layout(), td.sept_root().hpa(), td.ept_levels, td.hkid,
                                     gpa, Level::k4K);
  if (w.machine_check) return td_machine_check(td);
  if (!w.entry.is_leaf() || SeptEntry::Rwx::get(w.entry.raw()) == 0) {
    return entry_error(regs, TdxStatus::kEptEntryNotPresent, w.entry, w.level, layout());
  }
  SeptEntryLock entry(mem, td.hkid, w.entry_hpa);
  if (!entry.try_lock(w.entry)) return entry_busy(regs, w, layout());
  const SeptEntry e = entry.value();
  if (!sept_leaf_allowed(write ? SeptLeaf::kMemWr : SeptLeaf::kMemRd, e.state())) {
    return entry_error(regs, TdxStatus::kEptEntryStateIncorrect, e, w.level, layout());
  }
  const Hpa word = e.hpa(layout()) + (gpa.raw() & (level_bytes(w.level) - 1));
  // Both read the word first (WR returns the old value).
  if (mem.consumes_poison(word.pfn(), td.hkid)) return td_machine_check(td);
  regs.r8 = mem.read(word, td.hkid).value;
  if (write) mem.write(word, td.hkid, value);
  return raw(TdxStatus::kSuccess);
}

uint64_t TdxModule::mng_rd_wr(LogicalCpu& /*cpu*/, SeamcallRegs& regs, bool write,
                              uint8_t version) {
  const uint64_t field = regs.rdx;
  // Version 1 of MNG.RD enumerates: RDX returns the next field ID (none until one is found).
  const bool enumerate = !write && version >= 1;
  if (enumerate) regs.rdx = kMdFieldIdNa;
  regs.r8 = 0;
  Check tdr = check_page(regs.rcx, PamtPageType::kTdr, TdxOperand::kRcx, /*exclusive=*/false);
  if (!tdr) return tdr.error();
  Td& td = locked_td(*tdr);
  TryLockGuard op_state;
  if (const uint64_t s = check_td_state(td, /*lock_exclusive=*/false,
                                        {TdOpState::kInitialized, TdOpState::kRunnable}, op_state);
      s != raw(TdxStatus::kSuccess)) {
    return s;
  }
  if (enumerate && is_null_field_id(field)) {
    regs.rdx = first_td_field();
    return raw(TdxStatus::kMetadataFirstFieldIdInContext);
  }
  const std::optional<uint64_t> current = read_td_field(td, field);
  if (!current) return raw(TdxStatus::kMetadataFieldIdIncorrect);
  // No field tdxsim knows is the host's to write: the module's host write mask is 0 for
  // them, which refuses any R9 mask (docs/abi.md).
  if (write) return raw(TdxStatus::kMetadataFieldNotWritable);
  if (enumerate) regs.rdx = next_td_field(field);
  regs.r8 = *current;
  return raw(TdxStatus::kSuccess);
}

}  // namespace tdxsim
