#include "scenarios/scenario_runner.h"

#include <map>
#include <set>
#include <thread>

#include "base/lock.h"
#include "base/sched.h"
#include "base/thread.h"
#include "guest/program.h"
#include "kvm/mmu_stats.h"
#include "kvm/vmx/tdx.h"
#include "scenarios/scenario_counters.h"
#include "scenarios/scenario_util.h"
#include "vmm/memory_pressure.h"
#include "vmm/vm.h"

namespace tdxsim {

namespace {

// A punch phase is a GUEST_SYNC whose argument has this bit, and its index in the vCPU's own
// punch list below; stages stay below it (the file allows up to 2^40).
constexpr uint64_t kPunchSync = uint64_t{1} << 48;

enum class StepKind : uint8_t { kAccept, kFill, kVerify, kVerifyAt, kTouch, kMapGpa, kSync };

// One guest-side operation, with the alias (a TD's shared bit) already chosen.
struct Step {
  StepKind kind = StepKind::kSync;
  Gpa gpa;
  uint64_t size = 0;
  uint64_t round = 0;
  Gpa written_at;
  bool to_shared = false;
  Level level = Level::k4K;
  unsigned repeat = 1;
  uint64_t arg = 0;
};

guest::GuestTask run_steps(guest::Guest& g, const std::vector<Step>& steps) {
  for (const Step& s : steps) {
    if (s.kind == StepKind::kAccept) {
      for (uint64_t off = 0; off < s.size; off += level_bytes(s.level))
        co_await g.accept(s.gpa + off, s.level);
    } else if (s.kind == StepKind::kFill) {
      co_await g.fill(s.gpa, s.size, s.round, s.round == 0 ? zero_pattern : guest::pattern);
    } else if (s.kind == StepKind::kVerify) {
      for (unsigned r = 0; r < s.repeat; ++r) {
        co_await g.verify(s.gpa, s.size, s.round, s.round == 0 ? zero_pattern : guest::pattern);
      }
    } else if (s.kind == StepKind::kVerifyAt) {
      // The round as filled at `written_at`: the data of a slot that moved since.
      for (unsigned r = 0; r < s.repeat; ++r) {
        for (uint64_t page = 0; page < s.size; page += kPageSize) {
          for (uint64_t off : guest::kSampleOffsets) {
            const uint64_t v = co_await g.read(s.gpa + page + off);
            const uint64_t want = round_value(s.written_at + page + off, s.round);
            if (v != want) {
              std::string what = "verify (written at another GPA)";
              co_await g.fail(std::move(what), s.gpa + page + off, want, v);
            }
          }
        }
      }
    } else if (s.kind == StepKind::kTouch) {
      for (uint64_t page = 0; page < s.size; page += kPageSize) co_await g.read(s.gpa + page);
    } else if (s.kind == StepKind::kMapGpa) {
      co_await g.map_gpa(s.gpa, s.size, s.to_shared);
    } else {
      co_await g.sync(s.arg);
    }
  }
  co_await g.done();
}

// What a guest believes private, page by page, as its program is built: the memslots'
// initial attributes, then its own conversions and the host's at the stages it syncs at. A
// TD reaches a page through the alias this says; other VMs have one alias.
class AliasMap {
 public:
  explicit AliasMap(const ScenarioSpec& spec) : spec_(spec) {}
  bool is_private(uint64_t gpa) const {
    if (auto it = pages_.find(gpa); it != pages_.end()) return it->second;
    for (const MemslotSpec& s : spec_.memslots) {
      if (gpa >= s.range.gpa.raw() && gpa < s.range.end()) return s.initially_private;
    }
    return false;
  }
  void set(const GpaRange& r, bool is_private) {
    for (uint64_t p = r.gpa.raw(); p < r.end(); p += kPageSize) pages_[p] = is_private;
  }
  // Calls f(start, size, private) for each run of pages of one kind in `r`.
  template <class F>
  void for_each_run(const GpaRange& r, F&& f) const {
    uint64_t start = r.gpa.raw();
    bool kind = is_private(start);
    for (uint64_t p = start + kPageSize; p <= r.end(); p += kPageSize) {
      if (p < r.end() && is_private(p) == kind) continue;
      f(Gpa{start}, p - start, kind);
      if (p < r.end()) {
        start = p;
        kind = is_private(p);
      }
    }
  }

 private:
  const ScenarioSpec& spec_;
  std::map<uint64_t, bool> pages_;
};

struct VcpuPlan {
  std::vector<Step> steps;
  std::vector<GpaRange> punches;
  std::vector<uint64_t> stages;
};

VcpuPlan plan_vcpu(const ScenarioSpec& spec, const GuestSpec& g, const guest::VmFlavour& flavour) {
  VcpuPlan plan;
  AliasMap alias(spec);
  const bool td = flavour.td;
  // Splits a range into runs of one alias (a TD's) and adds `base` for each.
  const auto each = [&](const GpaRange& r, const Step& base) {
    if (!td) {
      Step s = base;
      s.gpa = r.gpa;
      s.size = r.size;
      plan.steps.push_back(s);
      return;
    }
    alias.for_each_run(r, [&](Gpa start, uint64_t size, bool is_private) {
      Step s = base;
      s.gpa = is_private ? start : flavour.to_shared(start);
      s.size = size;
      s.written_at = base.written_at + (start.raw() - r.gpa.raw());
      plan.steps.push_back(s);
    });
  };
  for (const PhaseSpec& p : g.phases) {
    Step s;
    switch (p.op) {
      case PhaseOp::kAccept:
        s.kind = StepKind::kAccept;
        s.level = p.level;
        s.gpa = p.range.gpa;
        s.size = p.range.size;
        plan.steps.push_back(s);  // ACCEPT takes the private GPA
        break;
      case PhaseOp::kFill:
        s.kind = StepKind::kFill;
        s.round = p.round;
        each(p.range, s);
        break;
      case PhaseOp::kVerify:
        s.kind = p.written_at ? StepKind::kVerifyAt : StepKind::kVerify;
        s.round = p.round;
        s.repeat = p.repeat;
        s.written_at = p.written_at.value_or(p.range.gpa);
        each(p.range, s);
        break;
      case PhaseOp::kConvert:
        alias.set(p.range, p.to_private);
        if (p.implicit) {
          s.kind = StepKind::kTouch;  // through the new alias: the memory-fault exit converts
          each(p.range, s);
        } else {
          s.kind = StepKind::kMapGpa;
          s.gpa = p.range.gpa;
          s.size = p.range.size;
          s.to_shared = !p.to_private;
          plan.steps.push_back(s);
        }
        break;
      case PhaseOp::kPunch:
        s.arg = kPunchSync | plan.punches.size();
        plan.punches.push_back(p.range);
        plan.steps.push_back(s);
        break;
      case PhaseOp::kSync:
        s.arg = p.stage;
        plan.steps.push_back(s);
        plan.stages.push_back(p.stage);
        // The host's conversions at this stage come before the guest's next phase.
        for (const HostActionSpec& h : spec.host) {
          if (h.at != p.stage) continue;
          if (h.kind == HostActionKind::kSetPrivate) alias.set(h.range, true);
          if (h.kind == HostActionKind::kSetShared) alias.set(h.range, false);
        }
        break;
    }
  }
  return plan;
}

// The host's side of the stages: a stage's actions run once, when every vCPU whose program
// syncs there has arrived (or stopped for good on the way), on the last arrival's thread;
// the others wait for them. Stages rise within each program (the file checks), so waiting
// cannot deadlock.
class Stages {
 public:
  explicit Stages(const std::vector<VcpuPlan>& plans) {
    MutexLock l(mu_);
    for (unsigned i = 0; i < plans.size(); ++i) {
      pending_[i] = std::set<uint64_t>(plans[i].stages.begin(), plans[i].stages.end());
      for (uint64_t s : plans[i].stages) expected_[s]++;
    }
  }
  template <class F>
  void arrive(unsigned vcpu, uint64_t stage, F&& actions) {
    {
      MutexLock l(mu_);
      arrived_[stage]++;
      pending_[vcpu].erase(stage);
    }
    for (;;) {
      bool claim = false;
      {
        MutexLock l(mu_);
        if (ran_.contains(stage)) return;
        if (!started_.contains(stage) && arrived_[stage] >= expected_[stage]) {
          started_.insert(stage);
          claim = true;
        }
      }
      if (claim) {
        actions();
        MutexLock l(mu_);
        ran_.insert(stage);
        return;
      }
      sched_pause();
    }
  }
  // `vcpu` stopped: it reaches none of the stages it has not reached yet.
  void depart(unsigned vcpu) {
    MutexLock l(mu_);
    for (uint64_t s : pending_[vcpu]) expected_[s]--;
    pending_[vcpu].clear();
  }
  bool ran(uint64_t stage) const {
    MutexLock l(mu_);
    return ran_.contains(stage);
  }

 private:
  mutable Mutex mu_{"scenario stages"};
  std::map<unsigned, std::set<uint64_t>> pending_ TDXSIM_GUARDED_BY(mu_);
  std::map<uint64_t, unsigned> expected_ TDXSIM_GUARDED_BY(mu_);
  std::map<uint64_t, unsigned> arrived_ TDXSIM_GUARDED_BY(mu_);
  std::set<uint64_t> started_ TDXSIM_GUARDED_BY(mu_);
  std::set<uint64_t> ran_ TDXSIM_GUARDED_BY(mu_);
};

struct VcpuEnd {
  bool done = false;
  bool asserted = false;
  VcpuStop stop;
};

class Run {
 public:
  Run(const ScenarioSpec& spec, Machine& machine, Vm& vm, Report& report)
      : spec_(spec), machine_(machine), vm_(vm), report_(report) {}

  void arm(const FaultSpec& f) { machine_.faults().arm(f.kind, f.key, f.count, f.param); }

  void host_actions(uint64_t stage) {
    for (const HostActionSpec& h : spec_.host) {
      if (h.at == stage) host_action(h);
    }
    for (const FaultSpec& f : spec_.faults) {
      if (f.at == stage) arm(f);
    }
  }

  void host_action(const HostActionSpec& h) {
    const std::string name = fmt::format("host.{}", to_string(h.kind));
    const auto done = [&](const KvmResult<>& r) {
      report_.check(r.has_value(), name, "stage {} (line {}): slot {} [{}, +{:#x}): {}", h.at,
                    h.pos.line, h.slot, h.range.gpa, h.range.size, errno_name(r));
    };
    switch (h.kind) {
      case HostActionKind::kDeleteMemslot:
        done(vm_.delete_memslot(h.slot));
        break;
      case HostActionKind::kMoveMemslot:
        done(vm_.move_memslot(h.slot, h.to));
        break;
      case HostActionKind::kRecreateMemslot:
        for (const MemslotSpec& s : spec_.memslots) {
          if (s.slot == h.slot)
            done(vm_.add_memory_region(s.slot, s.range.gpa, s.range.size, region_of(s)));
        }
        break;
      case HostActionKind::kSetPrivate:
        done(vm_.set_private(h.range.gpa, h.range.size, h.discard));
        break;
      case HostActionKind::kSetShared:
        done(vm_.set_shared(h.range.gpa, h.range.size, h.discard));
        break;
      case HostActionKind::kPunchHole:
        done(vm_.punch_hole(h.range.gpa, h.range.size));
        break;
      case HostActionKind::kZapGfnRange:
        done(vm_.zap_gfn_range(h.range.gpa, h.range.size));
        break;
      case HostActionKind::kReclaim:
        vm_.reclaim(h.slot);
        break;
      case HostActionKind::kFlushRemoteTlbs:
        vm_.flush_remote_tlbs();
        break;
      case HostActionKind::kPressureOn:
        if (!pressure_) pressure_ = std::make_unique<vmm::MemoryPressure>(vm_, h.slots);
        break;
      case HostActionKind::kPressureOff:
        stop_pressure();
        break;
      case HostActionKind::kCheck: {
        bool ok = true;
        guest::for_each_sample(h.range.gpa, h.range.size, [&](Gpa gpa) {
          if (!ok) return;
          const KvmResult<uint64_t> seen = vm_.host_read(gpa);
          const uint64_t want = round_value(gpa, h.round);
          ok = report_.check(
              seen.has_value() && *seen == want, "host_view",
              "stage {} (line {}): the host reads {:#x} at {}, expected round {} ({:#x})", h.at,
              h.pos.line, seen.value_or(0), gpa, h.round, want);
          if (ok && h.write) {
            ok = report_.check(vm_.host_write(gpa, round_value(gpa, *h.write)).has_value(),
                               "host_write", "stage {}: at {}", h.at, gpa);
          }
        });
        break;
      }
    }
  }

  void stop_pressure() {
    if (!pressure_) return;
    pressure_->stop();
    reclaim_passes_ += pressure_->rounds();
    pressure_.reset();
  }
  uint64_t reclaim_passes() const { return reclaim_passes_; }

  static MemoryRegion region_of(const MemslotSpec& s) {
    MemoryRegion r;
    r.guest_memfd = s.guest_memfd;
    r.thp = s.thp;
    return r;
  }

 private:
  const ScenarioSpec& spec_;
  Machine& machine_;
  Vm& vm_;
  Report& report_;
  std::unique_ptr<vmm::MemoryPressure> pressure_;
  uint64_t reclaim_passes_ = 0;
};

VcpuEnd run_vcpu(Vm& vm, unsigned i, const guest::Program& program, const VcpuPlan& plan,
                 Stages& stages, Run& run, Report& report) {
  VcpuEnd end;
  for (;;) {
    end.stop = vm.vcpu(i).run_to_ucall();
    if (!end.stop.ucall) break;
    const guest::Ucall& uc = *end.stop.ucall;
    if (uc.cmd == guest::UcallCmd::kDone) {
      end.done = true;
      break;
    }
    if (uc.cmd == guest::UcallCmd::kAssert) {
      const guest::GuestFailure* f = program.failure(uc.arg);
      report.check(false, "guest_assert", "vCPU {}: {}", i,
                   f ? guest::to_string(*f) : std::string("(no record)"));
      end.asserted = true;
      break;
    }
    if ((uc.arg & kPunchSync) != 0) {
      const GpaRange& r = plan.punches.at(uc.arg & ~kPunchSync);
      report.check(vm.punch_hole(r.gpa, r.size).has_value(), "punch_hole", "vCPU {}: [{}, +{:#x})",
                   i, r.gpa, r.size);
      continue;
    }
    stages.arrive(i, uc.arg, [&] { run.host_actions(uc.arg); });
  }
  stages.depart(i);
  return end;
}

uint64_t read_counter(const CounterRef& c, Machine& machine, Vm& vm,
                      const std::vector<std::unique_ptr<guest::Program>>& programs) {
  uint64_t sum = 0;
  const auto exits = [&](uint64_t VcpuExitStats::*field) {
    for (unsigned i = 0; i < vm.nr_vcpus(); ++i) sum += vm.vcpu(i).exit_stats().*field;
    return sum;
  };
  const MmuStats& mmu = vm.kvm_vm().mmu().stats();
  const auto zapped = [&](ZapAlias a) {
    return mmu.zapped[static_cast<size_t>(ZapReason::kNotifier)][static_cast<size_t>(a)].value();
  };
  switch (c.kind) {
    case CounterKind::kMemoryFaultExits:
      return exits(&VcpuExitStats::memory_faults);
    case CounterKind::kMapGpaExits:
      return exits(&VcpuExitStats::map_gpa);
    case CounterKind::kMmioExits:
      return exits(&VcpuExitStats::mmio);
    case CounterKind::kHltExits:
      return exits(&VcpuExitStats::hlt);
    case CounterKind::kSeamcalls:
      return TdxOps::to_tdx(vm.kvm_vm()).stats().count(c.leaf);
    case CounterKind::kBusy:
      return TdxOps::to_tdx(vm.kvm_vm()).stats().busy_count(c.leaf);
    case CounterKind::kBusyRetries:
      return TdxOps::to_tdx(vm.kvm_vm()).stats().retries(c.leaf);
    case CounterKind::kVeHandled:
      for (const auto& p : programs) sum += p->ves_handled();
      return sum;
    case CounterKind::kRemoteFlushes:
      return mmu.remote_tlb_flushes.value();
    case CounterKind::kHypercalls:
      if (const HyperVL0* l0 = machine.platform().hyperv()) {
        return l0->stats().flush_space_calls.value() + l0->stats().flush_list_calls.value();
      }
      return 0;
    case CounterKind::kNotifierZappedShared:
      return zapped(ZapAlias::kShared);
    case CounterKind::kNotifierZappedPrivate:
      return zapped(ZapAlias::kPrivate);
  }
  return 0;
}

MachineConfig machine_of(const ScenarioSpec& spec, const ScenarioOptions& options) {
  MachineConfig mc = machine_config(options);
  for (BugId id : spec.inject) mc.bugs.push_back(id);
  mc.vendor = spec.machine.vendor;
  mc.tdx = spec.machine.tdx;
  mc.memory_bytes = spec.machine.memory;
  mc.packages = spec.machine.cpus % 2 == 0 ? 2 : 1;
  mc.cpus_per_package = spec.machine.cpus / mc.packages;
  if (spec.machine.hyperv) {
    HyperVConfig hv;
    hv.enlightened_tlb = spec.machine.enlightened_tlb;
    mc.hyperv = hv;
  }
  return mc;
}

void run_vm(const ScenarioSpec& spec, Machine& machine, Vm& vm, RunChecks& checks, Report& report) {
  for (const MemslotSpec& s : spec.memslots) {
    if (!report.check(
            vm.add_memory_region(s.slot, s.range.gpa, s.range.size, Run::region_of(s)).has_value(),
            "memslot", "slot {} at {} (line {})", s.slot, s.range.gpa, s.pos.line)) {
      return;
    }
    if (s.initially_private) {
      report.check(vm.set_private(s.range.gpa, s.range.size).has_value(), "set_private", "slot {}",
                   s.slot);
    }
  }
  if (spec.vm.type == VmType::kTdx && !report.check(vm.td_finalize().has_value(), "finalize"))
    return;

  Run run(spec, machine, vm, report);
  for (const FaultSpec& f : spec.faults) {
    if (!f.at) run.arm(f);
  }
  std::vector<VcpuPlan> plans;
  std::vector<std::unique_ptr<guest::Program>> programs;
  for (unsigned i = 0; i < vm.nr_vcpus(); ++i) {
    plans.push_back(plan_vcpu(spec, spec.guests[i], vm.flavour()));
    programs.push_back(std::make_unique<guest::Program>(
        vm.flavour(),
        [steps = plans.back().steps](guest::Guest& g) { return run_steps(g, steps); }));
    vm.vcpu(i).set_guest(programs.back().get());
  }
  Stages stages(plans);
  std::vector<VcpuEnd> ends(vm.nr_vcpus());
  {
    std::vector<Thread> threads;
    for (unsigned i = 0; i < vm.nr_vcpus(); ++i) {
      threads.emplace_back(
          [&, i] { ends[i] = run_vcpu(vm, i, *programs[i], plans[i], stages, run, report); });
    }
    for (Thread& t : threads) t.join();
  }
  run.stop_pressure();
  machine.faults().disarm_all();

  for (const HostActionSpec& h : spec.host) {
    report.check(stages.ran(h.at), "host_actions_ran",
                 "stage {}'s {} (line {}) never ran: no vCPU reached GUEST_SYNC({})", h.at,
                 to_string(h.kind), h.pos.line, h.at);
  }
  // How each vCPU ended: as its expectation says, else at its guest's DONE.
  for (unsigned i = 0; i < vm.nr_vcpus(); ++i) {
    const VcpuEnd& e = ends[i];
    const ExpectSpec* fault = nullptr;
    for (const ExpectSpec& x : spec.expects) {
      if (x.kind == ExpectKind::kMemoryFault && x.vcpu == i) fault = &x;
    }
    if (e.asserted) continue;  // reported with the guest's record
    const KvmRun& r = vm.vcpu(i).run_state();
    if (fault == nullptr) {
      report.check(e.done, "guest_done", "vCPU {} stopped at exit {} ({})", i,
                   to_string(e.stop.exit), e.stop.error ? to_string(*e.stop.error) : "no error");
      continue;
    }
    const bool is_fault =
        !e.done && e.stop.error == Errno::kEfault && e.stop.exit == KvmExitReason::kMemoryFault;
    if (!report.check(is_fault, "memory_fault_exit",
                      "vCPU {} (line {}): {}, expected a memory-fault exit", i, fault->pos.line,
                      e.done ? std::string("the guest reached DONE")
                             : fmt::format("exit {}", to_string(e.stop.exit)))) {
      continue;
    }
    const bool is_private = (r.memory_fault.flags & kMemoryExitFlagPrivate) != 0;
    report.check(r.memory_fault.gpa == fault->fault.gpa &&
                     r.memory_fault.size == fault->fault.size && is_private == fault->fault_private,
                 "memory_fault_fields",
                 "vCPU {}: gpa {} size {:#x} private {}, expected gpa {} size {:#x} private {}", i,
                 r.memory_fault.gpa, r.memory_fault.size, is_private, fault->fault.gpa,
                 fault->fault.size, fault->fault_private);
  }
  for (const ExpectSpec& x : spec.expects) {
    if (x.kind != ExpectKind::kCount) continue;
    const uint64_t v = read_counter(*parse_counter(x.counter), machine, vm, programs);
    report.figure(x.counter, v);
    report.check(v >= x.at_least && (!x.at_most || v <= *x.at_most), "count",
                 "{} is {}, expected {} to {} (line {})", x.counter, v, x.at_least,
                 x.at_most ? fmt::format("{}", *x.at_most) : std::string("any"), x.pos.line);
  }
  report.figure("reclaim_passes", run.reclaim_passes());
  if (spec.vm.type == VmType::kTdx) {
    const TdxStats& st = TdxOps::to_tdx(vm.kvm_vm()).stats();
    for (SeamcallLeaf leaf : {SeamcallLeaf::kMemPageAug, SeamcallLeaf::kMemPageRemove,
                              SeamcallLeaf::kMemRangeBlock, SeamcallLeaf::kMemTrack}) {
      report.figure(fmt::format("seamcall.{}", to_string(leaf)), st.count(leaf));
    }
    const MmuStats& mmu = vm.kvm_vm().mmu().stats();
    const uint64_t private_zaps = mmu.zapped[static_cast<size_t>(ZapReason::kNotifier)]
                                            [static_cast<size_t>(ZapAlias::kPrivate)]
                                                .value();
    report.check(private_zaps == 0, "notifier_spares_private",
                 "host reclaim zapped {} private leaves", private_zaps);
  }
  checks.finish_vm(vm, report, "");
}

}  // namespace

void run_scenario_spec(const ScenarioSpec& spec, const ScenarioOptions& options, Report& report) {
  Machine machine(machine_of(spec, options));
  RunChecks checks(machine, options);
  {
    VmShape shape = VmShape::of(spec.vm.type, spec.vm.vcpus);
    shape.sept_ve_disable = spec.vm.sept_ve_disable;
    shape.quirk_slot_zap_all = spec.vm.quirk_slot_zap_all;
    shape.discard_on_conversion = spec.vm.discard_on_conversion;
    auto vm_or = Vm::create(machine, shape);
    if (!report.check(vm_or.has_value(), "vm_create", "{}", errno_name(vm_or))) return;
    Vm& vm = **vm_or;
    checks.watch(vm);
    run_vm(spec, machine, vm, checks, report);
    checks.unwatch(vm);
  }
  checks.finish(report);
}

}  // namespace tdxsim
