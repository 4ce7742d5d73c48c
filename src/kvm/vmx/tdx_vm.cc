// A TD's creation and destruction: vm_init, KVM_TDX_INIT_VM, KVM_TDX_INIT_MEM_REGION,
// KVM_TDX_FINALIZE_VM, HKID release and the reclaim of the control pages
// (kvm-tdx-mmu.md §2.3, §2.8, §2.9).
#include <fmt/format.h>

#include "base/check.h"
#include "base/fault_injection.h"
#include "kvm/vmx/tdx.h"
#include "tdx_module/tdx_status.h"
#include "tdxsim/seamcall.h"

namespace tdxsim {

namespace {

// TDX_EXTENDMR_CHUNKSIZE: TDH.MR.EXTEND measures 256 bytes a call.
constexpr uint64_t kExtendMrChunk = 256;
// tdx_mmu_release_hkid gives TDH.PHYMEM.CACHE.WB this many resumptions per package.
constexpr unsigned kCacheWbMaxTries = 10000;

}  // namespace

// --- Helpers shared by the TDX files ------------------------------------------------------------

TdxVm& TdxOps::to_tdx(const Kvm* kvm) {
  TDXSIM_CHECK(kvm->vm() != nullptr && kvm->vm()->vendor() != nullptr,
               "a TDX hook for a Kvm without a TD");
  return kvm->vm()->vendor_as<TdxVm>();
}

LogicalCpu& TdxOps::current_cpu(const char* what) {
  LogicalCpu* cpu = this_cpu();
  TDXSIM_CHECK(cpu != nullptr, "{} issues SEAMCALLs: the calling thread must be bound to a CPU",
               what);
  return *cpu;
}

uint64_t TdxOps::note(TdxVm& td, SeamcallLeaf leaf, uint64_t status, Gfn gfn,
                      const LogicalCpu* cpu) {
  const size_t i = static_cast<size_t>(leaf) % kNumSeamcallLeaves;
  td.stats_.calls[i].add();
  const TdxStatus st = status_of(status);
  if (st == TdxStatus::kOperandBusy) {
    td.stats_.busy[i].add();
  } else if (st != TdxStatus::kSuccess) {
    td.stats_.errors[i].add();
  }
  const auto event = [&] {
    const LogicalCpu* on = cpu != nullptr ? cpu : this_cpu();
    return TdxSeamcallEvent{td.tdr_, leaf, status, gfn, on != nullptr ? on->id() : ~0u};
  };
  seamcall_trace.emit_lazy(event);
  switch (leaf) {
    case SeamcallLeaf::kMemSeptAdd:
    case SeamcallLeaf::kMemPageAdd:
    case SeamcallLeaf::kMemPageAug:
    case SeamcallLeaf::kMemRangeBlock:
    case SeamcallLeaf::kMemRangeUnblock:
    case SeamcallLeaf::kMemTrack:
    case SeamcallLeaf::kMemPageRemove:
    case SeamcallLeaf::kMemSeptRemove:
    case SeamcallLeaf::kMrFinalize:
      sept_seamcall_trace.emit_lazy(event);
      break;
    default:
      break;
  }
  return status;
}

std::optional<Hpa> TdxOps::alloc_page() {
  const std::optional<Pfn> p = host_.platform().memory().alloc_frame();
  if (!p) return std::nullopt;
  return p->hpa();
}

void TdxOps::free_frame(Hpa page) {
  host_.platform().memory().free_frame(page.pfn());
}

void TdxOps::clear_page(Pfn pfn) {
  // MOVDIR64B through the host key's mapping: the frame is the host's again, its TD
  // contents and integrity state gone.
  HostMemory& mem = host_.platform().memory();
  mem.set_key(pfn, kHostKey);
  mem.fill(pfn, kHostKey, 0);
}

bool TdxOps::reclaim_page(TdxVm& td, LogicalCpu& cpu, Hpa page, std::optional<KeyId> wbinvd_key) {
  const uint64_t s = note(td, SeamcallLeaf::kPhymemPageReclaim, tdh_phymem_page_reclaim(cpu, page));
  if (s != 0) {
    td.stats_.pages_leaked.add();
    return false;
  }
  if (wbinvd_key) {
    const uint64_t w =
        note(td, SeamcallLeaf::kPhymemPageWbinvd, tdh_phymem_page_wbinvd(cpu, page, *wbinvd_key));
    if (w != 0) {
      td.stats_.pages_leaked.add();
      return false;
    }
  }
  clear_page(page.pfn());
  return true;
}

// --- Creation -------------------------------------------------------------------------------

KvmResult<> TdxOps::vm_init(KvmVm& vm) {
  if (vm.kvm().type() != VmType::kTdx) return std::unexpected(Errno::kEinval);
  // tdxsim's TDs use 4-level S-EPT (GPAW 48): the shared bit is GPA bit 47.
  if (vm.config().mmu.root_level != Level::k512G) return std::unexpected(Errno::kEinval);
  vm.set_vendor(std::make_unique<TdxVm>(vm));
  return {};
}

KvmResult<> TdxOps::init_vm(KvmVm& vm, const TdParams& params, uint64_t* hw_error) {
  TdxVm& td = to_tdx(vm);
  if (td.state() != TdState::kUninitialized || td.td_created_) {
    return std::unexpected(Errno::kEinval);
  }
  if (vm.online_vcpus() != 0) return std::unexpected(Errno::kEinval);
  LogicalCpu& cpu = current_cpu("KVM_TDX_INIT_VM");

  const std::optional<KeyId> hkid = host_.keyid_alloc();
  if (!hkid) return std::unexpected(Errno::kEagain);
  const std::optional<Hpa> tdr = alloc_page();
  const std::optional<Hpa> params_page = alloc_page();
  if (!tdr || !params_page) {
    if (tdr) free_frame(*tdr);
    if (params_page) free_frame(*params_page);
    host_.keyid_free(*hkid);
    return std::unexpected(Errno::kEnomem);
  }
  td.tdr_ = *tdr;
  td.has_tdr_ = true;
  // Freed (and the HKID too) by the teardown below on any failure from here on.
  td.hkid_.store(hkid->raw(), std::memory_order_release);
  // TDCS pages join tdcs_ once TDH.MNG.ADDCX gave them to the module.
  std::vector<Hpa> tdcs;
  const auto fail = [&](Errno e) -> KvmResult<> {
    free_frame(*params_page);
    for (Hpa p : tdcs) free_frame(p);
    release_hkid(vm);
    free_td_control_pages(vm);
    return std::unexpected(e);
  };
  for (unsigned i = 0; i < host_.module().config().tdcs_pages; ++i) {
    const std::optional<Hpa> p = alloc_page();
    if (!p) return fail(Errno::kEnomem);
    tdcs.push_back(*p);
  }

  {
    MutexLock l(host_.tdx_lock());
    const uint64_t s = note(td, SeamcallLeaf::kMngCreate, tdh_mng_create(cpu, td.tdr_, *hkid));
    if (s != 0) {
      return fail(status_of(s) == TdxStatus::kRndNoEntropy ? Errno::kEagain : Errno::kEio);
    }
    td.td_created_ = true;
    // TDH.MNG.KEY.CONFIG programs the key into each package's memory controller: on one
    // CPU of every package (smp_call_on_cpu).
    uint64_t key_status = 0;
    for (unsigned leader : host_.package_leaders()) {
      host_.platform().cpu(leader).run_on(
          [&](LogicalCpu& on) {
            const uint64_t k =
                note(td, SeamcallLeaf::kMngKeyConfig, tdh_mng_key_config(on, td.tdr_), Gfn{0}, &on);
            if (k != 0 && key_status == 0) key_status = k;
          },
          &cpu);
    }
    if (key_status != 0) {
      return fail(status_of(key_status) == TdxStatus::kRndNoEntropy ? Errno::kEagain : Errno::kEio);
    }
  }
  while (!tdcs.empty()) {
    if (note(td, SeamcallLeaf::kMngAddcx, tdh_mng_addcx(cpu, td.tdr_, tdcs.front())) != 0) {
      return fail(Errno::kEio);
    }
    td.tdcs_.push_back(tdcs.front());
    tdcs.erase(tdcs.begin());
  }
  write_td_params(host_.platform().memory(), *params_page, params);
  uint64_t ext = 0;
  const uint64_t s =
      note(td, SeamcallLeaf::kMngInit, tdh_mng_init(cpu, td.tdr_, *params_page, &ext));
  if (s != 0) {
    if (hw_error != nullptr) *hw_error = s;
    return fail(status_of(s) == TdxStatus::kOperandInvalid ? Errno::kEinval : Errno::kEio);
  }
  free_frame(*params_page);
  td.state_.store(TdState::kInitialized, std::memory_order_release);
  return {};
}

KvmResult<> TdxOps::init_mem_region(KvmVcpu& vcpu, Gpa gpa, std::span<const Hpa> sources,
                                    bool measure, uint64_t* pages_done) {
  KvmVm& vm = vcpu.vm();
  TdxVm& td = to_tdx(vm);
  TdxVcpu& tdx = to_tdx(vcpu);
  if (pages_done != nullptr) *pages_done = 0;
  if (tdx.state_ != VcpuTdState::kInitialized || td.state() != TdState::kInitialized) {
    return std::unexpected(Errno::kEinval);
  }
  const Gfn direct_bits = vm.mmu().gfn_direct_bits();
  if (sources.empty() || !gpa.is_aligned(Level::k4K) ||
      ((gpa.gfn() + (sources.size() - 1)).raw() & direct_bits.raw()) != 0 ||
      (gpa.gfn().raw() & direct_bits.raw()) != 0) {
    return std::unexpected(Errno::kEinval);
  }
  LogicalCpu& cpu = current_cpu("KVM_TDX_INIT_MEM_REGION");
  Kvm& kvm = vm.kvm();
  MutexLock slots(kvm.slots_lock());
  // kvm_mmu_reload.
  if (KvmResult<> r = vm.mmu().load(vcpu.mmu()); !r) return r;
  for (size_t i = 0; i < sources.size(); ++i) {
    const Gpa page_gpa = gpa + i * kPageSize;
    // kvm_tdp_map_page: the mirror leaf (its set hook only counts nr_premapped).
    FaultResult f = vm.mmu().page_fault(vcpu.mmu(), page_gpa, kPferrWrite | kPferrPrivateAccess);
    while (f.ret == RetPf::kRetry) {
      if (kvm.vm_bugged()) return std::unexpected(Errno::kEio);
      if (vcpu.signal_pending()) return std::unexpected(Errno::kEintr);
      if (KvmResult<> r = vm.mmu().load(vcpu.mmu()); !r) return r;
      f = vm.mmu().page_fault(vcpu.mmu(), page_gpa, kPferrWrite | kPferrPrivateAccess);
    }
    if (f.ret != RetPf::kFixed && f.ret != RetPf::kSpurious) {
      return std::unexpected(f.error.value_or(Errno::kEio));
    }
    std::optional<Spte> leaf;
    {
      ReadLock l(kvm.mmu_lock());
      leaf = vm.mmu().private_path()->walk(page_gpa.gfn());
    }
    if (kvm.bug_on(!leaf, "KVM_TDX_INIT_MEM_REGION: the mirror lost the page it just mapped")) {
      return std::unexpected(Errno::kEio);
    }
    uint64_t e1 = 0, e2 = 0;
    const uint64_t s =
        note(td, SeamcallLeaf::kMemPageAdd,
             tdh_mem_page_add(cpu, td.tdr_, page_gpa, leaf->pfn().hpa(), sources[i], &e1, &e2),
             page_gpa.gfn());
    if (s != 0) {
      // The mirror leaf must not outlive the PAGE.ADD that failed: the S-EPT has nothing
      // there, and a later fault would take the leaf as done. Zapping it runs the removal
      // hook's premap path, which takes it back out of nr_premapped. T3 restores the
      // return that left it behind.
      if (!host_.platform().faults().bug(BugId::T3)) {
        WriteLock l(kvm.mmu_lock());
        (void)vm.mmu().private_path()->zap_range(page_gpa.gfn(), page_gpa.gfn() + 1,
                                                 ZapReason::kGmemPunch, /*flush=*/false);
      }
      if (status_of(s) == TdxStatus::kOperandBusy) return std::unexpected(Errno::kEbusy);
      return std::unexpected(Errno::kEio);
    }
    if (kvm.bug_on(td.nr_premapped_.fetch_sub(1, std::memory_order_acq_rel) <= 0,
                   "nr_premapped went below zero")) {
      return std::unexpected(Errno::kEio);
    }
    if (measure) {
      for (uint64_t off = 0; off < kPageSize; off += kExtendMrChunk) {
        const uint64_t m = note(td, SeamcallLeaf::kMrExtend,
                                tdh_mr_extend(cpu, td.tdr_, page_gpa + off), page_gpa.gfn());
        if (kvm.bug_on(m != 0, "TDH.MR.EXTEND failed")) return std::unexpected(Errno::kEio);
      }
    }
    if (pages_done != nullptr) *pages_done = i + 1;
  }
  return {};
}

KvmResult<> TdxOps::finalize_vm(KvmVm& vm) {
  TdxVm& td = to_tdx(vm);
  if (!td.hkid_assigned() || td.state() != TdState::kInitialized) {
    return std::unexpected(Errno::kEinval);
  }
  LogicalCpu& cpu = current_cpu("KVM_TDX_FINALIZE_VM");
  MutexLock slots(vm.kvm().slots_lock());
  // A mirror leaf whose page was never TDH.MEM.PAGE.ADDed would be missing from the TD.
  if (td.nr_premapped() != 0) return std::unexpected(Errno::kEinval);
  const uint64_t s = note(td, SeamcallLeaf::kMrFinalize, tdh_mr_finalize(cpu, td.tdr_));
  if (status_of(s) == TdxStatus::kOperandBusy) return std::unexpected(Errno::kEbusy);
  if (vm.kvm().bug_on(s != 0, "TDH.MR.FINALIZE failed")) return std::unexpected(Errno::kEio);
  // Release: set_external_spte's acquire load then sees a finalized TD (smp_wmb).
  td.state_.store(TdState::kRunnable, std::memory_order_release);
  return {};
}

// --- Destruction ------------------------------------------------------------------------------

uint64_t TdxOps::flush_vp(TdxVm& td, TdxVcpu& tdx) {
  LogicalCpu* on = tdx.assoc_cpu_;
  if (on == nullptr || !tdx.vp_created_) return raw(TdxStatus::kVcpuNotAssociated);
  uint64_t s = 0;
  // tdx_flush_vp_on_cpu: the TD VMCS lives in the associated CPU's cache.
  on->run_on(
      [&](LogicalCpu& c) {
        s = note(td, SeamcallLeaf::kVpFlush, tdh_vp_flush(c, tdx.tdvpr_), Gfn{0}, &c);
      },
      this_cpu());
  if (s == 0 || status_of(s) == TdxStatus::kVcpuNotAssociated) tdx.assoc_cpu_ = nullptr;
  return s;
}

void TdxOps::release_hkid(KvmVm& vm) {
  TdxVm& td = to_tdx(vm);
  if (!td.hkid_assigned()) return;
  const KeyId hkid = td.hkid();
  if (!td.td_created_) {
    // MNG.CREATE never ran: the HKID was never the module's.
    td.hkid_.store(0, std::memory_order_release);
    host_.keyid_free(hkid);
    return;
  }
  LogicalCpu& cpu = current_cpu("tdx_mmu_release_hkid");
  for (KvmVcpu* vcpu : vm.vcpus()) {
    if (vcpu->vendor() == nullptr) continue;
    TdxVcpu& tdx = to_tdx(*vcpu);
    const uint64_t s = flush_vp(td, tdx);
    if (s != 0 && status_of(s) != TdxStatus::kVcpuNotAssociated) {
      vm.kvm().bug_on(true, "TDH.VP.FLUSH failed");
    }
  }
  MutexLock l(host_.tdx_lock());
  const uint64_t done = note(td, SeamcallLeaf::kMngVpflushdone, tdh_mng_vpflushdone(cpu, td.tdr_));
  if (done != 0) {
    // The HKID stays assigned (leaked): nothing the TD owns can be reclaimed.
    vm.kvm().bug_on(true, "TDH.MNG.VPFLUSHDONE failed: HKID leaked");
    return;
  }
  // TDH.PHYMEM.CACHE.WB writes back the TD's lines package by package.
  bool wb_ok = true;
  for (unsigned leader : host_.package_leaders()) {
    host_.platform().cpu(leader).run_on(
        [&](LogicalCpu& on) {
          uint64_t s =
              note(td, SeamcallLeaf::kPhymemCacheWb, tdh_phymem_cache_wb(on, false), Gfn{0}, &on);
          for (unsigned i = 0;
               status_of(s) == TdxStatus::kInterruptedResumable && i < kCacheWbMaxTries; ++i) {
            s = note(td, SeamcallLeaf::kPhymemCacheWb, tdh_phymem_cache_wb(on, true), Gfn{0}, &on);
          }
          if (s != 0 && status_of(s) != TdxStatus::kNoHkidReadyToWbcache) wb_ok = false;
        },
        &cpu);
  }
  if (!wb_ok) {
    vm.kvm().bug_on(true, "TDH.PHYMEM.CACHE.WB failed: HKID leaked");
    return;
  }
  const uint64_t f = note(td, SeamcallLeaf::kMngKeyFreeid, tdh_mng_key_freeid(cpu, td.tdr_));
  if (f != 0) {
    vm.kvm().bug_on(true, "TDH.MNG.KEY.FREEID failed: HKID leaked");
    return;
  }
  td.hkid_.store(0, std::memory_order_release);
  host_.keyid_free(hkid);
}

void TdxOps::vm_pre_destroy(KvmVm& vm) {
  release_hkid(vm);
}

void TdxOps::free_td_control_pages(KvmVm& vm) {
  TdxVm& td = to_tdx(vm);
  if (!td.has_tdr_) return;
  td.has_tdr_ = false;
  if (!td.td_created_) {
    // Never the module's: plain host pages.
    for (Hpa p : td.tdcs_) free_frame(p);
    free_frame(td.tdr_);
    td.tdcs_.clear();
    return;
  }
  if (td.hkid_assigned()) {
    // Reclaim would fail while the TD's key may still have lines cached: leak them all.
    td.stats_.pages_leaked.add(td.tdcs_.size() + 1);
    td.tdcs_.clear();
    return;
  }
  LogicalCpu& cpu = current_cpu("tdx_reclaim_td_control_pages");
  // TDCS pages were written back by CACHE.WB with the TD's HKID.
  for (Hpa p : td.tdcs_) {
    if (reclaim_page(td, cpu, p, std::nullopt)) free_frame(p);
  }
  td.tdcs_.clear();
  // The TDR is keyed with the global HKID, which CACHE.WB does not flush.
  if (reclaim_page(td, cpu, td.tdr_, host_.global_hkid())) free_frame(td.tdr_);
  td.td_created_ = false;
  td.state_.store(TdState::kUninitialized, std::memory_order_release);
}

void TdxOps::vm_destroy(KvmVm& vm) {
  // A creation that failed half-way already released the HKID.
  release_hkid(vm);
  free_td_control_pages(vm);
}

}  // namespace tdxsim
