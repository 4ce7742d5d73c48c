// KvmMmu: the x86 MMU of one VM (arch/x86/kvm/mmu/mmu.c) — the page-fault handler, the
// per-vCPU root load, and the arch hooks through which generic KVM asks for zaps. It decides
// what to map and what to zap; the TDP MMU (tdp_mmu.h) does the tables, and a TD's private
// memory is reached only through the PrivateMemPath (private_mem.h).
//
// The zap rules (seed 001, kvm-tdx-mmu.md §1.9–1.10), by who asks:
//   memslot deleted or moved   private and shared (a default VM with the SLOT_ZAP_ALL quirk
//                              instead fast-zaps every direct root)
//   MMU notifier               shared only: private memory has no userspace mapping
//   conversion to shared       private only;   conversion to private: shared only
//   guest_memfd punch          private only
//   MTRR, CR0.CD, APICv        not supported for TDs (refused, nothing zapped)
//   non-coherent DMA change    shared only for TDs; private mappings are always WB
// A VM without a mirror (default, software-protected) keeps every mapping in its direct
// roots, so there each rule zaps the range in them.
//
// Thread safety: page_fault() and load()/unload() run on vCPU threads concurrently with each
// other and with the hooks generic KVM calls (each under the lock arch_hooks.h names).
// A VcpuMmu belongs to its vCPU's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "kvm/arch_hooks.h"
#include "kvm/kvm.h"
#include "kvm/mmu_vendor_ops.h"
#include "kvm/page_fault.h"
#include "kvm/private_mem.h"
#include "kvm/tdp_mmu.h"

namespace tdxsim {

struct KvmMmuConfig {
  // 4- or 5-level TDP.
  Level root_level = Level::k512G;
  // KVM_X86_QUIRK_SLOT_ZAP_ALL (default VMs only; on by default as in KVM).
  bool quirk_slot_zap_all = true;
  unsigned yield_every = 512;
  // The SPTE format; KvmVm::create sets the vendor's (KvmX86Ops::spte_format).
  SpteFormat spte_format = SpteFormat::kEpt;
};

// What kvm_mmu_page_fault ends in.
struct FaultResult {
  RetPf ret = RetPf::kInvalid;
  // Set with ret == kInvalid when KVM_RUN would return an error (EFAULT with a memory-fault
  // exit, EFAULT for an unmapped host address, ENOMEM).
  std::optional<Errno> error;
  std::optional<MemoryFaultExit> memory_fault;
};

// The per-vCPU part (struct kvm_mmu): the direct root the vCPU runs on. The mirror root is
// the VM's (see mirror_private_mem.h).
struct VcpuMmu {
  int vcpu_id = 0;
  MmuPage* root = nullptr;
};

// What made generic-x86 code ask for kvm_zap_gfn_range.
enum class GfnZapCause : uint8_t { kMtrr, kCr0Cd, kApicv, kNoncoherentDma };

class KvmMmu final : public KvmArchHooks {
 public:
  // Registers with kvm.set_arch(). For a TD, the shared bit (gfn_direct_bits) is bit 47 of
  // the GPA with 4-level TDP and bit 51 with 5-level (TDX_SHARED_BIT_PWL_4/5).
  // REQUIRES: kvm and ops outlive the MMU.
  KvmMmu(Kvm& kvm, MmuVendorOps& ops, const KvmMmuConfig& config);
  // VM destruction: every root invalidated and zapped under the write lock (the private
  // path retiring its mappings first). REQUIRES: every VcpuMmu unloaded.
  ~KvmMmu() override;
  KvmMmu(const KvmMmu&) = delete;
  KvmMmu& operator=(const KvmMmu&) = delete;

  Kvm& kvm() const { return kvm_; }
  TdpMmu& tdp_mmu() { return *tdp_; }
  const TdpMmu& tdp_mmu() const { return *tdp_; }
  // Null for VMs whose private memory (if any) lives in the direct roots.
  PrivateMemPath* private_path() { return private_.get(); }
  Gfn gfn_direct_bits() const { return gfn_direct_bits_; }
  const MmuStats& stats() const { return tdp_->stats(); }

  // kvm_mmu_load: make the private path usable and give the vCPU a valid direct root
  // (replacing an obsolete one). ENOMEM when host memory is exhausted.
  // REQUIRES: mmu_lock not held.
  KvmResult<> load(VcpuMmu& vcpu);
  // kvm_mmu_unload: drop the vCPU's root.
  void unload(VcpuMmu& vcpu);

  // kvm_mmu_page_fault for a TDP (EPT-violation or #NPF) fault at `gpa`, direct bits
  // included. With kPferrRsvd (an NPT walk found one of KVM's MMIO SPTEs) the SPTE alone
  // decides first (handle_mmio_page_fault): emulate if it is an MMIO SPTE of the current
  // memslot generation, retry if it is gone, else the ordinary fault rebuilds it.
  // The private-access bit is what the vendor's EPT-violation handler adds (TDX: the GPA
  // lacks the shared bit; software-protected VMs: the gfn's attribute is private); a caller
  // need not pass it. kRetry: the vCPU re-enters and faults again (after load() if its root
  // became obsolete). REQUIRES: `vcpu` loaded; mmu_lock not held.
  FaultResult page_fault(VcpuMmu& vcpu, Gpa gpa, uint64_t error_code);

  // Whether `gpa` is mapped by a present leaf (kvm_tdp_mmu_gpa_is_mapped), choosing the
  // private path for a TD's private GPA. REQUIRES: mmu_lock held.
  bool gpa_is_mapped(const VcpuMmu& vcpu, Gpa gpa) const;

  // Called by page_fault() between the pfn lookup and taking mmu_lock, the window a racing
  // invalidation must be caught in: tests put the race there deterministically.
  // REQUIRES: no fault in flight while it is set.
  void set_fault_tracepoint(std::function<void(const KvmPageFault&)> fn) {
    fault_tracepoint_ = std::move(fn);
  }

  // kvm_zap_gfn_range from an MTRR, CR0.CD, APICv or non-coherent DMA change.
  // EOPNOTSUPP for a TD on the first three (their state is the guest's own). Takes mmu_lock.
  KvmResult<> zap_gfn_range(Gfn start, Gfn end, GfnZapCause cause);

  // --- KvmArchHooks -------------------------------------------------------------------------
  KvmResult<> prepare_memory_region(const Memslot* old, const Memslot* new_slot,
                                    MemslotChange change) override;
  void commit_memory_region(const Memslot* old, const Memslot* new_slot,
                            MemslotChange change) override;
  void enable_log_dirty_pt_masked(const Memslot& slot, Gfn base, uint64_t mask) override;
  void sync_dirty_log(const Memslot& slot) override;
  void flush_shadow_memslot(const Memslot& slot) override;
  void flush_shadow_all() override;
  // kvm_mmu_invalidate_mmio_sptes: when the generation's MMIO bits wrap, an old MMIO SPTE
  // could look current again, so every direct root goes (fast zap), for a TD too.
  void memslots_updated(uint64_t gen) override;
  bool unmap_gfn_range(const GfnRange& range) override;
  bool age_gfn(const GfnRange& range) override;
  bool test_age_gfn(const GfnRange& range) override;
  bool pre_set_memory_attributes(const GfnRange& range) override;
  bool post_set_memory_attributes(const GfnRange& range) override;
  void flush_remote_tlbs() override;

 private:
  // kvm_mmu_faultin_pfn: slot, pfn and max level, or an outcome that ends the fault here.
  std::optional<FaultResult> faultin_pfn(KvmPageFault& fault);
  // handle_mmio_page_fault: kEmulate or kRetry, or nullopt for an MMIO SPTE of an older
  // memslot generation (upstream's RET_PF_INVALID: take the ordinary fault path).
  std::optional<RetPf> handle_mmio_page_fault(const VcpuMmu& vcpu, Gpa gpa) const;
  std::optional<FaultResult> faultin_pfn_private(KvmPageFault& fault);
  FaultResult memory_fault_exit(const KvmPageFault& fault);
  // kvm_mmu_max_mapping_level: the largest level at most `backing` whose aligned range lies
  // in the slot, lines up with the host mapping (shared memory), and, for a private-capable
  // VM, has one attribute throughout.
  Level max_mapping_level(const KvmPageFault& fault, Level backing) const;
  bool is_page_fault_stale(const VcpuMmu& vcpu, const KvmPageFault& fault) const;
  // Whether a bug-catalogue switch is on for this VM's platform.
  bool bug(BugId id) const;
  // Whether the CPU logs dirty pages for this VM (PML): dirty logging clears D instead of
  // write-protecting.
  bool pml();
  // make_mmu_pages_available: the shadow MMU's reserve of page-table pages before a fault
  // builds any. REQUIRES (lockdep, warned): mmu_lock held for write.
  void make_mmu_pages_available(int vcpu_id);
  // kvm_unmap_gfn_range's body with the reason counted; emits range_zapped before returning.
  bool zap_range(const GfnRange& range, uint8_t filter, ZapReason reason, bool flush);
  // kvm_mmu_zap_all_fast: invalidate every direct root, zap them under the read lock.
  void zap_all_fast();

  Kvm& kvm_;
  MmuVendorOps& ops_;
  const KvmMmuConfig config_;
  const Gfn gfn_direct_bits_;
  std::unique_ptr<TdpMmu> tdp_;
  std::unique_ptr<PrivateMemPath> private_;
  std::function<void(const KvmPageFault&)> fault_tracepoint_;
};

}  // namespace tdxsim
