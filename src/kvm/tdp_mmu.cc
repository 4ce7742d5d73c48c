#include "kvm/tdp_mmu.h"

#include <algorithm>
#include <thread>
#include <unordered_set>

#include "base/check.h"
#include "base/sched.h"
#include "kvm/kvm_vm.h"
#include "platform/platform.h"

namespace tdxsim {
namespace {

bool is_leaf_level(Level level) {
  return level <= Level::k1G;
}

// A private leaf: RWX, and no memory type or IPAT from KVM — the TDX module decides the
// S-EPT entry's type, so the mirror records none (any other value is a VM bug).
SpteLeafAttrs mirror_leaf_attrs() {
  return SpteLeafAttrs{.read = true,
                       .write = true,
                       .exec = true,
                       .mem_type = EptMemType::kUC,
                       .ignore_pat = false,
                       .host_writable = true,
                       .prefetch = false};
}

bool is_private_leaf_shape(Spte spte) {
  const uint64_t rwx = spte.raw() & Spte::kEptRwxMask;
  return rwx == Spte::kEptRwxMask && Spte::EptMemType::get(spte.raw()) == 0 &&
         !Spte::EptIgnorePat::get(spte.raw());
}

}  // namespace

TdpMmu::TdpMmu(HostMemory& mem, SharedMutex& mmu_lock, MmuVendorOps& ops, Kvm* kvm,
               const TdpMmuConfig& config)
    : mem_(mem),
      mmu_lock_(mmu_lock),
      ops_(ops),
      kvm_(kvm),
      config_(config),
      sp_by_pfn_(mem.total_frames()) {
  TDXSIM_CHECK(config.root_level == Level::k512G || config.root_level == Level::k256T,
               "a {} TDP root", level_name(config.root_level));
  TDXSIM_CHECK(config.yield_every > 0, "a zap that never yields");
}

TdpMmu::~TdpMmu() {
  // Deferred frees reference this MMU (sp_by_pfn_, live_tables_).
  rcu_barrier();
  MutexLock l(roots_lock_);
  TDXSIM_CHECK(roots_.empty(), "TdpMmu destroyed with {} roots", roots_.size());
}

void TdpMmu::barrier() {
  rcu_barrier();
}

Gfn TdpMmu::max_gfn_exclusive() const {
  return Gfn{level_pages(config_.root_level) * kPtesPerTable};
}

Gfn TdpMmu::root_bits(const MmuPage* root) const {
  return root->is_mirror() ? Gfn{0} : config_.gfn_direct_bits;
}

Spte TdpMmu::read_spte(Hpa sptep) const {
  const Spte s{mem_.load(sptep, kHostKey, std::memory_order_acquire)};
  if (s.raw() == kFreedTablePoison) [[unlikely]] {
    freed_reads_.record(sptep);
  }
  return s;
}

bool TdpMmu::bug(BugId id) const {
  return kvm_ != nullptr && kvm_->vm() != nullptr && kvm_->vm()->platform().faults().bug(id);
}

bool TdpMmu::vm_bugged() const {
  return kvm_ != nullptr ? kvm_->vm_bugged() : bugged_.load(std::memory_order_acquire) != 0;
}

std::string TdpMmu::bug_message() const {
  if (kvm_ != nullptr) return kvm_->bug_message();
  MutexLock l(bug_mu_);
  return bug_message_;
}

bool TdpMmu::bug_on(bool cond, const char* what) {
  if (!cond) return false;
  if (kvm_ != nullptr) return kvm_->bug_on(cond, what);
  MutexLock l(bug_mu_);
  if (bugged_.load(std::memory_order_relaxed) == 0) {
    bug_message_ = what;
    bugged_.store(1, std::memory_order_release);
  }
  return true;
}

void TdpMmu::flush_remote_tlbs() {
  stats_.remote_tlb_flushes.add();
  if (kvm_ != nullptr) {
    kvm_->events().remote_flush.emit(RemoteFlushEvent{EventPhase::kBegin, Gfn{0}, 0, true});
  }
  // Without a vendor hook KVM requests KVM_REQ_TLB_FLUSH on every vCPU and kicks them.
  if (!ops_.flush_remote_tlbs(kvm_) && kvm_ != nullptr && kvm_->vm() != nullptr) {
    kvm_->vm()->make_all_cpus_request(KvmRequest::kTlbFlush);
  }
  if (kvm_ != nullptr) {
    kvm_->events().remote_flush.emit(RemoteFlushEvent{EventPhase::kEnd, Gfn{0}, 0, true});
  }
}

void TdpMmu::flush_remote_tlbs_range(Gfn start, uint64_t pages) {
  if (pages == 0) return;
  stats_.remote_tlb_flushes_range.add();
  if (kvm_ != nullptr) {
    kvm_->events().remote_flush.emit(RemoteFlushEvent{EventPhase::kBegin, start, pages, true});
  }
  const bool done = ops_.flush_remote_tlbs_range(kvm_, start, pages);
  if (kvm_ != nullptr) {
    kvm_->events().remote_flush.emit(RemoteFlushEvent{EventPhase::kEnd, start, pages, done});
  }
  if (!done) flush_remote_tlbs();
}

// --- Tables ----------------------------------------------------------------------------------

MmuPage* TdpMmu::alloc_sp(MmuPageRole role, Gfn gfn) {
  std::unique_ptr<MmuPage> sp = MmuPage::create(mem_, role, gfn, role.is_mirror);
  if (!sp) return nullptr;
  const uint64_t pfn = sp->spt().pfn().raw();
  sp_by_pfn_.note_touched(pfn);
  AtomicWordRef(sp_by_pfn_[pfn])
      .store(reinterpret_cast<uint64_t>(sp.get()), std::memory_order_release);
  live_tables_.fetch_add(1, std::memory_order_relaxed);
  allocated_tables_.fetch_add(1, std::memory_order_relaxed);
  return sp.release();
}

MmuPage* TdpMmu::sp_of_table(Hpa spt) const {
  const uint64_t word = AtomicWordRef(sp_by_pfn_[spt.pfn().raw()]).load(std::memory_order_acquire);
  TDXSIM_CHECK(word != 0, "no MmuPage for the table at {}", spt);
  return reinterpret_cast<MmuPage*>(word);
}

void TdpMmu::destroy_sp(MmuPage* sp) {
  AtomicWordRef(sp_by_pfn_[sp->spt().pfn().raw()]).store(0, std::memory_order_release);
  delete sp;
  live_tables_.fetch_sub(1, std::memory_order_acq_rel);
}

void TdpMmu::free_sp_now(MmuPage* sp) {
  released_tables_.fetch_add(1, std::memory_order_relaxed);
  destroy_sp(sp);
}

void TdpMmu::free_sp_deferred(MmuPage* sp) {
  released_tables_.fetch_add(1, std::memory_order_relaxed);
  // A walker that read the entry linking this table before it was cleared may still be in
  // it: the frame goes back to the host only after every such walker's RCU section ended.
  rcu_defer([this, sp] { destroy_sp(sp); });
}

// --- Roots -----------------------------------------------------------------------------------

bool TdpMmu::root_matches(const MmuPage* root, uint8_t types) {
  TDXSIM_CHECK((types & kValidRoots) != 0, "a root walk over no valid root type");
  if (root->role().invalid) return (types & kInvalidRoots) != 0;
  return (types & (root->is_mirror() ? kMirrorRoots : kDirectRoots)) != 0;
}

MmuPage* TdpMmu::get_direct_root() {
  return get_root(/*mirror=*/false);
}
MmuPage* TdpMmu::get_mirror_root() {
  // A mirror mirrors a TD's Secure EPT: only an EPT-format VM can have one.
  TDXSIM_CHECK(config_.format == SpteFormat::kEpt, "a mirror root in an {} VM",
               to_string(config_.format));
  return get_root(/*mirror=*/true);
}

MmuPage* TdpMmu::get_root(bool mirror) {
  const MmuPageRole role{.level = config_.root_level, .is_mirror = mirror, .invalid = false};
  // Read mmu_lock keeps invalidation out while a valid root is found and referenced.
  ReadLock mmu(mmu_lock_);
  MutexLock l(roots_lock_);
  for (MmuPage* r : roots_) {
    if (r->role() == role && r->try_get_root()) return r;
  }
  std::unique_ptr<MmuPage> root = MmuPage::create_root(mem_, role, 2);
  if (!root) return nullptr;
  const uint64_t pfn = root->spt().pfn().raw();
  sp_by_pfn_.note_touched(pfn);
  AtomicWordRef(sp_by_pfn_[pfn])
      .store(reinterpret_cast<uint64_t>(root.get()), std::memory_order_release);
  live_tables_.fetch_add(1, std::memory_order_relaxed);
  allocated_tables_.fetch_add(1, std::memory_order_relaxed);
  roots_.push_back(root.get());
  return root.release();
}

void TdpMmu::put_root(MmuPage* root) {
  if (!root->put_root()) return;
  // Only invalidation drops the MMU's own reference, so the last one goes from an invalid root.
  bug_on(!root->role().invalid, "the last reference to a valid root was put");
  MutexLock l(roots_lock_);
  auto it = std::find(roots_.begin(), roots_.end(), root);
  TDXSIM_CHECK(it != roots_.end(), "put of a root not on the list");
  roots_.erase(it);
  // No TLB flush: kvm_mmu_load flushes every newly loaded root, so no vCPU can be using
  // stale translations from this one once it loads another. Released in the same critical
  // section that unlisted it: the last put may come without mmu_lock (a vCPU's reload), and
  // the census must never see the root in neither place.
  free_sp_deferred(root);
}

size_t TdpMmu::root_count() const {
  MutexLock l(roots_lock_);
  return roots_.size();
}

MmuPage* TdpMmu::next_root(MmuPage* prev, uint8_t types) {
  MmuPage* next = nullptr;
  {
    MutexLock l(roots_lock_);
    size_t i = 0;
    if (prev != nullptr) {
      auto it = std::find(roots_.begin(), roots_.end(), prev);
      TDXSIM_CHECK(it != roots_.end(), "a referenced root left the list");
      i = static_cast<size_t>(it - roots_.begin()) + 1;
    }
    for (; i < roots_.size(); ++i) {
      if (root_matches(roots_[i], types) && roots_[i]->try_get_root()) {
        next = roots_[i];
        break;
      }
    }
  }
  if (prev != nullptr) put_root(prev);
  return next;
}

void TdpMmu::invalidate_direct_roots() {
  invalidate_roots(kDirectRoots);
}

void TdpMmu::invalidate_roots(uint8_t types) {
  mmu_lock_.assert_held_write();
  TDXSIM_CHECK((types & kInvalidRoots) == 0, "invalidating invalid roots");
  MutexLock l(roots_lock_);
  for (MmuPage* r : roots_) {
    if (r->role().invalid || !root_matches(r, types)) continue;
    r->mark_invalid();
    // The MMU's own reference now belongs to the zap of invalidated roots.
    scheduled_to_zap_.push_back(r);
  }
}

void TdpMmu::zap_invalidated_roots(bool shared) {
  if (shared) {
    mmu_lock_.assert_held_read();
  } else {
    mmu_lock_.assert_held_write();
  }
  std::vector<MmuPage*> scheduled;
  {
    MutexLock l(roots_lock_);
    scheduled.swap(scheduled_to_zap_);
  }
  for (MmuPage* root : scheduled) {
    zap_root(root, shared);
    put_root(root);
  }
}

// --- The choke point ----------------------------------------------------------------------

void TdpMmu::trace_change_begin(bool mirror, Gfn gfn, Level level, Spte old_spte, Spte new_spte) {
  if (kvm_ == nullptr || !kvm_->events().spte_changed.enabled()) return;
  const Gfn seen = mirror ? gfn : Gfn{gfn.raw() | config_.gfn_direct_bits.raw()};
  kvm_->events().spte_changed.emit(
      SpteChangeEvent{EventPhase::kBegin, seen, level, old_spte, new_spte, mirror});
}

void TdpMmu::trace_change_lost(bool mirror, Gfn gfn, Level level, Spte old_spte) {
  if (kvm_ == nullptr || !kvm_->events().spte_changed.enabled()) return;
  const Gfn seen = mirror ? gfn : Gfn{gfn.raw() | config_.gfn_direct_bits.raw()};
  kvm_->events().spte_changed.emit(
      SpteChangeEvent{EventPhase::kEnd, seen, level, old_spte, old_spte, mirror});
}

KvmResult<> TdpMmu::set_spte_atomic(const MmuPage* root, TdpIter& iter, Spte new_spte) {
  mmu_lock_.assert_held();
  TDXSIM_CHECK(!iter.yielded(), "an atomic set through a yielded iterator");
  const Spte old_spte = iter.old_spte();
  TDXSIM_CHECK(!old_spte.is_frozen(), "an atomic set over FROZEN_SPTE at {}", iter.gfn());
  const bool mirror = root->is_mirror();
  trace_change_begin(mirror, iter.gfn(), iter.level(), old_spte, new_spte);
  if (mirror && !new_spte.is_frozen()) {
    // Atomic zapping never operates on mirror roots: a removal must reach the S-EPT under
    // the write lock, where BLOCK/TRACK/REMOVE cannot be contended.
    if (bug_on(!new_spte.is_shadow_present(), "atomic zap of a mirror SPTE")) {
      return std::unexpected(Errno::kEbusy);
    }
    KvmResult<> r =
        set_external_spte_present(iter.sptep(), iter.gfn(), old_spte, new_spte, iter.level());
    if (!r) {
      trace_change_lost(mirror, iter.gfn(), iter.level(), old_spte);
      iter.reread();
      return r;
    }
  } else {
    uint64_t expected = old_spte.raw();
    if (!mem_.compare_exchange(iter.sptep(), kHostKey, expected, new_spte.raw(),
                               std::memory_order_acq_rel)) {
      trace_change_lost(mirror, iter.gfn(), iter.level(), old_spte);
      iter.reread();
      return std::unexpected(Errno::kEbusy);
    }
  }
  handle_changed_spte(mirror, iter.gfn(), old_spte, new_spte, iter.level(), /*shared=*/true);
  return {};
}

KvmResult<> TdpMmu::set_external_spte_present(Hpa sptep, Gfn gfn, Spte old_spte, Spte new_spte,
                                              Level level) {
  // Only non-present → present: a present private mapping never changes in place.
  if (bug_on(old_spte.is_shadow_present(), "a present mirror SPTE set present again")) {
    return std::unexpected(Errno::kEio);
  }
  const bool leaf = new_spte.is_last(level);
  if (leaf && bug_on(!is_private_leaf_shape(new_spte),
                     "a private mapping that is not RWX or carries a memory type")) {
    return std::unexpected(Errno::kEio);
  }
  // Freeze first: until the external table has the entry, no other thread may build on
  // this one (a child mapped below a table the S-EPT lacks would fail in the module). The
  // planted race P1 publishes the final value first instead.
  uint64_t expected = old_spte.raw();
  const bool publish_early = bug(BugId::P1);
  if (!mem_.compare_exchange(sptep, kHostKey, expected,
                             publish_early ? new_spte.raw() : Spte::kFrozenValue,
                             std::memory_order_acq_rel)) {
    return std::unexpected(Errno::kEbusy);
  }
  KvmResult<> r;
  if (leaf) {
    r = ops_.set_external_spte(kvm_, gfn, level, new_spte.pfn());
  } else {
    MmuPage* child = sp_of_table(new_spte.child_table());
    const std::optional<Hpa> external = child->external_spt();
    TDXSIM_CHECK(level_num(child->level()) + 1 == level_num(level) && child->gfn() == gfn,
                 "linking the {} table at {} from a {} entry at {}", level_name(child->level()),
                 child->gfn(), level_name(level), gfn);
    if (bug_on(!external, "a mirror table without an external page")) {
      r = std::unexpected(Errno::kEio);
    } else {
      r = ops_.link_external_spt(kvm_, gfn, level, *external);
    }
  }
  mem_.store(sptep, kHostKey, r ? new_spte.raw() : old_spte.raw(), std::memory_order_release);
  return r;
}

Spte TdpMmu::set_spte(bool mirror, Hpa sptep, Spte old_spte, Spte new_spte, Gfn gfn, Level level) {
  mmu_lock_.assert_held_write();
  TDXSIM_CHECK(!old_spte.is_frozen() && !new_spte.is_frozen(),
               "a write-locked set involving FROZEN_SPTE at {}", gfn);
  // An exchange, not a store: the CPU may set A/D in a direct leaf meanwhile.
  trace_change_begin(mirror, gfn, level, old_spte, new_spte);
  old_spte = Spte{mem_.exchange(sptep, kHostKey, new_spte.raw(), std::memory_order_acq_rel)};
  handle_changed_spte(mirror, gfn, old_spte, new_spte, level, /*shared=*/false);
  if (mirror) {
    bug_on(new_spte.is_shadow_present(), "a non-atomic set of a present mirror SPTE");
    remove_external_spte(gfn, old_spte, level);
  }
  return old_spte;
}

void TdpMmu::remove_external_spte(Gfn gfn, Spte old_spte, Level level) {
  // Tables are removed from the S-EPT by free_external_spt, after their children.
  if (!old_spte.is_shadow_present() || !old_spte.is_last(level)) return;
  mmu_lock_.assert_held_write();
  const KvmResult<> r = ops_.remove_external_spte(kvm_, gfn, level, old_spte.pfn());
  bug_on(!r.has_value(), "remove_external_spte failed under the write lock");
}

void TdpMmu::handle_changed_spte(bool mirror, Gfn gfn, Spte old_spte, Spte new_spte, Level level,
                                 bool shared) {
  if (kvm_ != nullptr && kvm_->events().spte_changed.enabled()) {
    const Gfn seen = mirror ? gfn : Gfn{gfn.raw() | config_.gfn_direct_bits.raw()};
    kvm_->events().spte_changed.emit(
        SpteChangeEvent{EventPhase::kEnd, seen, level, old_spte, new_spte, mirror});
  }
  const bool was_present = old_spte.is_shadow_present();
  const bool is_present = new_spte.is_shadow_present();
  const bool was_leaf = was_present && old_spte.is_last(level);
  const bool is_leaf = is_present && new_spte.is_last(level);
  const bool pfn_changed = old_spte.pfn() != new_spte.pfn();
  TDXSIM_CHECK(level <= config_.root_level, "an SPTE at {} under a {} root", level_name(level),
               level_name(config_.root_level));
  TDXSIM_CHECK(gfn.is_aligned(level), "{} SPTE at unaligned {}", level_name(level), gfn);
  // A leaf is re-pointed only by zapping it first (and flushing): otherwise a vCPU could
  // keep writing the old page through its TLB while KVM believes it gone.
  TDXSIM_CHECK(!(was_leaf && is_leaf && pfn_changed),
               "{} leaf at {} changed pfn {} -> {} without a zap", level_name(level), gfn,
               old_spte.pfn(), new_spte.pfn());
  if (old_spte == new_spte) return;
  // MMIO, FROZEN and non-present values: nothing mapped before or after.
  if (!was_present && !is_present) return;
  if (mirror && was_leaf && is_leaf) {
    bug_on(true, "a present private mapping changed in place");
    return;
  }
  if (was_leaf != is_leaf && is_leaf_level(level)) {
    stats_.pages[mirror ? 1 : 0][level_num(level) - 1].add(is_leaf ? 1 : -1);
  }
  // A table the entry no longer links is torn down: by this thread, since the change that
  // unlinked it was this thread's.
  if (was_present && !was_leaf && (is_leaf || !is_present || pfn_changed)) {
    handle_removed_pt(sp_of_table(old_spte.child_table()), shared);
  }
}

void TdpMmu::handle_removed_pt(MmuPage* pt, bool shared) {
  const Level level = pt->level();
  const bool mirror = pt->is_mirror();
  for (unsigned i = 0; i < kPtesPerTable; ++i) {
    const Hpa sptep = pt->sptep(i);
    const Gfn gfn = pt->gfn() + uint64_t{i} * level_pages(level);
    Spte old_spte;
    if (shared) {
      // The old value only for a listener: no extra load of the entry when nobody traces.
      if (kvm_ != nullptr && kvm_->events().spte_changed.enabled()) {
        trace_change_begin(mirror, gfn, level, read_spte(sptep), Spte::frozen());
      }
      // Another thread that froze this entry before the table was unlinked finishes its
      // change and writes a non-frozen value; wait for that, then take the entry over.
      for (;;) {
        old_spte =
            Spte{mem_.exchange(sptep, kHostKey, Spte::kFrozenValue, std::memory_order_acq_rel)};
        if (!old_spte.is_frozen()) break;
        sched_pause();
      }
    } else {
      old_spte = read_spte(sptep);
      if (!old_spte.is_shadow_present()) continue;
      trace_change_begin(mirror, gfn, level, old_spte, Spte::frozen());
      old_spte =
          Spte{mem_.exchange(sptep, kHostKey, Spte::kFrozenValue, std::memory_order_acq_rel)};
    }
    handle_changed_spte(mirror, gfn, old_spte, Spte::frozen(), level, shared);
    if (mirror) {
      bug_on(shared, "a mirror table removed under the read lock");
      remove_external_spte(gfn, old_spte, level);
    }
  }
  if (mirror && pt->external_spt()) {
    const KvmResult<> r = ops_.free_external_spt(kvm_, pt->gfn(), level, *pt->external_spt());
    // The module may still own the page: leak it rather than hand it back to the host.
    if (!r) pt->leak_external_spt();
  }
  free_sp_deferred(pt);
}

// --- Faults ------------------------------------------------------------------------------

KvmResult<> TdpMmu::link_sp(const MmuPage* root, TdpIter& iter, MmuPage* sp) {
  return set_spte_atomic(root, iter, Spte::make_nonleaf(config_.format, sp->spt()));
}

KvmResult<> TdpMmu::split_huge_page(const MmuPage* root, TdpIter& iter, MmuPage* sp) {
  const Spte huge = iter.old_spte();
  const Level child_level = sp->level();
  // Each child maps its share of the huge page with the same access (make_small_spte).
  uint64_t base = huge.raw() & ~Spte::Addr::kMask;
  if (child_level == Level::k4K) base &= ~Spte::PageSize::kMask;
  for (unsigned i = 0; i < kPtesPerTable; ++i) {
    const Pfn pfn = huge.pfn() + uint64_t{i} * level_pages(child_level);
    mem_.store(sp->sptep(i), kHostKey, base | Spte::Addr::in_place(pfn.hpa().raw()),
               std::memory_order_relaxed);
  }
  const KvmResult<> r = link_sp(root, iter, sp);
  if (r) stats_.pages[0][level_num(child_level) - 1].add(kPtesPerTable);
  return r;
}

RetPf TdpMmu::map(MmuPage* root, KvmPageFault& fault) {
  TDXSIM_CHECK(!root->is_mirror(), "map() on a mirror root: private faults take the private path");
  return map_in(root, fault);
}

RetPf TdpMmu::map_in(MmuPage* root, KvmPageFault& fault) {
  mmu_lock_.assert_held_read();
  const bool mirror = root->is_mirror();
  RcuReadGuard rcu;
  TdpIter it = walk(*root, fault.goal_level, fault.gfn, fault.gfn + 1, root_bits(root));
  for (; it.valid(); it.next()) {
    if (it.level() == fault.goal_level) return map_handle_target_level(root, fault, it);
    const Spte old_spte = it.old_spte();
    // Another thread is mid-change on this entry (for a mirror: mid-SEAMCALL).
    if (old_spte.is_frozen()) return RetPf::kRetry;
    if (old_spte.is_shadow_present() && !old_spte.is_last(it.level())) continue;
    MmuPage* sp = alloc_sp({.level = level_down(it.level()), .is_mirror = mirror}, it.gfn());
    if (sp == nullptr) return RetPf::kInvalid;
    KvmResult<> r;
    if (old_spte.is_shadow_present()) {
      // A huge leaf above the goal: split it (private huge pages are not supported).
      if (bug_on(mirror, "splitting a huge mirror SPTE")) {
        free_sp_now(sp);
        return RetPf::kInvalid;
      }
      r = split_huge_page(root, it, sp);
    } else {
      r = link_sp(root, it, sp);
    }
    if (!r) {
      // Never published: no walker can be in it.
      free_sp_now(sp);
      return RetPf::kRetry;
    }
  }
  return RetPf::kRetry;
}

RetPf TdpMmu::map_handle_target_level(const MmuPage* root, KvmPageFault& fault, TdpIter& iter) {
  const Spte old_spte = iter.old_spte();
  const Level level = iter.level();
  if (old_spte.is_frozen()) return RetPf::kRetry;
  Spte new_spte;
  RetPf ret = RetPf::kFixed;
  if (fault.slot == nullptr) {
    // kvm_handle_noslot_fault: without MMIO caching, or for a gfn an MMIO SPTE cannot hold
    // (beyond kvm_mmu_max_gfn), emulate without building anything; every access faults.
    if (!config_.mmio.caching || (fault.gfn.raw() >> (config_.mmio.gpa_bits - kPageShift)) != 0) {
      return RetPf::kEmulate;
    }
    new_spte =
        Spte::make_mmio(config_.mmio, fault.gfn, fault.memslot_generation & Spte::kMmioGenMax);
    ret = RetPf::kEmulate;
  } else {
    if (old_spte.is_shadow_present() && old_spte.is_last(level) &&
        old_spte.pfn() == fault.pfn.align_down(level) && (!fault.write || old_spte.is_writable()) &&
        (!fault.exec || old_spte.is_executable(config_.format))) {
      return RetPf::kSpurious;
    }
    SpteLeafAttrs attrs;
    if (root->is_mirror()) {
      attrs = mirror_leaf_attrs();
    } else {
      attrs.host_writable = fault.map_writable;
      // EPT: KVM maps guest RAM write-back and ignores the guest's PAT (no non-coherent
      // DMA). NPT leaves carry no memory type (SVM has no get_mt_mask).
      attrs.ignore_pat = config_.format == SpteFormat::kEpt;
    }
    new_spte = Spte::make_leaf(config_.format, fault.pfn.align_down(level), level, attrs);
  }
  // An MMIO SPTE of the current generation: the access is emulated again
  // (handle_mmio_page_fault's RET_PF_EMULATE), not a spurious fault.
  if (new_spte == old_spte) return ret == RetPf::kEmulate ? ret : RetPf::kSpurious;
  if (!set_spte_atomic(root, iter, new_spte)) return RetPf::kRetry;
  // A huge leaf replaced a page table (the slot stopped dirty logging, say): CPUs may still
  // hold the old table in their paging-structure caches and walk it, or its frame once it is
  // reused, so the region the entry maps is flushed (kvm_flush_remote_tlbs_gfn). M3 (the
  // shadow MMU's pre-fix bug): the range starts at the base gfn of the table holding the
  // entry instead of the entry's own, and misses the region unless it is its table's first.
  if (old_spte.is_shadow_present() && !old_spte.is_last(level)) {
    const Gfn start = bug(BugId::M3) && level < root->level()
                          ? iter.gfn().align_down(level_up(level))
                          : iter.gfn().align_down(level);
    flush_remote_tlbs_range(start, level_pages(level));
  }
  return ret;
}

// --- Zaps ----------------------------------------------------------------------------------

bool TdpMmu::cond_resched(TdpIter& iter, unsigned& steps, bool flush, bool shared,
                          std::optional<RcuReadGuard>& rcu) {
  if (++steps < config_.yield_every || !iter.made_progress_since_restart()) return false;
  steps = 0;
  if (flush) flush_remote_tlbs();
  rcu.reset();
  // The mode is the caller's, known only at run time: the analysis cannot follow it.
  if (shared) {
    mmu_lock_.unlock_shared();
    sched_pause();
    mmu_lock_.lock_shared();
  } else {
    mmu_lock_.unlock();
    sched_pause();
    mmu_lock_.lock();
  }
  rcu.emplace();
  iter.mark_yielded();
  return true;
}

bool TdpMmu::zap_leafs(MmuPage* root, Gfn start, Gfn end, ZapReason reason, bool can_yield,
                       bool flush) {
  mmu_lock_.assert_held_write();
  end = std::min(end, max_gfn_exclusive());
  // P2 (planted): the exclusive end taken for an inclusive one.
  if (bug(BugId::P2) && end.raw() > start.raw() + 1) end = Gfn{end.raw() - 1};
  if (start >= end) return flush;
  const bool mirror = root->is_mirror();
  std::optional<RcuReadGuard> rcu;
  rcu.emplace();
  unsigned steps = 0;
  for (TdpIter it = walk(*root, Level::k4K, start, end, root_bits(root)); it.valid(); it.next()) {
    if (can_yield && cond_resched(it, steps, flush, /*shared=*/false, rcu)) {
      flush = false;
      // M8: the walk restarted past the entry it yielded at, leaving it mapped.
      if (bug(BugId::M8)) it.skip_current_on_restart();
      continue;
    }
    const Spte old_spte = it.old_spte();
    if (!old_spte.is_shadow_present() || !old_spte.is_last(it.level())) continue;
    set_spte(mirror, it.sptep(), old_spte, Spte::nonpresent(), it.gfn(), it.level());
    stats_.zapped[static_cast<size_t>(reason)][mirror ? 1 : 0].add();
    flush = true;
  }
  return flush;
}

bool TdpMmu::zap_leafs_in(uint8_t types, Gfn start, Gfn end, ZapReason reason, bool can_yield,
                          bool flush) {
  for (MmuPage* root = next_root(nullptr, types); root != nullptr; root = next_root(root, types)) {
    flush = zap_leafs(root, start, end, reason, can_yield, flush);
  }
  return flush;
}

bool TdpMmu::zap_direct_leafs(Gfn start, Gfn end, ZapReason reason, bool can_yield, bool flush,
                              bool with_invalid) {
  const uint8_t types = with_invalid ? kDirectRoots | kInvalidRoots : kDirectRoots;
  return zap_leafs_in(types, start, end, reason, can_yield, flush);
}

void TdpMmu::zap_root(MmuPage* root, bool shared) {
  const bool mirror = root->is_mirror();
  TDXSIM_CHECK(!(mirror && shared), "a mirror root zapped under the read lock");
  std::optional<RcuReadGuard> rcu;
  rcu.emplace();
  // 1G entries first, so that each removal (and each stretch between yields) is bounded,
  // then the root's own entries.
  const Level top = config_.root_level;
  for (Level zap_level : {Level::k1G, top}) {
    if (zap_level > top) continue;
    unsigned steps = 0;
    for (TdpIter it = walk(*root, zap_level, Gfn{0}, TdpIter::root_end(*root), Gfn{0}); it.valid();
         it.next()) {
      if (cond_resched(it, steps, /*flush=*/false, shared, rcu)) continue;
      for (;;) {
        const Spte old_spte = it.old_spte();
        if (!old_spte.is_shadow_present() || it.level() > zap_level) break;
        if (!shared) {
          set_spte(mirror, it.sptep(), old_spte, Spte::nonpresent(), it.gfn(), it.level());
          break;
        }
        // A failed exchange refreshed old_spte: look again.
        if (set_spte_atomic(root, it, Spte::nonpresent())) break;
      }
    }
    if (zap_level == top) break;
  }
}

void TdpMmu::zap_all_direct() {
  mmu_lock_.assert_held_write();
  stats_.zap_requests[static_cast<size_t>(ZapReason::kRoots)][0].add();
  // T5: the valid mirror roots too, while the TD still holds its HKID: their tables reach
  // the S-EPT out of the module's teardown order (and their pages are removed early).
  const bool mirror_too = bug(BugId::T5);
  const uint8_t types = mirror_too ? kAllRoots : kDirectRoots | kInvalidRoots;
  for (MmuPage* root = next_root(nullptr, types); root != nullptr; root = next_root(root, types)) {
    if (root->is_mirror() && !mirror_too) continue;
    zap_root(root, /*shared=*/false);
  }
}

template <class Update>
bool TdpMmu::update_direct_leafs(Gfn start, Gfn end, Level min_level, Update&& update) {
  mmu_lock_.assert_held();
  bool changed = false;
  end = std::min(end, max_gfn_exclusive());
  for (MmuPage* root = next_root(nullptr, kDirectRoots); root != nullptr;
       root = next_root(root, kDirectRoots)) {
    RcuReadGuard rcu;
    for (TdpIter it = walk(*root, min_level, start, end, root_bits(root)); it.valid(); it.next()) {
      // A failed compare-and-swap refreshed old_spte: decide again on what is there now.
      for (;;) {
        const Spte old_spte = it.old_spte();
        if (!old_spte.is_shadow_present() || !old_spte.is_last(it.level())) break;
        const std::optional<Spte> new_spte = update(old_spte);
        if (!new_spte) break;
        if (set_spte_atomic(root, it, *new_spte)) {
          changed = true;
          break;
        }
      }
    }
  }
  return changed;
}

bool TdpMmu::age_gfn_range(Gfn start, Gfn end, bool test_only, bool shared) {
  if (test_only) {
    bool young = false;
    update_direct_leafs(start, end, Level::k4K,
                        [&young, f = config_.format](Spte s) -> std::optional<Spte> {
                          young |= s.is_accessed(f);
                          return std::nullopt;
                        });
    return young;
  }
  // With A/D on, aging clears A and the mapping stays (mark_spte_for_access_track).
  return clear_leaf_bits(start, end, Spte::masks(config_.format).accessed, /*only_4k=*/false,
                         shared);
}

bool TdpMmu::clear_dirty_slot(Gfn start, Gfn end) {
  mmu_lock_.assert_held_read();
  return clear_leaf_bits(start, end, Spte::masks(config_.format).dirty, /*only_4k=*/false,
                         /*shared=*/true);
}

bool TdpMmu::clear_dirty_pt_masked(Gfn base, uint64_t mask) {
  mmu_lock_.assert_held_write();
  bool cleared = false;
  while (mask != 0) {
    const unsigned bit = static_cast<unsigned>(__builtin_ctzll(mask));
    mask &= mask - 1;
    cleared |= clear_leaf_bits(base + bit, base + (bit + 1), Spte::masks(config_.format).dirty,
                               /*only_4k=*/true, /*shared=*/false);
  }
  return cleared;
}

bool TdpMmu::clear_leaf_bits(Gfn start, Gfn end, uint64_t mask, bool only_4k, bool shared) {
  if (shared) {
    mmu_lock_.assert_held_read();
    TDXSIM_CHECK(!only_4k, "clear_leaf_bits: 4K only is the write-locked harvest's");
    return update_direct_leafs(start, end, Level::k4K, [mask](Spte s) -> std::optional<Spte> {
      if ((s.raw() & mask) == 0) return std::nullopt;
      return Spte{s.raw() & ~mask};
    });
  }
  mmu_lock_.assert_held_write();
  bool changed = false;
  end = std::min(end, max_gfn_exclusive());
  for (MmuPage* root = next_root(nullptr, kDirectRoots); root != nullptr;
       root = next_root(root, kDirectRoots)) {
    RcuReadGuard rcu;
    for (TdpIter it = walk(*root, Level::k4K, start, end, root_bits(root)); it.valid(); it.next()) {
      const Spte old_spte = it.old_spte();
      if (!old_spte.is_shadow_present() || !old_spte.is_last(it.level())) continue;
      if (only_4k && it.level() != Level::k4K) continue;
      if ((old_spte.raw() & mask) == 0) continue;
      clear_spte_bits(it, mask);
      changed = true;
    }
  }
  return changed;
}

Spte TdpMmu::clear_spte_bits(TdpIter& iter, uint64_t mask) {
  mmu_lock_.assert_held_write();
  const Hpa sptep = iter.sptep();
  Spte old_spte = iter.old_spte();
  trace_change_begin(/*mirror=*/false, iter.gfn(), iter.level(), old_spte,
                     Spte{old_spte.raw() & ~mask});
  if (bug(BugId::M9)) {
    // M9: a plain store of what was read — an A/D the CPU set since is lost.
    mem_.store(sptep, kHostKey, old_spte.raw() & ~mask, std::memory_order_release);
  } else if (old_spte.has_volatile_bits(config_.format)) {
    uint64_t cur = old_spte.raw();
    while (!mem_.compare_exchange(sptep, kHostKey, cur, cur & ~mask, std::memory_order_acq_rel)) {
    }
    old_spte = Spte{cur};
  } else {
    mem_.store(sptep, kHostKey, old_spte.raw() & ~mask, std::memory_order_release);
  }
  const Spte new_spte{old_spte.raw() & ~mask};
  handle_changed_spte(/*mirror=*/false, iter.gfn(), old_spte, new_spte, iter.level(),
                      /*shared=*/false);
  return new_spte;
}

bool TdpMmu::wrprot_range(Gfn start, Gfn end, Level min_level) {
  // W goes, MMU-writable stays: the next write faults, is logged, and W comes back.
  return update_direct_leafs(start, end, min_level, [](Spte s) -> std::optional<Spte> {
    if (!s.is_writable()) return std::nullopt;
    return Spte{Spte::Write::set(s.raw(), 0)};
  });
}

// --- Walks -------------------------------------------------------------------------------

void TdpMmu::visit_leaves(bool direct, bool mirror, Gfn start, Gfn end,
                          const std::function<void(const RootLeaf&)>& visit) const {
  mmu_lock_.assert_held();
  end = std::min(end, max_gfn_exclusive());
  if (start >= end) return;
  RcuReadGuard rcu;
  // Held across the walks: a root leaves the list (and is queued for freeing) only under it.
  MutexLock l(roots_lock_);
  for (const MmuPage* root : roots_) {
    if (!(root->is_mirror() ? mirror : direct)) continue;
    for (TdpIter it = walk(*root, Level::k4K, start, end, root_bits(root)); it.valid(); it.next()) {
      const Spte s = it.old_spte();
      if (!s.is_shadow_present() || !s.is_last(it.level())) continue;
      visit(
          RootLeaf{root->spt(), root->is_mirror(), root->role().invalid, it.gfn(), it.level(), s});
    }
  }
}

TdpMmu::TableCensus TdpMmu::table_census() const {
  // One count, exact: the counters and the tree change hands only under these locks. With
  // `linked`, also the frames of every page the count reached.
  const auto count = [this](std::unordered_set<uint64_t>* linked) {
    TableCensus c;
    WriteLock mmu(mmu_lock_);
    MutexLock l(roots_lock_);
    c.allocated = allocated_tables_.load(std::memory_order_relaxed);
    c.released = released_tables_.load(std::memory_order_relaxed);
    const uint64_t live = live_tables_.load(std::memory_order_acquire);
    const uint64_t held = c.allocated - c.released;
    c.awaiting_grace = live > held ? live - held : 0;
    for (const MmuPage* root : roots_) {
      ++c.roots;
      if (root->role().invalid) ++c.invalid_roots;
      ++c.reachable;
      if (linked != nullptr) linked->insert(root->spt().pfn().raw());
      // No RCU section: under the write lock no table can leave the tree meanwhile.
      for (TdpIter it = walk(*root, Level::k2M, Gfn{0}, TdpIter::root_end(*root), Gfn{0});
           it.valid(); it.next()) {
        const Spte s = it.old_spte();
        if (!s.is_shadow_present() || s.is_last(it.level())) continue;
        ++c.reachable;
        if (linked != nullptr) linked->insert(s.child_table().pfn().raw());
      }
    }
    return c;
  };
  TableCensus c = count(nullptr);
  if (c.balanced()) return c;
  // The pages queued for freeing are still indexed until their callbacks run: let them all
  // run (outside mmu_lock: a fault may be waiting for it inside its RCU section), then
  // count again, so that what the index holds beyond the reachable pages is exactly what
  // was never released.
  rcu_barrier();
  std::unordered_set<uint64_t> linked;
  c = count(&linked);
  if (c.balanced()) return c;
  for (uint64_t pfn = 0; pfn < sp_by_pfn_.size(); ++pfn) {
    if (!sp_by_pfn_.is_touched(pfn)) {
      pfn += LazyWords::kWordsPerPage - 1 - pfn % LazyWords::kWordsPerPage;
      continue;
    }
    const uint64_t word = AtomicWordRef(sp_by_pfn_[pfn]).load(std::memory_order_acquire);
    if (word == 0 || linked.contains(pfn)) continue;
    const MmuPage* sp = reinterpret_cast<const MmuPage*>(word);
    if (c.unreachable.size() < TableCensus::kKept) {
      c.unreachable.push_back(
          TableCensus::Table{sp->spt(), sp->gfn(), sp->level(), sp->is_mirror()});
    }
    ++c.unreachable_count;
  }
  return c;
}

Level TdpMmu::get_walk(const MmuPage* root, Gpa gpa, std::array<Spte, 5>& sptes) const {
  // The gfn the MMU knows, without the direct bits the iterator adds back.
  const Gfn gfn{gpa.gfn().raw() & ~root_bits(root).raw()};
  Level last = root->level();
  RcuReadGuard rcu;
  for (TdpIter it = walk(*root, Level::k4K, gfn, gfn + 1, root_bits(root)); it.valid(); it.next()) {
    last = it.level();
    sptes[level_num(last) - 1] = it.old_spte();
  }
  return last;
}

std::optional<Spte> TdpMmu::leaf_for(const MmuPage* root, Gfn gfn) const {
  RcuReadGuard rcu;
  for (TdpIter it = walk(*root, Level::k4K, gfn, gfn + 1, root_bits(root)); it.valid(); it.next()) {
    const Spte s = it.old_spte();
    if (s.is_shadow_present() && s.is_last(it.level())) return s;
  }
  return std::nullopt;
}

}  // namespace tdxsim
