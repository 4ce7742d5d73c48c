// Kvm: the generic VM (struct kvm and the parts of virt/kvm/kvm_main.c and guest_memfd.c the
// x86 MMU sits on): memslots, memory attributes, guest_memfd, the MMU-notifier glue from the
// VMM's address space, and the MMU invalidation sequence that lets a page fault detect that
// what it looked up went stale before it could install it.
//
// The arch MMU registers itself with set_arch() and is called back through KvmArchHooks,
// each hook under the lock its contract names (arch_hooks.h).
//
// Thread safety and locks (the order is slots_lock -> gmem invalidate lock -> mmu_lock):
//   - slots_lock ("kvm->slots_lock") serialises memslot and memory-attribute updates.
//   - mmu_lock ("kvm->mmu_lock") is the arch MMU's: faults hold it for read, zaps for write.
//     The invalidation state (mmu_invalidate_*) is written with it held for write and read
//     with it held in either mode, or locklessly through the _unsafe peek.
//   - Memslots are published with RCU: a reader holds an RcuReadGuard (or slots_lock) for as
//     long as it uses a Memslot it found. Writers never call rcu_synchronize with mmu_lock
//     held: a fault inside a read-side section may be waiting for mmu_lock.
//   - A memslot set is never replaced while an MMU-notifier invalidation is between
//     invalidate_range_start and _end (KVM's mn_active_invalidate_count), so both halves see
//     the same slots and an end pairs with its begin.
// Every public member may be called from any thread unless its comment says otherwise.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/atomic.h"
#include "base/cond_var.h"
#include "base/lock.h"
#include "base/thread_annotations.h"
#include "kvm/arch_hooks.h"
#include "kvm/gfn_range.h"
#include "kvm/guest_memfd.h"
#include "kvm/host_mm.h"
#include "kvm/kvm_errno.h"
#include "kvm/kvm_events.h"
#include "kvm/lockdep.h"
#include "kvm/mem_attributes.h"
#include "kvm/memslot.h"
#include "kvm/vm_type.h"
#include "platform/host_memory.h"

namespace tdxsim {

class KvmVm;

struct KvmConfig {
  VmType type = VmType::kDefault;
  // KVM_CAP_NR_MEMSLOTS: slot ids are [0, max_memslots). Tests use small numbers.
  uint32_t max_memslots = kDefaultMaxMemslots;
  // Where the memslots generation starts (KVM: the address space id). Tests and scenarios
  // start it just below a wrap of the MMIO SPTEs' generation bits, which otherwise takes
  // 2^19 memslot updates.
  uint64_t first_generation = 0;
};

// What kvm_gmem_get_pfn returns: the frame and the largest mapping level the backing allows.
struct GmemPfn {
  Pfn pfn;
  Level max_level = Level::k4K;
};

class Kvm {
 public:
  // Registers Kvm's MMU notifier with `mm`. REQUIRES: `mem` and `mm` outlive the Kvm.
  Kvm(HostMemory& mem, HostMm& mm, KvmConfig cfg);
  // Unbinds every guest_memfd slot, unregisters the notifier and waits for deferred frees.
  // REQUIRES: no other thread uses the Kvm; the arch MMU has let go of it.
  ~Kvm();
  Kvm(const Kvm&) = delete;
  Kvm& operator=(const Kvm&) = delete;

  // The arch MMU (nullptr: none; generic code then skips every hook).
  // REQUIRES: no concurrent use of the Kvm (set once, at VM creation).
  void set_arch(KvmArchHooks* arch) { arch_ = arch; }
  KvmArchHooks* arch() const { return arch_; }

  VmType type() const { return cfg_.type; }
  const KvmConfig& config() const { return cfg_; }
  HostMemory& mem() { return mem_; }
  HostMm& mm() { return mm_; }

  SharedMutex& mmu_lock() TDXSIM_RETURN_CAPABILITY(mmu_lock_) { return mmu_lock_; }
  Mutex& slots_lock() TDXSIM_RETURN_CAPABILITY(slots_lock_) { return slots_lock_; }

  // --- Memslots (kvm_memslot.cc) -------------------------------------------------------------
  // KVM_SET_USER_MEMORY_REGION2 (kvm_set_memory_region), errors as KVM's. DELETE and MOVE
  // first publish an INVALID copy of the old slot, wait for RCU readers and have the arch
  // drop the slot's mappings (flush_shadow_memslot) before prepare_memory_region; if that
  // fails the old slot is restored. Takes slots_lock.
  KvmResult<> set_user_memory_region2(const UserspaceMemoryRegion2& region)
      TDXSIM_EXCLUDES(slots_lock_, mmu_lock_);
  // __kvm_memslots. REQUIRES: rcu_read_held() or slots_lock held (checked); as_id <
  // nr_memslot_as_ids(type()).
  const Memslots& memslots(uint16_t as_id = 0) const;
  // __gfn_to_memslot: the slot containing gfn (an INVALID one included), or nullptr.
  // REQUIRES: as memslots().
  const Memslot* gfn_to_memslot(Gfn gfn, uint16_t as_id = 0) const;
  // The memslots generation, bumped once per published set (an update publishes once, or
  // twice for DELETE/MOVE), after the set is visible: a reader that saw generation g and
  // then read the memslots read a set at least as new as g's. (KVM keeps one generation and
  // an in-progress bit; the bump-after-publish order gives the same guarantee.)
  uint64_t memslots_generation() const { return generation_.load(std::memory_order_acquire); }

  // KVM_GET_DIRTY_LOG for `slot` (as_id << 16 | id): the pages written since the last call,
  // one bit each, with the arch write-protecting them again under mmu_lock. ENOENT for a
  // missing slot or one that does not log. Takes slots_lock.
  KvmResult<std::vector<uint64_t>> get_dirty_log(uint32_t slot)
      TDXSIM_EXCLUDES(slots_lock_, mmu_lock_);
  // kvm_vcpu_mark_page_dirty: `gfn` (address space 0) was written; a no-op unless its slot
  // logs. Any thread, no lock (the bitmap words are atomic).
  void mark_page_dirty(Gfn gfn);

  // --- MMU invalidation (kvm_mmu_invalidate_*) -------------------------------------------------
  // The fault path snapshots the sequence before it looks up a pfn (acquire: what the pfn
  // lookup reads is at least as new).
  uint64_t mmu_invalidate_seq() const { return invalidate_seq_.load(std::memory_order_acquire); }
  // mmu_invalidate_retry_gfn: whether a fault that snapshotted `seq` must retry because an
  // invalidation covering gfn is in progress or one completed since. REQUIRES: mmu_lock held
  // (either mode).
  bool mmu_invalidate_retry_gfn(uint64_t seq, Gfn gfn) const;
  // The same for a fault about to map all of [first, last) (a huge leaf): it must retry if
  // any of it is being invalidated, not only the gfn that faulted. Otherwise a 2M leaf
  // built while a zap of one of its gfns has yielded mmu_lock would outlive that zap.
  // REQUIRES: mmu_lock held (either mode).
  bool mmu_invalidate_retry_gfn_range(uint64_t seq, Gfn first, Gfn last) const;
  // The same without mmu_lock: a hint only (a fault bails out early), never a guarantee.
  bool mmu_invalidate_retry_gfn_unsafe(uint64_t seq, Gfn gfn) const;
  // kvm_mmu_invalidate_begin + kvm_mmu_invalidate_range_add(start, end).
  // REQUIRES: mmu_lock held for write.
  void mmu_invalidate_begin(Gfn start, Gfn end);
  // kvm_mmu_invalidate_range_add: widens the range of the invalidation in progress.
  // REQUIRES: mmu_lock held for write; an invalidation in progress.
  void mmu_invalidate_range_add(Gfn start, Gfn end);
  // kvm_mmu_invalidate_end: the sequence moves on, then the in-progress count drops.
  // REQUIRES: mmu_lock held for write; an invalidation in progress.
  void mmu_invalidate_end();
  uint64_t mmu_invalidate_in_progress() const {
    return invalidate_in_progress_.load(std::memory_order_acquire);
  }

  // --- Memory attributes (kvm_mem_attributes.cc) ------------------------------------------------
  // kvm_mem_is_private.
  bool mem_is_private(Gfn gfn) const;
  uint64_t get_memory_attributes(Gfn gfn) const;
  // kvm_range_has_memory_attributes (mask limited to the attributes the VM supports).
  bool range_has_memory_attributes(Gfn start, Gfn end, uint64_t mask, uint64_t attrs) const;
  // KVM_SET_MEMORY_ATTRIBUTES over [start, end). EINVAL if start >= end, attrs has any bit but
  // kMemAttrPrivate, or the VM has no private memory. Takes slots_lock then mmu_lock.
  KvmResult<> set_memory_attributes(Gfn start, Gfn end, uint64_t attrs)
      TDXSIM_EXCLUDES(slots_lock_, mmu_lock_);
  const MemAttributes& memory_attributes() const { return attrs_; }

  // --- guest_memfd (kvm_gmem.cc) -----------------------------------------------------------------
  // KVM_CREATE_GUEST_MEMFD. EINVAL unless size > 0 and page aligned, flags == 0 and the VM
  // has private memory.
  KvmResult<std::shared_ptr<GuestMemfd>> create_guest_memfd(uint64_t size, uint64_t flags);
  // kvm_gmem_get_pfn: the frame backing `gfn` of a guest_memfd slot, allocated (zeroed) on
  // first use. max_level is 4K: the file holds separate 4K frames, so no larger leaf could
  // map a run of them (upstream reports max_order 0 for the same reason).
  // EFAULT if the slot has no guest_memfd or is no longer bound, ENOMEM when memory runs
  // out. REQUIRES: slot.contains(gfn); mmu_lock not held (takes the gmem invalidate lock).
  KvmResult<GmemPfn> gmem_get_pfn(const Memslot& slot, Gfn gfn) TDXSIM_EXCLUDES(mmu_lock_);
  // kvm_gmem_invalidate_begin for one file: under mmu_lock for write, begins an invalidation
  // over `ranges` (each a bound slot's gfns, attr_filter kFilterPrivate) and has the arch
  // unmap them, flushing remote TLBs if it asks. gmem_invalidate_end closes it.
  // REQUIRES: the file's invalidate lock held for write; ranges not empty.
  void gmem_invalidate_begin(std::span<const GfnRange> ranges) TDXSIM_EXCLUDES(mmu_lock_);
  void gmem_invalidate_end() TDXSIM_EXCLUDES(mmu_lock_);
  const std::shared_ptr<const VmIdentity>& identity() const { return identity_; }

  // --- TLB ----------------------------------------------------------------------------------
  // kvm_flush_remote_tlbs: the arch's flush, counted.
  void flush_remote_tlbs();

  // --- The VM as a whole ----------------------------------------------------------------------
  // The x86 VM this belongs to (container_of upstream), null for generic-only tests.
  // REQUIRES: set once, before any vCPU exists.
  void set_vm(KvmVm* vm) { vm_ = vm; }
  KvmVm* vm() const { return vm_; }
  // KVM_BUG_ON: when `cond`, marks the VM bugged with `what` (the first message stays) and
  // dead: every vCPU gets KVM_REQ_VM_DEAD and KVM_RUN fails with EIO. Returns `cond`.
  bool bug_on(bool cond, const char* what) {
    if (!cond) [[likely]]
      return false;
    mark_bugged(what);
    return true;
  }
  bool vm_bugged() const { return bugged_.load(std::memory_order_acquire) != 0; }
  std::string bug_message() const;
  uint64_t remote_tlb_flushes() const { return remote_tlb_flushes_.value(); }
  // Pages KVM_SET_MEMORY_ATTRIBUTES converted (requested ranges not already in the target
  // state), by direction.
  uint64_t pages_converted_to_private() const { return converted_to_private_.value(); }
  uint64_t pages_converted_to_shared() const { return converted_to_shared_.value(); }
  // Tracepoints for checkers and tracers (kvm_events.h).
  KvmEvents& events() { return events_; }
  // The lockdep warnings KVM's own lock assertions raised (lockdep.h): logged, not fatal.
  LockdepWarnings& lockdep() { return lockdep_; }
  const LockdepWarnings& lockdep() const { return lockdep_; }

 private:
  // bug_on's work once `cond` held, out of line: callers test `cond` inline.
  void mark_bugged(const char* what);
  // The dirty_log tracepoint's kStart / kStop for a published memslot change.
  void report_dirty_logging(const Memslot* old, const Memslot* new_slot, MemslotChange change);
  class Notifier;
  friend class Notifier;

  // Publishes `next` as address space `as_id`'s memslots and frees the old set after a grace
  // period. Waits for MMU-notifier invalidations in progress. REQUIRES: slots_lock held.
  void publish_memslots(uint16_t as_id, std::unique_ptr<Memslots> next)
      TDXSIM_REQUIRES(slots_lock_);
  const Memslots* load_memslots(uint16_t as_id) const;
  // The memslots checks of kvm_set_memory_region, before anything changes.
  struct Update;
  KvmResult<Update> check_memory_region(const UserspaceMemoryRegion2& region)
      TDXSIM_REQUIRES(slots_lock_);
  void bump_generation();
  // The generation the next published set will have. REQUIRES: slots_lock held.
  uint64_t next_generation() const { return memslots_generation() + 1; }

  // MMU-notifier halves (kvm_mmu_notifier.cc).
  void mn_invalidate_range_start(uint64_t start, uint64_t end);
  void mn_invalidate_range_end(uint64_t start, uint64_t end);
  bool mn_age(uint64_t start, uint64_t end, bool clear);
  void mn_release();
  // The gfn ranges of every slot (every address space) whose userspace range overlaps
  // [start, end). REQUIRES: RCU read side or slots_lock.
  std::vector<GfnRange> hva_to_gfn_ranges(uint64_t start, uint64_t end, uint8_t filter) const;
  // Under mmu_lock for write: begin one invalidation covering every range, have the arch
  // unmap each, flush remote TLBs if any asks. REQUIRES: ranges not empty.
  void invalidate_begin_and_unmap(std::span<const GfnRange> ranges) TDXSIM_EXCLUDES(mmu_lock_);

  HostMemory& mem_;
  HostMm& mm_;
  const KvmConfig cfg_;
  KvmArchHooks* arch_ = nullptr;
  const std::shared_ptr<const VmIdentity> identity_;

  Mutex slots_lock_;
  SharedMutex mmu_lock_;

  // kvm->memslots[as_id]: Memslots*, published with release.
  AtomicWord memslots_[2];
  AtomicWord generation_;

  // mn_invalidate_lock / mn_active_invalidate_count / mn_memslots_update_rcuwait.
  Mutex mn_invalidate_lock_;
  uint64_t mn_active_invalidate_count_ TDXSIM_GUARDED_BY(mn_invalidate_lock_) = 0;
  CondVar mn_idle_;

  // mmu_invalidate_*: written under mmu_lock for write.
  AtomicWord invalidate_seq_;
  AtomicWord invalidate_in_progress_;
  AtomicWord invalidate_range_start_;
  AtomicWord invalidate_range_end_;

  MemAttributes attrs_;
  Counter remote_tlb_flushes_;
  Counter converted_to_private_, converted_to_shared_;
  KvmEvents events_;
  LockdepWarnings lockdep_;

  std::unique_ptr<Notifier> notifier_;

  KvmVm* vm_ = nullptr;
  AtomicWord bugged_;
  mutable Mutex bug_mu_{"kvm->vm_bugged message"};
  std::string bug_message_ TDXSIM_GUARDED_BY(bug_mu_);
};

}  // namespace tdxsim
