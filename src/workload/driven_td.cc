#include "workload/driven_td.h"

#include <fmt/format.h>

#include "base/sched.h"
#include "guest/pattern.h"
#include "guest/program.h"
#include "scenarios/scenario.h"
#include "scenarios/scenario_util.h"
#include "vmm/machine.h"
#include "vmm/vm.h"

namespace tdxsim::workload {

namespace {

// The GUEST_SYNC a parked guest waits at.
constexpr uint64_t kParked = 0x7e57;

}  // namespace

// One thing a guest operation makes its vCPU do, with the alias already chosen.
struct GuestStep {
  enum class Kind : uint8_t { kAccept, kFill, kVerify, kMapGpa } kind = Kind::kVerify;
  Gpa gpa;
  uint64_t bytes = kPageSize;
  uint8_t round = 0;
  bool to_shared = false;
};

// What the host gives a parked guest: written only while the guest is parked.
struct Mailbox {
  std::vector<GuestStep> steps;
  bool stop = false;
};

namespace {

guest::GuestTask driven_guest(guest::Guest& g, const Mailbox& box) {
  for (;;) {
    co_await g.sync(kParked);
    if (box.stop) break;
    for (const GuestStep& s : box.steps) {
      switch (s.kind) {
        case GuestStep::Kind::kAccept:
          co_await g.accept(s.gpa, Level::k4K);
          break;
        case GuestStep::Kind::kFill:
          co_await g.fill(s.gpa, s.bytes, s.round);
          break;
        case GuestStep::Kind::kVerify:
          co_await g.verify(s.gpa, s.bytes, s.round, s.round == 0 ? zero_pattern : guest::pattern);
          break;
        case GuestStep::Kind::kMapGpa:
          co_await g.map_gpa(s.gpa, s.bytes, s.to_shared);
          break;
      }
    }
  }
  co_await g.done();
}

uint64_t slot_bytes() {
  return kWorkBase.raw() + uint64_t{kPages} * kPageSize;
}

unsigned page_of(Gpa gpa) {
  return static_cast<unsigned>((gpa.raw() - kWorkBase.raw()) / kPageSize);
}

}  // namespace

std::unique_ptr<vmm::Machine> make_machine(const std::vector<BugId>& bugs) {
  vmm::MachineConfig mc;
  mc.packages = 1;
  mc.cpus_per_package = 2 + kVcpus;  // the VMM's two host CPUs and one per vCPU
  mc.memory_bytes = uint64_t{16} << 20;
  mc.bugs = bugs;
  return std::make_unique<vmm::Machine>(mc);
}

DrivenTd::DrivenTd(vmm::Machine& machine, Judge judge)
    : machine_(machine),
      judge_(judge),
      free_before_(machine.platform().memory().free_frame_count()) {
  ScenarioOptions options;
  checks_ = std::make_unique<RunChecks>(machine_, options);
  Report build;
  vm_ = create_private_td(machine_, kVcpus, slot_bytes(), slot_bytes(), build);
  if (vm_ == nullptr || !build.check(vm_->td_finalize().has_value(), "finalize")) {
    for (std::string& f : build.failures()) fail(std::move(f));
    vm_.reset();
    finished_ = true;
    return;
  }
  checks_->watch(*vm_);
  for (unsigned i = 0; i < kVcpus; ++i) {
    boxes_.push_back(std::make_unique<Mailbox>());
    programs_.push_back(std::make_unique<guest::Program>(
        vm_->flavour(),
        [box = boxes_.back().get()](guest::Guest& g) { return driven_guest(g, *box); }));
    vm_->vcpu(i).set_guest(programs_.back().get());
    run_guest(i, {});
  }
}

DrivenTd::~DrivenTd() {
  if (!finished_) finish();
}

void DrivenTd::fail(std::string what) {
  failures_.push_back(std::move(what));
}

void DrivenTd::run_guest(unsigned vcpu, std::vector<GuestStep> steps) {
  boxes_[vcpu]->steps = std::move(steps);
  const vmm::VcpuStop stop = vm_->vcpu(vcpu).run_to_ucall();
  if (stop.ucall && stop.ucall->cmd == guest::UcallCmd::kSync && stop.ucall->arg == kParked) {
    return;
  }
  if (stop.ucall && stop.ucall->cmd == guest::UcallCmd::kAssert) {
    const guest::GuestFailure* f = programs_[vcpu]->failure(stop.ucall->arg);
    fail(fmt::format("guest_assert: vCPU {}: {}", vcpu,
                     f != nullptr ? guest::to_string(*f) : std::string("(no record)")));
    return;
  }
  fail(fmt::format(
      "vcpu_stop: vCPU {} stopped at exit {} ({}{})", vcpu, to_string(stop.exit),
      stop.error ? to_string(*stop.error) : "no error",
      stop.ucall ? fmt::format(", ucall {}", guest::to_string(stop.ucall->cmd)) : std::string()));
}

void DrivenTd::run_host(const Op& op, const TdModel& model) {
  vmm::Vm& vm = *vm_;
  const auto done = [&](const KvmResult<>& r) {
    if (!r) fail(fmt::format("host_{}: {}", to_string(op.kind), errno_name(r)));
  };
  switch (op.kind) {
    case OpKind::kSetAttributes:
      done(op.to_shared ? vm.set_shared(op.gpa(), op.bytes())
                        : vm.set_private(op.gpa(), op.bytes()));
      break;
    case OpKind::kPunchHole:
      done(vm.punch_hole(op.gpa(), op.bytes()));
      break;
    case OpKind::kZapShared:
      done(vm.zap_gfn_range(op.gpa(), op.bytes(), GfnZapCause::kNoncoherentDma));
      break;
    case OpKind::kReclaim:
      vm.reclaim(0);
      break;
    case OpKind::kHostRead:
      guest::for_each_sample(op.gpa(), op.bytes(), [&](Gpa gpa) {
        const KvmResult<uint64_t> seen = vm.host_read(gpa);
        const uint64_t want = round_value(gpa, model.page(page_of(gpa)).shared_round);
        if (!seen || *seen != want) {
          fail(fmt::format("host_read: at {} the host reads {:#x}, the model says round {} ({:#x})",
                           gpa, seen.value_or(0), model.page(page_of(gpa)).shared_round, want));
        }
      });
      break;
    case OpKind::kHostWrite:
      guest::for_each_sample(op.gpa(), op.bytes(), [&](Gpa gpa) {
        done(vm.host_write(gpa, round_value(gpa, op.round)));
      });
      break;
    case OpKind::kFlushTlbs:
      vm.flush_remote_tlbs();
      break;
    case OpKind::kRecreateMemslot:
      done(vm.delete_memslot(0));
      done(vm.add_memory_region(0, Gpa{0}, slot_bytes(), vmm::MemoryRegion::with_gmem()));
      break;
    default:
      break;
  }
}

std::vector<std::string> DrivenTd::run(const Op& op, const TdModel& model) {
  if (finished_ || broken()) return {};
  const size_t before = failures_.size();
  if (op.is_guest()) {
    const guest::VmFlavour& flavour = vm_->flavour();
    TdModel after = model;
    after.apply(op);
    std::vector<GuestStep> steps;
    const auto alias = [&](unsigned p, bool shared) {
      const Gpa gpa = kWorkBase + uint64_t{p} * kPageSize;
      return shared ? flavour.to_shared(gpa) : gpa;
    };
    for (unsigned p = op.first; p < unsigned{op.first} + op.count; ++p) {
      const bool shared = !model.page(p).is_private;
      switch (op.kind) {
        case OpKind::kAccept:
          steps.push_back({GuestStep::Kind::kAccept, alias(p, false)});
          break;
        case OpKind::kWrite:
          steps.push_back({GuestStep::Kind::kFill, alias(p, shared), kPageSize, op.round});
          break;
        case OpKind::kRead:
          steps.push_back(
              {GuestStep::Kind::kVerify, alias(p, shared), kPageSize, model.guest_view(p)});
          break;
        case OpKind::kTouch:
          steps.push_back({GuestStep::Kind::kVerify, alias(p, op.to_shared), kPageSize,
                           model.view_through(p, op.to_shared)});
          break;
        default:
          break;
      }
    }
    if (op.kind == OpKind::kMapGpa) {
      steps.push_back({GuestStep::Kind::kMapGpa, op.gpa(), op.bytes(), 0, op.to_shared});
    }
    run_guest(op.vcpu, std::move(steps));
  } else {
    run_host(op, model);
  }
  if (!broken()) {
    for (std::string& v :
         judge_ == Judge::kAll ? checks_->violations_now() : checks_->run_wide_violations_now()) {
      fail(std::move(v));
    }
  }
  return {failures_.begin() + static_cast<std::ptrdiff_t>(before), failures_.end()};
}

std::vector<std::string> DrivenTd::finish() {
  if (finished_) return {};
  finished_ = true;
  const size_t before = failures_.size();
  // A broken TD's guests may be anywhere in their steps: only a healthy one is run to DONE.
  const bool healthy = !broken();
  if (healthy) {
    for (unsigned i = 0; i < kVcpus; ++i) {
      boxes_[i]->stop = true;
      const vmm::VcpuStop stop = vm_->vcpu(i).run_to_ucall();
      if (!stop.ucall || stop.ucall->cmd != guest::UcallCmd::kDone) {
        fail(fmt::format("guest_done: vCPU {} stopped at exit {}", i, to_string(stop.exit)));
      }
    }
  }
  Report teardown;
  checks_->finish_vm(*vm_, teardown, "");
  checks_->unwatch(*vm_);
  checks_->finish(teardown);
  vm_.reset();
  check_td_teardown(machine_, free_before_, teardown);
  if (healthy) {
    for (std::string& f : teardown.failures()) fail(std::move(f));
  }
  return {failures_.begin() + static_cast<std::ptrdiff_t>(before), failures_.end()};
}

void run_scheduled(const std::function<void()>& body) {
  std::exception_ptr thrown;
  Scheduler scheduler(SchedOptions{});
  scheduler.run([&] {
    try {
      body();
    } catch (...) {
      thrown = std::current_exception();
    }
  });
  if (thrown) std::rethrow_exception(thrown);
}

SequenceOutcome run_sequence(vmm::Machine& machine, std::span<const Op> ops, Judge judge) {
  SequenceOutcome out;
  DrivenTd td(machine, judge);
  TdModel model;
  for (size_t i = 0; i < ops.size() && !td.broken(); ++i) {
    if (!well_formed(ops[i])) continue;
    if (!td.run(ops[i], model).empty()) {
      out.failed_at = i;
      break;
    }
    model.apply(ops[i]);
  }
  const bool failed_before = td.broken();
  td.finish();
  if (td.broken() && !failed_before) out.failed_at = ops.size();
  out.failures = td.failures();
  return out;
}

}  // namespace tdxsim::workload
