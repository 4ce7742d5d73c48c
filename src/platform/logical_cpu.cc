#include "platform/logical_cpu.h"

#include <utility>

#include "base/check.h"
#include "base/wait.h"
#include "platform/ept_entry.h"
#include "platform/host_memory.h"
#include "platform/platform.h"
#include "platform/ve_delivery.h"

namespace tdxsim {

const char* to_string(Staleness s) {
  switch (s) {
    case Staleness::kFresh:
      return "fresh";
    case Staleness::kMorePermissive:
      return "more-permissive";
    case Staleness::kDifferentFrame:
      return "different-frame";
    case Staleness::kNotMapped:
      return "not-mapped";
  }
  return "?";
}

struct LogicalCpu::Ipi {
  Ipi(const std::function<void(LogicalCpu&)>* f, LogicalCpu* w) : fn(f), waiter(w) {}
  const std::function<void(LogicalCpu&)>* fn;
  // A sender bound to a CPU waits in its own mailbox (so it can take interrupts meanwhile)
  // and `done` is guarded by that mailbox's mutex; an unbound sender waits on `finished`.
  LogicalCpu* waiter;
  bool done = false;
  Notification finished;
};

LogicalCpu::LogicalCpu(Platform& platform, unsigned id, unsigned package, const TlbConfig& tlb)
    : platform_(platform), id_(id), package_(package), tlb_(tlb) {}

bool LogicalCpu::in_guest_mode() const {
  return in_guest_.load(std::memory_order_acquire) != 0;
}

void LogicalCpu::assert_current() const {
  // Every SEAMCALL and CPU-local instruction asks: the occupant answers itself without the
  // mailbox lock. Only the occupant writes running_, so its own relaxed read is exact.
  if (running_.load(std::memory_order_relaxed) == std::this_thread::get_id()) return;
  MutexLock lock(mu_);
  const auto me = std::this_thread::get_id();
  // The occupant, or a sender running an interrupt handler for this idle CPU.
  TDXSIM_CHECK((occupant_ == me && !blocked_) || (idle_handler_running_ && idle_handler_ == me),
               "CPU {}: a CPU-local operation from a thread not running on it", id_);
}

// --- Binding ------------------------------------------------------------------------------

void LogicalCpu::bind_current_thread() {
  MutexLock lock(mu_);
  TDXSIM_CHECK(occupant_ != std::this_thread::get_id(), "CPU {}: thread bound twice", id_);
  cv_.wait(mu_, [&]() TDXSIM_REQUIRES(mu_) { return !occupant_ && !idle_handler_running_; });
  occupant_ = std::this_thread::get_id();
  blocked_ = false;
  running_.store(std::this_thread::get_id(), std::memory_order_relaxed);
}

void LogicalCpu::unbind_current_thread() {
  // Interrupts queued for this CPU run before it goes idle: their senders are waiting. One
  // may be queued after the last look and before the occupant is gone, so the look that
  // finds the queue empty is the one that gives the CPU up, under the same lock.
  for (;;) {
    handle_interrupts();
    MutexLock lock(mu_);
    TDXSIM_CHECK(occupant_ == std::this_thread::get_id(), "CPU {}: unbind by a non-occupant", id_);
    if (!ipis_.empty()) continue;
    occupant_.reset();
    running_.store(std::thread::id{}, std::memory_order_relaxed);
    cv_.notify_all();
    return;
  }
}

LogicalCpu::BlockedScope::BlockedScope(LogicalCpu& cpu) : cpu_(cpu) {
  cpu_.handle_interrupts();
  MutexLock lock(cpu_.mu_);
  TDXSIM_CHECK(cpu_.occupant_ == std::this_thread::get_id(), "CPU {}: BlockedScope off-CPU",
               cpu_.id_);
  cpu_.blocked_ = true;
  cpu_.running_.store(std::thread::id{}, std::memory_order_relaxed);
}

LogicalCpu::BlockedScope::~BlockedScope() {
  MutexLock lock(cpu_.mu_);
  // A sender may be running an interrupt on our behalf; we resume after it, as a thread
  // that was switched out resumes after the idle CPU's handler.
  cpu_.cv_.wait(cpu_.mu_, [&]() TDXSIM_REQUIRES(cpu_.mu_) { return !cpu_.idle_handler_running_; });
  cpu_.blocked_ = false;
  cpu_.running_.store(std::this_thread::get_id(), std::memory_order_relaxed);
}

// --- Interrupts ---------------------------------------------------------------------------

void LogicalCpu::run_handler_idle(const std::function<void(LogicalCpu&)>& fn) {
  cv_.wait(mu_, [&]() TDXSIM_REQUIRES(mu_) { return !idle_handler_running_; });
  idle_handler_running_ = true;
  idle_handler_ = std::this_thread::get_id();
  mu_.unlock();
  fn(*this);
  stats_.ipis_handled_idle.add();
  mu_.lock();
  idle_handler_running_ = false;
  idle_handler_.reset();
  cv_.notify_all();
}

void LogicalCpu::run_on(const std::function<void(LogicalCpu&)>& fn, LogicalCpu* self) {
  stats_.ipis_received.add();
  Ipi ipi(&fn, self);
  {
    MutexLock lock(mu_);
    if (occupant_ == std::this_thread::get_id() && !blocked_) {
      mu_.unlock();
      fn(*this);  // a self-IPI: the handler runs right here
      mu_.lock();
      return;
    }
    if (!occupant_ || blocked_) {
      run_handler_idle(fn);
      return;
    }
    ipis_.push_back(&ipi);
    interrupt_pending_.store(1, std::memory_order_release);
    // The occupant may itself be waiting in run_on for another CPU: wake it to handle us.
    cv_.notify_all();
  }
  if (self == nullptr) {
    ipi.finished.wait();
    return;
  }
  // Wait for the target while handling our own interrupts: two CPUs IPIing each other
  // must not deadlock (smp_call_function waits with interrupts enabled).
  MutexLock lock(self->mu_);
  while (!ipi.done) {
    if (!self->ipis_.empty()) {
      self->mu_.unlock();
      self->handle_interrupts();
      self->mu_.lock();
      continue;
    }
    self->cv_.wait(self->mu_);
  }
}

void LogicalCpu::handle_interrupts() {
  // Nothing sent: no need for the mailbox lock (every VM exit opens this window). An IPI
  // queued right after these loads is taken at the next window, as if it came a little later.
  if (interrupt_pending_.load(std::memory_order_acquire) == 0 &&
      resched_pending_.load(std::memory_order_relaxed) == 0 &&
      nmi_pending_.load(std::memory_order_relaxed) == 0) {
    return;
  }
  for (;;) {
    Ipi* ipi;
    {
      MutexLock lock(mu_);
      if (ipis_.empty()) {
        interrupt_pending_.store(0, std::memory_order_release);
        break;
      }
      ipi = ipis_.front();
      ipis_.pop_front();
    }
    (*ipi->fn)(*this);
    if (ipi->waiter != nullptr) {
      MutexLock lock(ipi->waiter->mu_);
      ipi->done = true;
      ipi->waiter->cv_.notify_all();
    } else {
      ipi->finished.notify();
    }
  }
  resched_pending_.store(0, std::memory_order_release);
  // NMIs that arrived in host mode go straight to the host's handler.
  const uint64_t n = nmi_pending_.exchange(0, std::memory_order_acq_rel);
  stats_.nmis_handled.add(n);
}

void LogicalCpu::send_reschedule() {
  stats_.ipis_received.add();
  resched_pending_.store(1, std::memory_order_release);
}

void LogicalCpu::send_nmi() {
  stats_.nmis_received.add();
  nmi_pending_.fetch_add(1, std::memory_order_release);
  MutexLock lock(mu_);
  cv_.notify_all();
}

bool LogicalCpu::handle_host_nmi() {
  if (nmi_latched_ == 0) {
    stats_.spurious_nmis.add();
    return false;
  }
  --nmi_latched_;
  stats_.nmis_handled.add();
  return true;
}

// --- Instructions ---------------------------------------------------------------------------

void LogicalCpu::invept(InveptType type, Eptp eptp) {
  assert_current();
  (type == InveptType::kAllContext ? stats_.invept_all : stats_.invept_single).add();
  tlb_.invept(type, eptp.root().raw());
  if (HyperVL0* l0 = platform_.hyperv())
    l0->on_invept(type == InveptType::kAllContext, eptp.root().raw());
}

void LogicalCpu::invvpid(InvvpidType type, uint16_t vpid, uint64_t linear) {
  assert_current();
  stats_.invvpid.add();
  tlb_.invvpid(type, vpid, linear);
}

void LogicalCpu::svm_vmrun_tlb_control(GuestContext& ctx) {
  const SvmTlbControl c = std::exchange(ctx.tlb_control, SvmTlbControl::kNothing);
  if (c == SvmTlbControl::kNothing) return;
  stats_.asid_flushes.add();
  const bool all = c == SvmTlbControl::kFlushAll;
  if (all)
    tlb_.flush_all_asids();
  else
    tlb_.flush_asid(ctx.asid);
  if (HyperVL0* l0 = platform_.hyperv()) l0->on_asid_flush(ctx.asid, all);
}

// --- Translation ------------------------------------------------------------------------------

WalkContext LogicalCpu::walk_context(const GuestContext& ctx, Gpa gpa) const {
  WalkContext wc;
  switch (ctx.mode) {
    case GuestMode::kSvm:
      wc.format = PagingFormat::kNpt;
      wc.root = ctx.ncr3;
      wc.levels = ctx.npt_levels;
      wc.ad_enabled = true;
      wc.table_key = kHostKey;
      return wc;
    case GuestMode::kTd:
      if (!ctx.is_shared(gpa)) {
        wc = ctx.secure_eptp.walk_context(ctx.sept_key);
        wc.mbec = ctx.mbec;
        return wc;
      }
      [[fallthrough]];
    case GuestMode::kVmx:
      wc = ctx.eptp.walk_context(kHostKey);
      wc.mbec = ctx.mbec;
      return wc;
  }
  return wc;
}

TlbTag LogicalCpu::tlb_tag(const GuestContext& ctx, const GuestInsn& insn) const {
  if (ctx.mode == GuestMode::kSvm) return TlbTag{TlbEntryKind::kAsid, ctx.asid, 0, 0};
  // A TD's private and shared translations are both tagged by its secure EPTP.
  const Eptp& tagging = ctx.mode == GuestMode::kTd ? ctx.secure_eptp : ctx.eptp;
  if (insn.paging_structure)
    return TlbTag{TlbEntryKind::kGuestPhysical, 0, 0, tagging.root().raw()};
  return TlbTag{TlbEntryKind::kCombined, ctx.vpid, ctx.pcid, tagging.root().raw()};
}

namespace {

// The fault a cached translation raises when it does not allow an access. The TLB does not
// cache suppress-#VE, so such a fault is always a VM exit.
TranslationFault fault_from_cached(const GuestContext& ctx, Gpa gpa, const AccessRequest& a,
                                   const Perms& p, Level level) {
  if (ctx.mode == GuestMode::kSvm) {
    uint64_t ec = 1 | 4;  // P (present, protection) | U
    if (a.type == AccessType::kWrite) ec |= 2;
    if (a.type == AccessType::kFetch) ec |= 16;
    ec |= a.final_translation ? (uint64_t{1} << 32) : (uint64_t{1} << 33);
    return NptFault{gpa, ec, level};
  }
  uint64_t q = a.type == AccessType::kRead ? 1 : a.type == AccessType::kWrite ? 2 : 4;
  q |= (p.read ? 8 : 0) | (p.write ? 16 : 0) | (p.exec ? 32 : 0) |
       (ctx.mbec && p.user_exec ? 64 : 0);
  if (a.gla_valid) q |= 128 | (a.final_translation ? 256 : 0);
  return EptViolation{gpa, q, level, true};
}

ServedTranslation served_from(const TlbEntry& e, Gpa gpa, TranslationSource src, uint64_t seen_at) {
  return ServedTranslation{e.hpa_of(gpa.raw()), e.key,         e.level, e.perms, src,
                           Staleness::kFresh,   e.source_root, seen_at};
}

}  // namespace

std::expected<ServedTranslation, TranslationFault> LogicalCpu::translate(
    GuestContext& ctx, Gpa gpa, const AccessRequest& access) {
  WalkContext wc = walk_context(ctx, gpa);
  // The CPU tracks D only where EPT A/D is on; elsewhere every cached translation is dirty.
  const bool tracks_dirty = wc.format == PagingFormat::kEpt && wc.ad_enabled;
  const bool pml =
      ctx.mode == GuestMode::kVmx && ctx.enable_pml && tracks_dirty && ctx.pml_address != nullptr;
  if (pml) wc.pml_full = ctx.pml_index >= kPmlEntries;
  GuestInsn shape;
  shape.paging_structure = !access.final_translation;
  const TlbTag tag = tlb_tag(ctx, shape);
  HyperVL0* l0 = platform_.hyperv();

  // With EPT A/D enabled, guest paging-structure accesses are writes (SDM §29.3.3.2): a
  // cached read-only translation cannot serve them.
  AccessRequest needed = access;
  if (wc.format == PagingFormat::kEpt && wc.ad_enabled && access.gla_valid &&
      !access.final_translation)
    needed.type = AccessType::kWrite;

  // The checkers' clock before the lookup: whatever a checker stamped earlier (a flush
  // returning) happened before this access.
  const uint64_t seen_at = platform_.config().probe_tlb_hits ? platform_.check_clock().now() : 0;
  // Fills race with the L0's flushes from other threads (see Tlb::insert_unless_flushed).
  const uint64_t tlb_gen = l0 != nullptr ? tlb_.remote_flush_generation() : 0;
  auto fill = [&](const TlbEntry& e) {
    if (l0 != nullptr) {
      tlb_.insert_unless_flushed(e, tlb_gen);
    } else {
      tlb_.insert(e);
    }
  };

  Tlb::Probe cached = tlb_.probe(tag, gpa.raw());
  const bool psc_probed = !cached.entry;
  std::optional<TlbEntry>& e = cached.entry;
  // A write through a translation cached clean walks again to set D (and log it).
  if (e && e->perms.allows(needed) && needed.type == AccessType::kWrite && !e->dirty) e.reset();
  if (e) {
    if (e->perms.allows(needed)) {
      ServedTranslation served = served_from(*e, gpa, TranslationSource::kTlb, seen_at);
      report_stale(ctx, gpa, access, served);
      return served;
    }
    // The access faults on the cached translation (SDM §28.4.3.3 then drops it). If the
    // tables allow the access, this is the spurious fault KVM relies on instead of
    // flushing when it makes an entry more permissive.
    tlb_.invalidate_on_fault(tag, gpa.raw());
    if (l0 != nullptr) {
      // Under an L0 the fault lands in the L0, which re-syncs its shadow from L1's tables
      // and only reflects the fault to L1 if those deny the access too.
      l0->drop(wc.root, gpa);
    } else {
      auto fresh =
          walk(platform_.memory(), platform_.memory().layout(), wc, gpa, access, WalkMode::kProbe);
      if (fresh) stats_.spurious_faults.add();
      TranslationFault f = fault_from_cached(ctx, gpa, needed, e->perms, e->level);
      // A promoted paging-structure access reports both read and write (bits 0 and 1).
      if (auto* v = std::get_if<EptViolation>(&f); v && needed.type != access.type)
        v->qualification |= 1;
      return std::unexpected(f);
    }
  }

  if (l0 != nullptr) {
    if (auto t = l0->lookup(wc.root, gpa)) {
      if (t->perms.allows(needed)) {
        TlbEntry entry{tag,      t->gpa.raw(), t->level, t->hpa, t->key,
                       t->perms, t->root,      t->gpa,   true};
        fill(entry);
        ServedTranslation served = served_from(entry, gpa, TranslationSource::kL0, seen_at);
        report_stale(ctx, gpa, access, served);
        return served;
      }
      l0->drop(wc.root, gpa);
    }
  }

  stats_.tlb_walks.add();
  const uint64_t l0_gen = l0 != nullptr ? l0->generation() : 0;
  // A paging-structure-cache hit starts the walk at the cached page table. After a TLB hit
  // that could not serve the access (a clean entry for a write) the PSC is probed now.
  if (!psc_probed) cached.psc = tlb_.psc_lookup(tag, gpa.raw());
  const std::optional<PscEntry>& psc = cached.psc;
  WalkStart start;
  if (psc) start = WalkStart{psc->table, Level::k4K, psc->upper_all, psc->upper_any};
  auto r = walk(platform_.memory(), platform_.memory().layout(), wc, gpa, access,
                WalkMode::kHardware, psc ? &start : nullptr);
  if (!r) {
    // The fault invalidates the cached structures for the address (SDM §28.4.3.3), so the
    // retried access walks from the root; a PML-full exit is no translation fault.
    if (psc && !std::holds_alternative<PmlFull>(r.error())) tlb_.psc_invalidate(tag, gpa.raw());
    return std::unexpected(r.error());
  }
  const Translation& t = *r;
  if (pml && t.dirty_set) {
    ctx.pml_address->gpa[ctx.pml_index] = gpa.align_down(Level::k4K).raw();
    ctx.pml_index = static_cast<uint16_t>(ctx.pml_index - 1);
  }
  const bool dirty = !tracks_dirty || EptEntry::Dirty::get(t.leaf) != 0;
  TlbEntry entry{tag, t.gpa.raw(), t.level, t.hpa, t.key, t.perms, wc.root, t.gpa, dirty};
  fill(entry);
  if (!psc && t.level == Level::k4K) {
    PscEntry pe;
    pe.tag = Tlb::psc_tag(tag);
    pe.region = gpa.align_down(Level::k2M).raw();
    pe.table = t.leaf_table;
    pe.upper_all = t.upper_all;
    pe.upper_any = t.upper_any;
    pe.source_root = wc.root;
    if (l0 != nullptr) {
      tlb_.psc_insert_unless_flushed(pe, tlb_gen);
    } else {
      tlb_.psc_insert(pe);
    }
  }
  if (l0 != nullptr)
    l0->insert(L0Translation{wc.root, ctx.mode == GuestMode::kSvm ? ctx.asid : uint16_t{0}, t.gpa,
                             t.level, t.hpa, t.key, t.perms},
               l0_gen);
  if (psc) {
    ServedTranslation served = served_from(entry, gpa, TranslationSource::kPsc, seen_at);
    report_stale(ctx, gpa, access, served);
    return served;
  }
  return served_from(entry, gpa, TranslationSource::kWalk, seen_at);
}

Staleness LogicalCpu::probe(const GuestContext& ctx, Gpa gpa, const AccessRequest& access,
                            const ServedTranslation& served, std::optional<Translation>* fresh) {
  const WalkContext wc = walk_context(ctx, gpa);
  auto r = walk(platform_.memory(), platform_.memory().layout(), wc, gpa, access, WalkMode::kProbe);
  if (fresh != nullptr) *fresh = r ? std::optional<Translation>(*r) : std::nullopt;
  if (!r) {
    // Present but denying this access → the served translation is more permissive;
    // anything else means the address is no longer mapped.
    const TranslationFault& f = r.error();
    if (const auto* v = std::get_if<EptViolation>(&f); v && (v->qualification & 0x38) != 0)
      return Staleness::kMorePermissive;
    if (const auto* n = std::get_if<NptFault>(&f);
        n && (n->error_code & 1) != 0 && (n->error_code & 8) == 0)
      return Staleness::kMorePermissive;
    return Staleness::kNotMapped;
  }
  if (r->hpa_of(gpa) != served.hpa || r->key != served.key) return Staleness::kDifferentFrame;
  if (!served.perms.subset_of(r->perms)) return Staleness::kMorePermissive;
  return Staleness::kFresh;
}

void LogicalCpu::report_stale(const GuestContext& ctx, Gpa gpa, const AccessRequest& access,
                              ServedTranslation& served) {
  if (!platform_.config().probe_tlb_hits) return;
  std::optional<Translation> fresh;
  served.staleness = probe(ctx, gpa, access, served, &fresh);
  if (served.staleness == Staleness::kFresh) return;
  stats_.stale_uses.add();
  stale_use.emit(StaleUse{id_, gpa, access.type, served, fresh, walk_context(ctx, gpa).root});
}

// --- Guest mode ---------------------------------------------------------------------------------

VmExit LogicalCpu::make_exit(const GuestContext& ctx, const GuestState& state,
                             const GuestInsn& insn, uint32_t reason) const {
  VmExit e;
  e.mode = ctx.mode;
  e.reason = reason;
  e.rip = state.rip;
  e.insn = insn;
  return e;
}

std::optional<VmExit> LogicalCpu::translation_fault(GuestContext& ctx, GuestState& state,
                                                    GuestProgram& program, const GuestInsn& insn,
                                                    const TranslationFault& fault) {
  if (const auto* v = std::get_if<EptViolation>(&fault)) {
    stats_.ept_violations.add();
    VeInfoArea* ve = ctx.ve_info;
    if (ctx.ve_enabled && !v->suppress_ve && ve != nullptr &&
        deliver_ve(*ve, state, program, static_cast<uint32_t>(VmxExitReason::kEptViolation),
                   v->qualification, insn.gpa.raw(), v->gpa)) {
      stats_.ve_delivered.add();
      return std::nullopt;
    }
    VmExit e = make_exit(ctx, state, insn, static_cast<uint32_t>(VmxExitReason::kEptViolation));
    e.qualification = v->qualification;
    e.gpa = v->gpa;
    return e;
  }
  if (const auto* m = std::get_if<EptMisconfig>(&fault)) {
    stats_.ept_misconfigs.add();
    VmExit e = make_exit(ctx, state, insn, static_cast<uint32_t>(VmxExitReason::kEptMisconfig));
    e.gpa = m->gpa;
    return e;
  }
  if (std::holds_alternative<MachineCheck>(fault)) {
    // Intel only: AMD reads its nested tables with the host key, which nothing poisons.
    VmExit e = make_exit(ctx, state, insn, static_cast<uint32_t>(VmxExitReason::kExceptionNmi));
    e.intr_info = kIntrInfoMachineCheck;
    return e;
  }
  if (std::holds_alternative<PmlFull>(fault)) {
    // The instruction did not retire: it runs again once the host emptied the log.
    return make_exit(ctx, state, insn, static_cast<uint32_t>(VmxExitReason::kPmlFull));
  }
  const auto& n = std::get<NptFault>(fault);
  stats_.npt_faults.add();
  VmExit e = make_exit(ctx, state, insn, static_cast<uint32_t>(SvmExitCode::kNpf));
  e.qualification = n.error_code;
  e.gpa = n.gpa;
  return e;
}

std::optional<VmExit> LogicalCpu::execute(GuestContext& ctx, GuestState& state,
                                          GuestProgram& program, const GuestInsn& insn) {
  const bool svm = ctx.mode == GuestMode::kSvm;
  switch (insn.kind) {
    case GuestInsnKind::kNop:
    case GuestInsnKind::kPause:
      break;
    case GuestInsnKind::kMov:
      state.regs[insn.dest] = insn.value;
      break;
    case GuestInsnKind::kLoad:
    case GuestInsnKind::kStore:
    case GuestInsnKind::kFetch: {
      TDXSIM_CHECK(insn.kind == GuestInsnKind::kFetch || insn.gpa.raw() % 8 == 0,
                   "guest {} at {} is not 8-byte aligned", to_string(insn.kind), insn.gpa);
      AccessRequest access;
      access.type = insn.kind == GuestInsnKind::kLoad    ? AccessType::kRead
                    : insn.kind == GuestInsnKind::kStore ? AccessType::kWrite
                                                         : AccessType::kFetch;
      access.user_mode = insn.user_mode;
      access.gla_valid = true;
      access.final_translation = !insn.paging_structure;
      auto t = translate(ctx, insn.gpa, access);
      if (!t) return translation_fault(ctx, state, program, insn, t.error());
      HostMemory& mem = platform_.memory();
      if (GuestAccessObserver* observer = platform_.guest_access_observer()) {
        const GuestAccess access_at{id_, insn.gpa, ctx.is_shared(insn.gpa), t->hpa, t->key};
        if (insn.kind == GuestInsnKind::kLoad) {
          state.regs[insn.dest] = observer->load(access_at, mem);
        } else if (insn.kind == GuestInsnKind::kStore) {
          observer->store(access_at, mem, insn.value);
        }
      } else if (insn.kind == GuestInsnKind::kLoad) {
        state.regs[insn.dest] = mem.read(t->hpa, t->key).value;
      } else if (insn.kind == GuestInsnKind::kStore) {
        mem.write(t->hpa, t->key, insn.value);
      }
      break;
    }
    case GuestInsnKind::kVmcall:
      return make_exit(ctx, state, insn,
                       svm ? static_cast<uint32_t>(SvmExitCode::kVmmcall)
                           : static_cast<uint32_t>(VmxExitReason::kVmcall));
    case GuestInsnKind::kTdcall:
      return make_exit(ctx, state, insn, static_cast<uint32_t>(VmxExitReason::kTdcall));
    case GuestInsnKind::kHlt:
      return make_exit(ctx, state, insn,
                       svm ? static_cast<uint32_t>(SvmExitCode::kHlt)
                           : static_cast<uint32_t>(VmxExitReason::kHlt));
    case GuestInsnKind::kIret:
      TDXSIM_CHECK(!state.exception_stack.empty(), "guest IRET at rip {:#x} with no exception",
                   state.rip);
      state.rip = state.exception_stack.back();
      state.exception_stack.pop_back();
      state.retired++;
      stats_.instructions.add();
      return std::nullopt;
  }
  state.rip += insn.length;
  state.retired++;
  stats_.instructions.add();
  return std::nullopt;
}

VmExit LogicalCpu::run_guest(GuestContext& ctx, GuestState& state, GuestProgram& program) {
  assert_current();
  stats_.vm_entries.add();
  if (ctx.mode == GuestMode::kSvm) svm_vmrun_tlb_control(ctx);
  in_guest_.store(1, std::memory_order_release);
  const bool svm = ctx.mode == GuestMode::kSvm;
  uint32_t budget = ctx.instruction_budget;
  GuestInsn none;
  std::optional<VmExit> exit;
  while (!exit) {
    // Instruction boundary: NMIs first, then maskable interrupts (IPIs).
    if (nmi_pending_.load(std::memory_order_acquire) != 0) {
      nmi_pending_.fetch_sub(1, std::memory_order_acq_rel);
      ++nmi_latched_;
      exit = make_exit(ctx, state, none,
                       svm ? static_cast<uint32_t>(SvmExitCode::kNmi)
                           : static_cast<uint32_t>(VmxExitReason::kExceptionNmi));
      exit->intr_info = svm ? 0 : kIntrInfoNmi;
      break;
    }
    if (interrupt_pending_.load(std::memory_order_acquire) != 0 ||
        resched_pending_.load(std::memory_order_acquire) != 0) {
      exit = make_exit(ctx, state, none,
                       svm ? static_cast<uint32_t>(SvmExitCode::kIntr)
                           : static_cast<uint32_t>(VmxExitReason::kExternalInterrupt));
      break;
    }
    if (ctx.instruction_budget != 0 && budget-- == 0) {
      // VMX-preemption timer; SVM has none, the host's timer interrupt does the same job.
      exit = make_exit(ctx, state, none,
                       svm ? static_cast<uint32_t>(SvmExitCode::kIntr)
                           : static_cast<uint32_t>(VmxExitReason::kPreemptionTimer));
      break;
    }
    const GuestInsn insn = program.fetch(state);
    exit = execute(ctx, state, program, insn);
  }
  in_guest_.store(0, std::memory_order_release);
  stats_.vm_exits.add();
  return *exit;
}

}  // namespace tdxsim
