#include "kvm/mmu_vendor_ops.h"

#include "base/check.h"

namespace tdxsim {

// A VM without external tables never has a mirror root, so reaching these is a KVM bug.
KvmResult<> MmuVendorOps::link_external_spt(Kvm*, Gfn gfn, Level level, Hpa) {
  TDXSIM_CHECK(false, "link_external_spt({}, {}) without an external-table vendor", gfn,
               level_name(level));
  return std::unexpected(Errno::kEio);
}

KvmResult<> MmuVendorOps::set_external_spte(Kvm*, Gfn gfn, Level level, Pfn) {
  TDXSIM_CHECK(false, "set_external_spte({}, {}) without an external-table vendor", gfn,
               level_name(level));
  return std::unexpected(Errno::kEio);
}

KvmResult<> MmuVendorOps::free_external_spt(Kvm*, Gfn gfn, Level level, Hpa) {
  TDXSIM_CHECK(false, "free_external_spt({}, {}) without an external-table vendor", gfn,
               level_name(level));
  return std::unexpected(Errno::kEio);
}

KvmResult<> MmuVendorOps::remove_external_spte(Kvm*, Gfn gfn, Level level, Pfn) {
  TDXSIM_CHECK(false, "remove_external_spte({}, {}) without an external-table vendor", gfn,
               level_name(level));
  return std::unexpected(Errno::kEio);
}

bool MmuVendorOps::flush_remote_tlbs(Kvm*) {
  return false;
}

bool MmuVendorOps::flush_remote_tlbs_range(Kvm*, Gfn, uint64_t) {
  return false;
}

void MmuVendorOps::load_mmu_pgd(Kvm*, int, Hpa, Level) {}

void MmuVendorOps::flush_tlb_current(Kvm*, int) {}

unsigned MmuVendorOps::cpu_dirty_log_size(Kvm*) {
  return 0;
}

Level MmuVendorOps::private_max_mapping_level(Kvm*, Pfn) {
  return Level::k1G;
}

}  // namespace tdxsim
