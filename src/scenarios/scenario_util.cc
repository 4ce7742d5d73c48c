#include "scenarios/scenario_util.h"

#include <fmt/ranges.h>

#include <thread>

#include "base/rcu.h"
#include "base/thread.h"
#include "check/exit_status_check.h"
#include "check/fault_loop_watchdog.h"
#include "check/hyperv_usage.h"
#include "check/memslot_backing.h"
#include "check/page_table_balance.h"
#include "check/pamt_balance.h"
#include "check/progress_watchdog.h"
#include "check/sept_removal_protocol.h"
#include "check/vm_health.h"
#include "kvm/mmu_stats.h"
#include "kvm/vmx/tdx.h"
#include "platform/logical_cpu.h"
#include "tdx_module/tdx_module.h"

namespace tdxsim {

MachineConfig machine_config(const ScenarioOptions& options) {
  MachineConfig mc;
  mc.bugs = options.inject;
  return mc;
}

std::unique_ptr<Vm> create_private_td(Machine& machine, unsigned vcpus, uint64_t slot_bytes,
                                      uint64_t private_bytes, Report& report) {
  auto vm_or = Vm::create(machine, VmShape::of(VmType::kTdx, vcpus));
  if (!report.check(vm_or.has_value(), "td_create", "{}", errno_name(vm_or))) return nullptr;
  std::unique_ptr<Vm> vm = std::move(*vm_or);
  const KvmResult<> slot = vm->add_memory_region(0, Gpa{0}, slot_bytes, MemoryRegion::with_gmem());
  if (!report.check(slot.has_value(), "memslot", "{}", errno_name(slot))) return nullptr;
  const KvmResult<> attrs = vm->set_private(Gpa{0}, private_bytes);
  if (!report.check(attrs.has_value(), "set_private", "{}", errno_name(attrs))) return nullptr;
  return vm;
}

namespace {

// "tag: evidence; evidence…", or the evidence alone for an untagged run.
std::string tagged(std::string_view tag, const std::vector<std::string>& lines) {
  const std::string joined = fmt::format("{}", fmt::join(lines, "; "));
  return tag.empty() ? joined : fmt::format("{}: {}", tag, joined);
}

}  // namespace

SeptCensus sept_census(Vm& vm) {
  if (LogicalCpu* cpu = this_cpu(); cpu != nullptr) return take_sept_census(vm.kvm_vm(), *cpu);
  Machine& m = vm.machine();
  CpuBinding b = m.platform().bind(m.host_cpu(0));
  return take_sept_census(vm.kvm_vm(), b.cpu());
}

// The continuous checks of one TD.
struct RunChecks::TdChecks {
  Vm* vm;
  SeptRemovalProtocol removal;
  ExitStatusCheck exits;
  ProgressWatchdog progress;

  TdChecks(TdxOps& ops, Vm& v)
      : vm(&v), removal(ops, v.kvm_vm()), exits(ops, v.kvm_vm()), progress(ops, v.kvm_vm()) {}
};

RunChecks::RunChecks(Machine& machine, const ScenarioOptions& options)
    : machine_(machine), enabled_(options.checks), tracer_(options.tracer) {
  if (!enabled_) return;
  stale_ = std::make_unique<StaleUseCheck>(machine.platform());
  zapped_ = std::make_unique<ZappedRangeCheck>();
  dirty_ = std::make_unique<DirtyLogCoverage>();
  model_ = std::make_unique<ReferenceModel>(machine);
  model_->set_store_listener(dirty_.get());
}

RunChecks::~RunChecks() = default;

void RunChecks::watch(Vm& vm) {
  if (tracer_ != nullptr) traced_.emplace_back(&vm, tracer_->attach(vm));
  if (!enabled_) return;
  stale_->watch(vm.kvm());
  model_->watch(vm);
  dirty_->watch(vm);
  zapped_->watch(vm.kvm(), vm.kvm_vm().mmu().tdp_mmu());
  vms_.push_back(WatchedVm{&vm, vm.kvm().type() == VmType::kTdx ? "td" : "vm",
                           std::make_unique<FaultLoopWatchdog>(vm.kvm())});
  if (vm.kvm().type() == VmType::kTdx && machine_.tdx() != nullptr &&
      vm.kvm_vm().vendor() != nullptr) {
    tds_.push_back(std::make_unique<TdChecks>(*machine_.tdx(), vm));
  }
}

void RunChecks::unwatch(Vm& vm) {
  std::erase_if(traced_, [&](const auto& t) { return t.first == &vm; });
  if (!enabled_) return;
  stale_->unwatch(vm.kvm());
  model_->unwatch(vm);
  dirty_->unwatch(vm);
  zapped_->unwatch(vm.kvm());
  // The VM may go away after this: what its own checks say now is kept for the verdict.
  for (const WatchedVm& w : vms_) {
    if (w.vm != &vm || w.reported) continue;
    for (CheckOutcome& o : vm_outcomes(vm, w.tag)) unwatched_.push_back(std::move(o));
  }
  std::erase_if(vms_, [&](const WatchedVm& w) { return w.vm == &vm; });
  std::erase_if(tds_, [&](const auto& t) { return t->vm == &vm; });
}

void RunChecks::quiescent(Vm& vm, Report& report, std::string_view tag) {
  if (!enabled_ || vm.kvm().type() != VmType::kTdx) return;
  const SeptCensus c = sept_census(vm);
  report.check(c.mismatches.empty(), "mirror_matches_sept", "{}", tagged(tag, c.mismatches));
}

std::vector<RunChecks::CheckOutcome> RunChecks::vm_outcomes(Vm& vm, std::string_view tag,
                                                            SeptCensus* census) {
  std::vector<CheckOutcome> out;
  const auto add = [&](std::string_view name, bool ok, const std::vector<std::string>& evidence) {
    out.push_back(
        CheckOutcome{std::string(name), ok ? std::nullopt : std::optional(tagged(tag, evidence))});
  };
  const std::optional<std::string> bug = vm_bug_violation(vm.kvm());
  add("no_vm_bug", !bug, {bug.value_or("")});
  const std::optional<std::string> lock = lock_assertion_violation(vm.kvm());
  add("no_lock_assertion", !lock, {lock.value_or("")});
  const TdpMmu& tables = vm.kvm_vm().mmu().tdp_mmu();
  const std::optional<std::string> alias = aliased_memslot(vm.kvm(), tables);
  add("memslots_unaliased", !alias, {alias.value_or("")});
  UnbackedSptes unbacked = unbacked_sptes(vm.kvm(), tables);
  if (unbacked.unbacked != 0) {
    unbacked.evidence.insert(
        unbacked.evidence.begin(),
        fmt::format("{} of {} leaves", unbacked.unbacked, unbacked.leaves_checked));
  }
  add("sptes_backed_by_memslots", unbacked.unbacked == 0, unbacked.evidence);
  const std::optional<std::string> balance = page_table_balance_violation(tables);
  add("page_tables_balance", !balance, {balance.value_or("")});
  const std::optional<std::string> freed = freed_table_read_violation(tables);
  add("freed_tables_untouched", !freed, {freed.value_or("")});
  // "progress" has two watchdogs: the fault loop (every VM) and, for a TD, re-entries on one
  // private fault (bounded by the module's zero-step threshold).
  uint64_t stuck = 0;
  std::vector<std::string> stuck_evidence;
  for (const WatchedVm& w : vms_) {
    if (w.vm != &vm) continue;
    stuck += w.fault_loop->violations();
    stuck_evidence = w.fault_loop->evidence();
  }
  for (const auto& td : tds_) {
    if (td->vm != &vm) continue;
    add("sept_removal_protocol", td->removal.violations() == 0, td->removal.evidence());
    add("exit_handled_only_after_valid_status", td->exits.violations() == 0, td->exits.evidence());
    stuck += td->progress.violations();
    for (std::string& e : td->progress.evidence()) stuck_evidence.push_back(std::move(e));
  }
  add("progress", stuck == 0, stuck_evidence);
  if (vm.kvm().type() == VmType::kTdx) {
    SeptCensus c = sept_census(vm);
    add("mirror_matches_sept", c.mismatches.empty(), c.mismatches);
    if (const TdxModule* module = machine_.tdx_module(); module != nullptr) {
      const std::vector<std::string> off =
          pamt_imbalance(module->pamt(), TdxOps::to_tdx(vm.kvm_vm()).tdr(), c);
      add("pamt_balance", off.empty(), off);
    }
    if (census != nullptr) *census = std::move(c);
  }
  return out;
}

void RunChecks::report_vm(Vm& vm, Report& report, std::string_view tag, SeptCensus* census) {
  for (WatchedVm& w : vms_) {
    if (w.vm == &vm) w.reported = true;
  }
  for (const CheckOutcome& o : vm_outcomes(vm, tag, census)) {
    report.check(!o.failure, o.name, "{}", o.failure.value_or(""));
  }
}

void RunChecks::report_pending(Report& report, std::string_view tag) {
  if (!enabled_) return;
  for (WatchedVm& w : vms_) {
    if (!w.reported) report_vm(*w.vm, report, tag.empty() ? std::string_view(w.tag) : tag);
  }
  for (const CheckOutcome& o : unwatched_) {
    report.check(!o.failure, o.name, "{}", o.failure.value_or(""));
  }
  unwatched_.clear();
  const CheckOutcome z = zapped_outcome(tag);
  report.check(!z.failure, z.name, "{}", z.failure.value_or(""));
}

RunChecks::CheckOutcome RunChecks::zapped_outcome(std::string_view tag) const {
  const std::vector<ZappedRangeViolation> v = zapped_->violations();
  const uint64_t n = zapped_->violation_count();
  if (n == 0) return CheckOutcome{"zapped_range_unmapped", std::nullopt};
  return CheckOutcome{"zapped_range_unmapped",
                      fmt::format("{}{}{} of {} range zap(s) left mappings; first: {}", tag,
                                  tag.empty() ? "" : ": ", n, zapped_->zaps_checked(),
                                  v.empty() ? std::string() : v.front().describe())};
}

std::vector<RunChecks::CheckOutcome> RunChecks::run_outcomes(std::string_view tag) const {
  const std::string where = tag.empty() ? std::string() : fmt::format("{}: ", tag);
  const auto outcome = [](std::string_view name, bool ok, std::string evidence) {
    return CheckOutcome{std::string(name), ok ? std::nullopt : std::optional(std::move(evidence))};
  };
  std::vector<CheckOutcome> out;
  const StaleUseCounts c = stale_->counts();
  const std::vector<StaleUseViolation> v = stale_->violations();
  out.push_back(outcome("no_stale_translation_used", c.violations == 0,
                        fmt::format("{}{} violation(s); first: {}", where, c.violations,
                                    v.empty() ? std::string() : v.front().describe())));
  const ReferenceModelCounts m = model_->counts();
  const std::vector<std::string> mv = model_->violations();
  out.push_back(outcome("reads_match_reference_model", m.violations == 0,
                        fmt::format("{}{} violation(s); first: {}", where, m.violations,
                                    mv.empty() ? std::string() : mv.front())));
  const DirtyLogCoverageCounts d = dirty_->counts();
  const std::vector<std::string> dv = dirty_->violations();
  out.push_back(outcome(
      "dirty_log_covers_writes", d.violations == 0,
      fmt::format("{}{} page(s) written and not reported in {} harvest(s); first: {}", where,
                  d.violations, d.harvests_checked, dv.empty() ? std::string() : dv.front())));
  return out;
}

std::vector<std::string> RunChecks::violations_now() {
  std::vector<std::string> out;
  if (!enabled_) return out;
  for (const WatchedVm& w : vms_) {
    for (const CheckOutcome& o : vm_outcomes(*w.vm, w.tag)) {
      if (o.failure) out.push_back(fmt::format("{}: {}", o.name, *o.failure));
    }
  }
  for (std::string& v : run_wide_violations_now()) out.push_back(std::move(v));
  return out;
}

std::vector<std::string> RunChecks::run_wide_violations_now() {
  std::vector<std::string> out;
  if (!enabled_) return out;
  std::vector<CheckOutcome> all;
  all.push_back(zapped_outcome(""));
  for (CheckOutcome& o : run_outcomes("")) all.push_back(std::move(o));
  for (const CheckOutcome& o : all) {
    if (o.failure) out.push_back(fmt::format("{}: {}", o.name, *o.failure));
  }
  return out;
}

void RunChecks::finish_vm(Vm& vm, Report& report, std::string_view tag) {
  // The S-EPT census is the mirror check's reading, so without checks the summary has no
  // S-EPT figures.
  SeptCensus census;
  if (enabled_) {
    const std::optional<std::string> hv = hyperv_usage_violation(machine_.platform(), vm.kvm_vm());
    report.check(!hv, "hyperv_only_on_hyperv", "{}: {}", tag, hv.value_or(""));
    report_vm(vm, report, tag, &census);
  }
  const MmuStats& mmu = vm.kvm_vm().mmu().stats();
  uint64_t flush_all = 0, flush_current = 0, root_loads = 0;
  for (unsigned i = 0; i < vm.nr_vcpus(); ++i) {
    const VcpuStats& st = vm.vcpu(i).kvm_vcpu().stats();
    flush_all += st.tlb_flushes.value();
    flush_current += st.tlb_flushes_current.value();
    root_loads += st.root_loads.value();
  }
  const std::string p = tag.empty() ? std::string() : fmt::format("{}.", tag);
  report.schedule_figure(p + "flushes.remote", mmu.remote_tlb_flushes.value());
  report.schedule_figure(p + "flushes.remote_ranged", mmu.remote_tlb_flushes_range.value());
  report.schedule_figure(p + "flushes.vcpu_all", flush_all);
  report.schedule_figure(p + "flushes.vcpu_current", flush_current);
  report.schedule_figure(p + "root_loads", root_loads);
  report.schedule_figure(p + "hv_root_tracking_updates", vm.kvm_vm().hv_root_tdp().updates.value());
  report_vm_summary(vm, report, tag, &census);
}

void check_td_teardown(Machine& machine, uint64_t free_before, Report& report) {
  HostMemory& mem = machine.platform().memory();
  report.check(mem.free_frame_count() == free_before, "frames_returned",
               "{} frames free after teardown, {} before", mem.free_frame_count(), free_before);
  const Pamt& pamt = machine.tdx_module()->pamt();
  for (PamtPageType t : {PamtPageType::kReg, PamtPageType::kTdr, PamtPageType::kTdcx,
                         PamtPageType::kTdvpr, PamtPageType::kEpt}) {
    report.check(pamt.count(t) == 0, "pamt_clean", "{} PAMT entries still of type {}",
                 pamt.count(t), to_string(t));
  }
  report.check(mem.violation_count() == 0, "no_plaintext_leak", "{} host-memory violations",
               mem.violation_count());
}

void report_vm_summary(Vm& vm, Report& report, std::string_view tag, const SeptCensus* census) {
  const std::string p = tag.empty() ? std::string() : fmt::format("{}.", tag);
  const MmuStats& mmu = vm.kvm_vm().mmu().stats();
  for (RetPf r :
       {RetPf::kFixed, RetPf::kSpurious, RetPf::kRetry, RetPf::kEmulate, RetPf::kInvalid}) {
    if (const uint64_t n = mmu.fault_count(r); n != 0) {
      report.schedule_figure(fmt::format("{}faults.{}", p, to_string(r)), n);
      report.add_operations(n);
    }
  }
  // Racing converters may each find part of a range already done: the page counts are the
  // schedule's.
  if (const uint64_t n = vm.kvm().pages_converted_to_shared(); n != 0) {
    report.schedule_figure(p + "conversions.to_shared_pages", n);
  }
  if (const uint64_t n = vm.kvm().pages_converted_to_private(); n != 0) {
    report.schedule_figure(p + "conversions.to_private_pages", n);
  }
  for (size_t reason = 0; reason < static_cast<size_t>(ZapReason::kCount); ++reason) {
    for (ZapAlias alias : {ZapAlias::kShared, ZapAlias::kPrivate}) {
      const uint64_t n = mmu.zapped[reason][static_cast<size_t>(alias)].value();
      if (n == 0) continue;
      report.schedule_figure(
          fmt::format("{}zapped.{}.{}", p, to_string(static_cast<ZapReason>(reason)),
                      alias == ZapAlias::kShared ? "shared" : "private"),
          n);
    }
  }
  // What is mapped now (the run's end, before teardown), and what its tables cost.
  uint64_t mapped_bytes = 0;
  for (bool mirror : {false, true}) {
    for (Level l : {Level::k4K, Level::k2M, Level::k1G}) {
      const int64_t n = mmu.pages_mapped(mirror, l);
      if (n <= 0) continue;
      mapped_bytes += static_cast<uint64_t>(n) * level_bytes(l);
      report.schedule_figure(
          fmt::format("{}mapped.{}.{}", p, mirror ? "mirror" : "direct", level_name(l)),
          static_cast<uint64_t>(n));
    }
  }
  // The S-EPT as the module holds it (read through TDH.MEM.SEPT.RD), beside KVM's mirror.
  if (census != nullptr && census->sept_reads != 0) {
    const std::array<Level, 3> levels = {Level::k4K, Level::k2M, Level::k1G};
    for (size_t i = 0; i < levels.size(); ++i) {
      if (census->leaves[i] == 0) continue;
      report.schedule_figure(fmt::format("{}mapped.sept.{}", p, level_name(levels[i])),
                             census->leaves[i]);
    }
    uint64_t tables = 0;
    for (uint64_t n : census->tables) tables += n;
    report.schedule_figure(p + "sept_table_bytes", tables * kPageSize);
  }
  const uint64_t table_bytes = vm.kvm_vm().mmu().tdp_mmu().live_table_pages() * kPageSize;
  report.schedule_figure(p + "page_table_bytes", table_bytes);
  if (mapped_bytes >= (uint64_t{1} << 30)) {
    report.schedule_figure(p + "page_table_bytes_per_gib_mapped",
                           table_bytes / (mapped_bytes >> 30));
  }
  vmm::VcpuExitStats exits;
  for (unsigned i = 0; i < vm.nr_vcpus(); ++i) {
    const vmm::VcpuExitStats& e = vm.vcpu(i).exit_stats();
    exits.runs += e.runs;
    exits.memory_faults += e.memory_faults;
    exits.map_gpa += e.map_gpa;
    exits.mmio += e.mmio;
    exits.ucalls += e.ucalls;
    exits.hlt += e.hlt;
    exits.eintr += e.eintr;
  }
  report.schedule_figure(p + "kvm_runs", exits.runs);
  report.schedule_figure(p + "exits.memory_fault", exits.memory_faults);
  report.schedule_figure(p + "exits.map_gpa", exits.map_gpa);
  report.schedule_figure(p + "exits.mmio", exits.mmio);
  report.schedule_figure(p + "exits.ucall", exits.ucalls);
  report.schedule_figure(p + "exits.hlt", exits.hlt);
  if (vm.kvm().type() == VmType::kTdx) {
    const TdxStats& st = TdxOps::to_tdx(vm.kvm_vm()).stats();
    for (size_t i = 0; i < kNumSeamcallLeaves; ++i) {
      const auto leaf = static_cast<SeamcallLeaf>(i);
      if (const uint64_t n = st.count(leaf); n != 0) {
        report.schedule_figure(fmt::format("{}seamcall.{}", p, to_string(leaf)), n);
        report.add_operations(n);
      }
      if (const uint64_t n = st.busy_count(leaf); n != 0) {
        report.schedule_figure(fmt::format("{}seamcall_busy.{}", p, to_string(leaf)), n);
      }
      if (const uint64_t n = st.error_count(leaf); n != 0) {
        report.schedule_figure(fmt::format("{}seamcall_error.{}", p, to_string(leaf)), n);
      }
    }
  }
}

void RunChecks::verdict(Report& report, std::string_view tag) {
  judge(report, tag);
}

void RunChecks::judge(Report& report, std::string_view tag) {
  if (!enabled_) return;
  report_pending(report, tag);
  for (const CheckOutcome& o : run_outcomes(tag)) {
    report.check(!o.failure, o.name, "{}", o.failure.value_or(""));
  }
}

void RunChecks::finish(Report& report) {
  Platform& platform = machine_.platform();
  uint64_t invept_single = 0, invept_all = 0, asid_flushes = 0;
  for (unsigned i = 0; i < platform.cpu_count(); ++i) {
    const CpuStats& st = platform.cpu(i).stats();
    report.add_operations(st.instructions.value() + st.vm_exits.value());
    invept_single += st.invept_single.value();
    invept_all += st.invept_all.value();
    asid_flushes += st.asid_flushes.value();
  }
  report.schedule_figure("cpu_flushes.invept_single", invept_single);
  report.schedule_figure("cpu_flushes.invept_all", invept_all);
  report.schedule_figure("cpu_flushes.asid", asid_flushes);
  if (const HyperVL0* l0 = platform.hyperv()) {
    report.schedule_figure("hypercalls.flush_space", l0->stats().flush_space_calls.value());
    report.schedule_figure("hypercalls.flush_list", l0->stats().flush_list_calls.value());
  } else {
    report.figure("hypercalls", 0);  // none without an L0, whatever the schedule
  }
  if (!enabled_) return;
  report.schedule_figure("range_zaps_checked", zapped_->zaps_checked());
  const StaleUseCounts c = stale_->counts();
  report.schedule_figure("stale_uses.in_window", c.stale_uses - c.violations);
  report.schedule_figure("stale_uses.unjudged", c.unattributed);
  const ReferenceModelCounts m = model_->counts();
  report.schedule_figure("reference_model.loads_checked", m.loads_checked);
  report.schedule_figure("reference_model.loads_learned", m.loads_learned);
  report.schedule_figure("reference_model.stores", m.stores);
  judge(report, "");
}

uint64_t HostStep::encode() const {
  return static_cast<uint64_t>(op) | check << 4 | write << 8 | (offset >> kPageShift) << 12 |
         (size >> kPageShift) << 32;
}

HostStep HostStep::decode(uint64_t a) {
  return HostStep{static_cast<HostOp>(a & 0xF), (a >> 4) & 0xF, (a >> 8) & 0xF,
                  ((a >> 12) & 0xFFFFF) << kPageShift, ((a >> 32) & 0xFFFFF) << kPageShift};
}

bool HostSync::operator()(unsigned vcpu, uint64_t arg) const {
  const HostStep step = HostStep::decode(arg);
  const Gpa base = base_of_(vcpu) + step.offset;
  if (step.op == HostOp::kPunch) {
    return report_.check(vm_.punch_hole(base, step.size).has_value(), "punch_hole",
                         "{}: vCPU {} at {}", tag_, vcpu, base);
  }
  bool ok = true;
  guest::for_each_sample(base, step.size, [&](Gpa gpa) {
    if (!ok) return;
    const KvmResult<uint64_t> seen = vm_.host_read(gpa);
    const uint64_t want = round_value(gpa, step.check);
    ok = report_.check(seen.has_value() && *seen == want, "host_view",
                       "{}: vCPU {}: the host reads {:#x} at {}, expected round {} ({:#x})", tag_,
                       vcpu, seen.value_or(0), gpa, step.check, want);
    if (ok && step.op == HostOp::kCheckWrite) {
      ok = report_.check(vm_.host_write(gpa, round_value(gpa, step.write)).has_value(),
                         "host_write", "{}: vCPU {} at {}", tag_, vcpu, gpa);
    }
  });
  return ok;
}

bool run_vcpu_to_done(Vm& vm, unsigned vcpu, const guest::Program& program, Report& report,
                      const SyncHandler& on_sync) {
  for (;;) {
    const VcpuStop stop = vm.vcpu(vcpu).run_to_ucall();
    if (!stop.ucall) {
      return report.check(false, "vcpu_exit", "vCPU {} stopped at exit {} ({})", vcpu,
                          to_string(stop.exit), stop.error ? to_string(*stop.error) : "no error");
    }
    switch (stop.ucall->cmd) {
      case guest::UcallCmd::kDone:
        return true;
      case guest::UcallCmd::kSync:
        if (on_sync && !on_sync(vcpu, stop.ucall->arg)) return false;
        break;
      case guest::UcallCmd::kAssert: {
        const guest::GuestFailure* f = program.failure(stop.ucall->arg);
        return report.check(false, "guest_assert", "vCPU {}: {}", vcpu,
                            f ? guest::to_string(*f) : std::string("(no record)"));
      }
    }
  }
}

void check_pressure(Vm& vm, const vmm::MemoryPressure& pressure, Report& report,
                    std::string_view tag) {
  const MmuStats& st = vm.kvm_vm().mmu().stats();
  const auto zapped = [&](ZapAlias a) {
    return st.zapped[static_cast<size_t>(ZapReason::kNotifier)][static_cast<size_t>(a)].value();
  };
  report.check(pressure.rounds() > 0, "memory_pressure", "{}: no reclaim pass ran", tag);
  report.check(zapped(ZapAlias::kPrivate) == 0, "notifier_spares_private",
               "{}: host reclaim zapped {} private leaves", tag, zapped(ZapAlias::kPrivate));
  report.schedule_figure("reclaim_passes", pressure.rounds());
  report.schedule_figure("notifier_zapped_shared", zapped(ZapAlias::kShared));
}

void run_vcpus_to_done(Vm& vm, const std::vector<std::unique_ptr<guest::Program>>& programs,
                       Report& report, const SyncHandler& on_sync) {
  std::vector<Thread> threads;
  for (unsigned i = 0; i < programs.size(); ++i) {
    threads.emplace_back([&, i] { run_vcpu_to_done(vm, i, *programs[i], report, on_sync); });
  }
  for (Thread& t : threads) t.join();
}

}  // namespace tdxsim
