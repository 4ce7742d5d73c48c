// A logical CPU: its TLB, the thread that runs on it, interrupts (IPIs and NMIs), the
// second-level translation of guest accesses, and guest mode itself.
//
// Threads and CPUs. A thread runs on one logical CPU at a time (Platform::bind) and may
// migrate by binding elsewhere. CPU-local instructions (INVEPT, INVVPID, SEAMCALL, VM entry)
// must be executed by the bound thread.
//
// Interrupts. `run_on` is an IPI carrying a function: if the CPU is in guest mode, the guest
// exits (external interrupt) at its next instruction boundary; the function runs on the
// CPU's own thread at its next interrupt window (`handle_interrupts`, KVM's
// local_irq_enable after a VM exit) and the sender waits for it. A CPU with no thread, or
// whose thread is blocked (`BlockedScope`), is idle as far as interrupts go: the sender
// runs the function on its behalf while holding the CPU, which is what the idle CPU's
// handler would have done. NMIs interrupt guest mode the same way (exit reason 0) and are
// latched for the host's NMI handler; calling the handler with no NMI latched is a
// spurious NMI and is counted.
//
// Guest mode. `run_guest` executes a GuestProgram until a VM exit (see vm_exit.h): memory
// instructions translate through the TLB (and the Hyper-V L0's cache when present), else a
// walk of the context's EPT/NPT; an EPT violation whose entry has suppress-#VE clear is
// delivered to the guest as a #VE when the context enables it.
//
// Staleness. Every translation the TLB (or the L0) serves can be classified against a fresh,
// side-effect-free walk (`probe`): served translations more permissive than the tables, or
// pointing at another frame, are stale; one that is less permissive only causes a spurious
// fault. Stale uses are counted and published on the `stale_use` tracepoint.
//
// Thread safety: the mailbox (occupant, IPI queue, blocked state) is guarded by mu_;
// interrupt_pending_ and nmi_pending_ are read at guest instruction boundaries (acquire) and
// set by senders (release). Everything else belongs to the bound thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <thread>

#include "base/atomic.h"
#include "base/cond_var.h"
#include "base/lock.h"
#include "base/thread_annotations.h"
#include "base/trace.h"
#include "platform/guest_context.h"
#include "platform/guest_program.h"
#include "platform/page_walk.h"
#include "platform/tlb.h"
#include "platform/translation.h"
#include "platform/vm_exit.h"

namespace tdxsim {

class Platform;
class LogicalCpu;

// The logical CPU the calling thread is bound to (Platform::bind), or nullptr: the kernel's
// smp_processor_id(). Host code that must issue a CPU-local instruction (a SEAMCALL from an
// ioctl) on whatever CPU it runs on asks here.
LogicalCpu* this_cpu();

enum class Staleness : uint8_t {
  kFresh,           // matches the tables (or is less permissive: a spurious fault at worst)
  kMorePermissive,  // allows an access the tables no longer allow
  kDifferentFrame,  // the tables map this address to another frame or key
  kNotMapped,       // the tables no longer map this address at all
};
const char* to_string(Staleness s);

// A translation as the CPU used it, and where it came from.
// kPsc: a walk that started at a table the paging-structure cache named, which may no
// longer be the table the root leads to (so it is probed like a TLB hit).
enum class TranslationSource : uint8_t { kWalk, kTlb, kL0, kPsc };

struct ServedTranslation {
  Hpa hpa;  // the frame address backing the accessed GPA (key bits stripped)
  KeyId key;
  Level level = Level::k4K;
  Perms perms;
  TranslationSource source = TranslationSource::kWalk;
  Staleness staleness = Staleness::kFresh;
  Hpa root;  // the table root it belongs to
  // The platform's check clock read before the TLB lookup (0 when not probing): events a
  // checker stamped at or before it happened before this access.
  uint64_t seen_at = 0;
};

// One stale translation that was used, with its evidence.
struct StaleUse {
  unsigned cpu = 0;
  Gpa gpa;
  AccessType access = AccessType::kRead;
  ServedTranslation served;
  std::optional<Translation> fresh;  // what a walk gives now (nullopt: a fault)
  Hpa ctx_root;  // the root the context walks now (the vCPU's loaded root for this GPA)
};

// The CPU's own events are counted by the thread running on it; IPIs and NMIs received are
// counted by their senders, concurrently.
struct CpuStats {
  OwnerCounter vm_entries, vm_exits, instructions, tlb_walks, ept_violations, ept_misconfigs,
      npt_faults, ve_delivered, ipis_handled_idle, nmis_handled, spurious_nmis, invept_single,
      invept_all, invvpid, asid_flushes, stale_uses, spurious_faults;
  Counter ipis_received, nmis_received;
};

class LogicalCpu {
 public:
  LogicalCpu(Platform& platform, unsigned id, unsigned package, const TlbConfig& tlb);
  LogicalCpu(const LogicalCpu&) = delete;
  LogicalCpu& operator=(const LogicalCpu&) = delete;

  unsigned id() const { return id_; }
  unsigned package() const { return package_; }
  Platform& platform() { return platform_; }
  Tlb& tlb() { return tlb_; }
  const CpuStats& stats() const { return stats_; }
  bool in_guest_mode() const;

  // REQUIRES: the calling thread is bound to this CPU. Aborts otherwise (a simulator bug).
  void assert_current() const;

  // --- Guest mode -----------------------------------------------------------------------
  // REQUIRES: bound. Runs `program` from state.rip until a VM exit. SVM: acts on and clears
  // ctx.tlb_control first (VMRUN).
  VmExit run_guest(GuestContext& ctx, GuestState& state, GuestProgram& program);

  // Translates `gpa` for an access under `ctx` as the hardware would, filling the TLB and,
  // with PML on, logging a dirty flag it sets (ctx's PML index moves). Exposed for tests.
  std::expected<ServedTranslation, TranslationFault> translate(GuestContext& ctx, Gpa gpa,
                                                               const AccessRequest& access);
  // Classifies a translation against a fresh, side-effect-free walk of ctx's tables.
  Staleness probe(const GuestContext& ctx, Gpa gpa, const AccessRequest& access,
                  const ServedTranslation& served, std::optional<Translation>* fresh = nullptr);

  // --- CPU-local instructions (REQUIRES: bound) -------------------------------------------
  // INVEPT with the EPTP operand (single-context uses its EP4TA). Under the Hyper-V L0 it
  // traps there too.
  void invept(InveptType type, Eptp eptp);
  void invvpid(InvvpidType type, uint16_t vpid, uint64_t linear);

  // --- Interrupts ---------------------------------------------------------------------------
  // Runs `fn` on this CPU and waits for it. `self` is the sender's own CPU if it is bound
  // to one (it keeps handling its own interrupts while it waits), else nullptr.
  void run_on(const std::function<void(LogicalCpu&)>& fn, LogicalCpu* self);
  void send_nmi();
  // smp_send_reschedule: a guest running here exits (external interrupt) at its next
  // instruction boundary; nothing runs and nobody waits. KVM's kick: whoever wants the vCPU
  // out waits for the vCPU itself to say it left guest mode. A kick that finds the CPU in host
  // mode is dropped at the next interrupt window (the vCPU checks its requests before entry).
  void send_reschedule();
  // The bound thread's interrupt window: runs every queued IPI function.
  void handle_interrupts();
  // The host NMI handler, called by KVM after an exit it decoded as "NMI". Returns false
  // (and counts a spurious NMI) when no NMI was latched for the host.
  bool handle_host_nmi();

  // Marks the bound thread as blocked for the scope's lifetime: its CPU is idle for
  // interrupts, which senders then run themselves.
  class BlockedScope {
   public:
    explicit BlockedScope(LogicalCpu& cpu);
    ~BlockedScope();
    BlockedScope(const BlockedScope&) = delete;
    BlockedScope& operator=(const BlockedScope&) = delete;

   private:
    LogicalCpu& cpu_;
  };

  // Every stale translation this CPU uses (the stale-use checker attaches here).
  Tracepoint<StaleUse> stale_use;

 private:
  friend class Platform;
  friend class CpuBinding;
  struct Ipi;

  void bind_current_thread();    // Platform::bind
  void unbind_current_thread();  // CpuBinding's destructor
  // Runs `fn` for an idle CPU on the caller's thread. REQUIRES mu_; drops it while running.
  void run_handler_idle(const std::function<void(LogicalCpu&)>& fn) TDXSIM_REQUIRES(mu_);

  WalkContext walk_context(const GuestContext& ctx, Gpa gpa) const;
  TlbTag tlb_tag(const GuestContext& ctx, const GuestInsn& insn) const;
  std::optional<VmExit> execute(GuestContext& ctx, GuestState& state, GuestProgram& program,
                                const GuestInsn& insn);
  // The exit a translation fault causes, or nullopt when it was delivered as a #VE.
  std::optional<VmExit> translation_fault(GuestContext& ctx, GuestState& state,
                                          GuestProgram& program, const GuestInsn& insn,
                                          const TranslationFault& fault);
  VmExit make_exit(const GuestContext& ctx, const GuestState& state, const GuestInsn& insn,
                   uint32_t reason) const;
  void svm_vmrun_tlb_control(GuestContext& ctx);
  void report_stale(const GuestContext& ctx, Gpa gpa, const AccessRequest& access,
                    ServedTranslation& served);

  Platform& platform_;
  const unsigned id_;
  const unsigned package_;
  Tlb tlb_;
  CpuStats stats_;

  mutable Mutex mu_{"cpu.mailbox"};
  CondVar cv_;
  std::optional<std::thread::id> occupant_ TDXSIM_GUARDED_BY(mu_);
  bool blocked_ TDXSIM_GUARDED_BY(mu_) = false;
  bool idle_handler_running_ TDXSIM_GUARDED_BY(mu_) = false;
  std::optional<std::thread::id> idle_handler_ TDXSIM_GUARDED_BY(mu_);
  std::deque<Ipi*> ipis_ TDXSIM_GUARDED_BY(mu_);
  AtomicWord interrupt_pending_;  // 1 while ipis_ is non-empty
  AtomicWord resched_pending_;    // a kick not yet taken at an interrupt window
  AtomicWord nmi_pending_;        // NMIs sent, not yet taken
  AtomicWord in_guest_;
  // The occupant while it is not blocked (else no thread): assert_current's fast path.
  // Written only by the occupant thread itself.
  std::atomic<std::thread::id> running_{};
  uint64_t nmi_latched_ = 0;  // bound thread only: NMIs that caused exits, for the handler
};

}  // namespace tdxsim
