// KvmEvents: the tracepoints of one VM that checkers and tracers attach to — KVM's own
// trace_kvm_* points where a checker needs to know *when* something happened relative to a
// vCPU's use of a translation: a remote TLB flush starting and returning, an SPTE changing,
// a vCPU loading a root, a range zap returning.
//
// Emitting costs one relaxed load when nobody listens. Listeners run on the emitting thread,
// inside whatever locks it holds (mmu_lock for SPTE changes): they must not call back into
// the MMU.
#pragma once

#include <cstdint>
#include <vector>

#include "base/addr.h"
#include "base/trace.h"
#include "kvm/page_fault.h"
#include "kvm/spte.h"
#include "kvm/x86_ops.h"

namespace tdxsim {

enum class EventPhase : uint8_t { kBegin, kEnd };

// kvm_flush_remote_tlbs (pages == 0) or kvm_flush_remote_tlbs_range: kBegin before the
// vendor hook or the request fallback, kEnd once it returned (every vCPU flushed or out of
// guest mode with the flush pending). A ranged flush the vendor could not do ends with
// `done` false (nothing was flushed; a full flush follows).
struct RemoteFlushEvent {
  EventPhase phase = EventPhase::kBegin;
  Gfn start{0};
  uint64_t pages = 0;
  bool done = true;
};

// An SPTE changes: kBegin just before the write (`new_spte` is what the writer intends),
// kEnd after it (handle_changed_spte, with the value replaced), every begin matched by one
// end — a write that lost its race ends with new_spte == old_spte. Between the two a walk may
// already see the new value: a checker must not judge what it sees then. `gfn` as the CPU
// sees it: a direct root's entry carries the VM's direct bits (a TD's shared bit), a mirror
// root's does not.
struct SpteChangeEvent {
  EventPhase phase = EventPhase::kEnd;
  Gfn gfn{0};
  Level level = Level::k4K;
  Spte old_spte;
  Spte new_spte;
  bool mirror = false;
};

// kvm_mmu_load on vCPU `vcpu_id` running on logical CPU `cpu`: kBegin before the root is
// chosen (root invalid), kEnd after load_mmu_pgd and the flush of the new root were asked
// for (the flush may take effect at the next VM entry, as SVM's TLB_CONTROL does).
struct RootLoadEvent {
  EventPhase phase = EventPhase::kBegin;
  int vcpu_id = 0;
  unsigned cpu = 0;
  Hpa root;
};

// One guest entry of vCPU `vcpu_id` on logical CPU `cpu`, around the vendor's vcpu_run in
// vcpu_enter_guest: kBegin just before it (after VcpuStats::entries counted it), kEnd once it
// returned, with the fastpath verdict the vendor gave (kExitHandled: TDX skipped the entry).
// The exit reason proper is decided later, in handle_exit.
struct VcpuRunEvent {
  EventPhase phase = EventPhase::kBegin;
  int vcpu_id = 0;
  unsigned cpu = 0;
  ExitFastpath fastpath = ExitFastpath::kNone;
};

// kvm_mmu_page_fault's outcome, once per fault MmuStats::faults counts (a fault the VM's
// bug check refused is in neither), on the faulting vCPU's thread. `gpa` with the direct
// bits the CPU reported.
struct PageFaultEvent {
  int vcpu_id = 0;
  Gpa gpa;
  uint64_t error_code = 0;
  RetPf ret = RetPf::kInvalid;
};

// A zap of [start, end) returned (kvm_unmap_gfn_range, kvm_zap_gfn_range, a memslot's or an
// attribute change's zap): emitted by the zapping thread with mmu_lock still held for write,
// after the last root was walked and before the lock is dropped, so a listener sees exactly
// what the zap left (no fault can install meanwhile). `shared`/`private_alias`: the aliases
// the zap targeted (for a VM without mirror roots both live in the direct roots). The one
// exception to "listeners must not call back into the MMU": a listener may read the tables
// through TdpMmu::visit_leaves, which takes only the root list's leaf lock.
struct RangeZapEvent {
  Gfn start{0};
  Gfn end{0};
  bool shared = true;
  bool private_alias = false;
  const char* why = "";
};

// Dirty logging of memslot `slot` (as_id << 16 | id), from generic KVM. kStart: a slot that
// logs was published and the arch made every later write to it count (created logging, or
// given KVM_MEM_LOG_DIRTY_PAGES), emitted after kvm_arch_commit_memory_region returned;
// kStop: the slot stopped logging (the flag cleared, or the slot deleted or moved — a moved
// slot that logs starts again at its new place). Around KVM_GET_DIRTY_LOG: kHarvestBegin
// before the vCPUs' logs are synced and the bitmap taken; kHarvestEnd once the harvested
// pages are protected again and the flush returned, with the bitmap userspace gets (one bit
// per page from base_gfn). All on the ioctl's thread, under slots_lock.
enum class DirtyLogOp : uint8_t { kStart, kStop, kHarvestBegin, kHarvestEnd };
struct DirtyLogEvent {
  DirtyLogOp op = DirtyLogOp::kStart;
  uint32_t slot = 0;
  Gfn base_gfn{0};
  uint64_t npages = 0;
  const std::vector<uint64_t>* bitmap = nullptr;  // kHarvestEnd only
};

struct KvmEvents {
  Tracepoint<VcpuRunEvent> vcpu_run;
  Tracepoint<PageFaultEvent> page_fault;
  Tracepoint<RemoteFlushEvent> remote_flush;
  Tracepoint<SpteChangeEvent> spte_changed;
  Tracepoint<RootLoadEvent> root_loaded;
  Tracepoint<RangeZapEvent> range_zapped;
  Tracepoint<DirtyLogEvent> dirty_log;
};

}  // namespace tdxsim
