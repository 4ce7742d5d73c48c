// Vm and Vcpu: the VMM's handle on one VM, shaped like KVM selftests' kvm_util so a selftest
// ports almost line by line:
//
//   selftests (kvm_util)                       tdxsim (vmm/)
//   vm_create_shape_with_one_vcpu / _vcpus     Vm::create(machine, {type, nr_vcpus, ...})
//   vm_mem_add(vm, src, gpa, slot, npages,     vm.add_memory_region(slot, gpa, size,
//              flags, guest_memfd, offset)         {.guest_memfd = true, ...})
//   vm_mem_set_private / vm_mem_set_shared     vm.set_private(gpa, size) / vm.set_shared(...)
//   vm_guest_mem_fallocate(punch_hole)         vm.punch_hole(gpa, size)
//   addr_gpa2hva + memcmp/memset               vm.host_read(gpa) / vm.host_write(gpa, v)
//   vm_set_user_memory_region (delete/move)    vm.delete_memslot(slot) / vm.move_memslot(...)
//   vcpu_run(vcpu)                             vcpu.run()   (one KVM_RUN)
//   get_ucall(vcpu, &uc)                       vcpu.run_to_ucall() (runs, handling exits)
//
// What QEMU does between KVM_RUNs lives here too (Vcpu::run_to_ucall): a memory-fault exit
// is an implicit conversion (set the attribute, discard the old copy, re-run); a MapGPA
// hypercall is an explicit one; MMIO at the ucall address is the guest talking to the test;
// any other MMIO reads as all-ones and writes are dropped (no device model).
//
// Thread safety: a Vcpu belongs to one thread at a time. Vm's memory calls may run on any
// thread (KVM serialises them); each binds the calling thread to a host CPU for the ioctl
// when it is not bound already (a vCPU thread handling an exit stays on its own CPU).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "guest/ucall.h"
#include "guest/vm_flavour.h"
#include "kvm/kvm_vm.h"
#include "platform/guest_program.h"
#include "vmm/machine.h"
#include "vmm/vm_events.h"

namespace tdxsim::vmm {

class Vm;

struct VmShape {
  VmType type = VmType::kDefault;
  unsigned nr_vcpus = 1;
  // TDs: the TD attributes' SEPT_VE_DISABLE (a pending page touched by the guest is a TD exit
  // instead of a #VE). Off: the guest accepts lazily from its #VE handler.
  bool sept_ve_disable = false;
  // KVM_X86_QUIRK_SLOT_ZAP_ALL (default VMs).
  bool quirk_slot_zap_all = true;
  // Whether a conversion to shared the guest asks for (MapGPA, a memory-fault exit) punches
  // the private copy out of guest_memfd (the selftests' MAP_GPA_DO_FALLOCATE).
  bool discard_on_conversion = true;
  // How many entries a zap walks under mmu_lock before it yields (TdpMmuConfig::yield_every):
  // scenarios make it tiny to open the windows a yielding zap leaves.
  unsigned zap_yield_every = 512;
  // Where the memslots generation starts (KvmConfig::first_generation).
  uint64_t first_memslots_generation = 0;

  static VmShape of(VmType type, unsigned nr_vcpus = 1) {
    VmShape s;
    s.type = type;
    s.nr_vcpus = nr_vcpus;
    return s;
  }
};

struct MemoryRegion {
  bool guest_memfd = false;  // private memory from a guest_memfd (VMs with private memory)
  // Several slots may share one file: the region takes the file of `share_gmem_with` at
  // `gmem_offset` instead of creating its own.
  std::optional<uint32_t> share_gmem_with;
  uint64_t gmem_offset = 0;
  // The size of a new guest_memfd (0: just enough for this region), so later slots can
  // share it.
  uint64_t gmem_file_size = 0;
  bool thp = false;          // back the shared half with transparent huge pages
  uint32_t extra_flags = 0;  // e.g. kMemLogDirtyPages

  // Private memory from a new guest_memfd (or `share` slot's file) at `offset`.
  static MemoryRegion with_gmem(uint64_t offset = 0, std::optional<uint32_t> share = {}) {
    MemoryRegion r;
    r.guest_memfd = true;
    r.gmem_offset = offset;
    r.share_gmem_with = share;
    return r;
  }
  // Shared memory backed by transparent huge pages.
  static MemoryRegion with_thp() {
    MemoryRegion r;
    r.thp = true;
    return r;
  }
};

// Why run_to_ucall stopped: a ucall, or an exit/error the VMM does not handle itself
// (exit says which: KVM_EXIT_HLT, an internal error, a failed entry; error: KVM_RUN's errno,
// EINTR after KvmVcpu::signal()).
struct VcpuStop {
  std::optional<guest::Ucall> ucall;
  std::optional<Errno> error;
  KvmExitReason exit = KvmExitReason::kUnknown;
};

struct VcpuExitStats {
  uint64_t runs = 0, memory_faults = 0, map_gpa = 0, mmio = 0, ucalls = 0, hlt = 0, eintr = 0;
};

class Vcpu {
 public:
  Vcpu(Vm& vm, KvmVcpu& kvm_vcpu, unsigned index);

  unsigned index() const { return index_; }
  KvmVcpu& kvm_vcpu() const { return kvm_vcpu_; }
  KvmRun& run_state() const { return kvm_vcpu_.run_state(); }
  const VcpuExitStats& exit_stats() const { return stats_; }

  // The code the vCPU runs (the guest image). `budget`: instructions per entry before a
  // timer exit (0: none).
  void set_guest(GuestProgram* program, uint32_t budget = 4096);
  // The logical CPU the next KVM_RUN runs on (placement / migration).
  void set_cpu(unsigned cpu) { cpu_ = cpu; }
  unsigned cpu() const { return cpu_; }

  // One KVM_RUN on the vCPU's CPU.
  KvmResult<> run();
  // Runs until the guest makes a ucall, handling every exit a VMM handles on its own, with
  // the calling thread bound to the vCPU's CPU throughout (exits are handled there).
  VcpuStop run_to_ucall();

 private:
  // Handles the exit KVM_RUN just returned (`r`): nullopt to run again, else why to stop.
  std::optional<VcpuStop> handle_exit(const KvmResult<>& r);

  Vm& vm_;
  KvmVcpu& kvm_vcpu_;
  const unsigned index_;
  unsigned cpu_;
  VcpuExitStats stats_;
};

class Vm {
 public:
  static KvmResult<std::unique_ptr<Vm>> create(Machine& machine, const VmShape& shape);
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  Machine& machine() const { return machine_; }
  KvmVm& kvm_vm() { return *vm_; }
  Kvm& kvm() { return vm_->kvm(); }
  const VmShape& shape() const { return shape_; }
  HostMm& mm() { return mm_; }
  Vcpu& vcpu(unsigned i) { return *vcpus_.at(i); }
  unsigned nr_vcpus() const { return static_cast<unsigned>(vcpus_.size()); }
  // What guest code needs to know of this VM (TD or not, the shared bit, the ucall GPA,
  // which no memslot may cover).
  const guest::VmFlavour& flavour() const { return flavour_; }
  // What the VMM did to guest memory (vm_events.h), for the checker.
  VmEvents& events() { return events_; }

  // --- Memory --------------------------------------------------------------------------------
  KvmResult<> add_memory_region(uint32_t slot, Gpa gpa, uint64_t size, const MemoryRegion& r = {});
  KvmResult<> delete_memslot(uint32_t slot);
  KvmResult<> move_memslot(uint32_t slot, Gpa new_gpa);
  // A flags-only KVM_SET_USER_MEMORY_REGION2 that sets or clears KVM_MEM_LOG_DIRTY_PAGES on
  // `slot` (what QEMU does when migration starts and ends). EINVAL: no such region.
  KvmResult<> set_dirty_logging(uint32_t slot, bool on);
  // KVM_GET_DIRTY_LOG of `slot`: one bit per page written since the last call.
  KvmResult<std::vector<uint64_t>> get_dirty_log(uint32_t slot);
  // KVM_SET_MEMORY_ATTRIBUTES, and what a VMM does with the copy it retires: converting to
  // shared punches the private pages out of guest_memfd when `discard` (QEMU's
  // ram_block_discard_range), converting to private drops the shared pages.
  KvmResult<> set_private(Gpa gpa, uint64_t size, bool discard = true);
  KvmResult<> set_shared(Gpa gpa, uint64_t size, bool discard = true);
  // fallocate(PUNCH_HOLE) on the guest_memfd behind [gpa, gpa + size).
  KvmResult<> punch_hole(Gpa gpa, uint64_t size);
  // kvm_zap_gfn_range, as KVM runs it when the guest's MTRRs or CR0.CD change or
  // non-coherent DMA starts: the direct mappings of [gpa, gpa + size) go, with a ranged
  // remote flush; the next accesses fault them back in. EOPNOTSUPP for a TD (its MTRRs are
  // the guest's own) except for non-coherent DMA.
  KvmResult<> zap_gfn_range(Gpa gpa, uint64_t size, GfnZapCause cause = GfnZapCause::kMtrr);
  // kvm_flush_remote_tlbs on the whole VM.
  void flush_remote_tlbs();
  // addr_gpa2hva: where the VMM maps `gpa` (a TD's shared bit ignored). EFAULT: no region.
  KvmResult<uint64_t> gpa_to_hva(Gpa gpa);
  // The VMM's own view of guest memory: the shared (userspace) mapping.
  KvmResult<uint64_t> host_read(Gpa gpa);
  KvmResult<> host_write(Gpa gpa, uint64_t value);
  // Host memory pressure on the shared memory of `slot`: reclaim (migrate) its pages, all of
  // them or those of [offset, offset + bytes) within the slot (clipped to it).
  void reclaim(uint32_t slot);
  void reclaim(uint32_t slot, uint64_t offset, uint64_t bytes);
  // The size of `slot`'s region, 0 when there is none.
  uint64_t region_size(uint32_t slot);

  // --- TDs -----------------------------------------------------------------------------------
  // KVM_TDX_INIT_MEM_REGION for [gpa, gpa + size) with the contents `word_at(offset)` gives
  // each 8-byte word of the source (measured when `measure`), then KVM_TDX_FINALIZE_VM.
  KvmResult<> td_init_mem_region(Gpa gpa, uint64_t size, uint64_t (*word_at)(uint64_t),
                                 bool measure = true);
  KvmResult<> td_finalize();

 private:
  struct Region {
    uint32_t slot;
    Gpa gpa;
    uint64_t size;
    uint64_t hva;
    std::shared_ptr<GuestMemfd> gmem;
    uint64_t gmem_offset;
    uint32_t flags;  // as KVM has them
  };
  Vm(Machine& machine, const VmShape& shape);
  const Region* region_of(Gpa gpa) const TDXSIM_REQUIRES(regions_mu_);
  KvmResult<> set_attributes(Gpa gpa, uint64_t size, uint64_t attrs, bool discard);

  Machine& machine_;
  const VmShape shape_;
  guest::VmFlavour flavour_;
  VmEvents events_;
  HostMm mm_;
  std::unique_ptr<KvmVm> vm_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  Mutex regions_mu_{"vmm regions"};
  std::vector<Region> regions_ TDXSIM_GUARDED_BY(regions_mu_);
};

}  // namespace tdxsim::vmm
