#include "vmm/vm.h"

#include <algorithm>

#include "base/check.h"
#include "base/rcu.h"
#include "kvm/memslot.h"
#include "kvm/vmx/tdx.h"
#include "platform/logical_cpu.h"
#include "platform/platform.h"
#include "tdx_module/td_params.h"

namespace tdxsim::vmm {

namespace {

// Runs `fn` bound to a CPU: the caller's own if it has one, else the VMM's main host CPU;
// and as an RCU reader (an ioctl may fault pages in through the MMU).
template <class Fn>
auto on_host_cpu(Machine& m, Fn&& fn) {
  RcuThread rcu;
  if (this_cpu() != nullptr) return fn();
  CpuBinding b = m.platform().bind(m.host_cpu(0));
  return fn();
}

// A memslot ioctl's effect on guest memory, bracketed for the checker: kSlotChanging before
// it for each range, kSlotChanged once it returned (either way).
class SlotChange {
 public:
  // `fresh`: kFreshShared | kFreshPrivate, what the ranges hold as zeros after.
  SlotChange(VmEvents& events, std::initializer_list<std::pair<Gpa, uint64_t>> ranges,
             uint64_t fresh = 0)
      : events_(events), ranges_(ranges), fresh_(fresh) {
    emit(VmMemoryOp::kSlotChanging, 0);
  }
  ~SlotChange() { emit(VmMemoryOp::kSlotChanged, fresh_); }
  SlotChange(const SlotChange&) = delete;
  SlotChange& operator=(const SlotChange&) = delete;

 private:
  void emit(VmMemoryOp op, uint64_t value) {
    for (const auto& [gpa, size] : ranges_) {
      events_.memory.emit_lazy([&] { return VmMemoryEvent{op, gpa, size, value, 0}; });
    }
  }
  VmEvents& events_;
  std::vector<std::pair<Gpa, uint64_t>> ranges_;
  uint64_t fresh_;
};

}  // namespace

// --- Vcpu ----------------------------------------------------------------------------------

Vcpu::Vcpu(Vm& vm, KvmVcpu& kvm_vcpu, unsigned index)
    : vm_(vm),
      kvm_vcpu_(kvm_vcpu),
      index_(index),
      cpu_(vm.machine().vcpu_cpu(index % vm.machine().vcpu_cpu_count())) {}

void Vcpu::set_guest(GuestProgram* program, uint32_t budget) {
  vm_.machine().kvm().ops().set_guest(kvm_vcpu_, program, budget);
}

KvmResult<> Vcpu::run() {
  RcuThread rcu;  // faults read memslots under RCU
  stats_.runs++;
  LogicalCpu* cur = this_cpu();
  if (cur != nullptr) {
    TDXSIM_CHECK(cur->id() == cpu_, "vCPU {} run from a thread bound to CPU {}, not {}", index_,
                 cur->id(), cpu_);
    return kvm_vcpu_.run(*cur);
  }
  CpuBinding b = vm_.machine().platform().bind(cpu_);
  return kvm_vcpu_.run(b.cpu());
}

VcpuStop Vcpu::run_to_ucall() {
  RcuThread rcu;
  CpuBinding b = vm_.machine().platform().bind(cpu_);
  for (;;) {
    stats_.runs++;
    const KvmResult<> r = kvm_vcpu_.run(b.cpu());
    if (std::optional<VcpuStop> stop = handle_exit(r)) return *stop;
  }
}

std::optional<VcpuStop> Vcpu::handle_exit(const KvmResult<>& r) {
  KvmRun& run = run_state();
  if (!r) {
    if (r.error() == Errno::kEfault && run.exit_reason == KvmExitReason::kMemoryFault) {
      // An implicit conversion: the guest accessed the page the other way round.
      stats_.memory_faults++;
      const MemoryFaultExit& mf = run.memory_fault;
      const bool to_private = (mf.flags & kMemoryExitFlagPrivate) != 0;
      // Already what the guest asked for: no conversion can help (a private access where no
      // guest_memfd backs the gfn, a deleted slot). QEMU gives up here too.
      if (vm_.kvm().mem_is_private(mf.gpa.gfn()) == to_private) {
        return VcpuStop{std::nullopt, r.error(), run.exit_reason};
      }
      const bool discard = vm_.shape().discard_on_conversion;
      const KvmResult<> c = to_private ? vm_.set_private(mf.gpa, mf.size, discard)
                                       : vm_.set_shared(mf.gpa, mf.size, discard);
      if (c) return std::nullopt;
      return VcpuStop{std::nullopt, c.error(), run.exit_reason};
    }
    if (r.error() == Errno::kEintr) stats_.eintr++;
    return VcpuStop{std::nullopt, r.error(), run.exit_reason};
  }
  switch (run.exit_reason) {
    case KvmExitReason::kHypercall: {
      if (run.hypercall.nr != kKvmHcMapGpaRange) {
        run.hypercall.ret = static_cast<uint64_t>(-static_cast<int64_t>(Errno::kEinval));
        return std::nullopt;
      }
      // An explicit conversion (MapGPA / KVM_HC_MAP_GPA_RANGE).
      stats_.map_gpa++;
      const Gpa gpa{run.hypercall.args[0]};
      const uint64_t size = run.hypercall.args[1] << kPageShift;
      const bool to_private = (run.hypercall.args[2] & kKvmMapGpaRangeEncrypted) != 0;
      const bool discard = vm_.shape().discard_on_conversion;
      const KvmResult<> c =
          to_private ? vm_.set_private(gpa, size, discard) : vm_.set_shared(gpa, size, discard);
      run.hypercall.ret = c ? 0 : static_cast<uint64_t>(-static_cast<int64_t>(c.error()));
      return std::nullopt;
    }
    case KvmExitReason::kMmio: {
      stats_.mmio++;
      if (run.mmio.is_write) {
        if (auto uc =
                guest::decode_ucall(run.mmio.phys_addr, run.mmio.data, vm_.flavour().ucall_gpa)) {
          stats_.ucalls++;
          return VcpuStop{*uc, std::nullopt, run.exit_reason};
        }
        return std::nullopt;  // no device: the write is dropped
      }
      run.mmio.data = ~uint64_t{0};  // no device: reads as all-ones
      return std::nullopt;
    }
    case KvmExitReason::kHlt:
      stats_.hlt++;
      return VcpuStop{std::nullopt, std::nullopt, run.exit_reason};
    default:
      return VcpuStop{std::nullopt, std::nullopt, run.exit_reason};
  }
}

// --- Vm ------------------------------------------------------------------------------------

Vm::Vm(Machine& machine, const VmShape& shape)
    : machine_(machine), shape_(shape), mm_(machine.platform().memory()) {
  flavour_ = shape.type == VmType::kTdx ? guest::VmFlavour::tdx(47) : guest::VmFlavour::vmx();
}

KvmResult<std::unique_ptr<Vm>> Vm::create(Machine& machine, const VmShape& shape) {
  if (shape.nr_vcpus == 0) return std::unexpected(Errno::kEinval);
  const bool td = shape.type == VmType::kTdx;
  if (td && machine.tdx() == nullptr) return std::unexpected(Errno::kEinval);
  std::unique_ptr<Vm> vm(new Vm(machine, shape));
  KvmVmConfig cfg;
  cfg.type = shape.type;
  cfg.max_vcpus = shape.nr_vcpus;
  cfg.mmu.quirk_slot_zap_all = shape.quirk_slot_zap_all;
  cfg.mmu.yield_every = shape.zap_yield_every;
  cfg.first_generation = shape.first_memslots_generation;
  return on_host_cpu(machine, [&]() -> KvmResult<std::unique_ptr<Vm>> {
    auto kvm_vm = KvmVm::create(machine.kvm(), vm->mm_, cfg);
    if (!kvm_vm) return std::unexpected(kvm_vm.error());
    vm->vm_ = std::move(*kvm_vm);
    if (td) {
      // KVM_TDX_INIT_VM before any vCPU exists.
      TdParams params;
      params.attributes = shape.sept_ve_disable ? kTdAttrSeptVeDisable : 0;
      params.max_vcpus = static_cast<uint16_t>(shape.nr_vcpus);
      if (KvmResult<> r = machine.tdx()->init_vm(*vm->vm_, params); !r) {
        return std::unexpected(r.error());
      }
    }
    for (unsigned i = 0; i < shape.nr_vcpus; ++i) {
      auto v = vm->vm_->create_vcpu(static_cast<int>(i));
      if (!v) return std::unexpected(v.error());
      if (td) {
        if (KvmResult<> r = machine.tdx()->init_vcpu(**v); !r) return std::unexpected(r.error());
      }
      vm->vcpus_.push_back(std::make_unique<Vcpu>(*vm, **v, i));
    }
    return std::move(vm);
  });
}

KvmResult<> Vm::td_init_mem_region(Gpa gpa, uint64_t size, uint64_t (*word_at)(uint64_t),
                                   bool measure) {
  if (shape_.type != VmType::kTdx || size == 0 || (size & (kPageSize - 1)) != 0) {
    return std::unexpected(Errno::kEinval);
  }
  // The source buffer: host pages the VMM filled (the guest image).
  HostMemory& mem = machine_.platform().memory();
  std::vector<Hpa> sources;
  auto free_sources = [&] {
    for (Hpa h : sources) mem.free_frame(h.pfn());
  };
  for (uint64_t off = 0; off < size; off += kPageSize) {
    std::optional<Pfn> f = mem.alloc_frame();
    if (!f) {
      free_sources();
      return std::unexpected(Errno::kEnomem);
    }
    sources.push_back(f->hpa());
    for (uint64_t w = 0; w < kPageSize; w += 8) mem.write(f->hpa() + w, kHostKey, word_at(off + w));
  }
  KvmResult<> r = on_host_cpu(machine_, [&] {
    return machine_.tdx()->init_mem_region(vcpu(0).kvm_vcpu(), gpa, sources, measure);
  });
  free_sources();
  return r;
}

KvmResult<> Vm::td_finalize() {
  if (shape_.type != VmType::kTdx) return std::unexpected(Errno::kEinval);
  return on_host_cpu(machine_, [&] { return machine_.tdx()->finalize_vm(*vm_); });
}

Vm::~Vm() {
  // The VMM process exits: its mm goes first (do_exit runs exit_mm before exit_files), so
  // KVM's MMU-notifier release runs while the VM is alive, then the last fd closes and the
  // VM is destroyed. Both reach the module (TD teardown): on a host CPU.
  on_host_cpu(machine_, [&] {
    mm_.exit();
    vm_.reset();
    return 0;
  });
}

const Vm::Region* Vm::region_of(Gpa gpa) const {
  for (const Region& r : regions_) {
    if (gpa >= r.gpa && gpa.raw() < r.gpa.raw() + r.size) return &r;
  }
  return nullptr;
}

KvmResult<> Vm::add_memory_region(uint32_t slot, Gpa gpa, uint64_t size, const MemoryRegion& m) {
  if (gpa.raw() <= flavour_.ucall_gpa.raw() && flavour_.ucall_gpa.raw() < gpa.raw() + size) {
    return std::unexpected(Errno::kEinval);  // the ucall GPA must stay unbacked
  }
  Region reg{.slot = slot,
             .gpa = gpa,
             .size = size,
             .hva = 0,
             .gmem = nullptr,
             .gmem_offset = 0,
             .flags = 0};
  UserspaceMemoryRegion2 r;
  r.slot = slot;
  r.flags = m.extra_flags;
  r.guest_phys_addr = gpa.raw();
  r.memory_size = size;
  r.userspace_addr = mm_.mmap(size, m.thp ? Level::k2M : Level::k4K);
  reg.hva = r.userspace_addr;
  if (m.guest_memfd) {
    if (m.share_gmem_with) {
      MutexLock l(regions_mu_);
      auto it = std::ranges::find(regions_, *m.share_gmem_with, &Region::slot);
      if (it == regions_.end() || !it->gmem) return std::unexpected(Errno::kEinval);
      reg.gmem = it->gmem;
    } else {
      auto f = kvm().create_guest_memfd(
          m.gmem_file_size != 0 ? m.gmem_file_size : m.gmem_offset + size, 0);
      if (!f) return std::unexpected(f.error());
      reg.gmem = *f;
    }
    reg.gmem_offset = m.gmem_offset;
    r.flags |= kMemGuestMemfd;
    r.guest_memfd = reg.gmem;
    r.guest_memfd_offset = m.gmem_offset;
  }
  // A new anonymous mapping reads as zeros; so does a new guest_memfd, except that a TD's
  // private pages are read only once the module made them the TD's (accept, or the image).
  const bool fresh_gmem = m.guest_memfd && !m.share_gmem_with && vm_->kvm().type() != VmType::kTdx;
  const SlotChange change(events_, {{gpa, size}}, kFreshShared | (fresh_gmem ? kFreshPrivate : 0));
  KvmResult<> out = on_host_cpu(machine_, [&] { return kvm().set_user_memory_region2(r); });
  if (!out) return out;
  reg.flags = r.flags;
  MutexLock l(regions_mu_);
  regions_.push_back(std::move(reg));
  return {};
}

KvmResult<> Vm::set_dirty_logging(uint32_t slot, bool on) {
  UserspaceMemoryRegion2 r;
  {
    MutexLock l(regions_mu_);
    auto it = std::ranges::find(regions_, slot, &Region::slot);
    if (it == regions_.end()) return std::unexpected(Errno::kEinval);
    r.slot = slot;
    r.flags = on ? it->flags | kMemLogDirtyPages : it->flags & ~kMemLogDirtyPages;
    r.guest_phys_addr = it->gpa.raw();
    r.memory_size = it->size;
    r.userspace_addr = it->hva;
    r.guest_memfd = it->gmem;
    r.guest_memfd_offset = it->gmem_offset;
  }
  // The memory stays as it is: no SlotChange.
  KvmResult<> out = on_host_cpu(machine_, [&] { return kvm().set_user_memory_region2(r); });
  if (!out) return out;
  MutexLock l(regions_mu_);
  auto it = std::ranges::find(regions_, slot, &Region::slot);
  if (it != regions_.end()) it->flags = r.flags;
  return {};
}

KvmResult<std::vector<uint64_t>> Vm::get_dirty_log(uint32_t slot) {
  return on_host_cpu(machine_, [&] { return kvm().get_dirty_log(slot); });
}

KvmResult<> Vm::delete_memslot(uint32_t slot) {
  UserspaceMemoryRegion2 r;
  uint64_t size = 0;
  {
    MutexLock l(regions_mu_);
    auto it = std::ranges::find(regions_, slot, &Region::slot);
    if (it == regions_.end()) return std::unexpected(Errno::kEinval);
    r.slot = slot;
    r.guest_phys_addr = it->gpa.raw();
    r.userspace_addr = it->hva;
    r.memory_size = 0;
    size = it->size;
  }
  const SlotChange change(events_, {{Gpa{r.guest_phys_addr}, size}});
  KvmResult<> out = on_host_cpu(machine_, [&] { return kvm().set_user_memory_region2(r); });
  if (!out) return out;
  MutexLock l(regions_mu_);
  std::erase_if(regions_, [&](const Region& x) { return x.slot == slot; });
  return {};
}

KvmResult<> Vm::move_memslot(uint32_t slot, Gpa new_gpa) {
  UserspaceMemoryRegion2 r;
  Gpa old_gpa;
  {
    MutexLock l(regions_mu_);
    auto it = std::ranges::find(regions_, slot, &Region::slot);
    if (it == regions_.end()) return std::unexpected(Errno::kEinval);
    r.slot = slot;
    r.guest_phys_addr = new_gpa.raw();
    r.userspace_addr = it->hva;
    r.memory_size = it->size;
    old_gpa = it->gpa;
  }
  const SlotChange change(events_, {{old_gpa, r.memory_size}, {new_gpa, r.memory_size}});
  KvmResult<> out = on_host_cpu(machine_, [&] { return kvm().set_user_memory_region2(r); });
  if (!out) return out;
  MutexLock l(regions_mu_);
  auto it = std::ranges::find(regions_, slot, &Region::slot);
  if (it != regions_.end()) it->gpa = new_gpa;
  return {};
}

KvmResult<> Vm::set_private(Gpa gpa, uint64_t size, bool discard) {
  return set_attributes(gpa, size, kMemAttrPrivate, discard);
}

KvmResult<> Vm::set_shared(Gpa gpa, uint64_t size, bool discard) {
  return set_attributes(gpa, size, 0, discard);
}

KvmResult<> Vm::set_attributes(Gpa gpa, uint64_t size, uint64_t attrs, bool discard) {
  const Gpa start = flavour_.to_private(gpa);
  KvmResult<> out = on_host_cpu(machine_, [&] {
    return kvm().set_memory_attributes(start.gfn(), Gpa{start.raw() + size}.gfn(), attrs);
  });
  if (!out) return out;
  events_.memory.emit_lazy([&] {
    return VmMemoryEvent{attrs == 0 ? VmMemoryOp::kToShared : VmMemoryOp::kToPrivate, start, size,
                         0, 0};
  });
  // Converting to shared retires the private copy: QEMU discards it from guest_memfd. (The
  // shared copy is kept on conversion to private, as the selftests' VMM does: a later
  // conversion back finds the old shared contents.)
  if (attrs == 0 && discard) return punch_hole(start, size);
  return {};
}

KvmResult<> Vm::punch_hole(Gpa gpa, uint64_t size) {
  gpa = flavour_.to_private(gpa);
  std::vector<std::pair<std::shared_ptr<GuestMemfd>, std::pair<uint64_t, uint64_t>>> holes;
  {
    MutexLock l(regions_mu_);
    for (const Region& r : regions_) {
      if (!r.gmem) continue;
      const uint64_t s = std::max(gpa.raw(), r.gpa.raw());
      const uint64_t e = std::min(gpa.raw() + size, r.gpa.raw() + r.size);
      if (s >= e) continue;
      holes.push_back({r.gmem, {r.gmem_offset + (s - r.gpa.raw()), e - s}});
    }
  }
  if (holes.empty()) return std::unexpected(Errno::kEinval);
  for (auto& [file, range] : holes) {
    KvmResult<> p =
        on_host_cpu(machine_, [&] { return file->punch_hole(range.first, range.second); });
    if (!p) return p;
  }
  events_.memory.emit_lazy([&] { return VmMemoryEvent{VmMemoryOp::kPunch, gpa, size, 0, 0}; });
  return {};
}

KvmResult<uint64_t> Vm::gpa_to_hva(Gpa gpa) {
  gpa = flavour_.to_private(gpa);
  MutexLock l(regions_mu_);
  const Region* r = region_of(gpa);
  if (r == nullptr) return std::unexpected(Errno::kEfault);
  return r->hva + (gpa.raw() - r->gpa.raw());
}

KvmResult<uint64_t> Vm::host_read(Gpa gpa) {
  const KvmResult<uint64_t> hva = gpa_to_hva(gpa);
  if (!hva) return hva;
  const bool observed = events_.memory.enabled();
  const uint64_t started = observed ? machine_.platform().check_clock().tick() : 0;
  KvmResult<uint64_t> v = mm_.read(*hva);
  if (observed && v) {
    events_.memory.emit(
        VmMemoryEvent{VmMemoryOp::kHostRead, flavour_.to_private(gpa), 8, *v, started});
  }
  return v;
}

KvmResult<> Vm::host_write(Gpa gpa, uint64_t value) {
  const KvmResult<uint64_t> hva = gpa_to_hva(gpa);
  if (!hva) return std::unexpected(hva.error());
  events_.memory.emit_lazy([&] {
    return VmMemoryEvent{VmMemoryOp::kHostWrite, flavour_.to_private(gpa), 8, value, 0};
  });
  KvmResult<> out = mm_.write(*hva, value);
  events_.memory.emit_lazy([&] {
    return VmMemoryEvent{VmMemoryOp::kHostWritten, flavour_.to_private(gpa), 8, value, 0};
  });
  return out;
}

KvmResult<> Vm::zap_gfn_range(Gpa gpa, uint64_t size, GfnZapCause cause) {
  return on_host_cpu(
      machine_, [&] { return vm_->mmu().zap_gfn_range(gpa.gfn(), (gpa + size).gfn(), cause); });
}

void Vm::flush_remote_tlbs() {
  on_host_cpu(machine_, [&] {
    vm_->kvm().flush_remote_tlbs();
    return 0;
  });
}

void Vm::reclaim(uint32_t slot) {
  reclaim(slot, 0, ~uint64_t{0});
}

void Vm::reclaim(uint32_t slot, uint64_t offset, uint64_t bytes) {
  uint64_t hva = 0, size = 0;
  {
    MutexLock l(regions_mu_);
    auto it = std::ranges::find(regions_, slot, &Region::slot);
    if (it == regions_.end() || offset >= it->size) return;
    hva = it->hva + offset;
    size = std::min(bytes, it->size - offset);
  }
  on_host_cpu(machine_, [&] {
    mm_.reclaim(hva, size);
    return 0;
  });
}

uint64_t Vm::region_size(uint32_t slot) {
  MutexLock l(regions_mu_);
  auto it = std::ranges::find(regions_, slot, &Region::slot);
  return it == regions_.end() ? 0 : it->size;
}

}  // namespace tdxsim::vmm
