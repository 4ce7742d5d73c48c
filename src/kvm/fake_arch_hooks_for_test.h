// FakeArchHooks: a recording KvmArchHooks for tests of generic KVM. Every call is recorded
// with its arguments (slot identity copied, since a slot may be freed before the test reads
// the log), the mode in which the calling thread held mmu_lock and whether it held
// slots_lock, so tests assert both what generic KVM asked and under which locks.
//
// Like the real x86 MMU, the flush_shadow_* hooks take mmu_lock for write themselves (a
// caller that already holds it trips the lock checks). `on_call` runs inside every hook,
// after recording, with the caller's locks still held: tests use it to observe the
// invalidation state from inside.
//
// Thread safety: hooks may be called from any thread; the log has its own leaf lock.
// Configuration fields (fail_prepare, unmap_flushes, young, on_call) are set before the
// calls they affect, with no call in flight.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "base/lock.h"
#include "kvm/arch_hooks.h"
#include "kvm/kvm.h"

namespace tdxsim {

class FakeArchHooks : public KvmArchHooks {
 public:
  enum class Kind {
    kPrepare,
    kFlushShadowMemslot,
    kFlushShadowAll,
    kUnmap,
    kAge,
    kTestAge,
    kPreSet,
    kPostSet,
    kFlushRemoteTlbs,
    kCommit,
    kLogDirtyMasked,
  };

  struct Call {
    Kind kind = Kind::kPrepare;
    // The slot of a GfnRange or the slot being flushed; for kPrepare the new slot, or the
    // old one for a deletion. -1: none.
    int slot_id = -1;
    bool slot_invalid = false;
    Gfn start;
    Gfn end;
    uint8_t attr_filter = 0;
    bool may_block = false;
    uint64_t attributes = 0;
    // kPrepare only.
    MemslotChange change = MemslotChange::kCreate;
    int old_slot_id = -1;
    LockMode mmu_lock = LockMode::kNotHeld;
    bool slots_lock_held = false;
    uint64_t invalidate_in_progress = 0;
  };

  // Registers itself with `kvm`.
  explicit FakeArchHooks(Kvm& kvm) : kvm_(kvm), mu_("fake_arch.calls") { kvm.set_arch(this); }

  std::optional<Errno> fail_prepare;
  bool unmap_flushes = false;
  bool young = false;
  std::function<void(const Call&)> on_call;

  std::vector<Call> calls() const {
    MutexLock l(mu_);
    return calls_;
  }
  std::vector<Call> calls(Kind k) const {
    std::vector<Call> out;
    for (const Call& c : calls()) {
      if (c.kind == k) out.push_back(c);
    }
    return out;
  }
  std::vector<Kind> kinds() const {
    std::vector<Kind> out;
    for (const Call& c : calls()) out.push_back(c.kind);
    return out;
  }
  void clear() {
    MutexLock l(mu_);
    calls_.clear();
  }

  KvmResult<> prepare_memory_region(const Memslot* old, const Memslot* new_slot,
                                    MemslotChange change) override {
    Call c = base(Kind::kPrepare, new_slot ? new_slot : old);
    c.change = change;
    c.old_slot_id = old ? old->id : -1;
    record(c);
    if (fail_prepare) return std::unexpected(*fail_prepare);
    return {};
  }
  void flush_shadow_memslot(const Memslot& slot) override {
    Call c = base(Kind::kFlushShadowMemslot, &slot);
    c.start = slot.base_gfn;
    c.end = slot.end();
    record(c);
    WriteLock l(kvm_.mmu_lock());
  }
  void flush_shadow_all() override {
    record(base(Kind::kFlushShadowAll, nullptr));
    WriteLock l(kvm_.mmu_lock());
  }
  bool unmap_gfn_range(const GfnRange& r) override {
    record(ranged(Kind::kUnmap, r));
    return unmap_flushes;
  }
  bool age_gfn(const GfnRange& r) override {
    record(ranged(Kind::kAge, r));
    return young;
  }
  bool test_age_gfn(const GfnRange& r) override {
    record(ranged(Kind::kTestAge, r));
    return young;
  }
  bool pre_set_memory_attributes(const GfnRange& r) override {
    record(ranged(Kind::kPreSet, r));
    return unmap_flushes;
  }
  bool post_set_memory_attributes(const GfnRange& r) override {
    record(ranged(Kind::kPostSet, r));
    return false;
  }
  void flush_remote_tlbs() override { record(base(Kind::kFlushRemoteTlbs, nullptr)); }
  void commit_memory_region(const Memslot* old, const Memslot* new_slot,
                            MemslotChange change) override {
    Call c = base(Kind::kCommit, new_slot ? new_slot : old);
    c.change = change;
    c.old_slot_id = old ? old->id : -1;
    record(c);
  }
  void enable_log_dirty_pt_masked(const Memslot& slot, Gfn start, uint64_t mask) override {
    Call c = base(Kind::kLogDirtyMasked, &slot);
    c.start = start;
    c.attributes = mask;  // the mask rides in the spare field
    record(c);
  }

 private:
  Call base(Kind k, const Memslot* slot) const {
    Call c;
    c.kind = k;
    if (slot) {
      c.slot_id = slot->id;
      c.slot_invalid = slot->invalid;
    }
    c.mmu_lock = kvm_.mmu_lock().held_mode();
    c.slots_lock_held = kvm_.slots_lock().held_by_this_thread();
    c.invalidate_in_progress = kvm_.mmu_invalidate_in_progress();
    return c;
  }
  Call ranged(Kind k, const GfnRange& r) const {
    Call c = base(k, r.slot);
    c.start = r.start;
    c.end = r.end;
    c.attr_filter = r.attr_filter;
    c.may_block = r.may_block;
    c.attributes = r.attributes;
    return c;
  }
  void record(const Call& c) {
    {
      MutexLock l(mu_);
      calls_.push_back(c);
    }
    if (on_call) on_call(c);
  }

  Kvm& kvm_;
  mutable Mutex mu_;
  std::vector<Call> calls_ TDXSIM_GUARDED_BY(mu_);
};

}  // namespace tdxsim
