#include "kvm/kvm.h"

#include <bit>

#include "base/check.h"
#include "base/rcu.h"
#include "kvm/kvm_vm.h"

namespace tdxsim {
namespace {

// mmu_invalidate_range_start while no range is recorded (KVM's INVALID_GPA).
constexpr uint64_t kNoGfn = ~uint64_t{0};

}  // namespace

// The MmuNotifier Kvm registers with its HostMm: forwards to Kvm's mn_* halves.
class Kvm::Notifier final : public MmuNotifier {
 public:
  explicit Notifier(Kvm& kvm) : kvm_(kvm) {}
  void invalidate_range_start(uint64_t start, uint64_t end) override {
    kvm_.mn_invalidate_range_start(start, end);
  }
  void invalidate_range_end(uint64_t start, uint64_t end) override {
    kvm_.mn_invalidate_range_end(start, end);
  }
  bool clear_young(uint64_t start, uint64_t end) override { return kvm_.mn_age(start, end, true); }
  bool test_young(uint64_t start, uint64_t end) override { return kvm_.mn_age(start, end, false); }
  void release() override { kvm_.mn_release(); }

 private:
  Kvm& kvm_;
};

Kvm::Kvm(HostMemory& mem, HostMm& mm, KvmConfig cfg)
    : mem_(mem),
      mm_(mm),
      cfg_(cfg),
      identity_(std::make_shared<const VmIdentity>()),
      slots_lock_("kvm->slots_lock"),
      mmu_lock_("kvm->mmu_lock"),
      generation_(cfg.first_generation),
      mn_invalidate_lock_("kvm->mn_invalidate_lock"),
      invalidate_range_start_(kNoGfn),
      invalidate_range_end_(kNoGfn),
      notifier_(std::make_unique<Notifier>(*this)) {
  TDXSIM_CHECK(cfg_.max_memslots > 0 && cfg_.max_memslots <= kDefaultMaxMemslots,
               "max_memslots {} out of range", cfg_.max_memslots);
  for (uint16_t as = 0; as < nr_memslot_as_ids(cfg_.type); ++as) {
    memslots_[as].store(std::bit_cast<uint64_t>(new Memslots(as, 0, {})),
                        std::memory_order_release);
  }
  mm_.register_notifier(notifier_.get());
}

Kvm::~Kvm() {
  mm_.unregister_notifier(notifier_.get());
  {
    // kvm_free_memslots: a guest_memfd outliving the VM must not reach into it.
    MutexLock l(slots_lock_);
    for (uint16_t as = 0; as < nr_memslot_as_ids(cfg_.type); ++as) {
      for (const Memslot& slot : *load_memslots(as)) {
        if (slot.gmem) slot.gmem->unbind(*this, slot);
      }
    }
  }
  for (uint16_t as = 0; as < nr_memslot_as_ids(cfg_.type); ++as) delete load_memslots(as);
  // Sets replaced earlier are freed by RCU callbacks, which may drop the last reference to a
  // guest_memfd and free its frames into mem_: let them run while mem_ is alive.
  rcu_barrier();
}

const Memslots* Kvm::load_memslots(uint16_t as_id) const {
  return std::bit_cast<const Memslots*>(memslots_[as_id].load(std::memory_order_acquire));
}

const Memslots& Kvm::memslots(uint16_t as_id) const {
  TDXSIM_CHECK(as_id < nr_memslot_as_ids(cfg_.type), "as_id {} on a {} VM", as_id,
               to_string(cfg_.type));
  TDXSIM_CHECK(rcu_read_held() || slots_lock_.held_by_this_thread(),
               "memslots read outside RCU and without kvm->slots_lock");
  return *load_memslots(as_id);
}

const Memslot* Kvm::gfn_to_memslot(Gfn gfn, uint16_t as_id) const {
  return memslots(as_id).find(gfn);
}

void Kvm::bump_generation() {
  generation_.fetch_add(1, std::memory_order_release);
}

void Kvm::publish_memslots(uint16_t as_id, std::unique_ptr<Memslots> next) {
  const Memslots* old;
  {
    // kvm_swap_active_memslots: never swap under an MMU-notifier invalidation, whose end
    // must see the slots its start saw.
    MutexLock l(mn_invalidate_lock_);
    mn_idle_.wait(mn_invalidate_lock_, [this]() TDXSIM_REQUIRES(mn_invalidate_lock_) {
      return mn_active_invalidate_count_ == 0;
    });
    old = std::bit_cast<const Memslots*>(memslots_[as_id].exchange(
        std::bit_cast<uint64_t>(next.release()), std::memory_order_acq_rel));
  }
  bump_generation();
  if (arch_ != nullptr) arch_->memslots_updated(memslots_generation());
  rcu_defer([old] { delete old; });
}

bool Kvm::mmu_invalidate_retry_gfn(uint64_t seq, Gfn gfn) const {
  return mmu_invalidate_retry_gfn_range(seq, gfn, gfn + 1);
}

bool Kvm::mmu_invalidate_retry_gfn_range(uint64_t seq, Gfn first, Gfn last) const {
  mmu_lock_.assert_held();
  // Under mmu_lock no writer runs, so the order of these loads does not matter.
  if (invalidate_in_progress_.load(std::memory_order_relaxed) != 0) {
    const uint64_t start = invalidate_range_start_.load(std::memory_order_relaxed);
    const uint64_t end = invalidate_range_end_.load(std::memory_order_relaxed);
    TDXSIM_CHECK(start != kNoGfn, "invalidation in progress without a range");
    if (first.raw() < end && start < last.raw()) return true;
  }
  return invalidate_seq_.load(std::memory_order_relaxed) != seq;
}

bool Kvm::mmu_invalidate_retry_gfn_unsafe(uint64_t seq, Gfn gfn) const {
  // The count is read first with acquire: if it reads 0 after an end, the end's sequence
  // bump (released before the decrement) is visible below.
  if (invalidate_in_progress_.load(std::memory_order_acquire) != 0) {
    const uint64_t start = invalidate_range_start_.load(std::memory_order_relaxed);
    const uint64_t end = invalidate_range_end_.load(std::memory_order_relaxed);
    if (start == kNoGfn || (gfn.raw() >= start && gfn.raw() < end)) return true;
  }
  return invalidate_seq_.load(std::memory_order_acquire) != seq;
}

void Kvm::mmu_invalidate_begin(Gfn start, Gfn end) {
  mmu_lock_.assert_held_write();
  TDXSIM_CHECK(start < end, "empty invalidation [{}, {})", start, end);
  const uint64_t n = invalidate_in_progress_.fetch_add(1, std::memory_order_acq_rel) + 1;
  if (n == 1) {
    invalidate_range_start_.store(start.raw(), std::memory_order_relaxed);
    invalidate_range_end_.store(end.raw(), std::memory_order_release);
  } else {
    mmu_invalidate_range_add(start, end);
  }
}

void Kvm::mmu_invalidate_range_add(Gfn start, Gfn end) {
  mmu_lock_.assert_held_write();
  TDXSIM_CHECK(invalidate_in_progress_.load(std::memory_order_relaxed) != 0,
               "range_add without an invalidation in progress");
  const uint64_t s = invalidate_range_start_.load(std::memory_order_relaxed);
  const uint64_t e = invalidate_range_end_.load(std::memory_order_relaxed);
  if (s == kNoGfn) {
    invalidate_range_start_.store(start.raw(), std::memory_order_relaxed);
    invalidate_range_end_.store(end.raw(), std::memory_order_release);
    return;
  }
  invalidate_range_start_.store(std::min(s, start.raw()), std::memory_order_relaxed);
  invalidate_range_end_.store(std::max(e, end.raw()), std::memory_order_release);
}

void Kvm::mmu_invalidate_end() {
  mmu_lock_.assert_held_write();
  const uint64_t n = invalidate_in_progress_.load(std::memory_order_relaxed);
  TDXSIM_CHECK(n != 0, "mmu_invalidate_end without a begin");
  // The sequence first: a fault that sees the count drop must also see the new sequence.
  invalidate_seq_.fetch_add(1, std::memory_order_release);
  if (n == 1) {
    // The last one out forgets the range, so the next begin starts a fresh one. Ordered
    // before the decrement, so a lockless reader that still sees the count non-zero may see
    // no range: it then retries, which is always safe.
    invalidate_range_start_.store(kNoGfn, std::memory_order_relaxed);
    invalidate_range_end_.store(kNoGfn, std::memory_order_relaxed);
  }
  invalidate_in_progress_.fetch_sub(1, std::memory_order_release);
}

void Kvm::flush_remote_tlbs() {
  remote_tlb_flushes_.add();
  if (arch_) arch_->flush_remote_tlbs();
}

void Kvm::mark_bugged(const char* what) {
  bool first = false;
  {
    MutexLock l(bug_mu_);
    if (bugged_.load(std::memory_order_relaxed) == 0) {
      bug_message_ = what;
      bugged_.store(1, std::memory_order_release);
      first = true;
    }
  }
  // kvm_vm_dead: no vCPU enters again.
  if (first && vm_ != nullptr) vm_->make_all_cpus_request(KvmRequest::kVmDead);
}

std::string Kvm::bug_message() const {
  MutexLock l(bug_mu_);
  return bug_message_;
}

}  // namespace tdxsim
