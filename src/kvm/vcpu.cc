#include "kvm/vcpu.h"

#include <optional>

#include "base/check.h"
#include "kvm/kvm_vm.h"
#include "platform/logical_cpu.h"

namespace tdxsim {

namespace {
constexpr uint64_t kModeMask = 3;
constexpr uint64_t word_of(uint64_t exits, VcpuMode m) {
  return exits << 2 | static_cast<uint64_t>(m);
}
}  // namespace

const char* to_string(VcpuMode m) {
  switch (m) {
    case VcpuMode::kOutsideGuestMode:
      return "OUTSIDE_GUEST_MODE";
    case VcpuMode::kInGuestMode:
      return "IN_GUEST_MODE";
    case VcpuMode::kExitingGuestMode:
      return "EXITING_GUEST_MODE";
  }
  return "?";
}

const char* to_string(KvmRequest r) {
  switch (r) {
    case KvmRequest::kTlbFlush:
      return "KVM_REQ_TLB_FLUSH";
    case KvmRequest::kVmDead:
      return "KVM_REQ_VM_DEAD";
    case KvmRequest::kOutsideGuestMode:
      return "KVM_REQ_OUTSIDE_GUEST_MODE";
    case KvmRequest::kMmuFreeObsoleteRoots:
      return "KVM_REQ_MMU_FREE_OBSOLETE_ROOTS";
    case KvmRequest::kTlbFlushCurrent:
      return "KVM_REQ_TLB_FLUSH_CURRENT";
  }
  return "?";
}

KvmVcpu::KvmVcpu(KvmVm& vm, int id) : vm_(vm), ops_(vm.ops()), id_(id) {
  mmu_.vcpu_id = id;
}

KvmVcpu::~KvmVcpu() = default;

Kvm& KvmVcpu::kvm() const {
  return vm_.kvm();
}

// --- Requests and kicks ---------------------------------------------------------------------

void KvmVcpu::make_request(KvmRequest r) {
  // seq_cst: ordered before the mode load of a kick that follows (the vCPU's side stores
  // its mode, seq_cst, before it reads the requests).
  requests_.fetch_or(request_bit(r), std::memory_order_seq_cst);
}

bool KvmVcpu::test_request(KvmRequest r) const {
  return (requests_.load(std::memory_order_acquire) & request_bit(r)) != 0;
}

bool KvmVcpu::check_request(KvmRequest r) {
  if (!test_request(r)) return false;
  // Acquire: what the sender wrote before setting the request is visible to the handler.
  return (requests_.fetch_and(~request_bit(r), std::memory_order_acq_rel) & request_bit(r)) != 0;
}

void KvmVcpu::kick() {
  uint64_t w = mode_.load(std::memory_order_seq_cst);
  // kvm_vcpu_exiting_guest_mode: one kicker sends the IPI; later ones see EXITING.
  while (mode_of(w) == VcpuMode::kInGuestMode) {
    const uint64_t exiting = (w & ~kModeMask) | static_cast<uint64_t>(VcpuMode::kExitingGuestMode);
    if (mode_.compare_exchange(w, exiting, std::memory_order_seq_cst)) {
      stats_.kicks.add();
      // The vCPU cannot change CPUs while in guest mode: cpu_ was written before the mode.
      cpu_->send_reschedule();
      return;
    }
  }
}

void KvmVcpu::signal() {
  signal_.store(1, std::memory_order_seq_cst);
  kick();
}

uint64_t KvmVcpu::request_and_kick(KvmRequest r) {
  make_request(r);
  const uint64_t w = mode_.load(std::memory_order_seq_cst);
  if (mode_of(w) != VcpuMode::kOutsideGuestMode) kick();
  return w;
}

void KvmVcpu::wait_exited(uint64_t word) const {
  if (mode_of(word) == VcpuMode::kOutsideGuestMode) return;
  // smp_call_function waits with interrupts enabled: a CPU waiting here still takes IPIs
  // (while blocked, their senders run them), so two CPUs waiting on each other cannot
  // deadlock. Blocking rather than spinning leaves the host CPU to the vCPU being waited for.
  std::optional<LogicalCpu::BlockedScope> blocked;
  if (LogicalCpu* self = this_cpu(); self != nullptr) blocked.emplace(*self);
  for (uint64_t w = mode_.load(std::memory_order_acquire); exits_of(w) == exits_of(word);
       w = mode_.load(std::memory_order_acquire)) {
    mode_.wait(w, std::memory_order_acquire);
  }
}

// --- KVM_RUN -------------------------------------------------------------------------------

void KvmVcpu::load(LogicalCpu& cpu) {
  cpu.assert_current();
  if (cpu_ != nullptr && cpu_ != &cpu) stats_.migrations.add();
  // The vendor sees the old CPU in cpu() and moves what is tied to it.
  ops_.vcpu_load(*this, cpu);
  cpu_ = &cpu;
}

KvmResult<> KvmVcpu::run(LogicalCpu& cpu) {
  stats_.runs.add();
  load(cpu);
  run_.exit_reason = KvmExitReason::kUnknown;
  int r = ops_.complete_userspace_io(*this);
  if (r > 0) {
    if (KvmResult<> pre = ops_.vcpu_pre_run(*this); !pre) return pre;
    do {
      r = enter_guest(cpu);
    } while (r > 0);
  }
  if (r < 0) return std::unexpected(static_cast<Errno>(-r));
  stats_.exits_to_userspace.add();
  return {};
}

int KvmVcpu::process_requests() {
  if (check_request(KvmRequest::kVmDead)) return -static_cast<int>(Errno::kEio);
  if (check_request(KvmRequest::kMmuFreeObsoleteRoots)) {
    // kvm_mmu_free_obsolete_roots: the reload below replaces an obsolete root.
    if (mmu_.root != nullptr && TdpMmu::is_obsolete_root(mmu_.root)) vm_.mmu().unload(mmu_);
  }
  if (check_request(KvmRequest::kTlbFlush)) {
    // kvm_vcpu_flush_tlb_all also covers a pending flush of the current root.
    stats_.tlb_flushes.add();
    ops_.flush_tlb_all(*this);
    (void)check_request(KvmRequest::kTlbFlushCurrent);
  }
  if (check_request(KvmRequest::kTlbFlushCurrent)) {
    stats_.tlb_flushes_current.add();
    ops_.flush_tlb_current(*this);
  }
  // KVM_REQ_OUTSIDE_GUEST_MODE asks for nothing but the exit that brought us here.
  (void)check_request(KvmRequest::kOutsideGuestMode);
  return 1;
}

int KvmVcpu::enter_guest(LogicalCpu& cpu) {
  if (kvm().vm_bugged()) return -static_cast<int>(Errno::kEio);
  if (has_requests()) {
    if (const int r = process_requests(); r <= 0) return r;
  }
  // kvm_mmu_reload: a valid direct root, loaded and flushed when it is new.
  if (mmu_.root == nullptr || TdpMmu::is_obsolete_root(mmu_.root)) {
    stats_.root_loads.add();
    Tracepoint<RootLoadEvent>& tp = kvm().events().root_loaded;
    tp.emit(RootLoadEvent{EventPhase::kBegin, id_, cpu.id(), Hpa{0}});
    if (KvmResult<> l = vm_.mmu().load(mmu_); !l) return -static_cast<int>(l.error());
    if (tp.enabled()) tp.emit(RootLoadEvent{EventPhase::kEnd, id_, cpu.id(), mmu_.root->spt()});
  }
  if (signal_pending()) {
    signal_.store(0, std::memory_order_relaxed);
    run_.exit_reason = KvmExitReason::kIntr;
    return -static_cast<int>(Errno::kEintr);
  }

  // IN_GUEST_MODE before the last look at requests: a sender that sets one after this store
  // sees the mode and kicks, and the kick makes the entry below exit at once.
  const uint64_t exits = exits_of(mode_.load(std::memory_order_relaxed));
  mode_.store(word_of(exits, VcpuMode::kInGuestMode), std::memory_order_seq_cst);
  if (has_requests() || signal_pending()) {
    mode_.store(word_of(exits + 1, VcpuMode::kOutsideGuestMode), std::memory_order_seq_cst);
    mode_.notify_all();
    stats_.requests_cancelled_entry.add();
    cpu.handle_interrupts();
    return 1;
  }
  stats_.entries.add();
  // One relaxed load when nobody traces; a listener attached after it waits for the next entry.
  const Tracepoint<VcpuRunEvent>& run_tp = kvm().events().vcpu_run;
  const bool traced = run_tp.enabled();
  if (traced) run_tp.emit(VcpuRunEvent{EventPhase::kBegin, id_, cpu.id(), ExitFastpath::kNone});
  const ExitFastpath fastpath = ops_.vcpu_run(*this);
  if (traced) run_tp.emit(VcpuRunEvent{EventPhase::kEnd, id_, cpu.id(), fastpath});
  stats_.exits.add();
  // OUTSIDE_GUEST_MODE, then interrupts: a waiting sender sees the exit count move, and a
  // kick's IPI is taken here (local_irq_enable after the exit).
  mode_.store(word_of(exits + 1, VcpuMode::kOutsideGuestMode), std::memory_order_seq_cst);
  mode_.notify_all();
  cpu.handle_interrupts();
  return ops_.handle_exit(*this, fastpath);
}

}  // namespace tdxsim
